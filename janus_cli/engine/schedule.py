"""The learning-rate schedule pretraining and fine-tuning share."""

from __future__ import annotations

import math

WARMUP_START_LR = 1e-6


def lr_at(step: int, total_steps: int, peak: float, end: float, warmup_frac: float) -> float:
    """Linear warm-up from 1e-6 to peak over the first warmup_frac of the steps, then cosine decay
    to end at the last step. step counts from 0."""
    warmup = max(1, int(round(warmup_frac * total_steps)))
    if step < warmup:
        return WARMUP_START_LR + (peak - WARMUP_START_LR) * step / warmup
    progress = (step - warmup) / max(1, total_steps - 1 - warmup)
    return end + (peak - end) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
