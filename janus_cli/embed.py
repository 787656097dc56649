"""`janus embed`: one pooled JanusDNA embedding (or per-position embeddings) per genomic region.

Records (BED and/or -r regions) are processed in chunks, and every chunk becomes one row group of
the output, so memory stays flat in the number of records. Each record's sequence is its region,
or a --window centred on it, fetched from the reference (strand - reverse-complemented), cut into
overlapping tiles when longer than the model's max_seq_len; the tiles' per-position hidden states
(averaged where tiles overlap) are pooled into one vector. Records that cannot be embedded are
kept with a null embedding and a skip_reason (chrom_missing, edge, empty, n_fraction).

Output columns: chrom, start, end, name, strand (as in the input), embedding
(fixed_size_list<float32>[d]; with --per-position a list of such vectors, one per base of the
sequence as read on the record's strand), embedding_rc with --rc both (the reverse-complement
pass, in forward-strand order), skip_reason.
"""

from __future__ import annotations

import shlex
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

import janusdna
from janusdna.tokenizer import reverse_complement

from . import intervals, windows
from .chroms import ChromMatcher, read_alias_table
from .errors import DataError, UsageError
from .fasta import Reference
from .inference import DTYPES, RC_MODES, StrandOutputs, WindowRunner
from .output import open_table_writer
from .reference_config import resolve_fasta
from .runtime import log, resolve_device, set_threads

POOLINGS = ("mean", "max", "center")
RECORDS_PER_CHUNK = 256
RECORD_COLUMNS = ["chrom", "start", "end", "name", "strand"]


@dataclass
class EmbedOptions:
    bed: Path | None = None
    regions: list[str] = field(default_factory=list)
    out: str | None = None
    fasta: Path | None = None
    model: str | None = None
    window: int | None = None
    edge: str = "pad"
    max_n_frac: float = 0.1
    tile_overlap: int | None = None
    pooling: str = "mean"
    per_position: bool = False
    rc: str = "avg"
    chrom_alias: Path | None = None
    batch_size: int = 16
    device: str = "auto"
    dtype: str = "float32"
    threads: int | None = None


@dataclass
class EmbedRun:
    """What every chunk of one run needs."""

    opts: EmbedOptions
    reference: Reference
    matcher: ChromMatcher
    runner: WindowRunner
    tile_length: int
    tile_overlap: int
    schema: pa.Schema


def embed(opts: EmbedOptions, argv: list[str]) -> Counter:
    """Write the embeddings; returns the number of records per skip_reason (None = embedded)."""
    _check_options(opts)
    set_threads(opts.threads)
    device = resolve_device(opts.device)
    model_name = opts.model or getattr(janusdna, "DEFAULT_MODEL", None)
    if model_name is None:
        raise UsageError("no default model is shipped with this janus yet; give --model MODEL_DIR")
    model = janusdna.load(model_name)
    max_len = model.config.max_seq_len
    overlap = max_len // 4 if opts.tile_overlap is None else opts.tile_overlap
    if not 0 <= overlap < max_len:
        raise UsageError(f"--tile-overlap {overlap}: must be at least 0 and below the model's max_seq_len {max_len}")
    runner = WindowRunner(model, device, rc=opts.rc, batch_size=opts.batch_size, dtype=DTYPES[opts.dtype])
    aliases = read_alias_table(opts.chrom_alias) if opts.chrom_alias else {}

    with Reference(resolve_fasta(opts.fasta)) as reference:
        matcher = ChromMatcher(reference.lengths, aliases)
        records = read_records(opts.bed, opts.regions, reference.lengths, matcher)
        check_some_chrom_matches(records, matcher, opts.bed, reference.path)
        metadata = {
            "janus_version": janusdna.__version__,
            "model": str(model_name),
            "model_name": model.config.name,
            "model_weights_sha256": janusdna.weights_sha256(model_name),
            "window": str(opts.window or "region"),
            "edge": opts.edge,
            "tile_overlap": str(overlap),
            "pooling": "per_position" if opts.per_position else opts.pooling,
            "rc": opts.rc,
            "dtype": opts.dtype,
            "reference": str(reference.path),
            "command_line": shlex.join(argv),
        }
        schema = output_schema(model.config.d_model, opts.per_position, opts.rc == "both")
        run = EmbedRun(opts, reference, matcher, runner, max_len, overlap, schema)
        counts = Counter()
        with open_table_writer(opts.out, schema, metadata) as writer:
            for first in range(0, len(records), RECORDS_PER_CHUNK):
                table = embed_chunk(records.iloc[first:first + RECORDS_PER_CHUNK].reset_index(drop=True), run)
                counts.update(table.column("skip_reason").to_pylist())
                writer.write(table)
    log(summary(counts))
    return counts


