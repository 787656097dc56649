"""GUE promoter classification with `janus finetune`, one row at a time.

A row is `[random:]MODEL[:POOLING]`: MODEL is a shipped model, a model directory or a preset;
`random:` starts from the same architecture randomly initialised; POOLING overrides the
architecture's pooling (e.g. `last` for hybridna). Each row writes OUT/ROW/metrics.json and is
skipped when that file exists, so an interrupted series resumes at the row it stopped in (a row
itself restarts from its beginning). `--table` prints the finished rows beside the published
test MCCs of the task.

    # the full prom_core_tata task, 10 epochs at most, stopping after 2 epochs without dev gain
    python benchmarks/gue_finetune.py --task prom_core_tata --out runs/gue_tata --row janusdna-d48-chr20
    python benchmarks/gue_finetune.py --task prom_core_tata --out runs/gue_tata --row hybridna-d64-chr20:last
    python benchmarks/gue_finetune.py --task prom_core_tata --out runs/gue_tata --row random:hybridna-d64-chr20
    python benchmarks/gue_finetune.py --task prom_core_tata --out runs/gue_tata --table

    # a reduced budget on prom_core_notata (numbers not comparable with the published ones)
    python benchmarks/gue_finetune.py --task prom_core_notata --out runs/gue_notata --epochs 1 \\
        --max-train 2000 --max-eval 1000 --row janusdna-d48-chr20 --row random:janusdna-d48-chr20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

import dnalm
from janus_cli.commands.finetune import FinetuneOptions, finetune

# the shared data folder sits beside the repository checkout
DATA = Path(__file__).resolve().parents[2] / "shared/data/benchmarks"
PUBLISHED_TEST_MCC = {
    "prom_core_notata": {"Caduceus-Ph": 68.35, "DNABERT-2": 69.62},
    "prom_core_tata": {"DNABERT-2": 75.83, "HyenaDNA": 74.07, "Caduceus-Ph": 68.65, "HybriDNA-7B (echo)": 77.49},
}


@dataclass(frozen=True)
class Row:
    model: str
    random_init: bool = False
    pooling: str | None = None

    @classmethod
    def parse(cls, spec: str) -> "Row":
        random_init = spec.startswith("random:")
        rest = spec.removeprefix("random:")
        model, _, pooling = rest.partition(":")
        return cls(model, random_init, pooling or None)

    @property
    def name(self) -> str:
        start = "random-" if self.random_init else ""
        pooling = f"-{self.pooling}" if self.pooling else ""
        return f"{start}{Path(self.model).name}{pooling}"


def subset(source: Path, n: int | None, seed: int, target: Path) -> Path:
    """A random subset of n rows of a CSV (all rows when n is None), written to target."""
    table = pd.read_csv(source)
    if n is not None and n < len(table):
        table = table.sample(n=n, random_state=seed)
    partial = target.with_name(f".{target.name}.{os.getpid()}")  # rows may start at once: publish by rename
    table.to_csv(partial, index=False)
    partial.replace(target)
    return target


def random_init_like(model_ref: str, seed: int, target: Path) -> Path:
    """A randomly initialised model with the architecture of model_ref, saved to target."""
    backbone, _ = dnalm.load_or_preset(model_ref, seed=seed)
    torch.manual_seed(seed)
    return dnalm.save(type(backbone)(backbone.config), target)


def run_row(row: Row, args, data: dict[str, Path]) -> dict:
    row_dir = args.out / row.name
    done = row_dir / "metrics.json"
    if done.exists():
        print(f"{row.name}: done before, {done}")
        return json.loads(done.read_text())
    model = row.model
    if row.random_init:
        model = str(random_init_like(row.model, args.seed + 1, args.out / f"{row.name}.init"))
    metrics = finetune(FinetuneOptions(
        train=data["train"], val=data["dev"], test=data["test"], out=row_dir / "model", model=model,
        pooling=row.pooling, epochs=args.epochs, patience=args.patience, batch_size=args.batch_size,
        lr=args.lr, seed=args.seed, device=args.device, threads=args.threads,
    ))
    record = {"row": row.name, "model": row.model, "random_init": row.random_init, "pooling": row.pooling,
              "max_epochs": args.epochs, "patience": args.patience, "threads": args.threads,
              "cpu": platform.processor() or platform.machine(), "torch": torch.__version__, "metrics": metrics}
    done.write_text(json.dumps(record, indent=1))
    return record


def markdown_table(records: list[dict], task: str) -> str:
    lines = [
        "| row | start | pooling | train seqs | epochs run (best) | dev MCC | test MCC (x100) | test AUROC "
        "| s / epoch |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        m, epochs = r["metrics"], r["metrics"]["epochs"]
        best = epochs[m["best_epoch"] - 1]
        seconds_per_epoch = sum(e["wall_s"] for e in epochs) / len(epochs)
        start = "random init" if r["random_init"] else "pretrained"
        lines.append(
            f"| {Path(r['model']).name} | {start} | {r['pooling'] or 'default'} "
            f"| {m['train_examples']:,} | {len(epochs)} ({best['epoch']}) | {100 * best['val']['mcc']:.2f} "
            f"| {100 * m['test']['mcc']:.2f} | {m['test']['auroc']:.4f} | {seconds_per_epoch:.0f} |"
        )
    for name, mcc in PUBLISHED_TEST_MCC.get(task, {}).items():
        lines.append(f"| {name} | published, full data | | | | | {mcc:.2f} | | |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="prom_core_tata", help="a GUE task folder under --data")
    parser.add_argument("--data", type=Path, default=DATA, help="directory holding gue_TASK/{train,dev,test}.csv.gz")
    parser.add_argument("--out", type=Path, required=True, help="work directory; finished rows are kept here")
    parser.add_argument("--row", action="append", default=[], type=Row.parse, help="[random:]MODEL[:POOLING]")
    parser.add_argument("--table", action="store_true", help="print the finished rows as a Markdown table")
    parser.add_argument("--epochs", type=int, default=10, help="most epochs per row (DNABERT-2 recipe: 10)")
    parser.add_argument("--patience", type=int, default=2, help="stop after this many epochs without dev MCC gain")
    parser.add_argument("--max-train", type=int, default=None, help="random training subset size (default: all)")
    parser.add_argument("--max-eval", type=int, default=None, help="random dev and test subset size (default: all)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default: janus finetune's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    (args.out / "data").mkdir(parents=True, exist_ok=True)
    source = args.data / f"gue_{args.task}"
    data = {
        "train": subset(source / "train.csv.gz", args.max_train, args.seed, args.out / "data/train.csv"),
        "dev": subset(source / "dev.csv.gz", args.max_eval, args.seed, args.out / "data/dev.csv"),
        "test": subset(source / "test.csv.gz", args.max_eval, args.seed, args.out / "data/test.csv"),
    }
    for row in args.row:
        run_row(row, args, data)
    if args.table:
        records = [json.loads(p.read_text()) for p in sorted(args.out.glob("*/metrics.json"))]
        print(f"GUE {args.task}: {len(records)} row(s) from {args.out}\n")
        print(markdown_table(records, args.task))


if __name__ == "__main__":
    main()
