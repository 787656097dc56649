"""`janus tokenize`: a model's learned tokenization (MergeDNA's Local Encoder) of regions or
sequences, one row per token.

Inputs are those of `janus embed` (a BED, -r regions, a FASTA of sequences or a table; --window,
--edge, strand). A record is read on its strand (strand - reverse-complemented) and tokenized as
read: token 0 is at the record's 5' end on that strand, so on strand - the token index grows as the
genome coordinate falls.

Output columns, one row per token, records in input order and tokens in read order:
- regions: chrom, start, end (0-based half-open genome coordinates of the token's bases), name,
  strand (the record's), class, token (index in the record, from 0), length (= end - start),
  sequence (the token's bases as read on the record's strand), skip_reason;
- sequences: name, start, end (offsets in the sequence), class, token, length, sequence,
  skip_reason.
class is the name, or the fields of it that --class-field selects. A record that cannot be
tokenized (skip_reason chrom_missing, edge, empty or n_fraction) is one row with its own start and
end and null token, length and sequence. With --window and --edge pad, tokens of the N padding
lie outside the contig (start < 0 or end > its length); a .bed output clips them to it.

Outputs: Parquet (default), TSV (.tsv, or - for stdout), or BED (.bed): one BED9 line per token
(name `<record name>:<token>`, score 0, the record's strand, colours alternating between
neighbouring tokens) under a track line, for genome browsers; skipped records are left out, and
for sequences chrom is the sequence's name.

Records longer than the model's max_seq_len are cut into tiles max_seq_len long that start every
max_seq_len - --tile-overlap bases from the record's first base (the last tile shorter), each
tokenized alone. Consecutive tiles are joined at the position in their overlap that is a token
boundary in both, nearest the middle of the overlap: every token then comes whole from one tile.
(MergeDNA's tokens never cross 16-base blocks counted from a sequence's first base, so with a
tile stride that is a multiple of 16, e.g. the default quarter-length overlap, block edges are such
positions.) Only when an overlap holds no common boundary is the join at its middle, splitting the
token that crosses it. A record is held in memory whole; split chromosome-scale regions first.

After the run, stderr gets the tokens, bases and mean token length per class, and a total line.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

import dnalm

from ..engine.inference import check_inference_options, load_inference_model, provenance
from ..engine.regions import RECORDS_PER_CHUNK, RecordOptions, open_records, placed_windows, record_sequences, tile_overlap
from ..engine.runtime import resolve_device, set_threads
from ..engine.streaming import Chunk, format_skips, is_stdout, log_summary, sink_for, write_chunks, write_output_file
from ..errors import DataError, UsageError
from ..io import windows

CLASS_SEPARATOR = ":"
MAX_SUMMARY_CLASSES = 20
BED_SUFFIX = ".bed"
BED_COLOURS = ("31,119,180", "255,127,14")  # alternate between neighbouring tokens


@dataclass
class TokenizeOptions(RecordOptions):
    rc: str = "none"  # a record is tokenized on its own strand only
    compression_ratio: float | None = None  # tokens per base; None: the model's own
    class_field: str | None = None  # 1-based fields of the ':'-separated name, e.g. "3" or "1,3"


@dataclass
class TokenizeRun:
    """What every chunk of one run needs."""

    opts: TokenizeOptions
    source: object  # engine.regions.RecordSource
    model: dnalm.DNALM
    device: torch.device
    tile_length: int
    tile_overlap: int
    class_fields: list[int] | None
    schema: pa.Schema


@dataclass
class ClassTotals:
    records: int = 0
    tokens: int = 0
    bases: int = 0


@dataclass
class TokenSummary:
    """Tokens, bases and records per class, and skipped records per skip_reason."""

    classes: dict[str, ClassTotals] = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)
    seen: bool = False  # whether any table was added

    def add(self, table: pa.Table):
        self.seen = True
        frame = table.select(["class", "token", "length", "skip_reason"]).to_pandas()
        skipped = frame["skip_reason"].notna()
        self.skipped.update(frame.loc[skipped, "skip_reason"].tolist())
        tokens = frame[~skipped]
        grouped = tokens.groupby("class", sort=False).agg(
            records=("token", lambda t: int((t == 0).sum())), tokens=("token", "size"), bases=("length", "sum"))
        for name, row in grouped.iterrows():
            totals = self.classes.setdefault(name, ClassTotals())
            totals.records += int(row["records"])
            totals.tokens += int(row["tokens"])
            totals.bases += int(row["bases"])

    @property
    def tokens(self) -> int:
        return sum(c.tokens for c in self.classes.values())

    @property
    def bases(self) -> int:
        return sum(c.bases for c in self.classes.values())

    @property
    def records(self) -> int:
        return sum(c.records for c in self.classes.values())

    def lines(self, class_label: str) -> list[str]:
        """The stderr summary: one line per class (the MAX_SUMMARY_CLASSES with most tokens), then
        the totals."""
        shown = sorted(self.classes, key=lambda c: -self.classes[c].tokens)[:MAX_SUMMARY_CLASSES]
        lines = []
        if shown:
            width = max(len("class"), *(len(str(c)) for c in shown))
            lines.append(f"janus: tokenize: per class ({class_label}):")
            lines.append(f"  {'class':<{width}}  {'records':>9}  {'tokens':>12}  {'bases':>13}  mean token length")
            for name in sorted(shown, key=str):
                c = self.classes[name]
                lines.append(f"  {str(name):<{width}}  {c.records:>9,}  {c.tokens:>12,}  {c.bases:>13,}  "
                             f"{c.bases / c.tokens:.2f} bp")
            if len(self.classes) > len(shown):
                lines.append(f"  ... and {len(self.classes) - len(shown):,} more classes "
                             "(--class-field selects fields of the name)")
        mean = f"{self.bases / self.tokens:.2f} bp" if self.tokens else "-"
        lines.append(f"janus: tokenize: {self.records + sum(self.skipped.values()):,} records, {self.records:,} "
                     f"tokenized: {self.tokens:,} tokens, {self.bases:,} bases, mean token length {mean}; "
                     f"skipped: {format_skips(self.skipped)}")
        return lines


def tokenize(opts: TokenizeOptions, argv: list[str]) -> TokenSummary:
    """Write one row per token of each record; returns the per-class summary of the output (for a
    file, of all its chunks, resumed ones included)."""
    check_inference_options(opts)
    if opts.compression_ratio is not None and not 0 < opts.compression_ratio <= 1:
        raise UsageError(f"--compression-ratio {opts.compression_ratio}: must be in (0, 1] (tokens per base)")
    class_fields = parse_class_field(opts.class_field)
    set_threads(opts.threads)
    device = resolve_device(opts.device)
    model_ref, model = load_inference_model(opts.model or default_tokenizer_model())
    dnalm.require(model, "tokenization", "janus tokenize")
    overlap = tile_overlap(opts.tile_overlap, model.max_seq_len)
    model = model.to(device).eval().batch_invariant()

    with open_records(opts.inputs, opts.regions, opts.fasta, opts.chrom_alias, opts.seq_col) as source:
        metadata = provenance(opts, model_ref, model, source.reference_path, argv, tile_overlap=overlap,
                              compression_ratio=opts.compression_ratio or "model default",
                              class_field=opts.class_field or "name")
        schema = token_schema(source.kind == "regions")
        run = TokenizeRun(opts, source, model, device, model.max_seq_len, overlap, class_fields, schema)
        computed, written = TokenSummary(), TokenSummary()

        def compute(records: pd.DataFrame) -> pa.Table:
            table = tokenize_records(records, run)
            computed.add(table)
            return table

        sinks = {}
        if not is_stdout(opts.out):
            # "" matches every output name: the chosen format's sink, summarising what it writes
            # (every chunk of the output, those of a resumed run included)
            chosen = sink_for(Path(opts.out), {BED_SUFFIX: bed_sink(contig_length_of(source))})
            sinks[""] = summarising_sink(chosen, written)
        chunks = (Chunk(records, len(records), int((records["end"] - records["start"]).sum()))
                  for records in source.chunks(RECORDS_PER_CHUNK))
        write_chunks(chunks, compute, schema, metadata, opts.stream_options(), source.total, sinks=sinks)
    summary = written if written.seen else computed
    class_label = (f"field{'s' * (len(class_fields) > 1)} {opts.class_field} of the name" if class_fields
                   else "the record name")
    log_summary("\n".join(summary.lines(class_label)))
    return summary


def default_tokenizer_model() -> str:
    """The first shipped model whose architecture has a learned tokenization."""
    for entry in dnalm.list_models():
        if entry["kind"] == "shipped" and "tokenization" in dnalm.architecture(entry["arch"]).model_class.capabilities():
            return entry["name"]
    raise UsageError("no shipped model has a learned tokenization yet; give --model, a MergeDNA model directory "
                     "(e.g. the model/ of a janus pretrain --preset mergedna-small run)")


def parse_class_field(text: str | None) -> list[int] | None:
    """--class-field "3" or "1,3" -> [3] or [1, 3]; None: the whole name."""
    if text is None:
        return None
    try:
        fields = [int(part) for part in text.split(",")]
    except ValueError:
        fields = []
    if not fields or min(fields) < 1:
        raise UsageError(f"--class-field {text!r}: give 1-based field numbers of the ':'-separated name, e.g. 3 or 1,3")
    return fields


def record_class(name: str, fields: list[int] | None) -> str:
    if fields is None:
        return name
    parts = str(name).split(CLASS_SEPARATOR)
    if max(fields) > len(parts):
        raise DataError(f"record {name!r}: its name has {len(parts)} ':'-separated field(s), "
                        f"no field {max(fields)}; choose other --class-field fields")
    return CLASS_SEPARATOR.join(parts[f - 1] for f in fields)


def token_schema(regions: bool) -> pa.Schema:
    keys = [("chrom", pa.string())] if regions else []
    keys += [("start", pa.int64()), ("end", pa.int64()), ("name", pa.string())]
    keys += [("strand", pa.string())] if regions else []
    keys += [("class", pa.string()), ("token", pa.int32()), ("length", pa.int32()), ("sequence", pa.string()),
             ("skip_reason", pa.string())]
    return pa.schema([pa.field(name, kind) for name, kind in keys])


# --- tiles ----------------------------------------------------------------------------------------

def grid_tiles(length: int, tile_length: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) of tiles covering 0..length: tile_length long, starting every tile_length -
    overlap bases from 0, the last one ending at length (and maybe shorter). One when it fits."""
    if length <= tile_length:
        return [(0, length)]
    stride = tile_length - overlap
    if stride <= 0:
        raise ValueError(f"tile overlap {overlap} must be smaller than the tile length {tile_length}")
    starts = [0]
    while starts[-1] + tile_length < length:
        starts.append(starts[-1] + stride)
    return [(s, min(s + tile_length, length)) for s in starts]


