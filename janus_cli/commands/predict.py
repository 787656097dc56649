"""`janus predict` with a model from `janus finetune`, on genomic regions (BED, -r) or sequences (a
FASTA of records, a table with a sequence column): the records are read, windowed and embedded
exactly as by `janus embed` (with the pooling the head was trained on), and the finetuned head
turns each pooled embedding into class probabilities (or a regression value). As the head is
linear, averaging the two strands' embeddings (--rc avg) equals averaging their outputs, which is
what finetune's evaluation does.

Output columns: chrom, start, end, name, strand for regions, or name for sequences;
prob_<label>... and pred_label (or prediction), skip_reason.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import torch

import dnalm

from ..engine.embedding import EmbeddingRun, embed_records, embedding_schema, runner_output
from ..engine.inference import DTYPES, WindowRunner, check_inference_options, provenance
from ..engine.regions import RECORDS_PER_CHUNK, RecordOptions, open_records, tile_overlap
from ..engine.runtime import resolve_device, set_threads
from ..engine.streaming import Chunk, format_skips, log_summary, write_chunks
from ..errors import UsageError

PREDICT_RC_MODES = ("avg", "none")


def predict(opts: RecordOptions, argv: list[str]) -> Counter:
    """Write one prediction per record; returns the number of records per skip_reason."""
    if opts.model is None:
        raise UsageError("give --model, a directory written by janus finetune")
    check_inference_options(opts, {"--rc": (opts.rc, PREDICT_RC_MODES)})
    set_threads(opts.threads)
    device = resolve_device(opts.device)
    finetuned = dnalm.load_finetuned(opts.model, device)
    backbone, task = finetuned.classifier.backbone, finetuned.task
    pooling = finetuned.meta.get("pooling", backbone.default_pooling)
    overlap = tile_overlap(opts.tile_overlap, backbone.max_seq_len)
    runner = WindowRunner(backbone, device, rc=opts.rc, batch_size=opts.batch_size, dtype=DTYPES[opts.dtype],
                          output=runner_output(pooling))

    with open_records(opts.inputs, opts.regions, opts.fasta, opts.chrom_alias, opts.seq_col) as source:
        schema = prediction_schema(source.key_columns, task)
        metadata = provenance(opts, str(opts.model), backbone, source.reference_path, argv, tile_overlap=overlap,
                              task=task.kind)
        embed_schema = embedding_schema(source.key_columns, backbone.d_model, per_position=False, both_strands=False)
        run = EmbeddingRun(opts, source, runner, backbone.max_seq_len, overlap, pooling, embed_schema)

        def predict_chunk(records):
            return prediction_table(embed_records(records, run), finetuned, schema)

        chunks = (Chunk(records, len(records), int((records["end"] - records["start"]).sum()))
                  for records in source.chunks(RECORDS_PER_CHUNK))
        counts = write_chunks(chunks, predict_chunk, schema, metadata, opts.stream_options(), source.total)
    log_summary(f"janus: predict: {sum(counts.values())} records, {counts.get(None, 0)} predicted, "
                f"skipped: {format_skips(counts)}")
    return counts


def prediction_schema(key_columns: list[str], task: dnalm.Task) -> pa.Schema:
    fields = [pa.field(name, pa.int64() if name in ("start", "end") else pa.string()) for name in key_columns]
    if task.regression:
        fields.append(pa.field("prediction", pa.float32()))
    else:
        fields += [pa.field(f"prob_{label}", pa.float32()) for label in task.labels]
        fields.append(pa.field("pred_label", pa.string()))
    return pa.schema(fields + [pa.field("skip_reason", pa.string())])


def prediction_table(embedded: pa.Table, finetuned: dnalm.Finetuned, schema: pa.Schema) -> pa.Table:
    """The embedded table's record columns, the head's predictions for embedded rows, skip_reason."""
    vectors = embedded.column("embedding").to_pylist()
    done = [i for i, v in enumerate(vectors) if v is not None]
    columns = {name: embedded.column(name) for name in embedded.column_names if name in schema.names}
    predicted = {}
    if done:
        with torch.inference_mode():
            outputs = finetuned.classifier.head.cpu()(torch.tensor(np.array([vectors[i] for i in done]), dtype=torch.float32)).float().numpy()
        predicted = finetuned.task.output_columns(outputs)
    for name in schema.names:
        if name not in columns:
            values = [None] * len(vectors)
            for j, i in enumerate(done):
                values[i] = predicted[name][j]
            columns[name] = pa.array(values, schema.field(name).type)
    return pa.table([columns[name] for name in schema.names], schema=schema)
