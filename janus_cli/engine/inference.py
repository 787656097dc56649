"""Batched model inference over windows of token ids, on one or both strands.

Only windows of equal length share a batch, nothing is padded, and the model runs batch-invariant
(dnalm's batch_invariant), so a window's output is bit-identical whatever its batch mates; each
distinct window sequence is computed once per call.

With rc `avg` or `both`, every window is also run reverse-complemented and that output is mapped
back to the forward strand: positions reversed and, for per-base outputs, bases complemented.
`avg` averages the two strands; `both` keeps them apart; `none` runs the forward strand only.
"""

from __future__ import annotations

import math
import shlex
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

import dnalm
from dnalm import DNALM, reverse_complement

from ..errors import UsageError
from .runtime import autocast_context
from .streaming import StreamOptions, parse_shard
from ..io.windows import EDGE_MODES

RC_MODES = ("avg", "none", "both")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def _mean(forward: torch.Tensor, reverse: torch.Tensor) -> torch.Tensor:
    return (forward + reverse) / 2


def _log_mean_prob(forward: torch.Tensor, reverse: torch.Tensor) -> torch.Tensor:
    """Log-probabilities of both strands combined as the log of their mean probability (a
    proper distribution, unlike the mean of the logs)."""
    return torch.logaddexp(forward, reverse) - math.log(2)


@dataclass(frozen=True)
class OutputKind:
    """What the runner computes per window: compute(model, ids [B, L]) -> [B, L, ...], how a
    reverse-complement pass's output [B, L, ...] is put back in forward-strand order, and how the
    two strands' outputs (forward-strand order) are combined into one."""

    name: str
    compute: Callable[[DNALM, torch.Tensor], torch.Tensor]
    to_forward_strand: Callable[[torch.Tensor], torch.Tensor]
    combine: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    def combined(self, outputs: "StrandOutputs") -> torch.Tensor:
        """Both strands combined, or the forward strand alone without a reverse pass."""
        return outputs.forward if outputs.reverse is None else self.combine(outputs.forward, outputs.reverse)


HIDDEN_STATES = OutputKind(
    "hidden_states",
    compute=lambda model, ids: model.hidden_states(ids),
    to_forward_strand=lambda out: out.flip(1),
    combine=_mean,
)
# the last axis is A, C, G, T: reversing it complements the bases
BASE_LOG_PROBS = OutputKind(
    "base_log_probs",
    compute=lambda model, ids: model.base_log_probs(ids),
    to_forward_strand=lambda out: out.flip(1).flip(-1),
    combine=_log_mean_prob,
)
# a masked model's base log-probabilities from one pass over windows that hold [MASK] tokens
MASKED_BASE_LOG_PROBS = OutputKind(
    "masked_base_log_probs",
    compute=lambda model, ids: model.masked_base_log_probs(ids),
    to_forward_strand=BASE_LOG_PROBS.to_forward_strand,
    combine=_log_mean_prob,
)
# base log-probabilities [.., 4], then the full-window substitution log-ratios [.., 4] of a
# causal model (A, C, G, T each); a ratio's strands are combined by their mean
BASE_LOG_PROBS_AND_SUBSTITUTIONS = OutputKind(
    "base_log_probs_and_substitutions",
    compute=lambda model, ids: torch.cat([model.base_log_probs(ids), model.substitution_log_ratios(ids)], -1),
    to_forward_strand=lambda out: torch.cat([BASE_LOG_PROBS.to_forward_strand(out[..., :4]),
                                             BASE_LOG_PROBS.to_forward_strand(out[..., 4:])], -1),
    combine=lambda f, r: torch.cat([_log_mean_prob(f[..., :4], r[..., :4]), _mean(f[..., 4:], r[..., 4:])], -1),
)
# hidden states [.., d] followed by the base log-probabilities [.., 4] (A, C, G, T)
HIDDEN_AND_LOG_PROBS = OutputKind(
    "hidden_and_log_probs",
    compute=lambda model, ids: _hidden_and_log_probs(model, ids),
    to_forward_strand=lambda out: torch.cat([HIDDEN_STATES.to_forward_strand(out[..., :-4]),
                                             BASE_LOG_PROBS.to_forward_strand(out[..., -4:])], -1),
    combine=lambda f, r: torch.cat([_mean(f[..., :-4], r[..., :-4]), _log_mean_prob(f[..., -4:], r[..., -4:])], -1),
)


def window_embeddings(pooling: str) -> OutputKind:
    """One vector per window, [B, 1, d], pooled by the model itself (for poolings that need the
    whole window, such as HybriDNA's echo); the two strands' vectors are averaged."""
    return OutputKind(f"sequence_embedding_{pooling}", compute=lambda model, ids: model.sequence_embedding(ids, pooling)[:, None],
                      to_forward_strand=lambda out: out, combine=_mean)


def _hidden_and_log_probs(model: DNALM, ids: torch.Tensor) -> torch.Tensor:
    hidden, log_probs = model.hidden_and_base_log_probs(ids)
    return torch.cat([hidden.float(), log_probs.float()], -1)


