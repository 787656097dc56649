"""Genomic regions as inference records: read in chunks from BED and -r, placed in model windows,
fetched from the reference, and per-position outputs stitched back from tiles.

Records are DataFrames with chrom, start, end (0-based half-open), name, strand. A record's
sequence is its region, or a --window centred on it, fetched from the reference (strand -
reverse-complemented). Records that cannot be used keep a skip_reason (chrom_missing, edge,
empty, n_fraction).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pandas as pd
import torch

import janusdna
from janusdna.tokenizer import reverse_complement

from . import intervals, windows
from .chroms import ChromMatcher
from .errors import DataError, UsageError
from .fasta import Reference
from .inference import InferenceOptions, StrandOutputs

RECORD_COLUMNS = ["chrom", "start", "end", "name", "strand"]


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


def record_sequences(chunk: pd.DataFrame, reference: Reference, matcher: ChromMatcher,
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
        return janusdna.encode(text)
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
