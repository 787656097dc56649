"""Held-out per-base evaluation of a model (any architecture) against two classical baselines.

The baselines are fit on the model's pretraining data: the training contig (GRCh37 contig 20)
minus the validation region. The unigram is the training base frequencies. The Markov chain's
order k, and the smoothing strength of each order it interpolates, are chosen by perplexity on the
validation region. Every row is then scored on the test region, real hg38 sequence from another
chromosome and assembly. Metrics are per A/C/G/T base: perplexity =
exp(mean negative log-likelihood in nats) and accuracy (argmax == true base).

The model predicts each base once, from its own window: non-overlapping windows of the model's
max_seq_len tile the test region, so the first and last base of each window only have context on
one side. The "RC-avg" row averages, per base, the probabilities of the forward pass and of the
reverse-complement pass mapped back (positions reversed, bases complemented). What each model row
saw is the architecture's prediction context, printed with the row: JanusDNA every other base of
its window, a causal model (HybriDNA) the bases to its left (its RC-avg row then mixes a
left-context and a right-context prediction), a masked model (MergeDNA) every other base of its
window with the base itself replaced by [MASK], one pass per scored base. The Markov chain only
sees left context, by construction.

--positions N scores N test positions drawn at random (seed 0) instead of every base, for models
that need one pass per base; every row (baselines included) is then scored on the same positions.

    python benchmarks/heldout_eval.py --model janusdna-d32 --max-bases 20000
    python benchmarks/heldout_eval.py --model path/to/model_dir
    python benchmarks/heldout_eval.py --baselines-only
    python benchmarks/heldout_eval.py --model mergedna-d64-chr20 --positions 4000
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import dnalm
from dnalm.tokenizer import MASK
from baselines import (
    MAX_ORDER,
    UNIFORM,
    MarkovModel,
    Score,
    base_codes,
    count_transitions,
    interpolate,
    interpolated_tables,
    score,
)
from janus_cli.io.fasta import Reference
from janus_cli.io.intervals import parse_region

# the shared data folder sits beside the repository checkout
DATA = Path(__file__).resolve().parents[2] / "shared/data"
TRAIN_FASTA = DATA / "grch37_chr20" / "GRCh37_chr20.fa.gz"
VALIDATION_REGION = "20:58,000,001-63,025,520"
TEST_FASTA = DATA / "hg38_chr21" / "hg38_chr21_22-23Mb.fa.gz"
TEST_REGION = "chr21:22,000,001-23,000,000"
STRENGTHS = (0.25, 1, 4, 16, 64, 256, 1024)  # the Dirichlet prior strengths tried on validation


def log(message: str):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def fetch_region(fasta: Path, region: str, max_bases: int | None = None) -> str:
    with Reference(fasta) as reference:
        chrom, start, end = parse_region(region, reference.lengths)
        if max_bases is not None:
            end = min(end, start + max_bases)
        return reference.fetch(chrom, start, end)


def training_sequences(fasta: Path, validation_region: str) -> list[np.ndarray]:
    """The validation region's contig, minus the validation region, as one or two pieces (so that
    no k-mer spans the gap)."""
    with Reference(fasta) as reference:
        chrom, start, end = parse_region(validation_region, reference.lengths)
        pieces = [(0, start), (end, reference.lengths[chrom])]
        return [base_codes(reference.fetch(chrom, a, b)) for a, b in pieces if b > a]


@dataclass
class MarkovChoice:
    grid: dict[tuple[int, float], Score]  # validation score of each (order, strength of that order)
    strengths: list[float]  # the strength chosen for each order
    order: int  # the order with the lowest validation perplexity

    def model(self, counts: list[np.ndarray]) -> MarkovModel:
        return MarkovModel(interpolated_tables(counts[: self.order + 1], self.strengths[: self.order + 1]))


def choose_markov(counts: list[np.ndarray], validation: np.ndarray) -> MarkovChoice:
    """Bottom up, pick for each order the strength that gives the order-k model the lowest
    validation perplexity, the tables below it being fixed; then pick the order. Higher orders
    have sparser counts and want stronger smoothing, so one strength for all would not do."""
    grid, strengths, tables = {}, [], []
    lower = UNIFORM
    for order, order_counts in enumerate(counts):
        candidates = {strength: interpolate(order_counts, lower, strength) for strength in STRENGTHS}
        for strength, table in candidates.items():
            probs = MarkovModel([*tables, table]).base_probabilities(validation)
            grid[order, strength] = score(probs, validation)
        best = min(STRENGTHS, key=lambda strength: grid[order, strength].perplexity)
        strengths.append(best)
        lower = candidates[best]
        tables.append(lower)
    best_order = min(range(len(counts)), key=lambda order: grid[order, strengths[order]].perplexity)
    return MarkovChoice(grid, strengths, best_order)


def model_base_probabilities(model, ids: torch.Tensor, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(forward, reverse-complement-averaged) [L, 4] probabilities of A, C, G, T for a 1-D id
    tensor, predicted in non-overlapping windows of the model's max_seq_len."""
    window = model.config.max_seq_len
    n_full = len(ids) // window * window
    blocks = [ids[:n_full].view(-1, window)]
    if n_full < len(ids):
        blocks.append(ids[n_full:].unsqueeze(0))
    forward, rc_averaged = [], []
    with torch.inference_mode():
        for block in blocks:
            for batch in block.split(batch_size):
                p_forward = model.base_log_probs(batch).exp()
                # the RC pass predicts the complement base at the mirrored position; A,C,G,T order
                # reversed is the complement order T,G,C,A
                p_rc = model.base_log_probs(dnalm.reverse_complement(batch)).exp().flip(1).flip(-1)
                forward.append(p_forward.reshape(-1, 4))
                rc_averaged.append(((p_forward + p_rc) / 2).reshape(-1, 4))
    return torch.cat(forward).double().numpy(), torch.cat(rc_averaged).double().numpy()


