"""Substitution scores from shared reference windows: `janus score-variants --scores llr` beside a
plain `janus likelihood` pass over the same bases, and score-variants throughput with all scores.

Two inputs on the real hg38 chr21:22-23 Mb of ../shared/data:
- platinum: the Platinum Genomes NA12878 calls of that 1 Mb (1,580 records, SNVs and indels);
- dense: a synthetic SNV at every third base of the first --dense-bp of it (ALT = the next base
  of ACGT after REF).
For each input and window W, `score-variants --scores llr --window W` and `likelihood` over the
input's span run as subprocesses (wall time, model loading included) with the shipped default
model, its max_seq_len set to W so that both tile the span alike. A bidirectional model's llr of
every SNV comes from shared reference tiles, so its cost should approach that of the likelihood
pass; indels still take per-variant windows.

    python benchmarks/shared_windows.py                       # llr at windows 128, 1024, 4096
    python benchmarks/shared_windows.py --all-scores          # every score, Platinum only
    python benchmarks/shared_windows.py --all-scores --checkout /path/to/older/janus   # before
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pysam

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "hg38_chr21"
FASTA = DATA / "hg38_chr21_22-23Mb.fa.gz"
PLATINUM = DATA / "platinum_NA12878_chr21_22-23Mb.vcf.gz"
START, END = 22_000_001, 23_000_000  # 1-based inclusive: the real sequence
ALL_SCORES = "llr,ref_logp,alt_logp,delta_pll,emb_cosine,emb_l2"


def dense_vcf(length: int, out: Path) -> tuple[Path, int]:
    """An SNV at every third base of chr21:START..START+length-1 (A/C/G/T only), bgzipped."""
    with pysam.FastaFile(str(FASTA)) as fasta:
        sequence = fasta.fetch("chr21", START - 1, START - 1 + length).upper()
    plain, n = out.with_suffix(""), 0
    with open(plain, "w") as vcf:
        vcf.write("##fileformat=VCFv4.2\n##contig=<ID=chr21,length=23000000>\n"
                  "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for offset in range(0, length, 3):
            ref = sequence[offset]
            if ref in "ACGT":
                vcf.write(f"chr21\t{START + offset}\t.\t{ref}\t{'ACGT'['ACGT'.index(ref) - 3]}\t.\t.\t.\n")
                n += 1
    pysam.tabix_compress(str(plain), str(out), force=True)
    pysam.tabix_index(str(out), preset="vcf", force=True)
    plain.unlink()
    return out, n


def window_model_copy(model: str, max_seq_len: int, out: Path) -> Path:
    """The model's weights with max_seq_len set to the window, so that `likelihood` tiles a region
    as score-variants tiles its shared windows (window bp, overlapping by a quarter). JanusDNA has
    no positional encoding; the shipped model was trained on 512 bp, so this is for speed only."""
    import json
    import shutil

    from dnalm.checkpoint import resolve_model_path

    shutil.copytree(resolve_model_path(model), out)
    config = json.loads((out / "config.json").read_text())
    config["max_seq_len"] = max_seq_len
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


def timed_janus(args: list[str], threads: int, checkout: Path | None) -> float:
    env = dict(os.environ)
    if checkout:  # run another janus checkout's packages (they live under models/ and the root)
        env["PYTHONPATH"] = os.pathsep.join([str(checkout / "models"), str(checkout)])
    command = [sys.executable, "-m", "janus_cli", *args, "--threads", str(threads), "--quiet"]
    started = time.perf_counter()
    # from the checkout's directory: `python -m` puts the working directory first on sys.path
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=checkout)
    seconds = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="janusdna-d48-chr20", help="shipped model name or model directory")
    parser.add_argument("--windows", type=int, nargs="+", default=[128, 1024, 4096])
    parser.add_argument("--inputs", nargs="+", choices=["platinum", "dense"], default=["platinum", "dense"])
    parser.add_argument("--dense-bp", type=int, default=150_000, help="span of the dense synthetic VCF")
    parser.add_argument("--all-scores", action="store_true", help="score-variants throughput with every score")
    parser.add_argument("--checkout", type=Path, help="run this janus checkout instead (e.g. an older commit)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).parent))
    from machine import describe

    print(describe(args.threads))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dense, n_dense = dense_vcf(args.dense_bp, tmp / "dense.vcf.gz")
        with pysam.VariantFile(str(PLATINUM)) as vcf:
            n_platinum = sum(1 for _ in vcf)
        inputs = {"platinum": (PLATINUM, n_platinum, END), "dense": (dense, n_dense, START + args.dense_bp - 1)}
        models = {window: window_model_copy(args.model, window, tmp / f"model-{window}") for window in args.windows}

        def common(window):
            return ["--fasta", str(FASTA), "--batch-size", str(args.batch_size), "--model", str(models[window])]
        if args.all_scores:
            print("| input | variants | window | scores | seconds | variants/s |")
            print("|---|---:|---:|---|---:|---:|")
            vcf, n, _ = inputs["platinum"]  # most scores take per-variant windows: the dense VCF would take hours
            for window in args.windows:
                seconds = timed_janus(["score-variants", str(vcf), "--window", str(window), "--scores", ALL_SCORES,
                                       *common(window), "-o", str(tmp / "all.parquet")], args.threads, args.checkout)
                print(f"| platinum | {n:,} | {window:,} | all | {seconds:.1f} | {n / seconds:,.1f} |", flush=True)
            return
        print("| input | variants | span (bp) | window | score-variants llr s | variants/s "
              "| likelihood s (same span) | ratio |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        likelihood_seconds = {}  # by (end, window)
        for name in args.inputs:
            vcf, n, end = inputs[name]
            for window in args.windows:
                if (end, window) not in likelihood_seconds:
                    likelihood_seconds[end, window] = timed_janus(
                        ["likelihood", "-r", f"chr21:{START}-{end}", *common(window), "-o", str(tmp / "ll.parquet")],
                        args.threads, args.checkout)
                seconds = timed_janus(["score-variants", str(vcf), "--window", str(window), "--scores", "llr",
                                       *common(window), "-o", str(tmp / "llr.parquet")], args.threads, args.checkout)
                baseline = likelihood_seconds[end, window]
                print(f"| {name} | {n:,} | {end - START + 1:,} | {window:,} | {seconds:.1f} | {n / seconds:,.0f} "
                      f"| {baseline:.1f} | {seconds / baseline:.2f} |", flush=True)


if __name__ == "__main__":
    main()