@dataclass
class StrandOutputs:
    """One window's output [L, ...] on the forward strand, and from the reverse-complement pass
    (already in forward-strand order; None with rc `none`)."""

    forward: torch.Tensor
    reverse: torch.Tensor | None


class WindowRunner:
    def __init__(self, model: DNALM, device: torch.device, rc: str = "avg", batch_size: int = 16,
                 dtype: torch.dtype = torch.float32, output: OutputKind = HIDDEN_STATES):
        if rc not in RC_MODES:
            raise ValueError(f"rc mode {rc!r}: choose one of {', '.join(RC_MODES)}")
        self.model = model.to(device).eval().batch_invariant()
        self.device = device
        self.rc = rc
        self.batch_size = batch_size
        self.dtype = dtype
        self.output = output

    def run(self, windows: list[torch.Tensor]) -> list[StrandOutputs]:
        """Outputs (float32, on the CPU) for windows of token ids [L], in input order."""
        position_of: dict[bytes, int] = {}
        distinct: list[torch.Tensor] = []
        for ids in windows:
            key = ids.numpy().tobytes()
            if key not in position_of:
                position_of[key] = len(distinct)
                distinct.append(ids)
        by_length = defaultdict(list)
        for i, ids in enumerate(distinct):
            by_length[len(ids)].append(i)
        results: list[StrandOutputs | None] = [None] * len(distinct)
        for indices in by_length.values():
            for first in range(0, len(indices), self.batch_size):
                batch_indices = indices[first:first + self.batch_size]
                batch = torch.stack([distinct[i] for i in batch_indices])
                for i, outputs in zip(batch_indices, self._run_batch(batch)):
                    results[i] = outputs
        return [results[position_of[ids.numpy().tobytes()]] for ids in windows]

    def _run_batch(self, ids: torch.Tensor) -> list[StrandOutputs]:
        ids = ids.to(self.device)
        with torch.inference_mode(), autocast_context(self.device, self.dtype):
            forward = self.output.compute(self.model, ids).float().cpu()
            reverse = None
            if self.rc != "none":
                reverse_pass = self.output.compute(self.model, reverse_complement(ids))
                reverse = self.output.to_forward_strand(reverse_pass).float().cpu()
        return [StrandOutputs(forward[i], None if reverse is None else reverse[i]) for i in range(len(ids))]


@dataclass
class InferenceOptions:
    """Options every inference command shares (reference, model, windows, compute, output)."""

    out: str | None = None
    fasta: Path | None = None
    model: str | None = None
    window: int | None = None
    edge: str = "pad"
    max_n_frac: float = 0.1
    rc: str = "avg"
    chrom_alias: Path | None = None
    batch_size: int = 16
    device: str = "auto"
    dtype: str = "float32"
    threads: int | None = None
    shard: str | None = None
    resume: bool = False
    quiet: bool = False

    def stream_options(self) -> StreamOptions:
        return StreamOptions(out=self.out, shard=self.shard, resume=self.resume, quiet=self.quiet)


def check_inference_options(opts: InferenceOptions, extra_choices: dict | None = None):
    choices = {"--rc": (opts.rc, RC_MODES), "--edge": (opts.edge, EDGE_MODES), "--dtype": (opts.dtype, tuple(DTYPES)),
               **(extra_choices or {})}
    for option, (value, allowed) in choices.items():
        if value not in allowed:
            raise UsageError(f"{option} {value!r}: choose one of {', '.join(allowed)}")
    if opts.window is not None and opts.window < 1:
        raise UsageError(f"--window {opts.window}: must be at least 1 bp")
    if not 0.0 <= opts.max_n_frac <= 1.0:
        raise UsageError(f"--max-n-frac {opts.max_n_frac}: must be between 0 and 1")
    if opts.batch_size < 1:
        raise UsageError(f"--batch-size {opts.batch_size}: must be at least 1")
    if opts.shard:
        parse_shard(opts.shard)


def load_inference_model(model_ref: str | None) -> tuple[str, DNALM]:
    """(model reference, model): the given model directory or shipped name, else the default."""
    model_ref = model_ref or dnalm.DEFAULT_MODEL
    return str(model_ref), dnalm.load(model_ref)


def provenance(opts: InferenceOptions, model_ref: str, model: DNALM, reference_path: Path | None,
               argv: list[str], **settings) -> dict[str, str]:
    """Key-value metadata of an output file: what produced it, from what, how."""
    return {
        "janus_version": dnalm.__version__,
        "model": model_ref,
        "model_name": model.config.name,
        "model_arch": model.arch,
        "prediction_context": f"{model.prediction_context}: each base's prediction saw "
                              f"{dnalm.PREDICTION_CONTEXT_TEXT[model.prediction_context]}",
        "model_weights_sha256": dnalm.weights_sha256(model_ref),
        "window": str(opts.window or "region"),
        "edge": opts.edge,
        "max_n_frac": str(opts.max_n_frac),
        "rc": opts.rc,
        "dtype": opts.dtype,
        "reference": str(Path(reference_path).resolve()) if reference_path else "none (sequences given)",
        **{key: str(value) for key, value in settings.items()},
        "command_line": shlex.join(argv),
    }
