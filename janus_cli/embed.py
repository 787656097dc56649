"""`janus embed`: one pooled JanusDNA embedding (or per-position embeddings) per genomic region.

Records (BED and/or -r regions, see regions.py) are processed in chunks, each becoming one chunk of
the streamed output (see streaming.py), so memory stays flat in the number of records. A record's
sequence is cut into overlapping tiles when longer than the model's max_seq_len; the per-position
hidden states are stitched from the tiles and pooled into one vector. Records that cannot be
embedded are kept with a null embedding and a skip_reason.

Output columns: chrom, start, end, name, strand (as in the input), embedding
(fixed_size_list<float32>[d]; with --per-position a list of such vectors, one per base of the
sequence as read on the record's strand), embedding_rc with --rc both (the reverse-complement
pass, in forward-strand order), skip_reason.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from . import windows
from .chroms import ChromMatcher, read_alias_table
from .errors import UsageError
from .fasta import Reference
from .inference import DTYPES, HIDDEN_STATES, InferenceOptions, StrandOutputs, WindowRunner, check_inference_options, load_inference_model, provenance
from .reference_config import resolve_fasta
from .regions import RECORD_COLUMNS, count_region_records, record_sequences, region_chunks, stitch_tiles
from .runtime import resolve_device, set_threads
from .streaming import Chunk, format_skips, log_summary, write_chunks

POOLINGS = ("mean", "max", "center")
RECORDS_PER_CHUNK = 256


@dataclass
class EmbedOptions(InferenceOptions):
    bed: Path | None = None
    regions: list[str] = field(default_factory=list)
    tile_overlap: int | None = None
    pooling: str = "mean"
    per_position: bool = False


@dataclass
class EmbedRun:
    """What every chunk of one run needs."""

    opts: EmbedOptions
    reference: Reference
    matcher: ChromMatcher
    runner: WindowRunner
    tile_length: int
    tile_overlap: int
    schema: pa.Schema


def embed(opts: EmbedOptions, argv: list[str]) -> Counter:
    """Write the embeddings; returns the number of records per skip_reason (None = embedded)."""
    if opts.bed is None and not opts.regions:
        raise UsageError("give a BED file of regions (- for stdin) or at least one -r chr:beg-end")
    check_inference_options(opts, {"--pooling": (opts.pooling, POOLINGS)})
    set_threads(opts.threads)
    device = resolve_device(opts.device)
    model_ref, model = load_inference_model(opts.model)
    overlap = tile_overlap(opts.tile_overlap, model.config.max_seq_len)
    runner = WindowRunner(model, device, rc=opts.rc, batch_size=opts.batch_size, dtype=DTYPES[opts.dtype])
    aliases = read_alias_table(opts.chrom_alias) if opts.chrom_alias else {}

    with Reference(resolve_fasta(opts.fasta)) as reference:
        matcher = ChromMatcher(reference.lengths, aliases)
        metadata = provenance(opts, model_ref, model, reference.path, argv, tile_overlap=overlap,
                              pooling="per_position" if opts.per_position else opts.pooling)
        schema = output_schema(model.config.d_model, opts.per_position, opts.rc == "both")
        run = EmbedRun(opts, reference, matcher, runner, model.config.max_seq_len, overlap, schema)
        chunks = (Chunk(records, len(records), int((records["end"] - records["start"]).sum()))
                  for records in region_chunks(opts.bed, opts.regions, reference.lengths, matcher, RECORDS_PER_CHUNK))
        counts = write_chunks(chunks, lambda records: embed_chunk(records, run), schema, metadata,
                              opts.stream_options(), count_region_records(opts.bed, opts.regions))
    log_summary(f"janus: embed: {sum(counts.values())} records, {counts.get(None, 0)} embedded, skipped: {format_skips(counts)}")
    return counts


def tile_overlap(given: int | None, max_len: int) -> int:
    overlap = max_len // 4 if given is None else given
    if not 0 <= overlap < max_len:
        raise UsageError(f"--tile-overlap {overlap}: must be at least 0 and below the model's max_seq_len {max_len}")
    return overlap


def output_schema(d_model: int, per_position: bool, both_strands: bool) -> pa.Schema:
    vector = pa.list_(pa.float32(), d_model)
    embedding_type = pa.list_(vector) if per_position else vector
    fields = [pa.field("chrom", pa.string()), pa.field("start", pa.int64()), pa.field("end", pa.int64()),
              pa.field("name", pa.string()), pa.field("strand", pa.string()),
              pa.field("embedding", embedding_type)]
    if both_strands:
        fields.append(pa.field("embedding_rc", embedding_type))
    fields.append(pa.field("skip_reason", pa.string()))
    return pa.schema(fields)


def embed_chunk(chunk: pd.DataFrame, run: EmbedRun) -> pa.Table:
    """The output rows of one chunk of records."""
    opts = run.opts
    sequences, skip_reasons = record_sequences(chunk, run.reference, run.matcher, opts)
    tiles = [(i, span) for i, ids in sequences.items()
             for span in windows.tile_spans(len(ids), run.tile_length, run.tile_overlap)]
    tile_outputs = run.runner.run([sequences[i][start:end] for i, (start, end) in tiles])

    per_record = {i: [] for i in sequences}
    for (i, span), outputs in zip(tiles, tile_outputs):
        per_record[i].append((span, outputs))
    embeddings, embeddings_rc = [None] * len(chunk), [None] * len(chunk)
    for i, tiles in per_record.items():
        forward, reverse = stitch_tiles(tiles, len(sequences[i]))
        if opts.rc == "both":
            embeddings[i], embeddings_rc[i] = pool(forward, opts), pool(reverse, opts)
        else:
            embeddings[i] = pool(HIDDEN_STATES.combined(StrandOutputs(forward, reverse)), opts)

    columns = {name: chunk[name].tolist() for name in RECORD_COLUMNS}
    columns["embedding"] = embeddings
    if opts.rc == "both":
        columns["embedding_rc"] = embeddings_rc
    columns["skip_reason"] = skip_reasons
    return pa.Table.from_pydict(columns, schema=run.schema)


def pool(states: torch.Tensor, opts: EmbedOptions):
    """[L, d] -> one vector (a list of floats), or with --per-position a list of L vectors."""
    if opts.per_position:
        return states.numpy().astype(np.float32).tolist()
    if opts.pooling == "mean":
        pooled = states.mean(0)
    elif opts.pooling == "max":
        pooled = states.max(0).values
    else:
        pooled = states[len(states) // 2]
    return pooled.numpy().astype(np.float32).tolist()
