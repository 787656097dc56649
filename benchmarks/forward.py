"""Forward-pass benchmark of the janusdna-d144 preset: batch 1, float32, CPU.

For each length it reports seconds, bp/s, peak RSS, and the analytic model FLOPs per second as a
fraction of this machine's float32 matmul peak, measured in the same run. Where it fits, it runs
the naive reference path too (sequential scan + dense masked Janus attention) and reports the
speed-up. Each (length, path) runs in its own subprocess so that peak RSS is its own.

    python benchmarks/forward.py                      # L = 1024 8192 32768 131072
    python benchmarks/forward.py --lengths 1024 8192 --reference-max 8192
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

PRESET = "janusdna-d144"


def analytic_flops(cfg, length: int) -> float:
    """Multiply-adds x 2 of one forward pass, plus the selective scan at 9 flops per (t, d, n)
    (the count mamba-ssm's own FLOP counter uses). Attention counts only allowed pairs and the
    real (unpadded) head dims."""
    d, di, n, r, ffn = cfg.d_model, cfg.d_inner, cfg.d_state, cfg.resolved_dt_rank, cfg.resolved_ffn_dim
    swiglu = 2 * 3 * d * ffn
    total = 0.0
    for i in range(cfg.n_layers):
        ffn_flops = cfg.experts_per_token * swiglu + 2 * d * cfg.n_experts if cfg.is_moe_layer(i) else swiglu
        if i in cfg.mid_attention_layers:
            mixer = 2 * 4 * d * d * length + 4 * d * length * (length + 1) / 2
        else:
            per_token = 2 * d * 2 * di + 2 * di * cfg.d_conv + 2 * di * (r + 2 * n) + 2 * r * di + 9 * di * n + 2 * di * d
            mixer = per_token * length
        total += 2 * (mixer + ffn_flops * length)  # two directions
    two_l = 2 * length
    allowed_pairs = 2 * (length * (length + 1) / 2 + max(length - 2, 0) * (length - 1) / 2)
    total += 2 * 4 * d * d * two_l + 4 * d * allowed_pairs + swiglu * two_l
    total += 2 * d * cfg.vocab_size * length
    return total


def run_one(length: int, reference: bool, repeats: int) -> dict:
    """Runs in a child process: one forward of the preset at this length, timed."""
    import janusdna
    from janusdna.model import use_reference_kernels

    torch.manual_seed(0)
    model = janusdna.from_preset(PRESET).eval()
    ids = torch.randint(7, 11, (1, length))
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            start = time.perf_counter()
            if reference:
                with use_reference_kernels():
                    model(ids)
            else:
                model(ids)
            times.append(time.perf_counter() - start)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": min(times), "peak_rss_mb": peak_rss_mb}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 8192, 32768, 131072])
    parser.add_argument("--reference-max", type=int, default=8192, help="longest length to run the reference path at")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="timed forwards per length (best is reported)")
    parser.add_argument("--child", nargs=3, metavar=("LENGTH", "REFERENCE", "REPEATS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.child:
        length, reference, repeats = int(args.child[0]), args.child[1] == "1", int(args.child[2])
        print(json.dumps(run_one(length, reference, repeats)))
        return

    import janusdna
    from machine import cpu_model, matmul_rate, simd_flags

    cfg = janusdna.PRESETS[PRESET]
    peak = matmul_rate()
    print(f"# {PRESET}, batch 1, float32, {args.threads} threads, torch {torch.__version__}, "
          f"{cpu_model()} ({', '.join(simd_flags())}); fp32 matmul peak {peak / 1e9:.1f} GFLOP/s")
    print("| L (bp) | path | seconds | bp/s | peak RSS (MB) | GFLOP/s | % of matmul peak | speed-up |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for length in args.lengths:
        flops = analytic_flops(cfg, length)
        results = {}
        for reference in ([False, True] if length <= args.reference_max else [False]):
            repeats = 1 if reference else args.repeats
            out = subprocess.run(
                [sys.executable, __file__, "--threads", str(args.threads), "--child", str(length), str(int(reference)), str(repeats)],
                capture_output=True, text=True, check=True,
            )
            results[reference] = json.loads(out.stdout.strip().splitlines()[-1])
        for reference, r in results.items():
            speedup = f"{results[True]['seconds'] / r['seconds']:.1f}x" if (True in results and not reference) else ""
            print(f"| {length:,} | {'reference' if reference else 'janus'} | {r['seconds']:.2f} | "
                  f"{length / r['seconds']:,.0f} | {r['peak_rss_mb']:,.0f} | {flops / r['seconds'] / 1e9:.1f} | "
                  f"{100 * flops / r['seconds'] / peak:.0f}% | {speedup} |", flush=True)


if __name__ == "__main__":
    main()