def _check_options(opts: EmbedOptions):
    if opts.bed is None and not opts.regions:
        raise UsageError("give a BED file of regions (- for stdin) or at least one -r chr:beg-end")
    choices = {"--pooling": (opts.pooling, POOLINGS), "--rc": (opts.rc, RC_MODES),
               "--edge": (opts.edge, windows.EDGE_MODES), "--dtype": (opts.dtype, tuple(DTYPES))}
    for option, (value, allowed) in choices.items():
        if value not in allowed:
            raise UsageError(f"{option} {value!r}: choose one of {', '.join(allowed)}")
    if opts.window is not None and opts.window < 1:
        raise UsageError(f"--window {opts.window}: must be at least 1 bp")
    if not 0.0 <= opts.max_n_frac <= 1.0:
        raise UsageError(f"--max-n-frac {opts.max_n_frac}: must be between 0 and 1")
    if opts.batch_size < 1:
        raise UsageError(f"--batch-size {opts.batch_size}: must be at least 1")


def read_records(bed: Path | None, regions: list[str], contig_lengths: dict[str, int],
                 matcher: ChromMatcher) -> pd.DataFrame:
    """BED records, then -r regions (named by their text, strand '.'): chrom, start, end, name, strand."""
    tables = []
    if bed is not None:
        from_bed = intervals.read_bed(bed)
        if from_bed.empty:
            raise DataError(f"{bed}: no BED records (the file is empty or has only header lines)")
        tables.append(from_bed[RECORD_COLUMNS])
    rows = []
    for text in regions:
        chrom, start, end = intervals.parse_region(text)
        if end is None:  # a whole contig, or to its end
            contig = matcher(chrom)
            if contig is None:
                raise UsageError(f"region {text!r}: contig {chrom!r} is not in the reference")
            end = contig_lengths[contig]
        rows.append((chrom, start, end, text, "."))
    if rows:
        tables.append(pd.DataFrame(rows, columns=RECORD_COLUMNS))
    return pd.concat(tables, ignore_index=True)


def check_some_chrom_matches(records: pd.DataFrame, matcher: ChromMatcher, bed: Path | None, fasta: Path):
    """Single unmatched records are skipped, but when no record's chromosome is in the reference
    the reference (or the alias table) is wrong, and embedding nothing would hide that."""
    if any(matcher(chrom) is not None for chrom in records["chrom"].unique()):
        return
    source = bed if bed is not None else "-r"
    raise DataError(f"{source}: record 1: chromosome {records['chrom'].iloc[0]!r} is not in {fasta}, and no "
                    "other record's chromosome is either; check the reference or give --chrom-alias")


def output_schema(d_model: int, per_position: bool, both_strands: bool) -> pa.Schema:
    vector = pa.list_(pa.float32(), d_model)
    embedding_type = pa.list_(vector) if per_position else vector
    fields = [pa.field("chrom", pa.string()), pa.field("start", pa.int64()), pa.field("end", pa.int64()),
              pa.field("name", pa.string()), pa.field("strand", pa.string()),
              pa.field("embedding", embedding_type)]
    if both_strands:
        fields.append(pa.field("embedding_rc", embedding_type))
    fields.append(pa.field("skip_reason", pa.string()))
    return pa.schema(fields)


