"""What `--dtype bfloat16` (CPU autocast) costs and gains against float32, on the variant-scoring
shape: the shipped janusdna-d48-chr20, batches of 64 real 128 bp windows (hg38 chr21:22-23 Mb).

Reports forward seconds per batch in each dtype (best of --repeats, alternating), the largest
|log p(base)| difference over every position and base, and the Spearman rank correlation
between the two dtypes of the substitution scores log p(alt) - log p(ref) for the three
alternatives at every position (what score-variants' llr is for SNVs).

    python benchmarks/bf16.py
    python benchmarks/bf16.py --batches 8 --threads 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import pysam
import torch

REPO = Path(__file__).resolve().parents[1]
FASTA = REPO.parent / "shared" / "data" / "hg38_chr21" / "hg38_chr21_22-23Mb.fa.gz"


def windows(n: int, length: int) -> torch.Tensor:
    """n windows of real sequence, evenly spaced over the 1 Mb, as token ids [n, length]."""
    from dnalm.tokenizer import encode

    with pysam.FastaFile(str(FASTA)) as fasta:
        starts = torch.linspace(22_000_000, 23_000_000 - length, n).long().tolist()
        return torch.stack([encode(fasta.fetch("chr21", s, s + length)) for s in starts])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="janusdna-d48-chr20")
    parser.add_argument("--batches", type=int, default=4, help="batches of 64 x 128 bp")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).parent))
    import dnalm
    from machine import describe, matmul_rate

    # small: without native bf16 (AVX512-BF16 or AMX) the 2048 x 2048 product takes minutes
    bf16_rate = matmul_rate(size=512, repeats=3, dtype=torch.bfloat16)
    print(describe(args.threads) + f"; bf16 matmul {bf16_rate / 1e9:.1f} GFLOP/s (512 x 512)")
    model, _ = dnalm.load_or_preset(args.model)
    model.eval()
    batches = windows(64 * args.batches, 128).split(64)

    def log_probs(dtype):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
            return torch.cat([model.base_log_probs(b) for b in batches])

    seconds, results = {"float32": [], "bfloat16": []}, {}
    for _ in range(args.repeats):
        for dtype in seconds:
            started = time.perf_counter()
            results[dtype] = log_probs(dtype)
            seconds[dtype].append(time.perf_counter() - started)
    fp32, bf16 = results["float32"], results["bfloat16"]
    ids = torch.cat(batches)
    ref = ids - 7  # A C G T are token ids 7..10
    known = (ref >= 0) & (ref < 4)
    ref = ref.clamp(0, 3).unsqueeze(-1)
    is_alt = (torch.arange(4) != ref)[known]

    def substitution_scores(lp):
        return (lp.float() - lp.float().gather(-1, ref))[known][is_alt].numpy()

    rho = pd.Series(substitution_scores(fp32)).rank().corr(pd.Series(substitution_scores(bf16)).rank())  # Spearman
    print("| dtype | seconds per 64 x 128 bp | bp/s | max abs diff of log p vs float32 | Spearman of llr vs float32 |")
    print("|---|---:|---:|---:|---:|")
    for dtype, times in seconds.items():
        per_batch = min(times) / len(batches)
        diff = (bf16.float() - fp32).abs().max().item() if dtype == "bfloat16" else 0.0
        spearman = f"{rho:.5f}" if dtype == "bfloat16" else "1"
        print(f"| {dtype} | {per_batch:.3f} | {64 * 128 / per_batch:,.0f} | {diff:.3f} | {spearman} |")


if __name__ == "__main__":
    main()
