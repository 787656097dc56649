"""Pooled (or per-position) embeddings of records, shared by `janus embed` and `janus predict`.

A record's sequence is cut into overlapping tiles when longer than the model's max_seq_len. For
mean, max and center pooling and --per-position, the per-position hidden states are stitched from
the tiles, combined over strands and pooled into one vector. "last" (each strand's own last base)
and a pooling that the architecture computes from a whole window (HybriDNA's echo) are taken per
tile, both strands averaged, and a tiled record's vector is the mean of its tiles' vectors weighted
by the bases each tile provides. Records that cannot be embedded keep a null embedding and a skip_reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

import dnalm

from ..io import windows
from .inference import HIDDEN_STATES, InferenceOptions, OutputKind, StrandOutputs, WindowRunner, window_embeddings
from .regions import RecordSource, record_sequences, stitch_tiles


@dataclass
class EmbeddingRun:
    """What every chunk of one run needs."""

    opts: InferenceOptions
    source: RecordSource
    runner: WindowRunner
    tile_length: int
    tile_overlap: int
    pooling: str  # one of the model's poolings, or per_position
    schema: pa.Schema


# poolings of the record's stitched per-position states that do not depend on which strand is read
POSITIONAL_POOLINGS = ("mean", "max", "center")


def runner_output(pooling: str) -> OutputKind:
    """What the runner computes per tile for this pooling: per-position states, or one vector per
    window from the model ("last" is each strand's own last base, so it is taken per window too)."""
    return HIDDEN_STATES if pooling == "per_position" or pooling in POSITIONAL_POOLINGS else window_embeddings(pooling)


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
    output = run.runner.output
    for i, record_tiles in per_record.items():
        if output is HIDDEN_STATES:
            forward, reverse = stitch_tiles(record_tiles, len(sequences[i]))
        else:
            forward, reverse = tile_weighted_mean(record_tiles)
        pooling = run.pooling if output is HIDDEN_STATES else "mean"  # window vectors: [1, d]
        if opts.rc == "both":
            embeddings[i], embeddings_rc[i] = pool(forward, pooling), pool(reverse, pooling)
        else:
            embeddings[i] = pool(output.combined(StrandOutputs(forward, reverse)), pooling)

    columns = {name: chunk[name].tolist() for name in run.source.key_columns}
    columns["embedding"] = embeddings
    if opts.rc == "both":
        columns["embedding_rc"] = embeddings_rc
    columns["skip_reason"] = skip_reasons
    return pa.Table.from_pydict(columns, schema=run.schema)


def tile_weighted_mean(tiles: list[tuple[tuple[int, int], StrandOutputs]]):
    """(forward, reverse) [1, d] of a record from its tiles' window vectors, each weighted by the
    bases it provides (windows.owned_spans); reverse None without a reverse-complement pass."""
    owned = windows.owned_spans([span for span, _ in tiles])
    weights = torch.tensor([end - start for start, end in owned], dtype=torch.float32)[:, None, None] / sum(
        end - start for start, end in owned)
    forward = (torch.stack([outputs.forward for _, outputs in tiles]) * weights).sum(0)
    if tiles[0][1].reverse is None:
        return forward, None
    return forward, (torch.stack([outputs.reverse for _, outputs in tiles]) * weights).sum(0)


def pool(states: torch.Tensor, pooling: str):
    """[L, d] -> one vector (a list of floats), or with per_position a list of L vectors."""
    pooled = states if pooling == "per_position" else dnalm.pool(states, pooling)
    return pooled.numpy().astype(np.float32).tolist()
