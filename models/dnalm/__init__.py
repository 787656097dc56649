"""dnalm: the one model layer janus commands talk to, whatever the architecture.

    model = dnalm.load("janusdna-d48-chr20")      # a model directory or a shipped name
    model = dnalm.from_preset("janusdna-d144")    # random weights, a published configuration
    dnalm.save(model, "my_model/")
"""

__version__ = "0.2.0"

# The model every janus command uses when --model is not given.
DEFAULT_MODEL = "janusdna-d48-chr20"

from .checkpoint import (
    CheckpointError,
    from_preset,
    is_model_reference,
    list_models,
    load,
    load_or_preset,
    resolve_model_path,
    save,
    weights_sha256,
)
from .heads import Finetuned, SequenceClassifier, Task, is_finetuned, load_finetuned, save_finetuned
from .interface import (
    ALL_BUT_SELF,
    MASKED,
    LEFT,
    POOLINGS,
    PREDICTION_CONTEXT_TEXT,
    DNALM,
    CapabilityError,
    pool,
    require,
)
from .registry import architecture, architectures
from .tokenizer import decode, encode, reverse_complement

__all__ = [
    "__version__", "DEFAULT_MODEL", "ALL_BUT_SELF", "LEFT", "MASKED", "POOLINGS", "PREDICTION_CONTEXT_TEXT",
    "DNALM", "CapabilityError", "CheckpointError", "Finetuned", "SequenceClassifier", "Task", "architecture",
    "architectures", "decode", "encode", "from_preset", "is_finetuned", "is_model_reference", "list_models", "load",
    "load_finetuned", "load_or_preset", "pool", "require", "resolve_model_path", "reverse_complement", "save",
    "save_finetuned", "weights_sha256",
]
