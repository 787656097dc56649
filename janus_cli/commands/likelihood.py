"""`janus likelihood`: the model's per-base distribution over A, C, G, T at every position of
genomic regions or sequences. What each prediction saw is the architecture's, and the output's
metadata says which (prediction_context): JanusDNA, every other base of the window, in one
forward pass; a causal model (HybriDNA), the bases to its left, in one pass; a masked model
(MergeDNA), every other base with the base itself replaced by [MASK], one pass per base.

Each record's window (the region, or --window bp centred on it; N beyond a contig end with
--edge pad) is tiled when longer than the model's max_seq_len, and every position takes its
distribution from the tile where it lies farthest from an edge, so tiles are independent and a
region of any length streams in chunks of tiles. Outputs are on the reference's forward strand
whatever the record's strand (positions and bases are genome coordinates); with --rc avg both
strands are combined as the log of their mean probability.

Output, one row per base of the window inside its contig: chrom, pos (0-based), ref, logp_A,
logp_C, logp_G, logp_T (natural log), entropy (nats), logp_ref (logp of the reference base; null
at N); with --mutagenesis llr_A, llr_C, llr_G, llr_T (0 at the reference base, null at N): a
saturation mutagenesis map, logp_X - logp_ref from the same pass for a model whose prediction
never sees its base but sees both sides (JanusDNA), or for a causal model the full-window
log-likelihood ratio log p(window with X) - log p(window), one forward pass per substitution
(with --rc avg, the two strands' ratios are averaged); with --rc both the per-strand
logp_X_fwd and logp_X_rev; then name and skip_reason. A skipped record is one row (pos = its
start, no scores) with its skip_reason. For sequence inputs there is no chrom column, and pos is
the 0-based offset in the sequence named by name.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import dnalm

from ..engine.inference import (BASE_LOG_PROBS, BASE_LOG_PROBS_AND_SUBSTITUTIONS, DTYPES, InferenceOptions,
                                WindowRunner, check_inference_options, load_inference_model, provenance)
from ..engine.regions import RecordOptions, encode_reference_text, open_records, placed_windows, tile_overlap
from ..engine.runtime import resolve_device, set_threads
from ..errors import UsageError
from ..io import windows
from ..io.chroms import ChromMatcher
from ..engine.streaming import Chunk, format_skips, log_summary, write_chunks, write_output_file

BASES = "ACGT"
RECORDS_PER_READ = 256
TILES_PER_CHUNK = 64
BEDGRAPH_SUFFIXES = (".bedgraph", ".bedgraph.txt", ".bg")
MUTAGENESIS_TEXT = {
    "one_pass": "llr_X = logp_X - logp_ref at the position, from the same pass",
    "full_window": "llr_X = log p(window with X at the position) - log p(window), one causal pass per substitution",
}


@dataclass
class LikelihoodOptions(RecordOptions):
    mutagenesis: bool = False
    track: str = "logp_ref"


@dataclass
class Unit:
    """A record, or a run of a long record's tiles: offsets into the window sequence, which starts
    at genome position origin (negative with N padding before a contig start)."""

    chrom: str
    name: str
    contig: str
    contig_length: int
    origin: int
    start: int  # the record's own start (before any --window), for skipped records
    tiles: list[tuple[int, int]]
    owned: list[tuple[int, int]]
    skip_reason: str | None = None
    first_piece: bool = True  # False for the later pieces of a record split across chunks


def likelihood(opts: LikelihoodOptions, argv: list[str]) -> Counter:
    """Write the per-base table; returns the number of output rows per skip_reason."""
    check_inference_options(opts)
    set_threads(opts.threads)
    device = resolve_device(opts.device)
    model_ref, model = load_inference_model(opts.model)
    dnalm.require(model, "per_base_prediction", "janus likelihood" + (" --mutagenesis" if opts.mutagenesis else ""))
    max_len = model.max_seq_len
    overlap = tile_overlap(opts.tile_overlap, max_len)
    full_window = opts.mutagenesis and model.prediction_context == dnalm.LEFT
    runner = WindowRunner(model, device, rc=opts.rc, batch_size=opts.batch_size, dtype=DTYPES[opts.dtype],
                          output=BASE_LOG_PROBS_AND_SUBSTITUTIONS if full_window else BASE_LOG_PROBS)
    with open_records(opts.inputs, opts.regions, opts.fasta, opts.chrom_alias, opts.seq_col) as source:
        schema = output_schema(opts.mutagenesis, opts.rc == "both", with_chrom=source.kind == "regions")
        if opts.track not in schema.names or not pa.types.is_floating(schema.field(opts.track).type):
            floats = [f.name for f in schema if pa.types.is_floating(f.type)]
            raise UsageError(f"--track {opts.track!r}: choose one of {', '.join(floats)}")
        if source.kind == "sequences" and _is_bedgraph(opts.out):
            raise UsageError("a bedGraph track needs genomic coordinates; sequences have none: write .parquet or .tsv")
        metadata = provenance(opts, model_ref, model, source.reference_path, argv, tile_overlap=overlap,
                              mutagenesis=MUTAGENESIS_TEXT["full_window" if full_window else "one_pass"]
                              if opts.mutagenesis else "no")
        units = record_units(source.chunks(RECORDS_PER_READ), source.reference, source.matcher, opts, max_len, overlap)
        chunks = (Chunk(group, sum(u.first_piece for u in group), sum(end - start for u in group for start, end in u.owned))
                  for group in grouped_units(units, TILES_PER_CHUNK))
        counts = write_chunks(
            chunks, lambda group: likelihood_chunk(group, source.reference, runner, opts, schema), schema, metadata,
            opts.stream_options(), source.total,
            sinks={suffix: bedgraph_sink(opts.track) for suffix in BEDGRAPH_SUFFIXES})
    log_summary(f"janus: likelihood: {counts.get(None, 0)} bases scored, skipped records: {format_skips(counts)}")
    return counts


def _is_bedgraph(out: str | None) -> bool:
    return out is not None and str(out).lower().endswith(BEDGRAPH_SUFFIXES)


def output_schema(mutagenesis: bool, both_strands: bool, with_chrom: bool = True) -> pa.Schema:
    score = pa.float32()
    fields = [pa.field("chrom", pa.string())] if with_chrom else []
    fields += [pa.field("pos", pa.int64()), pa.field("ref", pa.string())]
    fields += [pa.field(f"logp_{b}", score) for b in BASES]
    fields += [pa.field("entropy", score), pa.field("logp_ref", score)]
    if mutagenesis:
        fields += [pa.field(f"llr_{b}", score) for b in BASES]
    if both_strands:
        fields += [pa.field(f"logp_{b}_{strand}", score) for strand in ("fwd", "rev") for b in BASES]
    fields += [pa.field("name", pa.string()), pa.field("skip_reason", pa.string())]
    return pa.schema(fields)


def record_units(record_chunks: Iterable, reference, matcher: ChromMatcher, opts: InferenceOptions,
                 tile_length: int, overlap: int) -> Iterator[Unit]:
    """One Unit per record, in input order, with its tiles; skipped records have none."""
    for records in record_chunks:
        placed = placed_windows(records, reference.lengths, matcher, opts)
        for record_start, row in zip(records["start"], placed.itertuples(index=False)):
            contig_length = reference.lengths.get(row.contig, 0)
            origin = row.start - row.pad_left
            length = row.pad_left + (row.end - row.start) + row.pad_right
            unit = Unit(row.chrom, row.name, row.contig, contig_length, origin, int(record_start), [], [])
            if isinstance(row.skip_reason, str):
                unit.skip_reason = row.skip_reason
            elif length == 0:
                unit.skip_reason = windows.SKIP_EMPTY
            elif n_fraction_of_window(reference, row.contig, origin, origin + length) > opts.max_n_frac:
                unit.skip_reason = windows.SKIP_N_FRACTION
            else:
                unit.tiles = windows.tile_spans(length, tile_length, overlap)
                unit.owned = windows.owned_spans(unit.tiles)
            yield unit


def n_fraction_of_window(reference, contig: str, start: int, end: int, block: int = 1 << 20) -> float:
    """Fraction of N in [start, end), read in blocks so long regions take little memory."""
    n = sum(windows.n_fraction(text) * len(text)
            for text in (reference.fetch_padded(contig, s, min(s + block, end)) for s in range(start, end, block)))
    return n / (end - start)


def grouped_units(units: Iterable[Unit], tiles_per_chunk: int) -> Iterator[list[Unit]]:
    """Units grouped into chunks of about tiles_per_chunk tiles; a longer record is split into
    several units of consecutive tiles, so a chunk's size stays bounded."""
    group, n_tiles = [], 0
    for unit in units:
        pieces = [unit] if len(unit.tiles) <= tiles_per_chunk else [
            Unit(unit.chrom, unit.name, unit.contig, unit.contig_length, unit.origin, unit.start,
                 unit.tiles[i:i + tiles_per_chunk], unit.owned[i:i + tiles_per_chunk], first_piece=i == 0)
            for i in range(0, len(unit.tiles), tiles_per_chunk)]
        for piece in pieces:
            if group and n_tiles + len(piece.tiles) > tiles_per_chunk:
                yield group
                group, n_tiles = [], 0
            group.append(piece)
            n_tiles += max(1, len(piece.tiles))
    if group:
        yield group


