"""Scale of `janus score-variants`: peak memory and variants/s on many synthetic SNVs.

Synthetic SNVs are drawn uniformly (seeded) over the A/C/G/T positions of GRCh37 chromosome 20,
with REF from the FASTA and a random other base as ALT, written sorted as a bgzipped VCF. janus
then scores them in a subprocess (`python -m janus_cli score-variants ... -o out.parquet`), and
the run's wall time and peak resident memory (the child's VmHWM, polled from /proc: getrusage
would also count the benchmark's own memory, inherited at fork) are reported. Memory should
not grow with the number of variants: the input is streamed and output is written per chunk.

By default the model is a deliberately tiny random JanusDNA (d_model 8, 2 layers, no MoE), so the
run measures janus's own streaming pipeline (VCF reading, window building, batching, writing)
rather than the network; --model measures a real model, e.g. the shipped default.

    python benchmarks/score_variants_scale.py --n 1000000
    python benchmarks/score_variants_scale.py --n 2000 --model janusdna-d48-chr20 --window 128 --scores all
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pysam
import torch

import janusdna

REPO = Path(__file__).resolve().parents[1]
SHARED_FASTA = REPO.parent / "shared" / "data" / "grch37_chr20" / "GRCh37_chr20.fa.gz"
ALL_SCORES = "llr,ref_logp,alt_logp,delta_pll,emb_cosine,emb_l2"


def synthetic_snv_vcf(fasta: Path, n: int, seed: int, out: Path) -> Path:
    """n SNVs at distinct random A/C/G/T positions of contig 20, sorted, bgzipped."""
    with pysam.FastaFile(str(fasta)) as reference:
        sequence = np.frombuffer(reference.fetch("20").upper().encode(), dtype="S1")
    acgt = np.flatnonzero(np.isin(sequence, [b"A", b"C", b"G", b"T"]))
    rng = np.random.default_rng(seed)
    positions = np.sort(rng.choice(acgt, size=n, replace=False))
    refs = sequence[positions].astype(str)
    shift = rng.integers(1, 4, size=n)
    alts = np.array(list("ACGT"))[(np.searchsorted(list("ACGT"), refs) + shift) % 4]
    plain = out.with_suffix("")
    with open(plain, "w") as vcf:
        vcf.write("##fileformat=VCFv4.2\n##contig=<ID=20,length=63025520>\n"
                  "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for pos, ref, alt in zip(positions + 1, refs, alts):
            vcf.write(f"20\t{pos}\t.\t{ref}\t{alt}\t.\t.\t.\n")
    pysam.tabix_compress(str(plain), str(out), force=True)
    plain.unlink()
    return out


def peak_resident_mb(pid: int) -> float:
    """The process's peak resident set so far (VmHWM), in MB; 0 once it has exited."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def tiny_model(directory: Path) -> Path:
    torch.manual_seed(0)
    config = janusdna.JanusDNAConfig(d_model=8, n_layers=2, fusion_attn_dim=16, n_heads=2, n_experts=1,
                                     max_seq_len=128, name="tiny-d8-no-moe")
    return janusdna.save(janusdna.JanusDNA(config), directory / "tiny-d8")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="number of synthetic SNVs")
    parser.add_argument("--fasta", type=Path, default=SHARED_FASTA, help="GRCh37 chromosome 20 FASTA (contig 20)")
    parser.add_argument("--model", default=None, help="model to score with (default: a tiny random model)")
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--scores", default="llr", help=f"janus --scores, or 'all' ({ALL_SCORES})")
    parser.add_argument("--rc", default="none")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        started = time.perf_counter()
        vcf = synthetic_snv_vcf(args.fasta, args.n, args.seed, tmp / "snvs.vcf.gz")
        print(f"wrote {args.n:,} synthetic SNVs in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        model = args.model or str(tiny_model(tmp))
        scores = ALL_SCORES if args.scores == "all" else args.scores
        command = [sys.executable, "-m", "janus_cli", "score-variants", str(vcf), "--fasta", str(args.fasta),
                   "--model", model, "--window", str(args.window), "--scores", scores, "--rc", args.rc,
                   "--batch-size", str(args.batch_size), "--threads", str(args.threads), "--quiet",
                   "-o", str(tmp / "scores.parquet")]
        started = time.perf_counter()
        process = subprocess.Popen(command)
        peak_rss_mb = 0.0
        while process.poll() is None:
            peak_rss_mb = max(peak_rss_mb, peak_resident_mb(process.pid))
            time.sleep(0.1)
        seconds = time.perf_counter() - started
        if process.returncode != 0:
            sys.exit(f"janus failed with exit code {process.returncode}")
        out_mb = (tmp / "scores.parquet").stat().st_size / 1e6

    name = args.model or "tiny random d8 (no MoE)"
    print(f"| {args.n:,} | {name} | {args.window} | {scores} | {args.rc} | {args.batch_size} | {args.threads} "
          f"| {seconds:,.0f} | {args.n / seconds:,.0f} | {peak_rss_mb:,.0f} | {out_mb:,.1f} |")
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads available, "
          f"python {platform.python_version()}, torch {torch.__version__}", file=sys.stderr)


if __name__ == "__main__":
    main()
