"""Pooled (or per-position) embeddings of records, shared by `janus embed` and `janus predict`.

A record's sequence is cut into overlapping tiles when longer than the model's max_seq_len; the
per-position hidden states are stitched from the tiles, combined over strands and pooled into one
vector. Records that cannot be embedded keep a null embedding and a skip_reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

import dnalm

from ..io import windows
from .inference import HIDDEN_STATES, InferenceOptions, StrandOutputs, WindowRunner
from .regions import RecordSource, record_sequences, stitch_tiles


@dataclass
class EmbeddingRun:
    """What every chunk of one run needs."""

    opts: InferenceOptions
    source: RecordSource
    runner: WindowRunner
    tile_length: int
    tile_overlap: int
    pooling: str  # mean, max, center, or per_position
    schema: pa.Schema


def embedding_schema(key_columns: list[str], d_model: int, per_position: bool, both_strands: bool) -> pa.Schema:
    vector = pa.list_(pa.float32(), d_model)
    embedding_type = pa.list_(vector) if per_position else vector
    fields = [pa.field(name, pa.int64() if name in ("start", "end") else pa.string()) for name in key_columns]
    fields.append(pa.field("embedding", embedding_type))
    if both_strands:
        fields.append(pa.field("embedding_rc", embedding_type))
    fields.append(pa.field("skip_reason", pa.string()))
    return pa.schema(fields)


def embed_records(chunk: pd.DataFrame, run: EmbeddingRun) -> pa.Table:
    """The output rows of one chunk of records."""
    opts = run.opts
    sequences, skip_reasons = record_sequences(chunk, run.source.reference, run.source.matcher, opts)
    tiles = [(i, span) for i, ids in sequences.items()
             for span in windows.tile_spans(len(ids), run.tile_length, run.tile_overlap)]
    tile_outputs = run.runner.run([sequences[i][start:end] for i, (start, end) in tiles])

    per_record = {i: [] for i in sequences}
    for (i, span), outputs in zip(tiles, tile_outputs):
        per_record[i].append((span, outputs))
    embeddings, embeddings_rc = [None] * len(chunk), [None] * len(chunk)
    for i, record_tiles in per_record.items():
        forward, reverse = stitch_tiles(record_tiles, len(sequences[i]))
        if opts.rc == "both":
            embeddings[i], embeddings_rc[i] = pool(forward, run.pooling), pool(reverse, run.pooling)
        else:
            embeddings[i] = pool(HIDDEN_STATES.combined(StrandOutputs(forward, reverse)), run.pooling)

    columns = {name: chunk[name].tolist() for name in run.source.key_columns}
    columns["embedding"] = embeddings
    if opts.rc == "both":
        columns["embedding_rc"] = embeddings_rc
    columns["skip_reason"] = skip_reasons
    return pa.Table.from_pydict(columns, schema=run.schema)


def pool(states: torch.Tensor, pooling: str):
    """[L, d] -> one vector (a list of floats), or with per_position a list of L vectors."""
    pooled = states if pooling == "per_position" else dnalm.pool(states, pooling)
    return pooled.numpy().astype(np.float32).tolist()
