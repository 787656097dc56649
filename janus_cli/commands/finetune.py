"""`janus finetune`: sequence-level classification or regression.

The model is a backbone of any architecture, its pooled embedding (the architecture's default
pooling; JanusDNA: the mean of its hidden states), and one linear layer (dnalm.SequenceClassifier).
Training adds the backbone's auxiliary loss (JanusDNA: MoE load balancing) to the cross-entropy
(or, with --regression, to the mean squared error on standardised targets) and
reverse-complements half of the training sequences. Evaluation averages the outputs (logits) of
both strands; `janus predict` applies the result.

Batches hold sequences of a single length, so nothing is ever padded.

A finetuned model directory (dnalm.load_finetuned reads it):
    DIR/config.json, DIR/model.safetensors   the backbone (native format: dnalm.load(DIR) works)
    DIR/head.safetensors                     the linear head (weight, bias)
    DIR/head.json                            task, label names, pooling, the backbone's provenance
    DIR/metrics.json                         per-epoch losses and timings, val and test metrics

With --generative (finetune_generative, a causal model only) the task is label-conditioned
generation instead (HybriDNA §3.3.2): each training sequence's label becomes prompt tokens (one
per (position, character) of the label, dnalm.prompts: new embedding rows, randomly initialised,
the existing rows unchanged), and the whole model learns next-base prediction of the sequence
after [BOS] + its prompt tokens; the loss covers the bases only, never the prompt. No strand
augmentation (a sequence's reverse complement is not an example of its label's sequences). --val
picks the epoch with the highest next-base accuracy (the most likely of A/C/G/T given the prompt
and the bases before, N excluded: the regLM convention). The output directory is a plain model
directory (config.json with the prompt tokens and, in extra, the labels; model.safetensors;
metrics.json) that `janus generate --label` takes.
"""

from __future__ import annotations

import copy
from collections import defaultdict
import functools
import json
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import dnalm
from dnalm import SequenceClassifier, Task, lora, prompts, reverse_complement
from dnalm.heads import softmax

from ..engine.runtime import autocast_context, log, resolve_device, set_threads
from ..engine.schedule import lr_at
from ..errors import DataError, UsageError
from ..io import intervals
from ..io.fasta import Reference
from ..engine.variant_windows import VariantPlacer, labelled_variants
from ..io.chroms import ChromMatcher, read_alias_table
from ..io.reference_config import resolve_fasta
from ..io.sequences import BED, SEQUENCE_COLUMNS, detect_input_kind, find_column, is_variant_file, read_table

LABEL_COLUMN = "label"
BED_NAMED_COLUMNS = {"name": 4, "score": 5}
PROGRESS_EVERY_S = 30.0
DEFAULT_VARIANT_WINDOW = 256
VARIANT_FEATURES = ("pair", "alt")


# --- inputs -----------------------------------------------------------------------------------


@dataclass
class Examples:
    """The sequences of one input file as token ids and their raw labels; for labelled variants
    each example is its ALT window [L], or its REF and ALT windows [2, L] (--variant-features),
    with its reference contig and its split (train, val, test or None)."""

    source: str
    ids: list[torch.Tensor]
    labels: pd.Series
    contigs: list[str] | None = None
    splits: list[str | None] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, keep: np.ndarray) -> "Examples":
        rows = np.flatnonzero(keep)
        pick = (lambda values: None if values is None else [values[i] for i in rows])
        return Examples(self.source, pick(self.ids), self.labels.iloc[rows].reset_index(drop=True),
                        pick(self.contigs), pick(self.splits))

    @property
    def lengths(self) -> np.ndarray:
        return np.array([x.shape[-1] for x in self.ids], dtype=np.int64)


def read_examples(path: str | Path, seq_col: str | None = None, label_col: str | None = None,
                  fasta: str | Path | None = None, text_labels: bool = False) -> Examples:
    """A CSV/TSV/Parquet table with sequence and label columns, or a BED whose sequences come from
    fasta and whose labels are a column (told apart by content). text_labels: a CSV/TSV's labels
    as written (030 stays 030)."""
    kind = detect_input_kind(path)
    if kind == BED:
        return _read_bed_examples(Path(path), fasta, label_col)
    if kind != "table":
        raise DataError(f"{path}: a FASTA has no labels; give a table with sequence and label columns, "
                        "or a BED with --label-col and --fasta")
    table = read_table(path, text=text_labels)
    seq_col = find_column(table, path, seq_col, SEQUENCE_COLUMNS, "--seq-col")
    labels = table[find_column(table, path, label_col, (LABEL_COLUMN,), "--label-col")]
    missing = np.flatnonzero(labels.isna().to_numpy())
    if missing.size:
        raise DataError(f"{path}: row {missing[0] + 1}: missing label")
    ids = [_encode(seq, f"{path}: row {i + 1}") for i, seq in enumerate(table[seq_col])]
    return Examples(str(path), ids, labels)


