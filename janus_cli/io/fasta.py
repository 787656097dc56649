"""Reference FASTA access through an index: plain or bgzipped, soft-masked bases upper-cased."""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import time
import uuid
import zlib
from pathlib import Path

import pysam

from ..errors import DataError

GZIP_MAGIC = b"\x1f\x8b"


def is_plain_gzip(path: Path) -> bool:
    """gzip but not BGZF: BGZF blocks carry the 'BC' extra subfield, plain gzip does not."""
    with open(path, "rb") as fh:
        head = fh.read(18)
    return head[:2] == GZIP_MAGIC and not (len(head) >= 14 and head[3] & 4 and head[12:14] == b"BC")


class Reference:
    """An indexed FASTA. fetch() returns upper-case text; the index is created when missing."""

    def __init__(self, path: str | Path):
        self.path = Path(path)  # as given: what metadata and messages name
        if not self.path.is_file():
            raise DataError(f"{self.path}: reference FASTA not found")
        # the file actually opened: the path itself, or for plain gzip an indexed bgzip copy in the cache
        self.opened_path = bgzip_copy(self.path) if is_plain_gzip(self.path) else self.path
        try:
            self._fasta = pysam.FastaFile(str(self.opened_path))
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


# --- indexed bgzip copies of plain-gzip FASTA files -------------------------------------------------
#
# Layout, under cache_dir()/fasta/:
#   <name>-<key>/            one finished copy; <key> hashes the source's absolute path, size and mtime
#       <name>               the bgzip copy      (<name> is the source's file name, e.g. hg38.fa.gz)
#       <name>.fai, .gzi     its indexes
#       source.json          {"format", "source", "size", "mtime_ns", ...}: what it was made from
#   .partial-<key>-<pid>-<random>/   a copy being made; never read; renamed to <name>-<key> when whole
#
# A copy is built entirely inside its own .partial directory (bgzip file, then .fai and .gzi, then
# source.json) and published with one rename of that directory, so <name>-<key> either does not
# exist or is complete: an interrupted run leaves only a .partial directory, which no run reads (and
# which a later conversion removes once nothing in it has changed for an hour). Two processes
# converting the same file each build their own .partial directory; the first rename wins and the
# other uses the winner's copy and deletes its own. A newer copy of a source replaces older ones.

CACHE_FORMAT = 1
CHUNK = 1 << 20
LEFTOVER_AGE = 3600.0  # seconds without a change after which a .partial directory is a killed run's


def cache_dir() -> Path:
    """$JANUS_CACHE_DIR, else ${XDG_CACHE_HOME:-~/.cache}/janus."""
    if os.environ.get("JANUS_CACHE_DIR"):
        return Path(os.environ["JANUS_CACHE_DIR"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "janus"


def _source_record(path: Path) -> dict:
    source = path.resolve()
    st = source.stat()
    return {"format": CACHE_FORMAT, "source": str(source), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _cache_key(record: dict) -> str:
    text = "\0".join(str(record[k]) for k in ("format", "source", "size", "mtime_ns"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _read_record(entry: Path) -> dict | None:
    try:
        return json.loads((entry / "source.json").read_text())
    except (OSError, ValueError):
        return None


def _is_complete(entry: Path, name: str, record: dict) -> bool:
    """entry is a finished copy of the source described by record."""
    found = _read_record(entry)
    return (isinstance(found, dict) and all(found.get(k) == record[k] for k in ("format", "source", "size", "mtime_ns"))
            and all((entry / f).is_file() for f in (name, name + ".fai", name + ".gzi")))


def _remove(path: Path):
    shutil.rmtree(path, ignore_errors=True)


def _recompress_hint(path: Path) -> str:
    target = path.with_name(path.name[:-3] + ".bgz") if path.name.endswith(".gz") else Path(str(path) + ".bgz")
    return f"zcat {path} | bgzip > {target}"


def _cannot_write(path: Path, where: Path, exc: OSError) -> DataError:
    return DataError(
        f"{path}: gzip-compressed but not bgzip, and an indexed bgzip copy cannot be written in the cache "
        f"directory {where} ({exc.strerror or exc}); set JANUS_CACHE_DIR to a writable directory with room "
        f"for a compressed copy, or recompress the file once yourself: {_recompress_hint(path)}"
    )


def bgzip_from_gzip(source: Path, target: Path):
    """Stream plain-gzip source (one or more members) into a new bgzip file target. Level 1: on DNA it
    compresses ~8x faster than the default level 6 (minutes, not a quarter of an hour, for hg38) for a
    copy ~13% larger."""
    with gzip.open(source, "rb") as src, pysam.BGZFile(str(target), "wb1") as out:
        while chunk := src.read(CHUNK):
            out.write(chunk)


def _partial_dir(root: Path, key: str) -> Path:
    return root / f".partial-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _clean_leftovers(root: Path, quiet_for: float = LEFTOVER_AGE):
    """Remove .partial directories of killed runs (best effort). A live conversion keeps touching its
    files (the bgzip copy grows, then the indexes appear), so one idle for quiet_for seconds is dead;
    this needs no process ids, which mean nothing across hosts or containers sharing the cache."""
    now = time.time()
    for partial in root.glob(".partial-*"):
        try:
            last = max([partial.stat().st_mtime] + [f.stat().st_mtime for f in partial.iterdir()])
        except OSError:
            continue
        if now - last > quiet_for:
            _remove(partial)


def _drop_older_copies(root: Path, keep: Path, source: str):
    """Remove finished copies of earlier versions of the same source file (best effort)."""
    for entry in root.iterdir():
        if entry != keep and not entry.name.startswith("."):
            found = _read_record(entry)
            if isinstance(found, dict) and found.get("source") == source:
                _remove(entry)


def bgzip_copy(path: Path) -> Path:
    """The indexed bgzip copy of plain-gzip FASTA path in the cache, made once (see the layout above)."""
    record = _source_record(path)
    key = _cache_key(record)
    name = Path(record["source"]).name[-120:]
    root = cache_dir() / "fasta"
    entry = root / f"{name}-{key}"
    if _is_complete(entry, name, record):
        return entry / name

    try:
        root.mkdir(parents=True, exist_ok=True)
        partial = _partial_dir(root, key)
        partial.mkdir()
    except OSError as exc:
        raise _cannot_write(path, root, exc) from exc
    print(f"janus: {path} is gzip, not bgzip: making an indexed bgzip copy at {entry / name} "
          "(once; reused while the file is unchanged)", file=sys.stderr)
    try:
        _clean_leftovers(root)
        try:
            bgzip_from_gzip(path, partial / name)
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise DataError(f"{path}: cannot decompress ({exc}); is the file truncated or damaged?") from exc
        try:
            pysam.FastaFile(str(partial / name)).close()  # writes <name>.fai and <name>.gzi
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot index the bgzip copy of this FASTA ({exc}); check that it is "
                            f"FASTA and that {root} has room for it") from exc
        if _source_record(path) != record:
            raise DataError(f"{path}: changed while janus was copying it; run again once it is complete")
        (partial / "source.json").write_text(json.dumps({**record, "created": time.time()}, indent=1) + "\n")
        try:
            os.rename(partial, entry)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            if not _is_complete(entry, name, record):  # a broken copy in the way: replace it
                aside = _partial_dir(root, key)
                os.rename(entry, aside)
                _remove(aside)
                os.rename(partial, entry)
            # else another process published the same copy first: use theirs (ours is removed below)
    except OSError as exc:
        raise _cannot_write(path, root, exc) from exc
    finally:
        _remove(partial)
    _drop_older_copies(root, entry, record["source"])
    return entry / name


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
