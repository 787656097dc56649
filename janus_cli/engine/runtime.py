"""Process-level settings shared by the commands: device, dtype/autocast, threads, stderr logging."""

from __future__ import annotations

import contextlib
import functools
import sys

import torch

from ..errors import UsageError


def log(message: str):
    """Logs and progress go to stderr; stdout is for data."""
    print(message, file=sys.stderr, flush=True)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available (use --device cpu or auto)")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if name != "cpu":
        raise UsageError(f"--device {name!r}: choose auto, cpu or cuda")
    return torch.device("cpu")


def cpu_has_native_bfloat16() -> bool:
    """Whether oneDNN runs bfloat16 matmuls natively here (AVX-512 or AMX); elsewhere they are emulated."""
    return torch.ops.mkldnn._is_mkldnn_bf16_supported()


@functools.cache
def _note_emulated_bfloat16():
    log("janus: this CPU has no native bfloat16 (AVX-512 or AMX), so bfloat16 runs emulated and "
        "much slower than float32 here; leave out --dtype bfloat16 (see BENCHMARKS.md, 'bfloat16 on this CPU')")


def autocast_context(device: torch.device, dtype: torch.dtype | None = None):
    """bfloat16 autocast on CUDA (the default there) or when asked for; float32 otherwise."""
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype == torch.float32:
        return contextlib.nullcontext()
    if device.type == "cpu" and dtype == torch.bfloat16 and not cpu_has_native_bfloat16():
        _note_emulated_bfloat16()
    return torch.autocast(device_type=device.type, dtype=dtype)


def set_threads(threads: int | None):
    if threads:
        torch.set_num_threads(threads)
