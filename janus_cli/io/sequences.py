"""Sequence inputs: a FASTA of records or a table with a sequence column, as opposed to genomic
regions (a BED) read from a reference.

The kind of an input is told from its content (detect_input_kind), so `janus embed seqs.fa`
and `janus embed regions.bed` both do the right thing whatever the files are called. Sequence
inputs are read whole into a SequenceSet, which answers like a Reference whose contigs are the
records: every window, tiling and strand option then applies to them unchanged.
"""

from __future__ import annotations

import io
import sys
import zlib
from pathlib import Path

import pandas as pd

import dnalm

from ..errors import DataError
from .fasta import GZIP_MAGIC, open_text

BED = "bed"
FASTA = "fasta"
TABLE = "table"
PARQUET_MAGIC = b"PAR1"
SNIFF_BYTES = 1 << 16
SEQUENCE_COLUMNS = ("sequence", "seq")  # looked for, in this order, when no column is named
ID_COLUMNS = ("id", "name")
INPUT_KINDS_TEXT = ("a BED file of regions (chrom, start, end, tab-separated), a FASTA of sequences (>id lines), "
                    "or a CSV/TSV/Parquet table with a sequence column")


def detect_input_kind(path: str | Path) -> str:
    """BED, FASTA or TABLE, from the first bytes of the file ('-': stdin, which stays unread)."""
    head = _peek(path)
    if head.startswith(PARQUET_MAGIC):
        return TABLE
    text = head.decode("utf-8", errors="replace")
    saw_header_lines = False
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith(("#", "track", "browser")):  # BED header lines; tables have none
            saw_header_lines = True
            continue
        if line.startswith(">"):
            return FASTA
        fields = line.split("\t") if "\t" in line else line.split()
        if saw_header_lines or (len(fields) >= 3 and fields[1].isdigit()):
            return BED
        return TABLE
    if saw_header_lines:
        return BED
    raise DataError(f"{path}: no BED records or sequences (the input is empty); expected {INPUT_KINDS_TEXT}")


def is_variant_file(path: str | Path) -> bool:
    """Whether the input is a VCF (plain or bgzipped) or a BCF, from its first bytes."""
    head = _peek(path)
    return head.startswith((b"##fileformat=VCF", b"BCF\x02"))


def _peek(path: str | Path) -> bytes:
    """The first bytes of the input, decompressed if gzipped."""
    if str(path) == "-":
        stdin = sys.stdin.buffer
        if hasattr(stdin, "peek"):
            raw = stdin.peek(SNIFF_BYTES)[:SNIFF_BYTES]
        else:  # an in-memory stdin (under test): read and rewind
            position = stdin.tell()
            raw = stdin.read(SNIFF_BYTES)
            stdin.seek(position)
    else:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: file not found")
        with open(path, "rb") as fh:
            raw = fh.read(SNIFF_BYTES)
    if raw[:2] == GZIP_MAGIC:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(raw)
    return raw


class SequenceSet:
    """Named sequences held in memory, answering like a Reference (lengths, fetch, fetch_padded)."""

    def __init__(self, source: str, sequences: dict[str, str]):
        self.path = Path(source) if source != "-" else Path("<stdin>")
        self.source = source
        self.sequences = sequences
        self.lengths = {name: len(seq) for name, seq in sequences.items()}

    def fetch(self, name: str, start: int, end: int) -> str:
        return self.sequences[name][start:end]

    def fetch_padded(self, name: str, start: int, end: int) -> str:
        """[start, end), which may reach past either end of the sequence: N there."""
        length = self.lengths[name]
        inside = self.fetch(name, max(start, 0), min(end, length))
        return "N" * max(0, min(end, 0) - start) + inside + "N" * max(0, end - max(start, length))

    def records(self) -> pd.DataFrame:
        """One record per sequence, covering all of it, in input order (chrom = name)."""
        names = list(self.sequences)
        return pd.DataFrame({"chrom": names, "start": 0, "end": [self.lengths[n] for n in names],
                             "name": names, "strand": "+"})

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_sequences(path: str | Path, seq_col: str | None = None) -> SequenceSet:
    """A FASTA of records or a table with a sequence column (and an id or name column; else the
    records are named by their row number), validated and upper-cased."""
    kind = detect_input_kind(path)
    if kind == BED:
        raise DataError(f"{path}: this is a BED file of regions, not sequences")
    pairs = _fasta_records(path) if kind == FASTA else _table_records(path, seq_col)
    sequences: dict[str, str] = {}
    for number, (name, text) in enumerate(pairs, 1):
        where = f"{path}: record {number} ({name!r})"
        if name in sequences:
            raise DataError(f"{where}: the id {name!r} is used twice; ids name the output rows, so make them unique")
        try:
            dnalm.encode(text)
        except ValueError as exc:
            raise DataError(f"{where}: {exc}") from None
        sequences[name] = text.upper()
    if not sequences:
        raise DataError(f"{path}: no sequences")
    return SequenceSet(str(path), sequences)


