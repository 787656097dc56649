"""Reference FASTA access through an index: plain or bgzipped, soft-masked bases upper-cased."""

from __future__ import annotations

import gzip
import io
import sys
from pathlib import Path

import pysam

from .errors import DataError

GZIP_MAGIC = b"\x1f\x8b"


def is_plain_gzip(path: Path) -> bool:
    """gzip but not BGZF: BGZF blocks carry the 'BC' extra subfield, plain gzip does not."""
    with open(path, "rb") as fh:
        head = fh.read(18)
    return head[:2] == GZIP_MAGIC and not (head[3] & 4 and head[12:14] == b"BC")


class Reference:
    """An indexed FASTA. fetch() returns upper-case text; the index is created when missing."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: reference FASTA not found")
        if is_plain_gzip(self.path):
            raise DataError(
                f"{self.path}: gzip-compressed but not bgzip, so it cannot be indexed; "
                f"recompress it: zcat {self.path} | bgzip > {self.path.with_suffix('.bgz')}"
            )
        try:
            self._fasta = pysam.FastaFile(str(self.path))
        except (OSError, ValueError) as exc:
            raise DataError(
                f"{self.path}: cannot open or index this FASTA ({exc}); "
                "check that it is FASTA and that its directory is writable for the .fai index"
            ) from exc
        self.lengths: dict[str, int] = dict(zip(self._fasta.references, self._fasta.lengths))

    def fetch(self, chrom: str, start: int, end: int) -> str:
        """Sequence of [start, end) (0-based half-open), upper-cased."""
        return self._fasta.fetch(chrom, start, end).upper()

    def fetch_padded(self, chrom: str, start: int, end: int) -> str:
        """Sequence of [start, end), which may reach past either end of the contig: N there."""
        length = self.lengths[chrom]
        inside = self.fetch(chrom, max(start, 0), min(end, length)) if start < length and end > 0 else ""
        return "N" * max(0, min(end, 0) - start) + inside + "N" * max(0, end - max(start, length))

    def close(self):
        self._fasta.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_text(path: str | Path):
    """Open a text input that may be gzipped/bgzipped; '-' is stdin (gzipped or not)."""
    if str(path) == "-":
        stdin = sys.stdin.buffer
        if not hasattr(stdin, "peek"):  # e.g. an in-memory stdin under test
            stdin = io.BufferedReader(stdin)
        if stdin.peek(2)[:2] == GZIP_MAGIC:
            return io.TextIOWrapper(gzip.GzipFile(fileobj=stdin))
        return io.TextIOWrapper(stdin)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == GZIP_MAGIC:
        return gzip.open(path, "rt")
    return open(path, "rt")