def likelihood_chunk(group: list[Unit], reference, runner: WindowRunner, opts: LikelihoodOptions,
                     schema: pa.Schema) -> pa.Table:
    """The output rows of one chunk."""
    texts = [reference.fetch_padded(u.contig, u.origin + start, u.origin + end)
             for u in group for start, end in u.tiles]
    where = [f"{reference.path}: {u.contig}:{u.origin + start + 1}-{u.origin + end} (record {u.name!r})"
             for u in group for start, end in u.tiles]
    outputs = iter(runner.run([encode_reference_text(text, w) for text, w in zip(texts, where)]))
    texts = iter(texts)
    parts = []
    for unit in group:
        if unit.skip_reason is not None:
            parts.append(_skipped_row(unit, schema))
            continue
        for (start, _), (own_start, own_end) in zip(unit.tiles, unit.owned):
            strands, text = next(outputs), next(texts)
            offsets = np.arange(own_start - start, own_end - start)
            positions = unit.origin + start + offsets
            inside = (positions >= 0) & (positions < unit.contig_length)
            parts.append(_scored_rows(unit, positions[inside], text, offsets[inside], strands, opts, schema,
                                      runner.output))
    return pa.concat_tables(parts)


def _scored_rows(unit: Unit, positions: np.ndarray, text: str, offsets: np.ndarray, strands, opts, schema,
                 output) -> pa.Table:
    combined = output.combined(strands)[offsets].numpy()
    logp = combined[:, :4]
    ref = np.frombuffer(text.encode("ascii"), dtype="S1")[offsets].astype(str)
    ref_index = np.array([BASES.find(b) for b in ref])
    known = ref_index >= 0
    logp_ref = np.where(known, logp[np.arange(len(ref)), np.clip(ref_index, 0, 3)], np.nan)
    columns = {"chrom": pa.array([unit.chrom] * len(positions)), "pos": pa.array(positions, pa.int64()),
               "ref": pa.array(ref)}
    for i, base in enumerate(BASES):
        columns[f"logp_{base}"] = logp[:, i]
    columns["entropy"] = -(np.exp(logp) * logp).sum(1)
    columns["logp_ref"] = _with_nulls(logp_ref)
    if opts.mutagenesis:
        llr = combined[:, 4:] if combined.shape[1] == 8 else logp - logp_ref[:, None]
        for i, base in enumerate(BASES):
            columns[f"llr_{base}"] = _with_nulls(np.where(known, llr[:, i], np.nan))
    if opts.rc == "both":
        for strand, values in (("fwd", strands.forward), ("rev", strands.reverse)):
            for i, base in enumerate(BASES):
                columns[f"logp_{base}_{strand}"] = values[offsets, i].numpy()
    columns["name"] = pa.array([unit.name] * len(positions))
    columns["skip_reason"] = pa.nulls(len(positions), pa.string())
    return pa.table({name: pa.array(columns[name], schema.field(name).type) for name in schema.names})