def join_tiles(spans: list[tuple[int, int]], tokens: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """One record's (starts, sizes) from its tiles' tokens (offsets in each tile): consecutive
    tiles are joined at a token boundary of both inside their overlap, the one nearest the
    middle of the overlap (or, when there is none, at the middle, splitting the token there)."""
    if len(spans) == 1:
        return tokens[0]
    middles = [right for _, right in windows.owned_spans(spans)[:-1]]
    bounds = [np.append(starts, starts[-1] + sizes[-1]) + tile_start
              for (tile_start, _), (starts, sizes) in zip(spans, tokens)]
    cuts = [spans[0][0]]
    for k, middle in enumerate(middles):
        low, high = max(spans[k + 1][0], cuts[-1]), spans[k][1]
        common = np.intersect1d(bounds[k], bounds[k + 1])
        common = common[(common >= low) & (common <= high)]
        cuts.append(int(common[np.argmin(np.abs(common - middle))]) if len(common) else max(middle, cuts[-1]))
    cuts.append(spans[-1][1])
    pieces_start, pieces_end = [], []
    for (tile_start, _), (starts, sizes), low, high in zip(spans, tokens, cuts[:-1], cuts[1:]):
        start, end = starts + tile_start, starts + sizes + tile_start
        keep = (end > low) & (start < high)
        pieces_start.append(np.maximum(start[keep], low))
        pieces_end.append(np.minimum(end[keep], high))
    start, end = np.concatenate(pieces_start), np.concatenate(pieces_end)
    return start, end - start


def token_spans(run: TokenizeRun, sequences: list[torch.Tensor]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(starts, sizes) of the tokens of each sequence of ids, in input order: sequences of one
    length share a batch of up to --batch-size (the model's tokenization does not depend on its
    batch mates)."""
    by_length: dict[int, list[int]] = {}
    for i, ids in enumerate(sequences):
        by_length.setdefault(len(ids), []).append(i)
    results: list = [None] * len(sequences)
    size = run.opts.batch_size
    with torch.inference_mode():
        for indices in by_length.values():
            for first in range(0, len(indices), size):
                batch = indices[first:first + size]
                spans = run.model.token_spans(torch.stack([sequences[i] for i in batch]).to(run.device),
                                              run.opts.compression_ratio)
                for i, (starts, sizes) in zip(batch, spans):
                    results[i] = (starts.cpu().numpy().astype(np.int64), sizes.cpu().numpy().astype(np.int64))
                    check_tokens(*results[i], len(sequences[i]))
    return results


def check_tokens(starts: np.ndarray, sizes: np.ndarray, length: int):
    """The model's tokens must cover 0..length contiguously, in order."""
    ends = starts + sizes
    if not (len(starts) and starts[0] == 0 and ends[-1] == length and (sizes > 0).all()
            and (starts[1:] == ends[:-1]).all()):
        raise RuntimeError(f"the model's tokens of a {length}-base sequence do not cover it contiguously")


# --- one chunk ------------------------------------------------------------------------------------

def tokenize_records(chunk: pd.DataFrame, run: TokenizeRun) -> pa.Table:
    """The output rows of one chunk of records: their tokens, in record then token order."""
    source, opts = run.source, run.opts
    chunk = chunk.reset_index(drop=True)
    sequences, skip_reasons = record_sequences(chunk, source.reference, source.matcher, opts)
    placed = placed_windows(chunk, source.reference.lengths, source.matcher, opts)
    tiles = [(i, span) for i, ids in sequences.items()
             for span in grid_tiles(len(ids), run.tile_length, run.tile_overlap)]
    tile_tokens = token_spans(run, [sequences[i][start:end] for i, (start, end) in tiles])
    per_record: dict[int, list] = {i: [] for i in sequences}
    for (i, span), tokens in zip(tiles, tile_tokens):
        per_record[i].append((span, tokens))

    regions = source.kind == "regions"
    parts = []
    for i, record in enumerate(chunk.itertuples(index=False)):
        klass = record_class(record.name, run.class_fields)
        if skip_reasons[i] is not None:
            parts.append(pd.DataFrame({"start": [record.start], "end": [record.end], "token": [None], "length": [None],
                                       "sequence": [None], "skip_reason": [skip_reasons[i]]}).assign(
                chrom=record.chrom, name=record.name, strand=record.strand, **{"class": klass}))
            continue
        offsets, sizes = join_tiles([span for span, _ in per_record[i]], [t for _, t in per_record[i]])
        window = placed.iloc[i]
        origin, window_end = int(window["start"] - window["pad_left"]), int(window["end"] + window["pad_right"])
        if record.strand == "-":
            start = window_end - offsets - sizes
        else:
            start = origin + offsets
        text = dnalm.decode(sequences[i])
        parts.append(pd.DataFrame({
            "start": start, "end": start + sizes, "token": np.arange(len(offsets), dtype=np.int32),
            "length": sizes.astype(np.int32), "sequence": [text[a:a + g] for a, g in zip(offsets, sizes)],
            "skip_reason": None,
        }).assign(chrom=record.chrom, name=record.name, strand=record.strand, **{"class": klass}))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=run.schema.names)
    if not regions:
        frame = frame.drop(columns=["chrom", "strand"], errors="ignore")
    return pa.Table.from_pandas(frame[run.schema.names], schema=run.schema, preserve_index=False)


# --- sinks ----------------------------------------------------------------------------------------

def summarising_sink(sink: Callable, summary: TokenSummary) -> Callable:
    """sink, adding every table it writes to summary."""

    def write(path: Path, tables, schema: pa.Schema, metadata: dict):
        def counted():
            for table in tables:
                summary.add(table)
                yield table

        sink(path, counted(), schema, metadata)

    return write


def contig_length_of(source) -> Callable[[str], int | None]:
    """A record's chrom -> the length of its contig (of the sequence, for sequence inputs)."""
    lengths = source.reference.lengths

    def length(chrom: str) -> int | None:
        contig = source.matcher(chrom)
        return None if contig is None else lengths[contig]

    return length


def bed_sink(contig_length: Callable[[str], int | None]):
    """A sink writing the tokens as BED9 for genome browsers: chrom, start, end, name
    `<record>:<token>` (the token alone for unnamed records), score 0, strand, thickStart,
    thickEnd, colours alternating between neighbouring tokens; skipped records left out, tokens
    clipped to their contig (those wholly in N padding left out)."""

    def write(path: Path, tables, schema: pa.Schema, metadata: dict):
        chrom_column = "chrom" if "chrom" in schema.names else "name"

        def write_text(temp: Path):
            with open(temp, "w") as stream:
                stream.write(f'track name="janus tokens" description="janus tokenize, model {metadata["model_name"]}" '
                             'itemRgb="On"\n')
                lengths: dict[str, int | None] = {}
                for table in tables:
                    frame = table.to_pandas()
                    frame = frame[frame["skip_reason"].isna()]
                    chroms = frame[chrom_column].astype(str)
                    for chrom in chroms.unique():
                        if chrom not in lengths:
                            lengths[chrom] = contig_length(chrom)
                    limit = chroms.map(lengths).astype("float64").fillna(np.inf).to_numpy()
                    start = np.maximum(frame["start"].to_numpy(np.int64), 0)
                    end = np.minimum(frame["end"].to_numpy(np.float64), limit).astype(np.int64)
                    strands = frame["strand"] if "strand" in frame else pd.Series(".", index=frame.index)
                    token = frame["token"].astype(int).to_numpy()
                    for chrom, s, e, name, t, strand in zip(chroms, start, end, frame["name"], token, strands):
                        if e <= s:
                            continue
                        label = f"{name}:{t}" if name != "." else str(t)
                        stream.write(f"{chrom}\t{s}\t{e}\t{label}\t0\t{strand}\t{s}\t{e}\t{BED_COLOURS[t % 2]}\n")

        write_output_file(path, write_text)

    return write
