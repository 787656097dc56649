"""Inference records: genomic regions (BED, -r) read in chunks from a reference, or sequences (a
FASTA of records, a table) read whole; placed in model windows, fetched, and per-position
outputs stitched back from tiles.

Records are DataFrames with chrom, start, end (0-based half-open), name, strand; a sequence is a
record whose "chrom" is its own name and which covers all of it. A record's sequence is its
region, or a --window centred on it (strand - reverse-complemented). Records that cannot be used
keep a skip_reason (chrom_missing, edge, empty, n_fraction).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd
import torch

import dnalm
from dnalm import reverse_complement

from ..io import intervals, windows
from ..errors import DataError, UsageError
from ..io import sequences
from ..io.chroms import ChromMatcher, read_alias_table
from ..io.fasta import Reference
from ..io.reference_config import resolve_fasta
from .inference import InferenceOptions, StrandOutputs

RECORD_COLUMNS = ["chrom", "start", "end", "name", "strand"]
SEQUENCE_KEY_COLUMNS = ["name"]
RECORDS_PER_CHUNK = 256


@dataclass
class RecordOptions(InferenceOptions):
    """The inputs of a command that runs on regions or sequences (embed, likelihood, predict)."""

    inputs: str | Path | None = None
    regions: list[str] = field(default_factory=list)
    seq_col: str | None = None
    tile_overlap: int | None = None


@dataclass
class RecordSource:
    """Where a run's records come from: genomic regions of a reference, or sequences."""

    kind: str  # "regions" or "sequences"
    reference: Reference | sequences.SequenceSet
    matcher: ChromMatcher
    chunks: Callable[[int], Iterator[pd.DataFrame]]  # chunk size -> record chunks, in input order
    total: int | None  # the number of records, when known before reading them

    @property
    def key_columns(self) -> list[str]:
        """The record columns an output keeps: coordinates for regions, the name for sequences."""
        return RECORD_COLUMNS if self.kind == "regions" else SEQUENCE_KEY_COLUMNS

    @property
    def reference_path(self) -> Path | None:
        return self.reference.path if self.kind == "regions" else None


@contextlib.contextmanager
def open_records(inputs: str | Path | None, regions: list[str], fasta: Path | None, chrom_alias: Path | None,
                 seq_col: str | None = None) -> Iterator[RecordSource]:
    """The records of a command's input: a BED and/or -r regions of the reference (--fasta), or a
    FASTA of sequences or a table with a sequence column (told apart by content)."""
    if inputs is None and not regions:
        raise UsageError(f"give an input ({sequences.INPUT_KINDS_TEXT}; - reads stdin) or -r chr:beg-end")
    kind = sequences.detect_input_kind(inputs) if inputs is not None else sequences.BED
    if kind != sequences.BED:
        if regions:
            raise UsageError(f"-r selects regions of the reference; {inputs} holds sequences, not regions")
        with sequences.read_sequences(inputs, seq_col) as seqs:
            records = seqs.records()
            yield RecordSource("sequences", seqs, ChromMatcher(seqs.lengths),
                               lambda size: (records[i:i + size] for i in range(0, len(records), size)), len(records))
        return
    aliases = read_alias_table(chrom_alias) if chrom_alias else {}
    with Reference(resolve_fasta(fasta)) as reference:
        matcher = ChromMatcher(reference.lengths, aliases)
        yield RecordSource("regions", reference, matcher,
                           lambda size: region_chunks(inputs, regions, reference.lengths, matcher, size),
                           count_region_records(inputs, regions))


def tile_overlap(given: int | None, max_len: int) -> int:
    """--tile-overlap, or a quarter of the model's max_seq_len."""
    overlap = max_len // 4 if given is None else given
    if not 0 <= overlap < max_len:
        raise UsageError(f"--tile-overlap {overlap}: must be at least 0 and below the model's max_seq_len {max_len}")
    return overlap


def region_chunks(bed: Path | str | None, regions: list[str], contig_lengths: dict[str, int],
                  matcher: ChromMatcher, chunk_size: int) -> Iterator[pd.DataFrame]:
    """Records in chunks of up to chunk_size: the BED's, then the -r regions (named by their text,
    strand '.'). Raises DataError when there is no record, or when no record's chromosome is in
    the reference (then the reference or the alias table is wrong, and skipping everything would
    hide it)."""
    n_records, any_matched, first_chrom = 0, False, None
    for chunk in _all_region_chunks(bed, regions, contig_lengths, matcher, chunk_size):
        n_records += len(chunk)
        first_chrom = first_chrom or chunk["chrom"].iloc[0]
        any_matched = any_matched or any(matcher(c) is not None for c in chunk["chrom"].unique())
        yield chunk
    source = bed if bed is not None else "-r"
    if n_records == 0:
        raise DataError(f"{source}: no BED records (the file is empty or has only header lines)")
    if not any_matched:
        raise DataError(f"{source}: record 1: chromosome {first_chrom!r} is not in the reference, and no "
                        "other record's chromosome is either; check the reference or give --chrom-alias")


