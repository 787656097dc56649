"""What every janus architecture provides, and what the commands may ask of it.

An architecture subclasses DNALM, sets its class attributes and implements the abstract methods;
everything else has a default here. Commands never test which architecture they hold: they read
these attributes and call require() for a capability the command cannot do without.
"""

from __future__ import annotations

import contextlib
from typing import ClassVar

import torch
from torch import nn

from .tokenizer import BASE_IDS, N

# What the per-base prediction at position t has seen (DNALM.prediction_context).
ALL_BUT_SELF = "all_but_self"  # every other base of the window, never base t (JanusDNA)
LEFT = "left"  # the bases before t (a causal language model)
INCLUDING_SELF = "including_self"  # the whole window, base t included (an autoencoder's reconstruction)

PREDICTION_CONTEXT_TEXT = {
    ALL_BUT_SELF: "every other base of the window (never the base itself)",
    LEFT: "the bases to its left only",
    INCLUDING_SELF: "the whole window including the base itself",
}

# capability -> what a model needs to have it
CAPABILITIES = {
    "per_base_prediction": "predicts each base without seeing it",
    "generation": "generates sequences left to right (a causal model with an inference cache)",
}

IGNORE_INDEX = -100
POOLINGS = ("mean", "max", "center", "last")


class CapabilityError(ValueError):
    """A command asked a model for something its architecture cannot do; a usage error."""


class DNALM(nn.Module):
    """A DNA language model over the shared character vocabulary (tokenizer.py)."""

    arch: ClassVar[str]
    prediction_context: ClassVar[str]
    default_pooling: ClassVar[str] = "mean"
    # capability -> what to use instead, for the capabilities this architecture lacks
    alternatives: ClassVar[dict[str, str]] = {}

    config: object  # a dataclass with name, d_model, max_seq_len, extra, to_dict() and from_dict()

    # --- what it can do -----------------------------------------------------------------------

    @classmethod
    def capabilities(cls) -> frozenset[str]:
        found = set()
        if cls.prediction_context in (ALL_BUT_SELF, LEFT):
            found.add("per_base_prediction")
        if getattr(cls, "is_causal", False):
            found.add("generation")
        return frozenset(found)

    @property
    def d_model(self) -> int:
        return self.config.d_model

    @property
    def max_seq_len(self) -> int:
        return self.config.max_seq_len

    # --- the forward passes -------------------------------------------------------------------

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids [B, L] -> logits [B, L, vocab] (float32) over the shared vocabulary."""
        raise NotImplementedError

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Per-base representations [B, L, d], the ones embeddings are pooled from."""
        raise NotImplementedError

    def sequence_embedding(self, input_ids: torch.Tensor, pooling: str | None = None) -> torch.Tensor:
        """One vector per sequence [B, d]: hidden_states pooled over positions (default: the
        architecture's default_pooling)."""
        return pool(self.hidden_states(input_ids), pooling or self.default_pooling)

    def sequence_embedding_with_aux(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sequence_embedding(input_ids), the auxiliary loss a fine-tuning objective adds; 0 if none)."""
        pooled = self.sequence_embedding(input_ids)
        return pooled, pooled.new_zeros((), dtype=torch.float32)

    def base_log_probs(self, input_ids: torch.Tensor) -> torch.Tensor:
        """log P(A, C, G, T) at every position [B, L, 4], renormalised over the four bases; what
        each prediction saw is prediction_context."""
        return self.hidden_and_base_log_probs(input_ids)[1]

    def hidden_and_base_log_probs(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden_states, base_log_probs) from one pass where the architecture allows it."""
        return self.hidden_states(input_ids), torch.log_softmax(self(input_ids)[..., list(BASE_IDS)], dim=-1)

    def pretraining_loss(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(the loss to minimise on a batch of windows, its named components for the metrics).
        The component named 'cross_entropy' is the per-base loss validation also reports."""
        raise NotImplementedError

    def validation_loss(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed per-base cross-entropy, number of bases counted) of a held-out batch, in the
        same terms as pretraining_loss's 'cross_entropy'."""
        raise NotImplementedError

    # --- bookkeeping --------------------------------------------------------------------------

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def num_activated_parameters(self) -> int:
        """Parameters used for each token (all of them unless the architecture routes tokens)."""
        return self.num_parameters()

    def module_parameter_counts(self) -> dict[str, int]:
        """Parameters per named part of the architecture, for `janus info` (default: none)."""
        return {}

    def optimizer_groups(self, weight_decay: float) -> list[dict]:
        raise NotImplementedError

    def batch_invariant(self, enabled: bool = True) -> "DNALM":
        """Make each sequence's outputs independent of its batch mates, bit for bit; returns self."""
        return self

    @classmethod
    @contextlib.contextmanager
    def reference_kernels(cls):
        """Run the plain reference implementations instead of the fast kernels (for checks)."""
        yield


def pool(states: torch.Tensor, pooling: str) -> torch.Tensor:
    """states [..., L, d] -> [..., d] by mean, max, the centre position or the last position."""
    if pooling == "mean":
        return states.mean(-2)
    if pooling == "max":
        return states.max(-2).values
    if pooling == "center":
        return states[..., states.shape[-2] // 2, :]
    if pooling == "last":
        return states[..., -1, :]
    raise ValueError(f"pooling {pooling!r}: choose one of {', '.join(POOLINGS)}")


def base_labels(input_ids: torch.Tensor) -> torch.Tensor:
    """The ids as cross-entropy targets, with N positions ignored."""
    return input_ids.masked_fill(input_ids == N, IGNORE_INDEX)


def require(model: DNALM, capability: str, usage: str):
    """Raise CapabilityError, naming the architecture and what to use instead, unless the model
    has the capability that usage (e.g. 'janus likelihood --mutagenesis') needs."""
    if capability in model.capabilities():
        return
    message = f"{usage} needs a model that {CAPABILITIES[capability]}; {model.arch} models do not"
    if capability in model.alternatives:
        message += f"; {model.alternatives[capability]}"
    raise CapabilityError(message)
