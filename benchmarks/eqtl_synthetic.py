"""A synthetic variant-effect task on real sequence, for `janus finetune` on labelled variants.

SNVs are placed in real hg38 chr21 sequence at sites one base away from a TATA box (TATAAA, or its
reverse complement TTTATA, on the reference). At each site two SNVs are drawn at the same position:
the positive one creates the motif (it changes the mismatched base to the motif's), the negative
one changes it to another base and leaves the motif absent. The REF window never holds the motif.
So both classes share their REF windows exactly, and a head that sees the REF window alone cannot
do better than chance (AUROC 0.5); a head that sees what the ALT allele does can. The split is by
position: the first 70% of the region trains, the next 10% validates, the last 20% tests (a
held-out region, as a held-out chromosome would be).

    python benchmarks/eqtl_synthetic.py --pairs 2000 -o runs/eqtl/variants.tsv
    janus finetune runs/eqtl/variants.tsv --fasta examples/data/hg38_chr21/hg38_chr21_22-23Mb.fa.gz \\
        --model janusdna-d48-chr20 --window 128 --epochs 3 -o runs/eqtl/head
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from janus_cli.io.fasta import Reference
from janus_cli.io.intervals import parse_region

MOTIFS = ("TATAAA", "TTTATA")  # the TATA box and its reverse complement
DATA = Path(__file__).resolve().parents[1] / "examples/data/hg38_chr21"
FASTA = DATA / "hg38_chr21_22-23Mb.fa.gz"
REGION = "chr21:22,000,001-23,000,000"
SPLITS = ((0.7, "train"), (0.8, "val"), (1.0, "test"))


def has_motif(text: str) -> bool:
    return any(motif in text for motif in MOTIFS)


def make_variants(fasta: Path, region: str, pairs: int, window: int, seed: int = 0) -> pd.DataFrame:
    """chrom, pos (1-based), ref, alt, label (1: the SNV creates the motif), split; `pairs` sites,
    each with one positive and one negative SNV, drawn at random from all qualifying sites."""
    with Reference(fasta) as reference:
        chrom, start, end = parse_region(region, reference.lengths)
        text = reference.fetch(chrom, start, end)
    sites = []
    for motif in MOTIFS:
        for offset in range(window, len(text) - window - len(motif)):
            kmer = text[offset:offset + len(motif)]
            mismatches = [k for k in range(len(motif)) if kmer[k] != motif[k]]
            if len(mismatches) != 1 or "N" in kmer:
                continue
            position = offset + mismatches[0]
            around = text[position - window // 2:position + window // 2]
            fixed = motif[mismatches[0]]
            others = [b for b in "ACGT" if b not in (text[position], fixed)]
            if has_motif(around) or not others:
                continue
            sites.append((position, text[position], fixed, others))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(sites), size=min(pairs, len(sites)), replace=False)
    rows = []
    for i in sorted(chosen, key=lambda i: sites[i][0]):
        position, ref, fixed, others = sites[i]
        negative = others[rng.integers(len(others))]
        around = text[position - window // 2:position + window // 2]
        k = window // 2
        if has_motif(around[:k] + negative + around[k + 1:]):
            continue
        fraction = position / len(text)
        split = next(name for bound, name in SPLITS if fraction < bound)
        rows.append((chrom, start + position + 1, ref, fixed, 1, split))
        rows.append((chrom, start + position + 1, ref, negative, 0, split))
    return pd.DataFrame(rows, columns=["chrom", "pos", "ref", "alt", "label", "split"])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fasta", type=Path, default=FASTA)
    parser.add_argument("--region", default=REGION)
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--window", type=int, default=128, help="no motif within this window on the REF")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--out", type=Path, required=True)
    args = parser.parse_args()
    table = make_variants(args.fasta, args.region, args.pairs, args.window, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, sep="\t", index=False)
    counts = table.groupby(["split", "label"]).size().to_dict()
    print(f"wrote {len(table)} SNVs ({len(table) // 2} sites) to {args.out}: {counts}")


if __name__ == "__main__":
    main()
