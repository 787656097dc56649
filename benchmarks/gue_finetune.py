"""GUE core-promoter (no TATA) classification: finetune a pretrained JanusDNA, and the same
architecture from random initialisation with the same budget, then compare test MCC.

Published test MCC (x100) on the full task: Caduceus-Ph 68.35, DNABERT-2 69.62. The budget
(epochs, training and evaluation subset sizes) is set here so that a run fits on a small CPU;
numbers from a reduced budget are not comparable with the published ones.

    # the defaults (2 epochs, 4000 train, 1000 dev/test): roughly 15 min for a d32-sized model on 2 cores
    python benchmarks/gue_finetune.py --model my_pretrained_model/
    # smoke test, about 3 min
    python benchmarks/gue_finetune.py --model janusdna-d32 --epochs 1 --max-train 1000 --max-eval 500 --threads 1

--model may be a preset name, as a stand-in while no pretrained model exists: both rows are then
random initialisations (with different seeds).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
import torch

import dnalm
from janus_cli.commands.finetune import FinetuneOptions, finetune

# the shared data folder sits beside the repository checkout
DATA = Path(__file__).resolve().parents[2] / "shared/data/benchmarks/gue_prom_core_notata"
PUBLISHED_TEST_MCC = {"Caduceus-Ph": 68.35, "DNABERT-2": 69.62}


def subset(source: Path, n: int | None, seed: int, target: Path) -> Path:
    """A random subset of n rows of a CSV (all rows when n is None), written to target."""
    table = pd.read_csv(source)
    if n is not None and n < len(table):
        table = table.sample(n=n, random_state=seed)
    table.to_csv(target, index=False)
    return target


def random_init_like(model_ref: str, seed: int, target: Path) -> Path:
    """A randomly initialised model with the architecture of model_ref, saved to target."""
    backbone, _ = dnalm.load_or_preset(model_ref, seed=seed)
    torch.manual_seed(seed)
    return dnalm.save(type(backbone)(backbone.config), target)


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| start | model | train seqs | epochs run | test MCC (x100) | test accuracy | test AUROC | s / epoch "
        "| train seq/s | eval seq/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        m, epochs = r["metrics"], r["metrics"]["epochs"]
        seconds_per_epoch = sum(e["wall_s"] for e in epochs) / len(epochs)
        lines.append(
            f"| {r['start']} | {r['model']} | {m['train_examples']:,} | {len(epochs)} | {100 * m['test']['mcc']:.2f} "
            f"| {m['test']['accuracy']:.4f} | {m['test']['auroc']:.4f} | {seconds_per_epoch:.1f} "
            f"| {m['train_seqs_per_s']:.1f} | {m['test']['seqs_per_s']:.1f} |"
        )
    for name, mcc in PUBLISHED_TEST_MCC.items():
        lines.append(f"| published | {name} | 42,452 | | {mcc:.2f} | | | | | |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="pretrained model directory, shipped name, or preset name")
    parser.add_argument("--data", type=Path, default=DATA, help="directory with train/dev/test.csv.gz")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run (early stopping on dev MCC)")
    parser.add_argument("--max-train", type=int, default=4000, help="random training subset size (all: 42452)")
    parser.add_argument("--max-eval", type=int, default=1000, help="random dev and test subset size (all: 5307)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default: janus finetune's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=None, help="work directory (default: a new temporary one)")
    args = parser.parse_args()

    out = args.out or Path(tempfile.mkdtemp(prefix="gue_finetune_"))
    (out / "data").mkdir(parents=True, exist_ok=True)
    train = subset(args.data / "train.csv.gz", args.max_train, args.seed, out / "data/train.csv")
    dev = subset(args.data / "dev.csv.gz", args.max_eval, args.seed, out / "data/dev.csv")
    test = subset(args.data / "test.csv.gz", args.max_eval, args.seed, out / "data/test.csv")
    random_init = random_init_like(args.model, args.seed + 1, out / "random_init_backbone")

    rows = []
    for start, model in (("pretrained", args.model), ("random init", str(random_init))):
        metrics = finetune(FinetuneOptions(
            train=train, val=dev, test=test, out=out / f"finetuned_{start.replace(' ', '_')}", model=model,
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, device=args.device,
            threads=args.threads,
        ))
        rows.append({"start": start, "model": Path(args.model).name, "metrics": metrics})

    print(f"GUE prom_core_notata, {args.epochs} epoch(s), train {args.max_train}, dev/test {args.max_eval}, "
          f"batch {args.batch_size}, {args.threads} thread(s), torch {torch.__version__}; runs in {out}\n")
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