def embed_chunk(chunk: pd.DataFrame, run: EmbedRun) -> pa.Table:
    """The output rows of one chunk of records."""
    opts = run.opts
    sequences, skip_reasons = record_sequences(chunk, run.reference, run.matcher, opts)
    tiles = [(i, span) for i, ids in sequences.items()
             for span in windows.tile_spans(len(ids), run.tile_length, run.tile_overlap)]
    tile_outputs = run.runner.run([sequences[i][start:end] for i, (start, end) in tiles])

    per_record = {i: [] for i in sequences}
    for (i, span), outputs in zip(tiles, tile_outputs):
        per_record[i].append((span, outputs))
    embeddings, embeddings_rc = [None] * len(chunk), [None] * len(chunk)
    for i, tiles in per_record.items():
        forward, reverse = stitch_tiles(tiles, len(sequences[i]))
        if opts.rc == "both":
            embeddings[i], embeddings_rc[i] = pool(forward, opts), pool(reverse, opts)
        else:
            embeddings[i] = pool(forward if reverse is None else (forward + reverse) / 2, opts)

    columns = {name: chunk[name].tolist() for name in RECORD_COLUMNS}
    columns["embedding"] = embeddings
    if opts.rc == "both":
        columns["embedding_rc"] = embeddings_rc
    columns["skip_reason"] = skip_reasons
    return pa.Table.from_pydict(columns, schema=run.schema)


def record_sequences(chunk: pd.DataFrame, reference: Reference, matcher: ChromMatcher,
                     opts: EmbedOptions) -> tuple[dict[int, torch.Tensor], list[str | None]]:
    """Token ids of each embeddable record (by row number, on the record's strand), and every
    record's skip_reason (None for the embeddable ones)."""
    contigs = [matcher(chrom) for chrom in chunk["chrom"]]
    skip_reasons: list[str | None] = [None if c is not None else windows.SKIP_CHROM_MISSING for c in contigs]
    placed = windows.centered(chunk, opts.window) if opts.window else chunk.copy()
    placed["contig"] = [c or "" for c in contigs]
    contig_lengths = pd.Series([reference.lengths.get(c, 0) for c in placed["contig"]], index=placed.index)
    placed = windows.fit_to_contigs(placed, contig_lengths, opts.edge)

    sequences = {}
    for i, row in enumerate(placed.itertuples(index=False)):
        if skip_reasons[i] is not None:
            continue
        if pd.notna(row.skip_reason):
            skip_reasons[i] = row.skip_reason
            continue
        text = "N" * row.pad_left + reference.fetch(row.contig, row.start, row.end) + "N" * row.pad_right
        if not text:
            skip_reasons[i] = windows.SKIP_EMPTY
            continue
        if windows.n_fraction(text) > opts.max_n_frac:
            skip_reasons[i] = windows.SKIP_N_FRACTION
            continue
        try:
            ids = janusdna.encode(text)
        except ValueError as exc:
            raise DataError(f"{reference.path}: {row.contig}:{row.start + 1}-{row.end} "
                            f"(record {row.name!r}): {exc}") from None
        sequences[i] = reverse_complement(ids) if row.strand == "-" else ids
    return sequences, skip_reasons


def stitch_tiles(tiles: list[tuple[tuple[int, int], StrandOutputs]], length: int):
    """Per-position outputs [length, d] of a whole sequence from its tiles, averaging overlaps;
    (forward, reverse), reverse None without a reverse-complement pass."""
    if len(tiles) == 1:
        return tiles[0][1].forward, tiles[0][1].reverse
    d = tiles[0][1].forward.shape[-1]
    coverage = torch.zeros(length, 1)
    forward = torch.zeros(length, d)
    reverse = None if tiles[0][1].reverse is None else torch.zeros(length, d)
    for (start, end), outputs in tiles:
        coverage[start:end] += 1
        forward[start:end] += outputs.forward
        if reverse is not None:
            reverse[start:end] += outputs.reverse
    return forward / coverage, None if reverse is None else reverse / coverage


def pool(states: torch.Tensor, opts: EmbedOptions):
    """[L, d] -> one vector (a list of floats), or with --per-position a list of L vectors."""
    if opts.per_position:
        return states.numpy().astype(np.float32).tolist()
    if opts.pooling == "mean":
        pooled = states.mean(0)
    elif opts.pooling == "max":
        pooled = states.max(0).values
    else:
        pooled = states[len(states) // 2]
    return pooled.numpy().astype(np.float32).tolist()


def summary(counts: Counter) -> str:
    total = sum(counts.values())
    skipped = ", ".join(f"{reason} {counts.get(reason, 0)}" for reason in windows.SKIP_REASONS)
    return f"janus: embed: {total} records, {counts.get(None, 0)} embedded, skipped: {skipped}"