def is_variant_input(path: str | Path) -> bool:
    """A VCF/BCF, or a table with chrom, pos, ref and alt columns and no sequence column."""
    if is_variant_file(path):
        return True
    if str(path) == "-" or detect_input_kind(path) != "table":
        return False
    columns = {str(c).lower() for c in read_table(path, text=True).columns}
    return {"chrom", "pos", "ref", "alt"} <= columns and not columns & set(SEQUENCE_COLUMNS)


def read_variant_examples(path: str | Path, placer: VariantPlacer, opts: "FinetuneOptions", say) -> Examples:
    """Labelled variants as examples: each variant placed and checked as score-variants does (the
    same skip reasons, counted on stderr), its ALT window, or REF and ALT windows (pair)."""
    ids, labels, contigs, splits, skipped = [], [], [], [], Counter()
    for found, split in labelled_variants(path, opts.label_field, opts.label_col):
        placed = placer.place(found)
        if isinstance(placed, str):
            skipped[placed] += 1
            continue
        if found.info is None or (isinstance(found.info, float) and math.isnan(found.info)):
            raise DataError(f"{path}: record {found.record_number} ({found.chrom}:{found.pos}): no label"
                            + (f" (INFO {opts.label_field})" if opts.label_field else ""))
        alt = _encode(placed.alt_text, f"{path}: record {found.record_number}")
        ids.append(torch.stack([_encode(placed.ref_text, str(path)), alt]) if opts.variant_features == "pair" else alt)
        labels.append(str(found.info))
        contigs.append(placer.matcher(found.chrom))
        splits.append(split)
    skips = ", ".join(f"{reason} {n}" for reason, n in sorted(skipped.items())) or "none"
    say(f"finetune: {path}: {len(ids) + sum(skipped.values())} variants, {len(ids)} used; skipped: {skips}")
    if not ids:
        raise DataError(f"{path}: no variant could be used (skipped: {skips})")
    return Examples(str(path), ids, pd.Series(labels), contigs, splits)


def read_variant_splits(opts: "FinetuneOptions", say) -> dict[str, Examples]:
    """train (and val, test) examples of labelled variants: --val/--test files, else the training
    file's split column; --holdout-chroms moves the training variants on those contigs to test."""
    aliases = read_alias_table(opts.chrom_alias) if opts.chrom_alias else {}
    with Reference(resolve_fasta(opts.fasta)) as reference:
        matcher = ChromMatcher(reference.lengths, aliases)
        placer = VariantPlacer(reference, matcher, opts.window or DEFAULT_VARIANT_WINDOW, opts.edge, opts.check_ref,
                               opts.max_n_frac, opts.train)
        train = read_variant_examples(opts.train, placer, opts, say)
        parts = {"train": train}
        splits = np.array(train.splits, dtype=object)
        if any(s is not None for s in train.splits):
            parts = {name: train.subset(splits == name) for name in ("train", "val", "test")}
        if opts.holdout_chroms:
            held = {matcher(c) or c for c in opts.holdout_chroms}
            on_held = np.array([c in held for c in parts["train"].contigs])
            if on_held.all() or not on_held.any():
                raise UsageError(f"--holdout-chroms {','.join(opts.holdout_chroms)}: holds out "
                                 f"{'every' if on_held.all() else 'no'} training variant")
            parts["test"] = parts["train"].subset(on_held)
            parts["train"] = parts["train"].subset(~on_held)
        for name, path in (("val", opts.val), ("test", opts.test)):
            if path:
                placer.source = path
                parts[name] = read_variant_examples(path, placer, opts, say)
        placer.summarise_warnings()
    return {name: examples for name, examples in parts.items() if len(examples)}


def _encode(sequence, where: str) -> torch.Tensor:
    if not isinstance(sequence, str) or not sequence:
        raise DataError(f"{where}: missing or empty sequence")
    try:
        return dnalm.encode(sequence)
    except ValueError as exc:
        raise DataError(f"{where}: {exc}") from None


