"""Chunked table output shared by the inference commands: sharding, resuming, torchrun, progress.

A command describes its work as chunks in input order (each a few hundred records) and a function
that turns one chunk into a pyarrow Table of output rows. This module:

- keeps chunk k only when k % N == I - 1 for `--shard I/N`; under torchrun, rank r of W is shard
  r+1/W;
- for an output file, stores every finished chunk atomically in a hidden directory next to it
  (`.NAME.partial/`), so `--resume` after a crash, Ctrl-C or kill skips the finished chunks; at the
  end the chunks are written in order into the output (Parquet, TSV, or a command's own format)
  under a temporary name that is renamed into place. Under torchrun all ranks share the directory
  and rank 0 writes the output after the others are done;
- for stdout, writes each chunk as TSV as soon as it is done;
- shows a rich progress bar on stderr (records, bp/s, ETA) when stderr is a terminal.

A Parquet output records the chunks it holds (`janus_chunks`: [[chunk, rows], ...]) and its shard
(`janus_shard`), so that `janus merge` can put shard outputs back into input order.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DataError, UsageError
from .runtime import log
from ..io.windows import SKIP_REASONS

STDOUT = "-"
TSV_MISSING = "."
RUN_IDENTITY_FILE = "run.json"
# metadata that differs between the shards of one run; everything else must agree
PER_SHARD_METADATA = ("command_line", "janus_shard", "janus_chunks")

# a sink writes tables, in order, to a path (atomically) or to a text stream
Sink = Callable[[Path, Iterable[pa.Table], pa.Schema, dict], None]


@dataclass
class Chunk:
    """One unit of work: what the command's compute function needs, and its size for progress."""

    payload: object
    records: int
    bases: int


@dataclass
class StreamOptions:
    out: str | None = None  # a file, or None / '-' for TSV on stdout
    shard: str | None = None  # "I/N", 1-based
    resume: bool = False
    quiet: bool = False


@dataclass(frozen=True)
class Shard:
    index: int  # 0-based
    count: int

    def takes(self, chunk_index: int) -> bool:
        return chunk_index % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index + 1}/{self.count}"


def is_stdout(out: str | Path | None) -> bool:
    return out is None or str(out) == STDOUT


def parse_shard(text: str) -> Shard:
    match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise UsageError(f"--shard {text!r}: expected I/N with 1 <= I <= N, e.g. --shard 3/8")
    return Shard(int(match.group(1)) - 1, int(match.group(2)))


def distributed_world() -> tuple[int, int]:
    """(rank, world size) under torchrun, (0, 1) otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def write_chunks(chunks: Iterable[Chunk], compute: Callable[[object], pa.Table], schema: pa.Schema,
                 metadata: dict[str, str], opts: StreamOptions, total_records: int | None = None,
                 sinks: dict[str, Sink] | None = None) -> Counter:
    """Compute this process's chunks and write the output; returns the count of output rows per
    skip_reason (None = not skipped) over the chunks this process wrote or resumed."""
    rank, world = distributed_world()
    if opts.shard and world > 1:
        raise UsageError("--shard and torchrun both split the work; use one of them")
    shard = parse_shard(opts.shard) if opts.shard else Shard(rank, world)
    if is_stdout(opts.out):
        if opts.resume or world > 1:
            raise UsageError("--resume and torchrun need an output file (-o FILE), not stdout")
        counts = Counter()
        with Progress(total_records, opts.quiet) as progress:
            write_tsv(sys.stdout, _computed(chunks, compute, shard, progress, counts), schema)
        return counts

    out = Path(opts.out)
    sink = sink_for(out, sinks or {})
    identity = {"schema": schema.to_string(show_schema_metadata=False),
                **{k: v for k, v in metadata.items() if k not in PER_SHARD_METADATA}, "shard": str(shard)}
    store = ChunkStore(out, identity)
    with _process_group(world) as barrier:
        if rank == 0:
            store.prepare(opts.resume)
        barrier()
        with _removed_unless_interrupted(store):
            done = set(store.finished())
            with Progress(total_records, opts.quiet or rank > 0) as progress:
                for index, table in _computed(chunks, compute, shard, progress, None, done):
                    store.write(index, table)
            barrier()
            counts = Counter()
            if rank == 0:
                indices = store.finished()
                for i in indices:
                    counts.update(store.read(i, columns=["skip_reason"]).column("skip_reason").to_pylist())
                full_metadata = {**metadata, "janus_shard": "" if world > 1 else _shard_text(shard),
                                 "janus_chunks": json.dumps([[i, store.rows(i)] for i in indices])}
                sink(out, (store.read(i) for i in indices), schema, full_metadata)
                store.remove()
            barrier()
    return counts


def log_summary(message: str):
    """The run's closing summary line on stderr, once: under torchrun rank 0 writes the output and
    holds the whole run's counts."""
    if distributed_world()[0] == 0:
        log(message)


