"""`janus predict` on genomic regions (BED, -r) with a model from `janus finetune`: the regions are
read, windowed, fetched and embedded exactly as by `janus embed` (mean pooling), and the
finetuned head turns each pooled embedding into class probabilities (or a regression value).
As the head is linear, averaging the two strands' embeddings (--rc avg) equals averaging their
outputs, which is what finetune's evaluation does.

Output columns: chrom, start, end, name, strand, prob_<label>... and pred_label (or prediction),
skip_reason.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import torch

from .chroms import ChromMatcher, read_alias_table
from .embed import RECORDS_PER_CHUNK, EmbedOptions, EmbedRun, embed_chunk, output_schema, tile_overlap
from .errors import UsageError
from .fasta import Reference
from .finetune import Task, load_finetuned
from .inference import DTYPES, WindowRunner, check_inference_options, provenance
from .reference_config import resolve_fasta
from .regions import RECORD_COLUMNS, count_region_records, region_chunks
from .runtime import resolve_device, set_threads
from .streaming import Chunk, format_skips, log_summary, write_chunks

PREDICT_RC_MODES = ("avg", "none")


def predict_regions(opts: EmbedOptions, argv: list[str]) -> Counter:
    """Write one prediction per region; returns the number of records per skip_reason."""
    if opts.bed is None and not opts.regions:
        raise UsageError("give a BED file of regions (- for stdin) or at least one -r chr:beg-end")
    if opts.model is None:
        raise UsageError("give --model, a directory written by janus finetune")
    check_inference_options(opts, {"--rc": (opts.rc, PREDICT_RC_MODES)})
    set_threads(opts.threads)
    device = resolve_device(opts.device)
    backbone, head, meta = load_finetuned(opts.model, device)
    task = Task.from_meta(meta)
    overlap = tile_overlap(opts.tile_overlap, backbone.config.max_seq_len)
    runner = WindowRunner(backbone, device, rc=opts.rc, batch_size=opts.batch_size, dtype=DTYPES[opts.dtype])
    aliases = read_alias_table(opts.chrom_alias) if opts.chrom_alias else {}
    schema = prediction_schema(task)

    with Reference(resolve_fasta(opts.fasta)) as reference:
        matcher = ChromMatcher(reference.lengths, aliases)
        metadata = provenance(opts, str(opts.model), backbone, reference.path, argv, tile_overlap=overlap,
                              task=task.kind)
        embed_schema = output_schema(backbone.config.d_model, per_position=False, both_strands=False)
        run = EmbedRun(opts, reference, matcher, runner, backbone.config.max_seq_len, overlap, embed_schema)

        def predict_chunk(records):
            embedded = embed_chunk(records, run)
            return prediction_table(embedded, head, task, schema)

        chunks = (Chunk(records, len(records), int((records["end"] - records["start"]).sum()))
                  for records in region_chunks(opts.bed, opts.regions, reference.lengths, matcher, RECORDS_PER_CHUNK))
        counts = write_chunks(chunks, predict_chunk, schema, metadata, opts.stream_options(),
                              count_region_records(opts.bed, opts.regions))
    log_summary(f"janus: predict: {sum(counts.values())} records, {counts.get(None, 0)} predicted, "
        f"skipped: {format_skips(counts)}")
    return counts


def prediction_schema(task: Task) -> pa.Schema:
    fields = [pa.field(name, pa.int64() if name in ("start", "end") else pa.string()) for name in RECORD_COLUMNS]
    if task.regression:
        fields.append(pa.field("prediction", pa.float32()))
    else:
        fields += [pa.field(f"prob_{label}", pa.float32()) for label in task.labels]
        fields.append(pa.field("pred_label", pa.string()))
    return pa.schema(fields + [pa.field("skip_reason", pa.string())])


def prediction_table(embedded: pa.Table, head: torch.nn.Linear, task: Task, schema: pa.Schema) -> pa.Table:
    """The embed table's record columns, the head's predictions for embedded rows, skip_reason."""
    vectors = embedded.column("embedding").to_pylist()
    done = [i for i, v in enumerate(vectors) if v is not None]
    columns = {name: embedded.column(name) for name in (*RECORD_COLUMNS, "skip_reason")}
    predicted = {}
    if done:
        with torch.inference_mode():
            outputs = head(torch.tensor(np.array([vectors[i] for i in done]), dtype=torch.float32)).float().numpy()
        predicted = task.prediction_columns(outputs)
    for name in schema.names:
        if name not in columns:
            values = [None] * len(vectors)
            for j, i in enumerate(done):
                values[i] = predicted[name].iloc[j]
            columns[name] = pa.array(values, schema.field(name).type)
    return pa.table([columns[name] for name in schema.names], schema=schema)
