"""What every benchmark prints first: the CPU, its SIMD/AMX flags and the fp32 matmul rate
measured in the same run (machines differ between sessions; compare ratios, not times)."""

from __future__ import annotations

import platform
import time
from pathlib import Path

import torch

SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")


def _cpuinfo_field(name: str) -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":")[0].strip() == name:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def simd_flags() -> list[str]:
    flags = set((_cpuinfo_field("flags") or "").split())
    return [f for f in SIMD_FLAGS if f in flags]


def matmul_rate(size: int = 2048, repeats: int = 10, dtype=torch.float32) -> float:
    """FLOP/s of a size x size matmul on this process's torch threads."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def describe(threads: int) -> str:
    """One line for the top of a benchmark's output."""
    return (f"# {cpu_model()} ({', '.join(simd_flags()) or 'no AVX2'}), {threads} torch threads, "
            f"torch {torch.__version__}; fp32 matmul {matmul_rate() / 1e9:.1f} GFLOP/s")