def format_skips(counts: Counter, reasons=SKIP_REASONS) -> str:
    """'chrom_missing 0, edge 1, ...': the skip counts of a run summary, every reason listed."""
    return ", ".join(f"{reason} {counts.get(reason, 0)}" for reason in reasons)


def _shard_text(shard: Shard) -> str:
    return "" if shard.count == 1 else str(shard)


def _computed(chunks, compute, shard: Shard, progress: "Progress", counts: Counter | None,
              done: set[int] | None = None) -> Iterator:
    """This shard's chunks computed in order: tables (stdout, counting skip reasons into counts)
    or (index, table) (file output); the finished chunks of a resumed run are passed over."""
    for index, chunk in enumerate(chunks):
        if not shard.takes(index):
            continue
        if done is not None and index in done:
            progress.advance(chunk.records, 0)
            continue
        table = compute(chunk.payload)
        progress.advance(chunk.records, chunk.bases)
        if counts is None:
            yield index, table
        else:
            counts.update(table.column("skip_reason").to_pylist())
            yield table


class ChunkStore:
    """Finished chunks of one output as Parquet files in a hidden directory beside it."""

    def __init__(self, out: Path, identity: dict):
        self.out = out
        self.directory = out.parent / f".{out.name}.partial"
        self.identity = identity

    def prepare(self, resume: bool):
        if not self.out.parent.is_dir():
            raise DataError(f"{self.out}: the output directory {self.out.parent} does not exist")
        if self.out.is_dir():
            raise DataError(f"{self.out}: is a directory; give an output file name")
        identity_file = self.directory / RUN_IDENTITY_FILE
        if resume and identity_file.is_file():
            started = json.loads(identity_file.read_text())
            changed = sorted(k for k in set(started) | set(self.identity) if started.get(k) != self.identity.get(k))
            if changed:
                raise UsageError(
                    f"{self.out}: the interrupted run was started with different settings ({', '.join(changed)}); "
                    "rerun it with the same options, or without --resume to start over")
            log(f"janus: resuming {self.out}: {len(self.finished())} chunks already done")
            return
        if resume:
            log(f"janus: note: no interrupted run of {self.out} to resume; starting from the beginning")
        shutil.rmtree(self.directory, ignore_errors=True)
        try:
            self.directory.mkdir()
            _write_atomically(identity_file, lambda path: path.write_text(json.dumps(self.identity, indent=1)))
        except OSError as exc:
            raise DataError(f"{self.out}: cannot write in {self.out.parent} ({exc}); "
                            "choose a writable output directory") from None

    def _path(self, index: int) -> Path:
        return self.directory / f"chunk-{index:09d}.parquet"

    def finished(self) -> list[int]:
        if not self.directory.is_dir():
            return []
        return sorted(int(p.stem.split("-")[1]) for p in self.directory.glob("chunk-*.parquet"))

    def write(self, index: int, table: pa.Table):
        _write_atomically(self._path(index), lambda path: pq.write_table(table, path))

    def read(self, index: int, columns: list[str] | None = None) -> pa.Table:
        return pq.read_table(self._path(index), columns=columns)

    def rows(self, index: int) -> int:
        return pq.read_metadata(self._path(index)).num_rows

    def remove(self):
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def _removed_unless_interrupted(store: ChunkStore):
    """Keep the finished chunks when the run is interrupted (for --resume); an error in the data
    or the options removes them, so a failed run leaves nothing behind."""
    try:
        yield
    except KeyboardInterrupt:
        if store.finished():
            log(f"janus: interrupted; {len(store.finished())} finished chunks kept in {store.directory}; "
                "rerun the same command with --resume to continue")
        raise
    except BaseException:
        if distributed_world()[0] == 0:
            store.remove()
        raise


