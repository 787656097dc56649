"""janusdna: the JanusDNA bidirectional DNA foundation model, one architecture of the dnalm layer.

janusdna.load/save/from_preset are dnalm's (they read and write every architecture); what is
JanusDNA's own is the model, its presets and the import of original training checkpoints."""

from pathlib import Path

from dnalm import DEFAULT_MODEL, CheckpointError, __version__, from_preset, load, save, weights_sha256
from dnalm.registry import Architecture
from dnalm.tokenizer import decode, encode, reverse_complement

from .checkpoint import from_original
from .model import PRESETS, JanusDNA, JanusDNAConfig

ARCHITECTURE = Architecture("janusdna", JanusDNA, JanusDNAConfig, PRESETS, Path(__file__).parent / "pretrained",
                            import_original=from_original)

__all__ = [
    "__version__",
    "ARCHITECTURE",
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
