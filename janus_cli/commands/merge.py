"""`janus merge`: gather the Parquet outputs of one run's shards (--shard I/N) into one file, in
input order.

Each shard output records the chunks it holds (janus_chunks: [[chunk, rows], ...]) and its shard
(janus_shard). The shards must come from the same run: every other metadata item (model and its
sha256, window, options, janus version, ...) must agree, all N shards must be present once, and
together they must hold every chunk exactly once. Rows are then written chunk by chunk, reading
each shard sequentially, so memory stays flat.
"""

from __future__ import annotations

import heapq
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DataError, UsageError
from ..engine.runtime import log
from ..engine.streaming import PER_SHARD_METADATA, is_stdout, sink_for, write_tsv

MERGED_FROM = "janus_merged_from"


def merge(inputs: list[Path], out: str | None) -> int:
    """Write the merged table to out (Parquet, .tsv, or TSV on stdout); returns the row count."""
    if not inputs:
        raise UsageError("give the shard outputs to merge")
    files = [_open_shard(path) for path in inputs]
    first_path, first_file, _ = files[0]
    reference_meta = _run_metadata(first_file)
    for path, parquet, _ in files[1:]:
        meta = _run_metadata(parquet)
        changed = sorted(k for k in set(meta) | set(reference_meta) if meta.get(k) != reference_meta.get(k))
        if changed:
            raise DataError(f"{path}: not from the same run as {first_path}: {', '.join(changed)} differ; "
                            "merge only the shards of one command")
        if parquet.schema_arrow != first_file.schema_arrow:
            raise DataError(f"{path}: its columns differ from {first_path}'s; merge only the shards of one command")
    _check_shards(files)

    held_by = Counter(index for _, _, held in files for index, _ in held)
    duplicates = sorted(i for i, n in held_by.items() if n > 1)
    if duplicates:
        raise DataError(f"chunk {duplicates[0]} is in more than one input; give each shard's output once")
    missing = sorted(set(range(max(held_by, default=-1) + 1)) - set(held_by))
    if missing:
        raise DataError(f"chunk {missing[0]} is in none of the inputs; is a shard's output missing or incomplete?")

    schema = first_file.schema_arrow
    metadata = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
    metadata.update(janus_shard="", janus_chunks=json.dumps([[i, rows] for i, rows in _all_held(files)]),
                    **{MERGED_FROM: json.dumps([str(path) for path, _, _ in files])})
    schema = schema.remove_metadata()
    tables = _tables_in_order(files)
    if is_stdout(out):
        write_tsv(sys.stdout, tables, schema)
    else:
        sink_for(Path(out), {})(Path(out), tables, schema, metadata)
    n_rows = sum(parquet.metadata.num_rows for _, parquet, _ in files)
    log(f"janus: merge: {n_rows} rows from {len(files)} shards")
    return n_rows


def _open_shard(path: Path) -> tuple[Path, pq.ParquetFile, list[tuple[int, int]]]:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a Parquet file ({exc}); janus merge takes Parquet outputs of --shard runs") from None
    meta = parquet.schema_arrow.metadata or {}
    if b"janus_chunks" not in meta:
        raise DataError(f"{path}: no janus_chunks metadata; janus merge takes Parquet outputs of janus --shard runs")
    held = [tuple(pair) for pair in json.loads(meta[b"janus_chunks"])]
    return path, parquet, held


def _run_metadata(parquet: pq.ParquetFile) -> dict[str, str]:
    meta = {k.decode(): v.decode() for k, v in (parquet.schema_arrow.metadata or {}).items()}
    return {k: v for k, v in meta.items() if k not in PER_SHARD_METADATA and k != MERGED_FROM}


def _check_shards(files):
    shards = [parquet.schema_arrow.metadata.get(b"janus_shard", b"").decode() for _, parquet, _ in files]
    if all(not s for s in shards):
        return
    counts = {s.split("/")[1] for s in shards if s}
    if len(counts) != 1 or not all(shards):
        raise DataError(f"the inputs come from different --shard splits ({', '.join(s or 'none' for s in shards)}); "
                        "merge the N outputs of one --shard I/N split")
    n = int(counts.pop())
    present = sorted(int(s.split("/")[0]) for s in shards)
    if present != list(range(1, n + 1)):
        absent = sorted(set(range(1, n + 1)) - set(present))
        detail = f"shard {absent[0]}/{n} is missing" if absent else "a shard is given twice"
        raise DataError(f"{detail}; give every shard's output once")


def _all_held(files):
    return sorted(pair for _, _, held in files for pair in held)


def _tables_in_order(files) -> Iterator[pa.Table]:
    """Every chunk's rows, in chunk order, reading each shard front to back."""
    readers = [_chunk_tables(parquet, held) for _, parquet, held in files]
    order = heapq.merge(*[[(index, position) for index, _ in held] for position, (_, _, held) in enumerate(files)])
    for _, position in order:
        yield next(readers[position])


def _chunk_tables(parquet: pq.ParquetFile, held: list[tuple[int, int]]) -> Iterator[pa.Table]:
    """The file's rows cut into its chunks."""
    batches = parquet.iter_batches(batch_size=65536)
    buffered: list[pa.RecordBatch] = []
    n_buffered = 0
    for _, rows in held:
        while n_buffered < rows:
            batch = next(batches)
            buffered.append(batch)
            n_buffered += batch.num_rows
        table = pa.Table.from_batches(buffered, schema=parquet.schema_arrow)
        yield table.slice(0, rows)
        rest = table.slice(rows)
        buffered, n_buffered = rest.to_batches(), rest.num_rows
