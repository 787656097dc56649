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
MASKED = "masked"  # every other base of the window, base t replaced by [MASK] (a masked autoencoder)

PREDICTION_CONTEXT_TEXT = {
    ALL_BUT_SELF: "every other base of the window (never the base itself)",
    LEFT: "the bases to its left only",
    MASKED: "every other base of the window, the base itself replaced by [MASK] (one pass per base)",
}

# capability -> what a model needs to have it
CAPABILITIES = {
    "per_base_prediction": "predicts each base without seeing it",
    "generation": "generates sequences left to right (a causal model with an inference cache)",
    "tokenization": "segments sequences into learned tokens (token_spans)",
}

IGNORE_INDEX = -100
POOLINGS = ("mean", "max", "center", "last")  # over the positions of hidden_states


class CapabilityError(ValueError):
    """A command asked a model for something its architecture cannot do; a usage error."""


class DNALM(nn.Module):
    """A DNA language model over the shared character vocabulary (tokenizer.py)."""

    arch: ClassVar[str]
    prediction_context: ClassVar[str]
    default_pooling: ClassVar[str] = "mean"
    # what sequence_embedding accepts: the generic POOLINGS over hidden_states, and any the
    # architecture computes from a whole window itself (e.g. HybriDNA's "echo")
    poolings: ClassVar[tuple[str, ...]] = POOLINGS
    # capability -> what to use instead, for the capabilities this architecture lacks
    alternatives: ClassVar[dict[str, str]] = {}
    # the paper's pretraining peak learning rate and the batch (tokens) it was used with;
    # `janus pretrain` scales it to its own batch (pretraining_peak_lr)
    reference_pretraining_lr: ClassVar[tuple[float, int]] = (1e-3, 2**19)

    config: object  # a dataclass with name, d_model, max_seq_len, extra, to_dict() and from_dict()

    # --- what it can do -----------------------------------------------------------------------

    @classmethod
    def capabilities(cls) -> frozenset[str]:
        found = set()
        if cls.prediction_context in (ALL_BUT_SELF, LEFT, MASKED):
            found.add("per_base_prediction")
        if getattr(cls, "is_causal", False):
            found.add("generation")
        if cls.token_spans is not DNALM.token_spans:
            found.add("tokenization")
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

    def sequence_embedding_with_aux(self, input_ids: torch.Tensor,
                                    pooling: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(sequence_embedding(input_ids, pooling), the auxiliary loss a fine-tuning objective
        adds; 0 if none)."""
        pooled = self.sequence_embedding(input_ids, pooling)
        return pooled, pooled.new_zeros((), dtype=torch.float32)

    def token_spans(self, input_ids: torch.Tensor, compression_ratio: float | None = None
                    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The learned tokenization ("tokenization" capability): per sequence of input_ids [B, L],
        (starts, sizes) of its tokens in order, LongTensors of 0-based base offsets that cover the
        sequence's non-PAD bases contiguously. Deterministic, and independent of the batch mates.
        compression_ratio: tokens per base (default: the model's own)."""
        raise NotImplementedError(f"{self.arch} models have no learned tokenization")

    def base_log_probs(self, input_ids: torch.Tensor) -> torch.Tensor:
        """log P(A, C, G, T) at every position [B, L, 4], renormalised over the four bases; what
        each prediction saw is prediction_context."""
        return self.hidden_and_base_log_probs(input_ids)[1]

    def hidden_and_base_log_probs(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden_states, base_log_probs) from one pass where the architecture allows it."""
        return self.hidden_states(input_ids), torch.log_softmax(self(input_ids)[..., list(BASE_IDS)], dim=-1)

    def masked_base_log_probs(self, input_ids: torch.Tensor) -> torch.Tensor:
        """A masked model's (prediction_context MASKED) log P(A, C, G, T) [B, L, 4] from one pass
        over input_ids as given: where input_ids hold [MASK] the prediction never saw the base.
        Masking a whole span in one pass scores it (score-variants' alleles)."""
        raise NotImplementedError(f"{self.arch} models do not predict masked bases")

    def substitution_log_ratios(self, input_ids: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """[B, L, 4]: for a causal model (prediction_context LEFT), the full-window log-likelihood
        ratio log p(window with base t set to A, C, G, T) - log p(window), from one forward pass per
        substitution (3 per base); 0 at the window's own base, NaN where it is N. Positions that
        are N in the window are left out of both sums."""
        if self.prediction_context != LEFT:
            raise NotImplementedError(f"{self.arch}: substitution log-ratios are from per-base predictions")
        window_ll = _summed_log_likelihood(self.base_log_probs(input_ids), input_ids)
        ratios = torch.full((*input_ids.shape, 4), float("nan"), device=input_ids.device)
        base_ids = torch.tensor(BASE_IDS, device=input_ids.device)
        for row, ids in enumerate(input_ids):
            position, base = torch.meshgrid(torch.arange(len(ids), device=ids.device), torch.arange(4, device=ids.device),
                                            indexing="ij")
            substitutable = (ids[:, None] != N) & (base_ids[base] != ids[:, None])
            position, base = position[substitutable], base[substitutable]
            variants = ids.repeat(len(position), 1)
            variants[torch.arange(len(position)), position] = base_ids[base]
            mutated_ll = torch.cat([_summed_log_likelihood(self.base_log_probs(chunk), chunk)
                                    for chunk in variants.split(batch_size)])
            ratios[row, position, base] = (mutated_ll - window_ll[row]).float()
            ratios[row][(base_ids[None, :] == ids[:, None])] = 0.0
        return ratios

    def pretraining_loss(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(the loss to minimise on a batch of windows, its named components for the metrics).
        The component named 'cross_entropy' is the per-base loss validation also reports."""
        raise NotImplementedError

    def validation_loss(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed per-base cross-entropy, number of bases counted) of a held-out batch, in the
        same terms as pretraining_loss's 'cross_entropy'."""
        raise NotImplementedError

    # --- generation (causal models, is_causal = True; dnalm.generation drives these) -----------
    #
    # A prompt is a row of tokens: prompt-token ids (one per label position, dnalm.prompts) then
    # any bases. generation_prefix() adds the architecture's start token(s); prefill() runs the
    # prefix through an empty cache; step() feeds one token per row and returns the logits of
    # the next; reorder_cache() selects rows (beam search). Logits are over the shared vocabulary.

    def generation_prefix(self, prompt_ids: torch.Tensor) -> torch.Tensor:
        """prompt_ids [B, T] (T may be 0) -> the tokens to prefill [B, T'], start token(s) added."""
        raise NotImplementedError(f"{self.arch} models cannot generate")

    def allocate_cache(self, batch_size: int):
        """An empty inference cache for batch_size rows."""
        raise NotImplementedError(f"{self.arch} models cannot generate")

    def prefill(self, tokens: torch.Tensor, cache) -> torch.Tensor:
        """Run tokens [B, T] through an empty cache in one pass; next-token logits [B, T, vocab]
        (float32), position t predicting token t + 1; the cache continues after the last one."""
        raise NotImplementedError(f"{self.arch} models cannot generate")

    def step(self, token_ids: torch.Tensor, cache) -> torch.Tensor:
        """Feed one token per row, token_ids [B]; the next token's logits [B, vocab] (float32)."""
        raise NotImplementedError(f"{self.arch} models cannot generate")

    def reorder_cache(self, cache, indices: torch.Tensor):
        """The cache whose row i is row indices[i] of cache (rows may repeat, the count may
        change: a 1-row cache becomes B rows with indices of zeros). Use only the returned cache."""
        raise NotImplementedError(f"{self.arch} models cannot generate")

    # --- prompt tokens (conditional generation; dnalm.prompts maps labels to them) --------------

    @property
    def prompt_tokens(self) -> tuple[str, ...]:
        """The names of the prompt tokens the model has embedding rows for, in id order."""
        return tuple(getattr(self.config, "prompt_tokens", ()))

    def prompt_token_ids(self, names) -> torch.Tensor:
        """LongTensor of the ids of the named prompt tokens (KeyError for a name it lacks)."""
        index = {name: i for i, name in enumerate(self.prompt_tokens)}
        return torch.tensor([self.first_prompt_token_id + index[name] for name in names], dtype=torch.long)

    @property
    def first_prompt_token_id(self) -> int:
        """Prompt token j has id first_prompt_token_id + j, after the shared vocabulary's rows."""
        return self.config.vocab_size

    def add_prompt_tokens(self, names, generator: torch.Generator | None = None) -> None:
        """Give the model new prompt tokens: new embedding rows, randomly initialised (from
        generator), the existing rows unchanged, and the names recorded in the config (so that
        dnalm.save/load rebuild the larger embedding). Names it already has are skipped."""
        raise NotImplementedError(f"{self.arch} models have no prompt tokens")

    def prompted_logits(self, prompt_ids: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """Logits [B, L, vocab] (float32) for the bases input_ids [B, L] given the prompt
        prompt_ids [B, k]: position t predicts base t from the start token(s), the prompt and
        the bases before t. Nothing predicts the prompt."""
        raise NotImplementedError(f"{self.arch} models cannot generate")

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

    def lora_targets(self) -> list[str]:
        """Names of the nn.Linear layers LoRA adapts (dnalm.lora): by default every linear layer
        of the residual blocks (shard_units); embeddings, the LM head and norms stay frozen."""
        units = {id(unit) for unit in self.shard_units()}
        prefixes = tuple(f"{name}." for name, module in self.named_modules() if id(module) in units)
        return [name for name, module in self.named_modules()
                if isinstance(module, nn.Linear) and prefixes and name.startswith(prefixes)]

    @classmethod
    def pretraining_peak_lr(cls, batch_tokens: int) -> float:
        """The paper's peak learning rate scaled to a batch of batch_tokens tokens by the square
        root of the batch ratio (the usual rule for Adam), so that small CPU batches stay stable."""
        peak, reference_tokens = cls.reference_pretraining_lr
        return peak * (batch_tokens / reference_tokens) ** 0.5

    def shard_units(self) -> list[nn.Module]:
        """The modules FSDP shards one at a time (gathering one unit's weights at a time): the
        residual blocks. What is left (embeddings, heads) is gathered with the whole model."""
        return []

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


def _summed_log_likelihood(log_probs: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """[B]: the sum over the A/C/G/T positions of log P(the base there), N positions left out."""
    known = input_ids != N
    index = (input_ids - BASE_IDS[0]).clamp(0, 3)
    return (log_probs.double().gather(-1, index[..., None])[..., 0] * known).sum(-1)


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