def _with_nulls(values: np.ndarray) -> pa.Array:
    return pa.array(values.astype(np.float32), mask=np.isnan(values))


def _skipped_row(unit: Unit, schema: pa.Schema) -> pa.Table:
    values = {name: [None] for name in schema.names}
    known = {"chrom": [unit.chrom], "pos": [unit.start], "name": [unit.name], "skip_reason": [unit.skip_reason]}
    values.update({name: value for name, value in known.items() if name in values})
    return pa.table(values, schema=schema)


def bedgraph_sink(track: str):
    """A sink writing one column as a bedGraph track (chrom, pos, pos + 1, value) for genome
    browsers; skipped rows and nulls are left out."""

    def write(path: Path, tables, schema: pa.Schema, metadata: dict):
        def write_text(temp: Path):
            with open(temp, "w") as stream:
                stream.write(f'track type=bedGraph name="janus {track}" '
                             f'description="janus likelihood {track}, model {metadata["model_name"]}"\n')
                for table in tables:
                    keep = table.filter(pc.is_valid(table.column(track)))
                    for chrom, pos, value in zip(*(keep.column(c).to_pylist() for c in ("chrom", "pos", track))):
                        stream.write(f"{chrom}\t{pos}\t{pos + 1}\t{value:.6g}\n")

        write_output_file(path, write_text)

    return write
