"""Model windows over genomic intervals: pure functions over DataFrames with 0-based half-open
columns chrom, start, end (bioframe style), plus the per-window sequence checks.

A record's window is the region itself, or with `window` bp a fixed-length window centred on it.
Near a contig end the window is padded with N (`pad`), moved inside the contig (`shift`), or the
record is skipped (`skip`). A window longer than the model's length is cut into overlapping tiles;
each position takes its output from the tile in which it lies farthest from an edge (so it has
context on both sides, which a bidirectional model needs), which makes tiles independent of each
other and lets long regions stream.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

EDGE_MODES = ("pad", "shift", "skip")

# skip_reason values, in the order the summary lists them
SKIP_CHROM_MISSING = "chrom_missing"
SKIP_EDGE = "edge"
SKIP_EMPTY = "empty"
SKIP_N_FRACTION = "n_fraction"
SKIP_REASONS = (SKIP_CHROM_MISSING, SKIP_EDGE, SKIP_EMPTY, SKIP_N_FRACTION)


def centered(df: pd.DataFrame, window: int) -> pd.DataFrame:
    """Replace start/end by a window of `window` bp centred on each interval (the extra base of an
    odd difference goes to the right)."""
    out = df.copy()
    center = (df["start"] + df["end"]) // 2
    out["start"] = center - window // 2
    out["end"] = out["start"] + window
    return out


def fit_to_contigs(df: pd.DataFrame, contig_lengths: pd.Series, edge: str) -> pd.DataFrame:
    """Windows made to lie inside their contig (contig_lengths: one length per row of df).

    Adds pad_left and pad_right (N bases to add outside the contig, for `pad`) and skip_reason:
    `edge` for windows sticking out with `skip`, too long for their contig with `shift`, or not
    touching the contig at all in any mode; missing otherwise. start/end end up inside the contig."""
    if edge not in EDGE_MODES:
        raise ValueError(f"edge mode {edge!r}: choose one of {', '.join(EDGE_MODES)}")
    out = df.copy()
    start, end = df["start"].to_numpy(np.int64), df["end"].to_numpy(np.int64)
    length = contig_lengths.to_numpy(np.int64)
    sticks_out = (start < 0) | (end > length)
    skip = (end <= 0) | (start >= length)
    if edge == "skip":
        skip |= sticks_out
    elif edge == "shift":
        skip |= (end - start) > length
        shift = np.where(start < 0, -start, 0) - np.where(end > length, end - length, 0)
        start, end = start + shift, end + shift
    pad_left = np.clip(-start, 0, None) if edge == "pad" else np.zeros_like(start)
    pad_right = np.clip(end - length, 0, None) if edge == "pad" else np.zeros_like(start)
    out["start"], out["end"] = np.clip(start, 0, length), np.clip(end, 0, length)
    out["pad_left"], out["pad_right"] = np.where(skip, 0, pad_left), np.where(skip, 0, pad_right)
    out["skip_reason"] = np.where(skip, SKIP_EDGE, None)
    return out


def n_fraction(sequence: str) -> float:
    """Fraction of bases that are N (ambiguity codes count as N)."""
    if not sequence:
        return 0.0
    return 1.0 - sum(sequence.count(base) for base in "ACGT") / len(sequence)


def tile_spans(length: int, tile_length: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) offsets of tiles covering 0..length: tile_length long, consecutive tiles
    overlapping by at least `overlap`; the last tile ends at `length`. One span when it fits."""
    if length <= tile_length:
        return [(0, length)]
    stride = tile_length - overlap
    if stride <= 0:
        raise ValueError(f"tile overlap {overlap} must be smaller than the tile length {tile_length}")
    starts = list(range(0, length - tile_length, stride)) + [length - tile_length]
    return [(s, s + tile_length) for s in starts]


def owned_spans(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """For overlapping tiles (from tile_spans), the [start, end) each tile provides outputs for:
    overlaps are split at their middle, so every position comes from the tile where it is
    farthest from an edge, and the owned spans partition the whole range."""
    cuts = [spans[0][0]]
    for (_, left_end), (right_start, _) in zip(spans, spans[1:]):
        cuts.append((right_start + left_end) // 2)
    cuts.append(spans[-1][1])
    return list(zip(cuts[:-1], cuts[1:]))
