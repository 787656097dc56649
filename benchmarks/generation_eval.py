"""Label-conditioned generation, judged by an independent oracle (HybriDNA §4.5 at CPU scale).

A generator from `janus finetune --generative` writes N sequences per label by beam search and by
sampling (`janus generate`); an oracle classifier from `janus finetune` (another architecture,
trained on the same task) scores them, and real held-out sequences of each label the same way.
Per source and label it reports the fraction the oracle calls label 1, the oracle's mean, top-1
and top-100 mean probability of label 1, and diversity (mean pairwise edit distance), and writes
OUT/scored.parquet (source, label, sequence, oracle prob) for `janus plot generated`.

    python benchmarks/generation_eval.py --generator runs/gen/hybridna-gen \\
        --oracle runs/gue_tata/janusdna-d48-chr20/model \\
        --real ../shared/data/benchmarks/gue_prom_core_tata/test.csv.gz --out runs/gen/eval
    janus plot generated runs/gen/eval/scored.parquet -o docs/generated.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import dnalm
from janus_cli.commands.finetune import read_examples, strand_averaged_outputs
from janus_cli.commands.generate import GenerateOptions, generate
from janus_cli.engine.runtime import set_threads


def mean_pairwise_edit_distance(sequences: list[str]) -> float:
    """The mean Levenshtein distance over all pairs of equal-length sequences, one dynamic
    programme vectorised over the pairs."""
    codes = np.array([np.frombuffer(s.encode(), dtype=np.uint8) for s in sequences])
    first, second = np.triu_indices(len(sequences), k=1)
    a, b = codes[first], codes[second]
    length = codes.shape[1]
    previous = np.broadcast_to(np.arange(length + 1), (len(first), length + 1)).copy()
    for i in range(1, length + 1):
        current = np.empty_like(previous)
        current[:, 0] = i
        mismatch = (a[:, i - 1, None] != b).astype(previous.dtype)
        for j in range(1, length + 1):
            current[:, j] = np.minimum(np.minimum(previous[:, j] + 1, current[:, j - 1] + 1),
                                       previous[:, j - 1] + mismatch[:, j - 1])
        previous = current
    return float(previous[:, length].mean())


def oracle_probability(oracle: dnalm.Finetuned, sequences: list[str], positive: str, work: Path) -> np.ndarray:
    """The oracle's probability of label `positive`, both strands averaged (as finetune evaluates)."""
    table = work / "oracle_input.csv"
    pd.DataFrame({"sequence": sequences, "label": positive}).to_csv(table, index=False)
    logits = strand_averaged_outputs(oracle.classifier, read_examples(table), 64, torch.device("cpu"))
    probs = torch.softmax(torch.from_numpy(logits), dim=-1).numpy()
    return probs[:, oracle.task.labels.index(positive)]


def summary(scored: pd.DataFrame, top: int) -> pd.DataFrame:
    rows = []
    for (source, label), group in scored.groupby(["source", "label"], sort=False):
        prob = np.sort(group["oracle_prob"].to_numpy())[::-1]
        rows.append({"source": source, "label": label, "n": len(group),
                     "called_1": float((prob > 0.5).mean()), "mean_prob": float(prob.mean()),
                     "top1_prob": float(prob[0]), f"top{top}_mean": float(prob[:top].mean()),
                     "unique": group["sequence"].nunique(),
                     "diversity": mean_pairwise_edit_distance(group["sequence"].tolist())})
    return pd.DataFrame(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", required=True, help="a model from janus finetune --generative")
    parser.add_argument("--oracle", type=Path, required=True, help="a classifier from janus finetune")
    parser.add_argument("--real", type=Path, required=True, help="held-out sequence,label table")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--labels", default="0,1")
    parser.add_argument("--positive", default="1", help="the oracle label whose probability is reported")
    parser.add_argument("--n", type=int, default=200, help="sequences per label and source")
    parser.add_argument("--length", type=int, default=70)
    parser.add_argument("--top", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    set_threads(args.threads)
    labels = args.labels.split(",")

    sources = []
    for mode in ("beam", "sample"):
        path = args.out / f"{mode}.parquet"
        decoding = {"beam": args.n} if mode == "beam" else {"sample": True, "seed": args.seed}
        generated = generate(GenerateOptions(model=args.generator, length=args.length, n=args.n, labels=labels,
                                             out=path, threads=args.threads, quiet=True, **decoding))
        sources.append(generated.to_pandas()[["label", "sequence"]].assign(source=f"generated, {mode}"))
    real = pd.read_csv(args.real, dtype={"label": str})
    real = real[real["label"].isin(labels)]
    real = real.groupby("label", sort=False).sample(n=args.n, random_state=args.seed, replace=False)
    sources.append(real[["label", "sequence"]].assign(source="real (held-out)"))
    scored = pd.concat(sources, ignore_index=True)

    oracle = dnalm.load_finetuned(args.oracle, torch.device("cpu"))
    scored["oracle_prob"] = oracle_probability(oracle, scored["sequence"].tolist(), args.positive, args.out)
    scored = scored[["source", "label", "sequence", "oracle_prob"]]
    scored.to_parquet(args.out / "scored.parquet", index=False)
    table = summary(scored, args.top)
    table.to_csv(args.out / "summary.tsv", sep="\t", index=False)
    oracle_test = json.loads((args.oracle / "metrics.json").read_text()).get("test", {})

    print(f"oracle {args.oracle}: test MCC {100 * oracle_test.get('mcc', float('nan')):.2f}, "
          f"AUROC {oracle_test.get('auroc', float('nan')):.4f}; generator {args.generator}; "
          f"{args.n} sequences of {args.length} bp per label and source\n")
    print(f"| source | label | n | oracle calls {args.positive} | mean P({args.positive}) | top-1 P | "
          f"top-{args.top} mean P | unique | diversity (mean pairwise edit distance) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in table.itertuples():
        print(f"| {r.source} | {r.label} | {r.n} | {r.called_1:.1%} | {r.mean_prob:.3f} | {r.top1_prob:.3f} "
              f"| {getattr(r, f'top{args.top}_mean'):.3f} | {r.unique} | {r.diversity:.1f} |")


if __name__ == "__main__":
    main()
