"""Tabular output: a Parquet file written atomically in streamed row groups, or TSV on stdout.

The Parquet file is written under a temporary name in the output directory and renamed into
place at the end; on any exception (KeyboardInterrupt included) the temporary file is removed, so
the output path holds either a complete file or nothing. Key-value metadata (provenance: janus
version, model, options, command line) is stored in the Parquet footer; TSV has none.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import DataError

STDOUT = "-"
TSV_MISSING = "."


def is_stdout(out: str | Path | None) -> bool:
    return out is None or str(out) == STDOUT


def open_table_writer(out: str | Path | None, schema: pa.Schema, metadata: dict[str, str]):
    """A context manager with write(pa.Table): Parquet at `out`, or TSV on stdout for None or '-'."""
    if is_stdout(out):
        return TsvWriter(sys.stdout, schema)
    return AtomicParquetWriter(Path(out), schema, metadata)


class AtomicParquetWriter:
    def __init__(self, path: Path, schema: pa.Schema, metadata: dict[str, str]):
        self.path = path
        self.schema = schema.with_metadata({**(schema.metadata or {}), **metadata})
        self.temp_path = path.parent / f".{path.name}.{os.getpid()}.tmp"
        self._writer = None

    def __enter__(self):
        if self.path.is_dir():
            raise DataError(f"{self.path}: is a directory; give an output file name")
        try:
            self._writer = pq.ParquetWriter(str(self.temp_path), self.schema)
        except OSError as exc:
            raise DataError(f"{self.path}: cannot write the output file ({exc})") from None
        return self

    def write(self, table: pa.Table):
        """Append the table as one row group."""
        self._writer.write_table(table.cast(self.schema))

    def __exit__(self, exc_type, exc, traceback):
        try:
            self._writer.close()
            if exc_type is None:
                os.replace(self.temp_path, self.path)
        finally:
            if self.temp_path.exists():
                self.temp_path.unlink()
        return False


class TsvWriter:
    """Header line, then one line per row; vectors as comma-joined floats, lists of vectors
    joined with ';', nulls as '.'."""

    def __init__(self, stream, schema: pa.Schema):
        self.stream = stream
        self.schema = schema

    def __enter__(self):
        self.stream.write("\t".join(self.schema.names) + "\n")
        return self

    def write(self, table: pa.Table):
        columns = [[_tsv_cell(value) for value in column.to_pylist()] for column in table.columns]
        self.stream.writelines("\t".join(row) + "\n" for row in zip(*columns))
        self.stream.flush()

    def __exit__(self, *exc):
        return False


def _tsv_cell(value) -> str:
    if value is None:
        return TSV_MISSING
    if isinstance(value, list):
        if value and isinstance(value[0], list):
            return ";".join(_tsv_cell(v) for v in value)
        return ",".join(f"{v:.7g}" for v in value)
    return str(value)