@contextlib.contextmanager
def _process_group(world: int):
    """A barrier across torchrun ranks (gloo, so it works on CPU); a no-op in one process."""
    if world == 1:
        yield lambda: None
        return
    import datetime

    import torch.distributed as dist

    started_here = not dist.is_initialized()
    if started_here:
        # ranks wait for each other's whole share of the work: allow long runs
        dist.init_process_group("gloo", timeout=datetime.timedelta(days=7))
    try:
        yield dist.barrier
    finally:
        if started_here:
            dist.destroy_process_group()


def _write_atomically(path: Path, write: Callable[[Path], None]):
    temp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        write(temp)
        os.replace(temp, path)
    finally:
        if temp.exists():
            temp.unlink()


# --- sinks --------------------------------------------------------------------------------------


def sink_for(out: Path, sinks: dict[str, Sink]) -> Sink:
    """The sink for an output file name: a command's own formats by suffix, .tsv, else Parquet."""
    name = out.name.lower()
    for suffix, sink in {**sinks, ".tsv": write_tsv_file}.items():
        if name.endswith(suffix):
            return sink
    return write_parquet


def write_parquet(path: Path, tables: Iterable[pa.Table], schema: pa.Schema, metadata: dict):
    schema = schema.with_metadata({**(schema.metadata or {}), **metadata})

    def write(temp: Path):
        with pq.ParquetWriter(str(temp), schema) as writer:
            for table in tables:
                writer.write_table(table.cast(schema))

    write_output_file(path, write)


def write_tsv_file(path: Path, tables: Iterable[pa.Table], schema: pa.Schema, metadata: dict):
    def write(temp: Path):
        with open(temp, "w") as stream:
            write_tsv(stream, tables, schema)

    write_output_file(path, write)


def write_output_file(path: Path, write: Callable[[Path], None]):
    """write(temp) then rename to path; an OSError becomes a DataError naming path."""
    try:
        _write_atomically(path, write)
    except OSError as exc:
        raise DataError(f"{path}: cannot write the output file ({exc})") from None


def write_tsv(stream, tables: Iterable[pa.Table], schema: pa.Schema):
    """Header line, then one line per row: floats with 7 significant digits, vectors as
    comma-joined floats, lists of vectors joined with ';', nulls as '.'."""
    stream.write("\t".join(schema.names) + "\n")
    for table in tables:
        columns = [[_tsv_cell(value) for value in column.to_pylist()] for column in table.columns]
        stream.writelines("\t".join(row) + "\n" for row in zip(*columns))
        stream.flush()


def _tsv_cell(value) -> str:
    if value is None:
        return TSV_MISSING
    if isinstance(value, float):
        return f"{value:.7g}"
    if isinstance(value, list):
        if value and isinstance(value[0], list):
            return ";".join(_tsv_cell(v) for v in value)
        return ",".join(f"{v:.7g}" for v in value)
    return str(value)


# --- progress -----------------------------------------------------------------------------------


class Progress:
    """A rich progress bar on stderr (records done of total, bp/s, ETA), only on a terminal."""

    def __init__(self, total_records: int | None, quiet: bool):
        self.enabled = not quiet and sys.stderr.isatty()
        self.total = total_records
        self._bar = None

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, \
                TimeElapsedColumn, TimeRemainingColumn

            self._bar = RichProgress(
                TextColumn("records"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[bp_per_s]} bp/s"), TimeElapsedColumn(), TextColumn("ETA"),
                TimeRemainingColumn(), console=Console(stderr=True), transient=False)
            self._bar.start()
            self._task = self._bar.add_task("records", total=self.total, bp_per_s="-")
            self._bases = 0
        return self

    def advance(self, records: int, bases: int):
        if self._bar is None:
            return
        self._bases += bases
        elapsed = self._bar.tasks[0].elapsed or 0.0
        rate = f"{self._bases / elapsed:,.0f}" if elapsed > 0 else "-"
        self._bar.update(self._task, advance=records, bp_per_s=rate)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.stop()
        return False
