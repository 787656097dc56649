"""Batched model inference over windows of token ids, on one or both strands.

Only windows of equal length share a batch (nothing is padded, so a window's output does not
depend on its batch mates), and each distinct window sequence is computed once per call.

With rc `avg` or `both`, every window is also run reverse-complemented and that output is mapped
back to the forward strand: positions reversed and, for per-base outputs, bases complemented.
`avg` averages the two strands; `both` keeps them apart; `none` runs the forward strand only.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Callable

import torch

from janusdna.model import JanusDNA
from janusdna.tokenizer import reverse_complement

from .runtime import autocast_context

RC_MODES = ("avg", "none", "both")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class OutputKind:
    """What the runner computes per window: compute(model, ids [B, L]) -> [B, L, ...], and how a
    reverse-complement pass's output [B, L, ...] is put back in forward-strand order."""

    name: str
    compute: Callable[[JanusDNA, torch.Tensor], torch.Tensor]
    to_forward_strand: Callable[[torch.Tensor], torch.Tensor]


HIDDEN_STATES = OutputKind(
    "hidden_states",
    compute=lambda model, ids: model.hidden_states(ids),
    to_forward_strand=lambda out: out.flip(1),
)
# the last axis is A, C, G, T: reversing it complements the bases
BASE_LOG_PROBS = OutputKind(
    "base_log_probs",
    compute=lambda model, ids: model.base_log_probs(ids),
    to_forward_strand=lambda out: out.flip(1).flip(-1),
)


@dataclass
class StrandOutputs:
    """One window's output [L, ...] on the forward strand, and from the reverse-complement pass
    (already in forward-strand order; None with rc `none`)."""

    forward: torch.Tensor
    reverse: torch.Tensor | None

    def averaged(self) -> torch.Tensor:
        return self.forward if self.reverse is None else (self.forward + self.reverse) / 2


class WindowRunner:
    def __init__(self, model: JanusDNA, device: torch.device, rc: str = "avg", batch_size: int = 16,
                 dtype: torch.dtype = torch.float32, output: OutputKind = HIDDEN_STATES):
        if rc not in RC_MODES:
            raise ValueError(f"rc mode {rc!r}: choose one of {', '.join(RC_MODES)}")
        self.model = model.to(device).eval()
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