def _all_region_chunks(bed, regions, contig_lengths, matcher, chunk_size):
    if bed is not None:
        for chunk in intervals.read_bed_chunks(bed, chunk_size):
            yield chunk[RECORD_COLUMNS]
    rows = []
    for text in regions:
        chrom, start, end = intervals.parse_region(text)
        if end is None:  # a whole contig, or to its end
            contig = matcher(chrom)
            if contig is None:
                raise UsageError(f"region {text!r}: contig {chrom!r} is not in the reference")
            end = contig_lengths[contig]
        rows.append((chrom, start, end, text, "."))
    for first in range(0, len(rows), chunk_size):
        yield pd.DataFrame(rows[first:first + chunk_size], columns=RECORD_COLUMNS)


def count_region_records(bed: Path | str | None, regions: list[str]) -> int | None:
    """The number of records (for a progress total); None when the BED comes from stdin."""
    if bed is not None and str(bed) == "-":
        return None
    return len(regions) + (sum(1 for _ in intervals.bed_records(bed)) if bed is not None else 0)


def placed_windows(chunk: pd.DataFrame, contig_lengths: dict[str, int], matcher: ChromMatcher,
                   opts: InferenceOptions) -> pd.DataFrame:
    """The chunk's model windows: contig, start, end inside the contig, pad_left, pad_right (N to
    add), and skip_reason (chrom_missing or edge; missing for usable windows)."""
    contigs = [matcher(chrom) for chrom in chunk["chrom"]]
    placed = windows.centered(chunk, opts.window) if opts.window else chunk.copy()
    placed["contig"] = [c or "" for c in contigs]
    lengths = pd.Series([contig_lengths.get(c, 0) for c in placed["contig"]], index=placed.index)
    placed = windows.fit_to_contigs(placed, lengths, opts.edge)
    missing = pd.Series([c is None for c in contigs], index=placed.index)
    placed.loc[missing, "skip_reason"] = windows.SKIP_CHROM_MISSING
    return placed


def record_sequences(chunk: pd.DataFrame, reference: Reference | sequences.SequenceSet, matcher: ChromMatcher,
                     opts: InferenceOptions) -> tuple[dict[int, torch.Tensor], list[str | None]]:
    """Token ids of each usable record (by row number, on the record's strand), and every
    record's skip_reason (None for the usable ones)."""
    placed = placed_windows(chunk, reference.lengths, matcher, opts)
    skip_reasons: list[str | None] = [None if pd.isna(r) else r for r in placed["skip_reason"]]
    sequences = {}
    for i, row in enumerate(placed.itertuples(index=False)):
        if skip_reasons[i] is not None:
            continue
        text = "N" * row.pad_left + reference.fetch(row.contig, row.start, row.end) + "N" * row.pad_right
        if not text:
            skip_reasons[i] = windows.SKIP_EMPTY
            continue
        if windows.n_fraction(text) > opts.max_n_frac:
            skip_reasons[i] = windows.SKIP_N_FRACTION
            continue
        ids = encode_reference_text(text, f"{reference.path}: {row.contig}:{row.start + 1}-{row.end} (record {row.name!r})")
        sequences[i] = reverse_complement(ids) if row.strand == "-" else ids
    return sequences, skip_reasons


def encode_reference_text(text: str, where: str) -> torch.Tensor:
    """Token ids of reference text (IUPAC codes become N); other characters are a DataError
    naming `where`."""
    try:
        return dnalm.encode(text)
    except ValueError as exc:
        raise DataError(f"{where}: {exc}") from None


def stitch_tiles(tiles: list[tuple[tuple[int, int], StrandOutputs]], length: int):
    """Per-position outputs [length, ...] of a whole sequence from its tiles (see
    windows.owned_spans); (forward, reverse), reverse None without a reverse-complement pass."""
    if len(tiles) == 1:
        return tiles[0][1].forward, tiles[0][1].reverse
    owned = windows.owned_spans([span for span, _ in tiles])
    pieces = [(outputs, own_start - start, own_end - start)
              for ((start, _), outputs), (own_start, own_end) in zip(tiles, owned)]
    forward = torch.cat([outputs.forward[a:b] for outputs, a, b in pieces])
    if tiles[0][1].reverse is None:
        return forward, None
    return forward, torch.cat([outputs.reverse[a:b] for outputs, a, b in pieces])