def masked_base_probabilities(model, ids: torch.Tensor, positions: np.ndarray, batch_size: int
                              ) -> tuple[np.ndarray, np.ndarray]:
    """As model_base_probabilities, at the given positions only, for a masked model: each
    position's window (the same tiling) with that base alone replaced by [MASK], one pass each."""
    window = model.config.max_seq_len
    forward, rc_averaged = [], []
    with torch.inference_mode():
        for chunk in np.array_split(positions, max(1, len(positions) // batch_size)):
            starts = chunk // window * window
            windows = [ids[s:min(s + window, len(ids))] for s in starts]
            by_length: dict[int, list[int]] = {}
            for j, w in enumerate(windows):
                by_length.setdefault(len(w), []).append(j)
            p_forward, p_rc = torch.empty(len(chunk), 4), torch.empty(len(chunk), 4)
            for rows in by_length.values():
                batch = torch.stack([windows[j] for j in rows]).clone()
                offsets = torch.as_tensor(chunk[rows] - starts[rows])
                batch[torch.arange(len(rows)), offsets] = MASK
                p_forward[rows] = model.masked_base_log_probs(batch)[torch.arange(len(rows)), offsets].exp().float()
                mirrored = batch.shape[1] - 1 - offsets
                rc = model.masked_base_log_probs(dnalm.reverse_complement(batch)).exp().float()
                p_rc[rows] = rc[torch.arange(len(rows)), mirrored].flip(-1)
            forward.append(p_forward)
            rc_averaged.append((p_forward + p_rc) / 2)
    return torch.cat(forward).double().numpy(), torch.cat(rc_averaged).double().numpy()


def load_model(name_or_dir: str):
    return dnalm.load_or_preset(name_or_dir, seed=0)[0].eval()


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def validation_table(choice: MarkovChoice) -> str:
    """Perplexity per order (rows) and strength of that order (columns); each order's chosen
    strength in bold, and its accuracy."""
    rows = []
    for order, chosen in enumerate(choice.strengths):
        cells = [f"{choice.grid[order, strength].perplexity:.4f}" for strength in STRENGTHS]
        cells[STRENGTHS.index(chosen)] = f"**{cells[STRENGTHS.index(chosen)]}**"
        rows.append([str(order), *cells, f"{choice.grid[order, chosen].accuracy:.4f}"])
    return markdown_table(["k \\ strength", *map(str, STRENGTHS), "accuracy"], rows)


def result_row(name: str, result: Score) -> list[str]:
    return [name, f"{result.perplexity:.4f}", f"{result.accuracy:.4f}", f"{result.count:,}"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model directory, shipped model name, or preset name (random init)")
    parser.add_argument("--baselines-only", action="store_true", help="skip the model rows")
    parser.add_argument("--train-fasta", type=Path, default=TRAIN_FASTA)
    parser.add_argument("--validation-region", default=VALIDATION_REGION,
                        help="held out of training; the rest of its contig is the training data")
    parser.add_argument("--test-fasta", type=Path, default=TEST_FASTA)
    parser.add_argument("--test-region", default=TEST_REGION)
    parser.add_argument("--max-bases", type=int, help="score only the first N bases of the test region (validation is always whole)")
    parser.add_argument("--positions", type=int, help="score this many random test positions (seed 0), not every base")
    parser.add_argument("--batch-size", type=int, default=8, help="model windows per forward pass")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if not args.model and not args.baselines_only:
        parser.error("give --model, or --baselines-only")
    if args.threads:
        torch.set_num_threads(args.threads)

    model = None if args.baselines_only else load_model(args.model)
    log(f"counting k-mers (k <= {MAX_ORDER}) on {args.train_fasta.name} minus {args.validation_region}")
    training = training_sequences(args.train_fasta, args.validation_region)
    counts = count_transitions(training, MAX_ORDER)
    log(f"choosing k and the smoothing strength on {args.validation_region}")
    validation = base_codes(fetch_region(args.train_fasta, args.validation_region))
    choice = choose_markov(counts, validation)

    log(f"scoring the baselines on {args.test_region}")
    test_sequence = fetch_region(args.test_fasta, args.test_region, args.max_bases)
    test_codes = base_codes(test_sequence)
    scored = np.arange(len(test_codes))
    if args.positions:
        scored = np.sort(np.random.default_rng(0).choice(len(test_codes), args.positions, replace=False))
    unigram = MarkovModel(interpolated_tables(counts[:1], [0]))
    rows = [
        result_row("unigram", score(unigram.base_probabilities(test_codes)[scored], test_codes[scored])),
        result_row(f"Markov (k={choice.order})",
                   score(choice.model(counts).base_probabilities(test_codes)[scored], test_codes[scored])),
    ]
    if model is not None:
        log(f"running {model.config.name} over {len(scored):,} bases in windows of {model.config.max_seq_len}")
        ids = dnalm.encode(test_sequence)
        if model.prediction_context == dnalm.MASKED:
            forward, rc_averaged = masked_base_probabilities(model, ids, scored, args.batch_size)
        else:
            forward, rc_averaged = (p[scored] for p in model_base_probabilities(model, ids, args.batch_size))
        context = model.prediction_context
        rows.append(result_row(f"model {args.model} [{context}]", score(forward, test_codes[scored])))
        rows.append(result_row(f"model {args.model} (RC-avg) [{context} + reverse strand]",
                               score(rc_averaged, test_codes[scored])))
    log("done")

    validation_bases = choice.grid[0, STRENGTHS[0]].count
    print(f"## Validation: Markov perplexity on {args.validation_region} ({validation_bases:,} bases)\n")
    print(validation_table(choice))
    print(f"\nChosen: k={choice.order}; the order-k model interpolates orders 0..k, each with its bold strength.\n")
    print(f"## Test: {args.test_region} of {args.test_fasta.name}\n")
    print(markdown_table(["predictor", "perplexity", "accuracy", "bases scored"], rows))


if __name__ == "__main__":
    main()
