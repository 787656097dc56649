"""janusdna: the JanusDNA bidirectional DNA foundation model, importable without the janus CLI."""

__version__ = "0.1.0"

# The model every janus command uses when --model is not given (shipped in pretrained/).
DEFAULT_MODEL = "janusdna-d48-chr20"

from .checkpoint import (
    CheckpointError,
    from_original,
    from_preset,
    load,
    save,
    weights_sha256,
)
from .model import PRESETS, JanusDNA, JanusDNAConfig
from .tokenizer import decode, encode, reverse_complement

__all__ = [
    "__version__",
    "DEFAULT_MODEL",
    "CheckpointError",
    "JanusDNA",
    "JanusDNAConfig",
    "PRESETS",
    "decode",
    "encode",
    "from_original",
    "from_preset",
    "load",
    "reverse_complement",
    "save",
    "weights_sha256",
]
