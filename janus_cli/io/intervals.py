"""Genomic intervals as pandas DataFrames with 0-based half-open columns chrom, start, end, and
small pure functions over them (in the spirit of bioframe)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..errors import UsageError

COLUMNS = ["chrom", "start", "end"]

_REGION = re.compile(r"^(?P<chrom>[^:\s]+)(?::(?P<beg>[\d,]+)?(?:-(?P<end>[\d,]+)?)?)?$")


def parse_region(text: str, contig_lengths: dict[str, int] | None = None) -> tuple[str, int, int | None]:
    """'chr:beg-end' (1-based inclusive, commas allowed, like samtools) -> (chrom, start0, end0)
    0-based half-open. 'chr' alone is the whole contig; 'chr:beg' runs to its end."""
    m = _REGION.match(text.strip())
    if not m:
        raise UsageError(f"bad region {text!r}: expected chrom, chrom:beg or chrom:beg-end (1-based)")
    chrom = m.group("chrom")
    beg = int(m.group("beg").replace(",", "")) if m.group("beg") else 1
    end = int(m.group("end").replace(",", "")) if m.group("end") else None
    if contig_lengths is not None:
        if chrom not in contig_lengths:
            raise UsageError(f"region {text!r}: contig {chrom!r} is not in the reference")
        end = contig_lengths[chrom] if end is None else min(end, contig_lengths[chrom])
    if beg < 1 or (end is not None and end < beg):
        raise UsageError(f"bad region {text!r}: need 1 <= beg <= end")
    return chrom, beg - 1, end


def from_contigs(contig_lengths: dict[str, int]) -> pd.DataFrame:
    return pd.DataFrame(
        {"chrom": list(contig_lengths), "start": 0, "end": list(contig_lengths.values())}, columns=COLUMNS
    )


def from_regions(regions: list[str], contig_lengths: dict[str, int]) -> pd.DataFrame:
    rows = [parse_region(r, contig_lengths) for r in regions]
    return pd.DataFrame(rows, columns=COLUMNS)


def merge(df: pd.DataFrame) -> pd.DataFrame:
    """Union of overlapping or touching intervals, sorted."""
    out = []
    for chrom, group in df.sort_values(["chrom", "start"]).groupby("chrom", sort=True):
        cur_start, cur_end = None, None
        for start, end in zip(group["start"], group["end"]):
            if cur_end is not None and start <= cur_end:
                cur_end = max(cur_end, end)
            else:
                if cur_end is not None:
                    out.append((chrom, cur_start, cur_end))
                cur_start, cur_end = start, end
        if cur_end is not None:
            out.append((chrom, cur_start, cur_end))
    return pd.DataFrame(out, columns=COLUMNS)


def subtract(df: pd.DataFrame, remove: pd.DataFrame) -> pd.DataFrame:
    """Parts of df's intervals not covered by any interval of remove."""
    remove = merge(remove)
    out = []
    for chrom, start, end in merge(df)[COLUMNS].itertuples(index=False):
        cuts = remove[(remove["chrom"] == chrom) & (remove["end"] > start) & (remove["start"] < end)]
        pos = start
        for cut_start, cut_end in zip(cuts["start"], cuts["end"]):
            if cut_start > pos:
                out.append((chrom, pos, cut_start))
            pos = max(pos, cut_end)
        if pos < end:
            out.append((chrom, pos, end))
    return pd.DataFrame(out, columns=COLUMNS)


def keep_chroms(df: pd.DataFrame, chroms: set[str], keep: bool = True) -> pd.DataFrame:
    mask = df["chrom"].isin(chroms)
    return df[mask if keep else ~mask].reset_index(drop=True)


def window_starts_table(df: pd.DataFrame, window: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Intervals that can hold a window of this length, and the cumulative count of valid window
    starts through each of them (for uniform sampling of windows over all intervals)."""
    fits = df[(df["end"] - df["start"]) >= window].reset_index(drop=True)
    counts = (fits["end"] - fits["start"] - window + 1).to_numpy(dtype=np.int64)
    return fits, np.cumsum(counts)


def bed_records(path):
    """(line number, fields) of every record of a BED file ('-' is stdin, gzip/bgzip accepted);
    track/browser/'#' lines and blank lines are skipped. Fields are tab-separated (whitespace when
    a line has fewer than 3 tabs' worth)."""
    from ..errors import DataError
    from .fasta import open_text

    handle = open_text(path)
    try:
        for lineno, line in enumerate(handle, 1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            fields = line.rstrip("\r\n").split("\t")
            yield lineno, fields if len(fields) >= 3 else line.split()
    except (EOFError, OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc}); is the file truncated or not BED text?") from None
    finally:
        if str(path) != "-":
            handle.close()


BED_COLUMNS = COLUMNS + ["name", "score", "strand"]


def read_bed_chunks(path, chunk_size: int):
    """BED3 to BED6+ as DataFrames of up to chunk_size records, in file order: chrom, start, end,
    name, score, strand. Errors name the file and line."""
    from ..errors import DataError

    rows = []
    for lineno, fields in bed_records(path):
        where = f"{path}:{lineno}"
        if len(fields) < 3:
            raise DataError(f"{where}: a BED line needs at least 3 columns (chrom, start, end)")
        try:
            start, end = int(fields[1]), int(fields[2])
        except ValueError:
            raise DataError(f"{where}: start and end must be integers, got {fields[1]!r} and {fields[2]!r}") from None
        if not 0 <= start <= end:
            raise DataError(f"{where}: need 0 <= start <= end, got start={start} end={end}")
        # an empty optional column (seen in real files) means the same as a missing one
        name, score, strand = ((fields[i] if len(fields) > i and fields[i] else ".") for i in (3, 4, 5))
        if strand not in ("+", "-", "."):
            raise DataError(f"{where}: strand must be +, - or ., got {strand!r}")
        rows.append((fields[0], start, end, name, score, strand))
        if len(rows) == chunk_size:
            yield pd.DataFrame(rows, columns=BED_COLUMNS)
            rows = []
    if rows:
        yield pd.DataFrame(rows, columns=BED_COLUMNS)


def read_bed(path) -> pd.DataFrame:
    """A whole BED file as one DataFrame (see read_bed_chunks)."""
    chunks = list(read_bed_chunks(path, chunk_size=1 << 16))
    return pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame(columns=BED_COLUMNS)