def _read_bed_examples(path: Path, fasta, label_col: str | None) -> Examples:
    if fasta is None:
        raise UsageError(f"{path}: BED input needs --fasta to fetch the sequences")
    if label_col is None:
        raise UsageError(f"{path}: BED input needs --label-col (a 1-based column number such as 7, or name)")
    records = intervals.read_bed(path)
    labels = pd.Series(_bed_column(path, _bed_column_number(label_col)))
    ids = []
    with Reference(fasta) as reference:
        for i, record in enumerate(records.itertuples(index=False)):
            where = f"{path}: record {i + 1} ({record.chrom}:{record.start}-{record.end})"
            if record.chrom not in reference.lengths:
                raise DataError(f"{where}: contig {record.chrom} is not in {reference.path}")
            if record.end > reference.lengths[record.chrom]:
                raise DataError(f"{where}: past the end of {record.chrom} ({reference.lengths[record.chrom]} bp)")
            seq = _encode(reference.fetch(record.chrom, record.start, record.end), where)
            ids.append(reverse_complement(seq) if record.strand == "-" else seq)
    return Examples(str(path), ids, labels)


def _bed_column_number(label_col: str) -> int:
    if label_col in BED_NAMED_COLUMNS:
        return BED_NAMED_COLUMNS[label_col]
    if not label_col.isdigit() or int(label_col) < 1:
        raise UsageError(f"--label-col {label_col!r}: for BED input give a 1-based column number or "
                         f"{' or '.join(BED_NAMED_COLUMNS)}")
    return int(label_col)


def _bed_column(path: Path, number: int) -> list[str]:
    """Column `number` (1-based) of every record, skipping the lines that intervals.read_bed skips."""
    values = []
    for lineno, fields in intervals.bed_records(path):
        if len(fields) < number:
            raise DataError(f"{path}:{lineno}: no column {number} (this line has {len(fields)})")
        values.append(fields[number - 1])
    return values


# --- metrics (numpy only) ---------------------------------------------------------------------


def accuracy(true: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(true == pred))


def matthews_corrcoef(true: np.ndarray, pred: np.ndarray) -> float:
    """Multiclass MCC (Gorodkin's R_K) from the confusion matrix; the usual MCC for two classes.
    0 when undefined (a constant prediction or a single true class)."""
    classes = np.union1d(true, pred)
    confusion = np.zeros((len(classes), len(classes)))
    np.add.at(confusion, (np.searchsorted(classes, true), np.searchsorted(classes, pred)), 1)
    n, correct = confusion.sum(), np.trace(confusion)
    true_counts, pred_counts = confusion.sum(1), confusion.sum(0)
    numerator = correct * n - true_counts @ pred_counts
    denominator = math.sqrt((n * n - pred_counts @ pred_counts) * (n * n - true_counts @ true_counts))
    return float(numerator / denominator) if denominator else 0.0


def macro_f1(true: np.ndarray, pred: np.ndarray) -> float:
    """Unweighted mean of per-class F1 over the classes present in true or pred."""
    scores = []
    for c in np.union1d(true, pred):
        tp = np.sum((pred == c) & (true == c))
        wrong = np.sum((pred == c) != (true == c))  # false positives + false negatives
        scores.append(2 * tp / (2 * tp + wrong))
    return float(np.mean(scores))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    last_rank = np.cumsum(counts)
    return (last_rank - (counts - 1) / 2)[inverse]


def auroc(is_positive: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve as the Mann-Whitney U statistic (ties count one half); NaN when
    only one class is present."""
    is_positive = is_positive.astype(bool)
    n_pos, n_neg = int(is_positive.sum()), int((~is_positive).sum())
    if not n_pos or not n_neg:
        return float("nan")
    rank_sum = average_ranks(scores)[is_positive].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auprc(is_positive: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall curve as average precision: the precision at each distinct
    score threshold, weighted by the recall it adds (tied scores form one threshold); NaN
    without positives."""
    is_positive = is_positive.astype(bool)
    if not is_positive.any():
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    sorted_scores, hits = scores[order], is_positive[order]
    last_of_threshold = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(scores) - 1]
    true_positives = np.cumsum(hits)[last_of_threshold]
    precision = true_positives / (last_of_threshold + 1)
    recall_gain = np.diff(np.r_[0, true_positives]) / is_positive.sum()
    return float((precision * recall_gain).sum())


