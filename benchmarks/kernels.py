"""Each CPU fast path of JanusDNA d=144 against what it replaced, alternating in one process (best
of --rounds), on random inputs of --length positions:

- Janus attention forward (4 heads of 36): the C kernel against the four causal flash-attention
  calls it replaced (still the fallback where no compiler is found);
- SwiGLU (144 -> 2 x 576 -> 144) in blocks of 1,024 rows against one matmul over all rows;
- the selective scan (d_state 16) at d_inner 96, 288 (d=144) and 576, against the kernel of an
  earlier commit (--scan-baseline REV, built from `git show REV:...`), as updates per second.

    python benchmarks/kernels.py --length 8192 --threads 1 --scan-baseline bdf5060
"""

from __future__ import annotations

import argparse
import ctypes
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SCAN_SOURCE = "models/janusdna/selective_scan.c"
SCAN_HEADERS = ["models/janusdna/exp2_approx.h"]


def best_times(candidates: dict, rounds: int) -> dict:
    """Best wall time of each zero-argument callable, the candidates alternating round by round."""
    best = dict.fromkeys(candidates, float("inf"))
    with torch.inference_mode():
        for _ in range(rounds):
            for name, run in candidates.items():
                start = time.perf_counter()
                run()
                best[name] = min(best[name], time.perf_counter() - start)
    return best


def report(title: str, best: dict, baseline: str, unit=lambda seconds: f"{seconds:.4f} s") -> None:
    cells = [f"{name} {unit(seconds)}" for name, seconds in best.items()]
    fast = next(name for name in best if name != baseline)
    print(f"| {title} | {' | '.join(cells)} | {best[baseline] / best[fast]:.2f}x |")


def attention(length: int, rounds: int) -> None:
    from janusdna import attention

    q, k, v = (torch.randn(1, 4, 2 * length, 36) for _ in range(3))
    best = best_times({
        "C kernel": lambda: attention._janus_attention_native(q, k, v, 0.125),
        "4 flash calls": lambda: attention._janus_attention_flash(q, k, v, 0.125),
    }, rounds)
    report(f"Janus attention, {length:,} positions", best, "4 flash calls")


def swiglu(length: int, rounds: int) -> None:
    from dnalm.layers import SwiGLU

    ffn, x = SwiGLU(144, 576), torch.randn(1, length, 144)
    blocks = SwiGLU.BLOCK_ROWS

    def run(rows):
        SwiGLU.BLOCK_ROWS = rows
        ffn(x)

    best = best_times({f"blocks of {blocks:,} rows": lambda: run(blocks), "whole": lambda: run(length)}, rounds)
    SwiGLU.BLOCK_ROWS = blocks
    report(f"SwiGLU, {length:,} positions", best, "whole")


def scan_library(source: Path):
    from dnalm import native

    library = native.load(source)
    sizes, pointer = [ctypes.c_int64] * 4, ctypes.c_void_p
    library.janus_scan_forward.argtypes = [*sizes, *[pointer] * 14, ctypes.c_int, ctypes.c_int]
    library.janus_scan_backward.argtypes = [*sizes, *[pointer] * 12, ctypes.c_int]
    return library


def scan(length: int, rounds: int, baseline_rev: str) -> None:
    from janusdna import scan as scan_module

    with tempfile.TemporaryDirectory() as tmp:
        for path in [SCAN_SOURCE, *SCAN_HEADERS]:
            shown = subprocess.run(["git", "show", f"{baseline_rev}:{path}"], cwd=ROOT, capture_output=True, text=True)
            if shown.returncode == 0:  # (an older commit may lack a header)
                (Path(tmp) / Path(path).name).write_text(shown.stdout)
        baseline_source = Path(tmp) / Path(SCAN_SOURCE).name
        libraries = {"this checkout": scan_library(ROOT / SCAN_SOURCE),
                     baseline_rev: scan_library(baseline_source)}
    for d_inner in (96, 288, 576):
        u, delta, z = (torch.randn(1, length, d_inner) for _ in range(3))
        A, D = -torch.rand(d_inner, 16) * 4, torch.randn(d_inner)
        B, C = torch.randn(1, length, 16), torch.randn(1, length, 16)

        def run(library):
            scan_module._native_library = lambda: library
            scan_module.selective_scan_native(u, delta, A, B, C, D, z, True)

        best = best_times({name: (lambda lib=lib: run(lib)) for name, lib in libraries.items()}, rounds)
        updates = length * d_inner * 16
        report(f"selective scan, {length:,} positions, d_inner {d_inner}", best, baseline_rev,
               unit=lambda seconds: f"{updates / seconds / 1e9:.2f} G updates/s")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--length", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scan-baseline", metavar="REV", help="commit whose scan kernel to compare against")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT / "models"))
    sys.path.insert(0, str(Path(__file__).parent))
    from machine import describe

    print(describe(args.threads))
    print("| kernel | fast path | replaced | speed-up |\n|---|---|---|---:|")
    attention(args.length, args.rounds)
    swiglu(args.length, args.rounds)
    if args.scan_baseline:
        scan(args.length, args.rounds, args.scan_baseline)


if __name__ == "__main__":
    main()
