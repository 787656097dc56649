"""Writing sequence records as FASTA: one header line carrying a record's fields, then the
sequence on one line.

    >label_1_1 label=1 log_likelihood=-270.413 rank=1
    ACGT...
"""

from __future__ import annotations

from typing import Iterable, TextIO

import pyarrow as pa

ID_COLUMN = "id"
SEQUENCE_COLUMN = "sequence"


def _field(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_fasta(stream: TextIO, tables: Iterable[pa.Table]):
    """Every row of tables as a FASTA record: >ID then key=value for every other column except
    the sequence (nulls left out), then the sequence."""
    for table in tables:
        others = [name for name in table.column_names if name not in (ID_COLUMN, SEQUENCE_COLUMN)]
        for row in table.to_pylist():
            fields = " ".join(f"{name}={_field(row[name])}" for name in others if row[name] is not None)
            stream.write(f">{row[ID_COLUMN]}{' ' + fields if fields else ''}\n{row[SEQUENCE_COLUMN]}\n")
        stream.flush()