def classification_metrics(true: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """true: class indices [N]; probs: class probabilities [N, K]."""
    pred = probs.argmax(1)
    metrics = {
        "loss": float(-np.mean(np.log(np.clip(probs[np.arange(len(true)), true], 1e-12, None)))),
        "accuracy": accuracy(true, pred),
        "mcc": matthews_corrcoef(true, pred),
        "macro_f1": macro_f1(true, pred),
    }
    if probs.shape[1] == 2:
        metrics["auroc"] = auroc(true == 1, probs[:, 1])
        metrics["auprc"] = auprc(true == 1, probs[:, 1])
    return metrics


def regression_metrics(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    r = np.corrcoef(true, pred)[0, 1] if true.std() and pred.std() else float("nan")
    return {"mse": float(np.mean((true - pred) ** 2)), "pearson_r": float(r)}


# --- task: what the outputs mean --------------------------------------------------------------


def task_from_training(examples: Examples, regression: bool) -> Task:
    if regression:
        values = _numeric_labels(examples)
        return Task(True, target_mean=float(values.mean()), target_std=float(values.std()) or 1.0)
    names = [str(v) for v in sorted(examples.labels.unique())]
    if len(names) < 2:
        raise DataError(f"{examples.source}: classification needs at least two labels, found {names}"
                        " (pass --regression for numeric targets)")
    return Task(False, labels=names)


def task_targets(task: Task, examples: Examples) -> torch.Tensor:
    if task.regression:
        return torch.from_numpy((_numeric_labels(examples) - task.target_mean) / task.target_std).float()
    index = {name: i for i, name in enumerate(task.labels)}
    names = examples.labels.astype(str)
    unknown = np.flatnonzero(~names.isin(list(index)).to_numpy())
    if unknown.size:
        raise DataError(f"{examples.source}: row {unknown[0] + 1}: label {names.iloc[unknown[0]]!r} is not "
                        f"one of the training labels ({', '.join(task.labels)})")
    return torch.tensor(names.map(index).to_numpy(), dtype=torch.long)


def task_metrics(task: Task, outputs: np.ndarray, targets: torch.Tensor) -> dict[str, float]:
    if task.regression:
        return regression_metrics(task.unstandardise(targets.numpy()), task.unstandardise(outputs[:, 0]))
    return classification_metrics(targets.numpy(), softmax(outputs))


def _numeric_labels(examples: Examples) -> np.ndarray:
    values = pd.to_numeric(examples.labels, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise DataError(f"{examples.source}: row {bad[0] + 1}: label {examples.labels.iloc[bad[0]]!r} is not a number")
    return values


# --- batching and inference -------------------------------------------------------------------


def length_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """Indices in batches whose sequences all have the same length. With rng, the order within
    each length and the order of the batches are shuffled."""
    tiebreak = rng.random(len(lengths)) if rng is not None else np.arange(len(lengths))
    order = np.lexsort((tiebreak, lengths))
    groups = np.split(order, np.flatnonzero(np.diff(lengths[order])) + 1)
    batches = [group[i : i + batch_size] for group in groups for i in range(0, len(group), batch_size)]
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


@torch.inference_mode()
def strand_averaged_outputs(model: SequenceClassifier, examples: Examples, batch_size: int,
                            device: torch.device) -> np.ndarray:
    """Outputs [N, n_outputs] for every sequence, averaged over both strands, in input order."""
    model.eval()
    outputs = np.empty((len(examples), model.head.out_features), dtype=np.float32)
    for batch in length_batches(examples.lengths, batch_size):
        ids = torch.stack([examples.ids[i] for i in batch]).to(device)
        with autocast_context(device):
            outputs[batch] = model.strand_averaged(ids).float().cpu().numpy()
    return outputs


def evaluate(model: SequenceClassifier, task: Task, examples: Examples, targets: torch.Tensor, batch_size: int,
             device: torch.device) -> dict[str, float]:
    start = time.perf_counter()
    metrics = task_metrics(task, strand_averaged_outputs(model, examples, batch_size, device), targets)
    metrics["seqs_per_s"] = len(examples) / (time.perf_counter() - start)
    return metrics


# --- finetune ---------------------------------------------------------------------------------


@dataclass
class FinetuneOptions:
    train: Path
    out: Path
    model: str
    val: Path | None = None
    test: Path | None = None
    seq_col: str | None = None
    label_col: str | None = None
    fasta: Path | None = None
    regression: bool = False
    generative: bool = False  # label-conditioned generation instead of a head (finetune_generative)
    freeze_backbone: bool = False
    lora_rank: int | None = None  # LoRA adapters on the backbone's lora_targets instead of training it all
    lora_alpha: float | None = None  # None: 2 x lora_rank
    # labelled variants (a VCF with --label-field, or a chrom,pos,ref,alt,label table) instead of sequences
    label_field: str | None = None
    variant_features: str = "pair"  # "alt": the ALT window; "pair": REF and ALT windows, head on [ref, alt, alt - ref]
    window: int | None = None  # variant windows, bp (default DEFAULT_VARIANT_WINDOW)
    edge: str = "pad"
    check_ref: str = "skip"
    max_n_frac: float = 0.1
    chrom_alias: Path | None = None
    holdout_chroms: list[str] = field(default_factory=list)  # test set: the training variants on these
    pooling: str | None = None  # None: the architecture's default pooling
    epochs: int = 10
    batch_size: int = 32
    lr: float | None = None  # None: default_lr
    weight_decay: float = 0.01
    warmup_frac: float = 0.1
    grad_clip: float = 1.0
    patience: int = 3
    max_steps: int | None = None
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    quiet: bool = False


def default_lr(opts: FinetuneOptions) -> float:
    """A linear probe 2e-3, LoRA adapters 1e-3, the whole model 5e-4."""
    return 2e-3 if opts.freeze_backbone else 1e-3 if opts.lora_rank else 5e-4


def selection_score(task: Task, metrics: dict[str, float]) -> float:
    """Higher is better: validation MCC for classification, minus MSE for regression."""
    return -metrics["mse"] if task.regression else metrics["mcc"]


def build_model(opts: FinetuneOptions, task: Task, device: torch.device,
                variant_pair: bool = False) -> tuple[SequenceClassifier, dict]:
    """(backbone + a zero-initialised head, the backbone's provenance). A zero head starts from
    uniform probabilities (regression: from the training mean)."""
    try:
        backbone, provenance = dnalm.load_or_preset(opts.model, seed=opts.seed, device=device)
    except dnalm.CheckpointError as exc:
        raise UsageError(f"--model: {exc}") from None
    try:
        model = SequenceClassifier(backbone, task.n_outputs, opts.pooling, variant_pair=variant_pair)
    except ValueError as exc:
        raise UsageError(f"--pooling: {exc}") from None
    torch.nn.init.zeros_(model.head.weight)
    torch.nn.init.zeros_(model.head.bias)
    backbone.requires_grad_(not opts.freeze_backbone)
    if opts.lora_rank:
        torch.manual_seed(opts.seed)
        lora.add_lora(backbone, opts.lora_rank, lora_alpha(opts), backbone.lora_targets())
    return model.to(device), provenance


def lora_alpha(opts: FinetuneOptions) -> float:
    return opts.lora_alpha if opts.lora_alpha is not None else 2.0 * opts.lora_rank


def backbone_training(opts: FinetuneOptions, backbone) -> str:
    if opts.freeze_backbone:
        return "frozen"
    if opts.lora_rank:
        adapters = sum(p.numel() for p in lora.lora_parameters(backbone))
        return (f"LoRA rank {opts.lora_rank}, alpha {lora_alpha(opts):g} on {len(backbone.lora_targets())} layers, "
                f"{adapters:,} adapter parameters")
    return "trained"


def make_optimizer(model: SequenceClassifier, opts: FinetuneOptions, lr: float) -> torch.optim.AdamW:
    if opts.freeze_backbone:
        groups = []
    elif opts.lora_rank:
        groups = [{"params": lora.lora_parameters(model.backbone), "weight_decay": opts.weight_decay}]
    else:
        groups = model.backbone.optimizer_groups(opts.weight_decay)
    groups += [{"params": [model.head.weight], "weight_decay": opts.weight_decay},
               {"params": [model.head.bias], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


def random_strands(ids: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Each example of the batch (a sequence, or a variant's REF and ALT windows together), or with
    probability 1/2 its reverse complement."""
    flip = torch.from_numpy(rng.random(len(ids)) < 0.5).view(-1, *[1] * (ids.dim() - 1))
    return torch.where(flip, reverse_complement(ids), ids)


def finetune(opts: FinetuneOptions) -> dict:
    """Train, keep the epoch with the best validation score, write the model directory opts.out and
    return its metrics (also written to opts.out/metrics.json)."""
    for name in ("epochs", "batch_size", "patience", "max_steps"):
        if getattr(opts, name) is not None and getattr(opts, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    out = Path(opts.out)
    if (out / "config.json").exists():
        raise UsageError(f"{out} already holds a model; choose a new -o")
    if opts.lora_rank is not None and opts.lora_rank < 1:
        raise UsageError("--lora-rank must be at least 1")
    if opts.lora_rank and opts.freeze_backbone:
        raise UsageError("--lora-rank adapts the backbone and --freeze-backbone freezes it; give one of them")
    if opts.generative:
        return finetune_generative(opts)
    set_threads(opts.threads)
    device = resolve_device(opts.device)
    say = (lambda message: None) if opts.quiet else log

    variants = is_variant_input(opts.train)
    if variants:
        if opts.variant_features not in VARIANT_FEATURES:
            raise UsageError(f"--variant-features {opts.variant_features!r}: choose {' or '.join(VARIANT_FEATURES)}")
        held_out = read_variant_splits(opts, say)
        train = held_out.pop("train")
    else:
        read = functools.partial(read_examples, seq_col=opts.seq_col, label_col=opts.label_col, fasta=opts.fasta)
        train = read(opts.train)
        held_out = {split: read(path) for split, path in (("val", opts.val), ("test", opts.test)) if path}
    task = task_from_training(train, opts.regression)
    train_targets = task_targets(task, train)
    held_out_targets = {split: task_targets(task, examples) for split, examples in held_out.items()}

    model, provenance = build_model(opts, task, device, variant_pair=variants and opts.variant_features == "pair")
    window = opts.window or DEFAULT_VARIANT_WINDOW
    if variants and window > model.backbone.max_seq_len:
        raise UsageError(f"--window {window}: longer than the model's max_seq_len {model.backbone.max_seq_len}")
    peak_lr = opts.lr if opts.lr is not None else default_lr(opts)
    optimizer = make_optimizer(model, opts, peak_lr)
    rng = np.random.default_rng(opts.seed)
    train_lengths = train.lengths
    total_steps = opts.epochs * len(length_batches(train_lengths, opts.batch_size))
    total_steps = min(total_steps, opts.max_steps or total_steps)
    say(f"finetune: {len(train)} training sequences, {task.kind} ({task.n_outputs} outputs), "
        f"backbone {provenance['name']} ({provenance['source']}, {backbone_training(opts, model.backbone)}), "
        f"{total_steps} steps, peak lr {peak_lr:.1e}")

    def step_loss(batch):
        ids = random_strands(torch.stack([train.ids[i] for i in batch]), rng).to(device)
        with autocast_context(device):
            outputs, aux = model.forward_with_aux(ids)
            loss = task.loss(outputs, train_targets[batch].to(device))
        # with a frozen backbone the aux loss has no parameter to act on; it is only reported
        return (loss if opts.freeze_backbone else loss + aux), {"train_loss": loss.item(), "aux_loss": aux.item()}

    def validate():
        if "val" not in held_out:
            return None
        metrics = evaluate(model, task, held_out["val"], held_out_targets["val"], opts.batch_size, device)
        return metrics, selection_score(task, metrics)

    run_start = time.perf_counter()
    epochs, step, best_epoch = train_epochs(model, optimizer, opts, train_lengths, total_steps, peak_lr, rng,
                                            step_loss, validate, say)
    metrics = {"task": task.kind, "train_examples": len(train), "steps": step,
               "best_epoch": best_epoch or len(epochs), "epochs": epochs,
               "train_seqs_per_s": sum(e["sequences"] for e in epochs) / sum(e["wall_s"] for e in epochs)}
    if best_epoch:
        metrics |= {"val_examples": len(held_out["val"]), "val": epochs[best_epoch - 1]["val"]}
    if "test" in held_out:
        metrics["test_examples"] = len(held_out["test"])
        metrics["test"] = evaluate(model, task, held_out["test"], held_out_targets["test"], opts.batch_size, device)
        say(f"finetune: test (epoch {metrics['best_epoch']}) " + _format_metrics(metrics["test"]))
    metrics["wall_s"] = time.perf_counter() - run_start

    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()}
    if opts.lora_rank:
        lora.merge_lora(model.backbone)  # the saved backbone is a plain model with the adapters folded in
        options["lora_alpha"] = lora_alpha(opts)
    trained_on = {"variant_features": opts.variant_features, "variant_window": window, "edge": opts.edge} if variants else {}
    dnalm.save_finetuned(model, task, out, strands="outputs averaged over the sequence and its reverse complement",
                         **trained_on,
                         backbone=provenance, finetune={**options, "lr": peak_lr})
    (out / "metrics.json").write_text(json.dumps(_json_safe(metrics), indent=2) + "\n")
    say(f"finetune: wrote {out}")
    return metrics


def train_epochs(model, optimizer, opts, lengths: np.ndarray, total_steps: int, peak_lr: float,
                 rng: np.random.Generator, step_loss, validate, say) -> tuple[list[dict], int, int]:
    """The fine-tuning loop both tasks share: epochs of shuffled same-length batches under the
    warm-up + cosine schedule with gradient clipping; step_loss(batch) -> (objective, {name: value}
    to report); after each epoch validate() -> (metrics, score), or None without --val, keeps the
    best epoch's weights and stops after --patience epochs without improvement. Returns (one record
    per epoch, steps taken, best epoch or 0); the model ends with the best epoch's weights."""
    epochs, step = [], 0
    best_score, best_epoch, best_state, stale_epochs = -math.inf, 0, None, 0
    for epoch in range(1, opts.epochs + 1):
        model.train()
        epoch_start = last_report = time.perf_counter()
        reported, seen = defaultdict(list), 0
        for batch in length_batches(lengths, opts.batch_size, rng):
            if step == total_steps:
                break
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total_steps, peak_lr, 0.0, opts.warmup_frac)
            objective, values = step_loss(batch)
            objective.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), opts.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            seen += len(batch)
            for name, value in values.items():
                reported[name].append(value)
            if time.perf_counter() - last_report > PROGRESS_EVERY_S:
                say(f"finetune: epoch {epoch} step {step}/{total_steps} loss {np.mean(reported['train_loss']):.4f}")
                last_report = time.perf_counter()
        wall = time.perf_counter() - epoch_start
        record = {"epoch": epoch, "steps": step, "sequences": seen,
                  **{name: float(np.mean(values)) for name, values in reported.items()},
                  "wall_s": wall, "train_seqs_per_s": seen / wall}
        status = f"finetune: epoch {epoch} loss {record['train_loss']:.4f} ({wall:.1f} s, {seen / wall:.0f} seq/s)"
        validated = validate()
        if validated is not None:
            record["val"], score = validated
            status += "; val " + _format_metrics(record["val"])
            if score > best_score:
                best_score, best_epoch, best_state, stale_epochs = score, epoch, copy.deepcopy(model.state_dict()), 0
            else:
                stale_epochs += 1
        epochs.append(record)
        say(status)
        if step == total_steps:
            break
        if stale_epochs == opts.patience:
            say(f"finetune: no validation improvement for {opts.patience} epochs; stopping")
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return epochs, step, best_epoch


def _format_metrics(metrics: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "seqs_per_s")


def _json_safe(value):
    """NaN (an undefined metric) -> null, which JSON can represent."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


# --- generative: label-conditioned next-base prediction ----------------------------------------


def label_prompts(model: dnalm.DNALM, examples: Examples) -> torch.Tensor:
    """The prompt token ids [N, k] of every example's label; DataError for a label the model has
    no tokens for."""
    by_label: dict[str, torch.Tensor] = {}
    rows = []
    for i, label in enumerate(examples.labels.astype(str)):
        if label not in by_label:
            try:
                by_label[label] = prompts.label_prompt_ids(model, label)
            except prompts.LabelError as exc:
                raise DataError(f"{examples.source}: row {i + 1}: {exc}") from None
        rows.append(by_label[label])
    return torch.stack(rows)


@torch.inference_mode()
def evaluate_generative(model: dnalm.DNALM, examples: Examples, prompt_ids: torch.Tensor, batch_size: int,
                        device: torch.device) -> dict[str, float]:
    """Next-base accuracy, loss (mean cross-entropy per base, nats) and perplexity given the labels."""
    model.eval()
    start = time.perf_counter()
    total, correct, counted = 0.0, 0, 0
    for batch in length_batches(examples.lengths, batch_size):
        ids = torch.stack([examples.ids[i] for i in batch]).to(device)
        with autocast_context(device):
            batch_total, batch_correct, batch_counted = prompts.next_base_counts(model, prompt_ids[batch].to(device), ids)
        total, correct, counted = total + batch_total, correct + batch_correct, counted + batch_counted
    loss = total / max(counted, 1)
    return {"next_base_accuracy": correct / max(counted, 1), "loss": loss, "perplexity": math.exp(loss),
            "seqs_per_s": len(examples) / (time.perf_counter() - start)}


def finetune_generative(opts: FinetuneOptions) -> dict:
    """Train a causal model to generate each training sequence given its label (prompt tokens),
    keep the epoch with the best validation next-base accuracy, write the model directory opts.out
    (a model `janus generate --label` takes) and return its metrics (also in metrics.json)."""
    for flag, given in (("--regression", opts.regression), ("--freeze-backbone", opts.freeze_backbone),
                        ("--pooling", opts.pooling), ("--lora-rank", opts.lora_rank)):
        if given:
            raise UsageError(f"{flag} does not apply to --generative (the whole model learns to generate)")
    out = Path(opts.out)
    set_threads(opts.threads)
    device = resolve_device(opts.device)
    say = (lambda message: None) if opts.quiet else log

    read = functools.partial(read_examples, seq_col=opts.seq_col, label_col=opts.label_col, fasta=opts.fasta,
                             text_labels=True)
    train = read(opts.train)
    try:
        labels = prompts.check_labels(train.labels.astype(str))
    except prompts.LabelError as exc:
        raise DataError(f"{opts.train}: {exc}") from None
    try:
        model, provenance = dnalm.load_or_preset(opts.model, seed=opts.seed, device=device)
    except dnalm.CheckpointError as exc:
        raise UsageError(f"--model: {exc}") from None
    dnalm.require(model, "generation", "janus finetune --generative")
    try:
        added = prompts.add_label_prompts(model, labels, torch.Generator().manual_seed(opts.seed))
    except prompts.LabelError as exc:
        raise DataError(f"{opts.train}: {exc}") from None
    model.to(device)
    train_prompts = label_prompts(model, train)
    held_out = {split: read(path) for split, path in (("val", opts.val), ("test", opts.test)) if path}
    held_out_prompts = {split: label_prompts(model, examples) for split, examples in held_out.items()}

    peak_lr = opts.lr if opts.lr is not None else default_lr(opts)
    optimizer = torch.optim.AdamW(model.optimizer_groups(opts.weight_decay), lr=peak_lr)
    rng = np.random.default_rng(opts.seed)
    train_lengths = train.lengths
    total_steps = opts.epochs * len(length_batches(train_lengths, opts.batch_size))
    total_steps = min(total_steps, opts.max_steps or total_steps)
    say(f"finetune: {len(train)} training sequences, generative with labels {', '.join(labels)} "
        f"({prompts.TOKENISATION}; {len(added)} new prompt tokens), model {provenance['name']} "
        f"({provenance['source']}), {total_steps} steps, peak lr {peak_lr:.1e}")

    def step_loss(batch):
        ids = torch.stack([train.ids[i] for i in batch]).to(device)
        with autocast_context(device):
            loss = prompts.conditional_loss(model, train_prompts[batch].to(device), ids)
        return loss, {"train_loss": loss.item()}

    def validate():
        if "val" not in held_out:
            return None
        metrics = evaluate_generative(model, held_out["val"], held_out_prompts["val"], opts.batch_size, device)
        return metrics, metrics["next_base_accuracy"]

    run_start = time.perf_counter()
    epochs, step, best_epoch = train_epochs(model, optimizer, opts, train_lengths, total_steps, peak_lr, rng,
                                            step_loss, validate, say)
    metrics = {"task": "generative", "labels": labels, "label_tokenisation": prompts.TOKENISATION,
               "train_examples": len(train), "steps": step, "best_epoch": best_epoch or len(epochs), "epochs": epochs,
               "train_seqs_per_s": sum(e["sequences"] for e in epochs) / sum(e["wall_s"] for e in epochs)}
    if best_epoch:
        metrics |= {"val_examples": len(held_out["val"]), "val": epochs[best_epoch - 1]["val"]}
    if "test" in held_out:
        metrics["test_examples"] = len(held_out["test"])
        metrics["test"] = evaluate_generative(model, held_out["test"], held_out_prompts["test"], opts.batch_size, device)
        say(f"finetune: test (epoch {metrics['best_epoch']}) " + _format_metrics(metrics["test"]))
    metrics["wall_s"] = time.perf_counter() - run_start

    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()}
    model.config = replace(model.config, extra={**model.config.extra, "generative_finetune": {
        "label_tokenisation": prompts.TOKENISATION, "backbone": provenance, "options": {**options, "lr": peak_lr}}})
    dnalm.save(model.eval(), out)
    (out / "metrics.json").write_text(json.dumps(_json_safe(metrics), indent=2) + "\n")
    say(f"finetune: wrote {out}")
    return metrics