def _fasta_records(path):
    """(id, sequence) of each FASTA record; the id is the header up to the first whitespace."""
    handle = open_text(path)
    name, parts = None, []
    try:
        for lineno, line in enumerate(handle, 1):
            line = line.strip()
            if line.startswith(">"):
                if name is not None:
                    yield name, "".join(parts)
                name, parts = (line[1:].split() or [""])[0], []
                if not name:
                    raise DataError(f"{path}:{lineno}: a FASTA header needs an id after '>'")
            elif line and name is None:
                raise DataError(f"{path}:{lineno}: sequence text before the first '>' header")
            elif line:
                parts.append(line)
    except (EOFError, OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc}); is the file truncated or not FASTA text?") from None
    finally:
        if str(path) != "-":
            handle.close()
    if name is not None:
        yield name, "".join(parts)


def _table_records(path, seq_col: str | None):
    table = read_table(path)
    seq_col = find_column(table, path, seq_col, SEQUENCE_COLUMNS, "--seq-col")
    id_cols = [c for c in table.columns if str(c).lower() in ID_COLUMNS]
    names = table[id_cols[0]].astype(str) if id_cols else pd.Series(range(1, len(table) + 1)).astype(str)
    for name, sequence in zip(names, table[seq_col]):
        yield name, "" if pd.isna(sequence) else str(sequence)


def read_table(path: str | Path, text: bool = False) -> pd.DataFrame:
    """A CSV, TSV (told apart by the header line) or Parquet table; '-' is stdin. text: read every
    CSV/TSV column as text (so that a label such as 030 keeps its leading zero)."""
    head = _peek(path)
    try:
        if head.startswith(PARQUET_MAGIC):
            source = io.BytesIO(sys.stdin.buffer.read()) if str(path) == "-" else path
            return pd.read_parquet(source)
        header = head.decode("utf-8", errors="replace").split("\n", 1)[0]
        with open_text(path) as handle:
            # only empty cells are missing: "NA" or "N" must stay sequences
            return pd.read_csv(handle, sep="\t" if "\t" in header else ",", keep_default_na=False, na_values=[""],
                               dtype=str if text else None)
    except (DataError, FileNotFoundError):
        raise
    except Exception as exc:  # pandas and pyarrow raise many types for malformed files
        raise DataError(f"{path}: cannot read as a CSV/TSV/Parquet table: {exc}") from None


def find_column(table: pd.DataFrame, path, given: str | None, candidates: tuple[str, ...], option: str) -> str:
    if given is not None:
        if given not in table.columns:
            raise DataError(f"{path}: no column {given!r} (columns: {', '.join(map(str, table.columns))})")
        return given
    by_lower = {str(c).lower(): c for c in table.columns}
    for name in candidates:
        if name in by_lower:
            return by_lower[name]
    raise DataError(f"{path}: no {' or '.join(candidates)} column (columns: "
                    f"{', '.join(map(str, table.columns))}); name the column with {option}")
