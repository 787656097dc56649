"""`janus embed`: one pooled embedding (or per-position embeddings) per region or sequence.

Records (a BED, -r regions, a FASTA of sequences or a table, see engine/regions.py) are processed
in chunks, each becoming one chunk of the streamed output (see engine/streaming.py), so memory
stays flat in the number of records.

Output columns: chrom, start, end, name, strand for regions (as in the input), or name for
sequences; embedding (fixed_size_list<float32>[d]; with --per-position a list of such vectors, one
per base of the sequence as read on the record's strand), embedding_rc with --rc both (the
reverse-complement pass, in forward-strand order), skip_reason.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ..engine.embedding import EmbeddingRun, embed_records, embedding_schema, runner_output
from ..engine.inference import DTYPES, WindowRunner, check_inference_options, load_inference_model, provenance
from ..engine.regions import RECORDS_PER_CHUNK, RecordOptions, open_records, tile_overlap
from ..engine.runtime import resolve_device, set_threads
from ..engine.streaming import Chunk, format_skips, log_summary, write_chunks
from ..errors import UsageError


@dataclass
class EmbedOptions(RecordOptions):
    pooling: str | None = None  # None: the architecture's default pooling
    per_position: bool = False


def embed(opts: EmbedOptions, argv: list[str]) -> Counter:
    """Write the embeddings; returns the number of records per skip_reason (None = embedded)."""
    check_inference_options(opts)
    set_threads(opts.threads)
    device = resolve_device(opts.device)
    model_ref, model = load_inference_model(opts.model)
    if opts.pooling and opts.pooling not in model.poolings:
        raise UsageError(f"--pooling {opts.pooling!r}: a {model.arch} model pools by {', '.join(model.poolings)}")
    pooling = "per_position" if opts.per_position else opts.pooling or model.default_pooling
    overlap = tile_overlap(opts.tile_overlap, model.max_seq_len)
    runner = WindowRunner(model, device, rc=opts.rc, batch_size=opts.batch_size, dtype=DTYPES[opts.dtype],
                          output=runner_output(pooling))

    with open_records(opts.inputs, opts.regions, opts.fasta, opts.chrom_alias, opts.seq_col) as source:
        metadata = provenance(opts, model_ref, model, source.reference_path, argv, tile_overlap=overlap, pooling=pooling)
        schema = embedding_schema(source.key_columns, model.d_model, opts.per_position, opts.rc == "both")
        run = EmbeddingRun(opts, source, runner, model.max_seq_len, overlap, pooling, schema)
        chunks = (Chunk(records, len(records), int((records["end"] - records["start"]).sum()))
                  for records in source.chunks(RECORDS_PER_CHUNK))
        counts = write_chunks(chunks, lambda records: embed_records(records, run), schema, metadata,
                              opts.stream_options(), source.total)
    log_summary(f"janus: embed: {sum(counts.values())} records, {counts.get(None, 0)} embedded, skipped: {format_skips(counts)}")
    return counts
