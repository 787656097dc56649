"""`janus score-variants`: effect scores of VCF variants from a model's per-base predictions and
embeddings.

Every ALT allele (multi-allelic records split, see variants.py) gets a reference window and an
alternative window of the same length (--window bp), both anchored on the variant: the same
left flank (window // 2 bases before POS), then REF or ALT, then the reference after REF up to
the window length. Beyond a contig end the flank is N (--edge pad), the window moves inside the
contig (shift), or the variant is skipped (skip).

Scores (natural log; --scores picks some):
- llr: log P(ALT) - log P(REF) at the variant from the reference sequence, summed over the bases
  of equal-length substitutions (SNVs, MNVs); null for indels. For a model whose prediction at a
  base never sees that base (JanusDNA) one pass gives every base's, so these come from shared
  reference tiles: the contig is tiled at fixed positions (tiles of --window bp overlapping by a
  quarter, as `janus likelihood` tiles a region) and each base is read from the tile where it is
  most central. A variant's scores therefore depend only on its position, never on its
  neighbours, and a dense VCF costs one pass per 3/4 window instead of one per variant.
- ref_logp, alt_logp: the two terms of llr.
- delta_pll: the summed per-base log-likelihood of the alternative window minus that of the
  reference window (positions with N left out), for SNVs and indels alike.
- emb_cosine, emb_l2: cosine similarity and Euclidean distance between the two windows' embeddings,
  pooled by the architecture's default pooling (JanusDNA: mean; HybriDNA: echo).
For a causal model (HybriDNA) llr is the full-window log-likelihood ratio log p(ALT window) -
log p(REF window), for SNVs and indels alike (it then equals delta_pll), and ref_logp, alt_logp
are the two windows' log-likelihoods.
For a masked model (MergeDNA) the allele's bases are replaced by [MASK] and predicted from the
rest of the window in one pass: llr, ref_logp and alt_logp come from the REF window with REF's
bases masked (for an SNV the masked REF and ALT windows are the same, so one pass serves both);
delta_pll is the pseudo-likelihood of the masked span of each allele, the summed log P of ALT's
bases in the ALT window with them masked minus the same for REF's bases in the REF window; the
embedding scores and a head use the unmasked windows.
llr, ref_logp, alt_logp and delta_pll need a model that predicts each base without seeing it
(JanusDNA: from both sides; a causal model: from the left, so delta_pll is then an exact
log-likelihood difference); the embedding scores work with every architecture.
- With a model from `janus finetune`: a sequence head's class probabilities for both windows,
  prob_<label>_ref, prob_<label>_alt and prob_<label>_diff = alt - ref (prediction_ref/_alt/_diff
  for a regression head); a variant-pair head (finetuned on labelled variants with
  --variant-features pair) gives prob_<label> (prediction) per variant, from the REF and ALT
  windows together.
With --rc avg both strands are combined (hidden states averaged, base probabilities averaged);
--rc both also writes every score per strand (<score>_fwd, <score>_rev).

Output: chrom, pos (1-based, as in the VCF), id, ref, alt, alt_index, the scores, skip_reason
(chrom_missing, edge, n_fraction, ref_mismatch, symbolic_allele, star_allele, no_alt,
invalid_allele). Parquet, TSV, or (-o x.vcf.gz) a sites-only bgzipped VCF with the scores as INFO
fields, tabix-indexed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import torch

import dnalm
from dnalm.tokenizer import MASK

from ..io import intervals
from ..io.chroms import ChromMatcher, read_alias_table
from ..errors import DataError, UsageError
from ..io.fasta import Reference
from ..engine.embedding import POSITIONAL_POOLINGS
from ..engine.inference import (BASE_LOG_PROBS, DTYPES, HIDDEN_AND_LOG_PROBS, MASKED_BASE_LOG_PROBS, InferenceOptions,
                                StrandOutputs, WindowRunner, window_embeddings, check_inference_options, provenance)
from ..io.reference_config import resolve_fasta
from ..engine.regions import encode_reference_text
from ..engine.runtime import resolve_device, set_threads
from ..engine.streaming import Chunk, format_skips, log_summary, write_chunks
from ..engine.variant_windows import CHECK_REF_MODES, SKIP_REASONS, VariantPlacer, Windows
from ..io.variants import Variant, count_variants, read_variants, write_scores_vcf

SCORES = ("llr", "ref_logp", "alt_logp", "delta_pll", "emb_cosine", "emb_l2")
SCORE_DESCRIPTIONS = {
    "llr": "log P(ALT) - log P(REF) at the variant, reference sequence (substitutions); for a causal model the full-window log-likelihood ratio",
    "ref_logp": "log P(REF) at the variant, reference sequence (substitutions); for a causal model log p(REF window)",
    "alt_logp": "log P(ALT) at the variant, reference sequence (substitutions); for a causal model log p(ALT window)",
    "delta_pll": "summed per-base log-likelihood of the ALT window minus the REF window",
    "emb_cosine": "cosine similarity of mean-pooled REF and ALT window embeddings",
    "emb_l2": "Euclidean distance between mean-pooled REF and ALT window embeddings",
}
NEEDS_ALT_WINDOW = {"delta_pll", "emb_cosine", "emb_l2"}
LLR_TEXT = {  # by prediction context
    dnalm.ALL_BUT_SELF: "log P(ALT) - log P(REF) at the variant's bases (substitutions), each base read from the "
                        "fixed reference tile (window bp, tiles overlapping by a quarter) where it is most central",
    dnalm.LEFT: "full-window log-likelihood ratio: log p(ALT window) - log p(REF window) (= delta_pll), SNVs and indels",
    dnalm.MASKED: "log P(ALT) - log P(REF) at the variant's bases, from one pass over the reference window with "
                  "REF's bases replaced by [MASK]; delta_pll: the masked span's pseudo-likelihood, ALT window "
                  "(ALT's bases masked) minus REF window (REF's bases masked)",
}
NEEDS_PER_BASE_PREDICTION = ("llr", "ref_logp", "alt_logp", "delta_pll")
VARIANTS_PER_CHUNK = 512
DEFAULT_WINDOW = 256
VCF_SUFFIXES = (".vcf.gz", ".vcf.bgz")
RECORD_COLUMNS = ("chrom", "pos", "id", "ref", "alt", "alt_index")


@dataclass
class ScoreOptions(InferenceOptions):
    vcf: str | Path | None = None
    region: str | None = None  # chr:beg-end, 1-based inclusive
    scores: list[str] = field(default_factory=lambda: list(SCORES))
    check_ref: str = "skip"


@dataclass
class FinetunedHead:
    """A classification or regression head from `janus finetune`, applied to pooled windows: a
    sequence head to the REF and the ALT window each, a variant-pair head to the two together."""

    classifier: dnalm.SequenceClassifier
    task: dnalm.Task
    pooling: str

    def columns(self) -> list[str]:
        names = ["prediction"] if self.task.regression else [f"prob_{label}" for label in self.task.labels]
        if self.classifier.variant_pair:
            return names
        return [f"{name}_{which}" for name in names for which in ("ref", "alt", "diff")]

    def scores(self, pooled: torch.Tensor) -> dict[str, float]:
        """The head's columns for one variant from its pooled REF and ALT windows [2, d]."""
        if self.classifier.variant_pair:
            return dict(zip(self.columns(), map(float, self.outputs(self.classifier.head_input(pooled))[0])))
        ref_values, alt_values = self.outputs(pooled)
        found = {}
        for j, name in enumerate(self.columns()[::3]):
            base = name[:-len("_ref")]
            found |= {f"{base}_ref": float(ref_values[j]), f"{base}_alt": float(alt_values[j]),
                      f"{base}_diff": float(alt_values[j] - ref_values[j])}
        return found

    def outputs(self, head_input: torch.Tensor) -> np.ndarray:
        """[N, head inputs] -> [N, outputs] probabilities (or predicted values)."""
        with torch.inference_mode():
            raw = self.classifier.head(head_input).float().numpy()
        if self.task.regression:
            return self.task.unstandardise(raw)
        exp = np.exp(raw - raw.max(1, keepdims=True))
        return exp / exp.sum(1, keepdims=True)


@dataclass(frozen=True)
class SiteTiling:
    """Fixed reference tiles of a contig: tile k starts at k * stride - margin and is window bp
    long; tile k provides the bases [k * stride, (k + 1) * stride), where it is most central."""

    window: int

    @property
    def stride(self) -> int:
        return self.window - self.window // 4

    @property
    def margin(self) -> int:
        return (self.window - self.stride) // 2

    def tile_start(self, start0: int, length: int, contig_length: int, edge: str) -> int:
        """The start of the tile that provides bases [start0, start0 + length): the one owning
        start0, moved inside the contig unless the edge is N-padded, and so that it holds them all."""
        start = start0 // self.stride * self.stride - self.margin
        start = max(start, start0 + length - self.window)
        if edge != "pad":
            start = min(max(start, 0), max(contig_length - self.window, 0))
        return start


@dataclass
class ScoreRun:
    opts: ScoreOptions
    reference: Reference
    matcher: ChromMatcher
    placer: VariantPlacer
    runner: WindowRunner
    window: int
    head: FinetunedHead | None
    schema: pa.Schema
    full_window: bool  # a causal model: llr is the full-window log-likelihood ratio
    masked: bool  # a masked model: per-base scores from windows with the allele's bases masked
    site_runner: WindowRunner | None  # shared reference tiles for llr, ref_logp, alt_logp (ALL_BUT_SELF)
    embedding_pooling: str  # the model's default pooling, for emb_cosine and emb_l2
    # runners for poolings the model computes from a whole window (not from hidden states)
    window_embedders: dict[str, WindowRunner] = field(default_factory=dict)
    # the previous chunk's tiles by (contig, start): in a sorted VCF the next chunk starts in its last
    recent_tiles: dict[tuple[str, int], StrandOutputs] = field(default_factory=dict)


def score_variants(opts: ScoreOptions, argv: list[str]) -> Counter:
    """Write the variant scores; returns the number of ALT alleles per skip_reason (None = scored)."""
    if opts.vcf is None:
        raise UsageError("give a VCF or BCF file of variants (- for stdin)")
    check_inference_options(opts, {"--check-ref": (opts.check_ref, CHECK_REF_MODES)})
    unknown = [s for s in opts.scores if s not in SCORES]
    if unknown or not opts.scores:
        raise UsageError(f"--scores {','.join(opts.scores)!r}: choose among {', '.join(SCORES)}")
    set_threads(opts.threads)
    device = resolve_device(opts.device)
    model_ref, model, head = load_scoring_model(opts.model)
    per_base = [s for s in opts.scores if s in NEEDS_PER_BASE_PREDICTION]
    if per_base:
        dnalm.require(model, "per_base_prediction", f"janus score-variants --scores {','.join(per_base)}")
    window = opts.window or min(DEFAULT_WINDOW, model.max_seq_len)
    if window > model.max_seq_len:
        raise UsageError(f"--window {window}: longer than the model's max_seq_len {model.max_seq_len}")
    masked = model.prediction_context == dnalm.MASKED
    runner = WindowRunner(model, device, rc=opts.rc, batch_size=opts.batch_size, dtype=DTYPES[opts.dtype],
                          output=MASKED_BASE_LOG_PROBS if masked else HIDDEN_AND_LOG_PROBS)
    poolings = ({model.default_pooling} if {"emb_cosine", "emb_l2"} & set(opts.scores) else set()) | (
        {head.pooling} if head else set())
    window_embedders = {pooling: WindowRunner(model, device, rc=opts.rc, batch_size=opts.batch_size,
                                              dtype=DTYPES[opts.dtype], output=window_embeddings(pooling))
                        for pooling in (poolings if masked else poolings - set(POSITIONAL_POOLINGS))}
    shared_sites = model.prediction_context == dnalm.ALL_BUT_SELF and bool({"llr", "ref_logp", "alt_logp"} & set(opts.scores))
    site_runner = (WindowRunner(model, device, rc=opts.rc, batch_size=opts.batch_size, dtype=DTYPES[opts.dtype],
                                output=BASE_LOG_PROBS) if shared_sites else None)
    aliases = read_alias_table(opts.chrom_alias) if opts.chrom_alias else {}
    scores = [s for s in SCORES if s in opts.scores]
    schema = output_schema(scores, head, opts.rc == "both")
    region = intervals.parse_region(opts.region) if opts.region else None

    with Reference(resolve_fasta(opts.fasta)) as reference:
        matcher = ChromMatcher(reference.lengths, aliases)
        metadata = provenance(opts, model_ref, model, reference.path, argv, window=window, scores=",".join(scores),
                              check_ref=opts.check_ref, llr=LLR_TEXT[model.prediction_context],
                              embedding_pooling=model.default_pooling,
                              score_windows=score_windows_text(shared_sites, window))
        placer = VariantPlacer(reference, matcher, window, opts.edge, opts.check_ref, opts.max_n_frac, opts.vcf)
        run = ScoreRun(opts, reference, matcher, placer, runner, window, head, schema,
                       full_window=model.prediction_context == dnalm.LEFT, masked=masked, site_runner=site_runner,
                       embedding_pooling=model.default_pooling,
                       window_embedders=window_embedders)
        chunks = (Chunk(group, len(group), len(group) * window)
                  for group in checked_chunks(read_variants(opts.vcf, region), matcher, opts.vcf))
        info_fields = {f.name: info_description(f.name) for f in schema if pa.types.is_floating(f.type)}
        vcf_sink = _vcf_sink(reference.lengths, info_fields)
        counts = write_chunks(chunks, lambda group: score_chunk(group, run), schema, metadata,
                              opts.stream_options(), count_variants(opts.vcf, region),
                              sinks={suffix: vcf_sink for suffix in VCF_SUFFIXES})
    run.placer.summarise_warnings()
    log_summary(f"janus: score-variants: {sum(counts.values())} alleles, {counts.get(None, 0)} scored, "
        f"skipped: {format_skips(counts, SKIP_REASONS)}")
    return counts


def score_windows_text(shared_sites: bool, window: int) -> str:
    """Which windows each score used, for the output metadata."""
    tiling = SiteTiling(window)
    per_variant = (f"per-variant REF and ALT windows of {window} bp anchored on the variant "
                   f"({window // 2} bases of left flank)")
    if shared_sites:
        return (f"llr, ref_logp, alt_logp: shared reference tiles of {window} bp, tile k starting at "
                f"k * {tiling.stride} - {tiling.margin} (0-based), each base from the tile providing "
                f"[k * {tiling.stride}, (k + 1) * {tiling.stride}); delta_pll, emb_cosine, emb_l2 and "
                f"finetuned heads: {per_variant}")
    return f"every score: {per_variant}"


def load_scoring_model(model_ref: str | None):
    """(model reference, backbone, FinetunedHead or None): a `janus finetune` directory brings
    its head along."""
    model_ref = str(model_ref or dnalm.DEFAULT_MODEL)
    if dnalm.is_finetuned(model_ref):
        finetuned = dnalm.load_finetuned(model_ref)
        backbone = finetuned.classifier.backbone
        pooling = finetuned.meta.get("pooling", backbone.default_pooling)
        return model_ref, backbone, FinetunedHead(finetuned.classifier, finetuned.task, pooling)
    return model_ref, dnalm.load(model_ref), None


def output_schema(scores: list[str], head: FinetunedHead | None, both_strands: bool) -> pa.Schema:
    fields = [pa.field("chrom", pa.string()), pa.field("pos", pa.int64()), pa.field("id", pa.string()),
              pa.field("ref", pa.string()), pa.field("alt", pa.string()), pa.field("alt_index", pa.int64())]
    names = list(scores) + (head.columns() if head else [])
    if both_strands:
        names += [f"{name}_{strand}" for strand in ("fwd", "rev") for name in names]
    fields += [pa.field(name, pa.float32()) for name in names]
    return pa.schema(fields + [pa.field("skip_reason", pa.string())])


def info_description(column: str) -> str:
    """The VCF INFO description of a score column."""
    score, strand = column, ""
    if column.endswith(("_fwd", "_rev")):
        score, strand = column[:-4], {"_fwd": ", forward strand", "_rev": ", reverse-complement strand"}[column[-4:]]
    if score in SCORE_DESCRIPTIONS:
        return SCORE_DESCRIPTIONS[score] + strand
    output, _, which = score.rpartition("_")
    windows_text = {"ref": "on the REF window", "alt": "on the ALT window", "diff": "ALT minus REF window"}
    if which not in windows_text:
        return f"finetuned variant head {score}, from the REF and ALT windows together{strand}"
    return f"finetuned head {output} {windows_text[which]}{strand}"


def checked_chunks(variants: Iterable[Variant], matcher: ChromMatcher, source) -> Iterator[list[Variant]]:
    """Variants in chunks; DataError at the end when none of their chromosomes is in the
    reference (a wrong reference or alias table, which skipping everything would hide)."""
    variants = iter(variants)
    any_matched, first = False, None
    while group := list(islice(variants, VARIANTS_PER_CHUNK)):
        first = first or group[0]
        any_matched = any_matched or any(matcher(v.chrom) is not None for v in group)
        yield group
    if first is not None and not any_matched:
        raise DataError(f"{source}: record 1: chromosome {first.chrom!r} is not in the reference, and no other "
                        "record's chromosome is either; check the reference or give --chrom-alias")


def score_chunk(group: list[Variant], run: ScoreRun) -> pa.Table:
    """The output rows of one chunk of variants."""
    opts = run.opts
    skip_reasons: list[str | None] = []
    placed: dict[int, Windows] = {}
    for i, variant in enumerate(group):
        found = run.placer.place(variant)
        if isinstance(found, Windows):
            placed[i] = found
        skip_reasons.append(None if isinstance(found, Windows) else found)

    need_alt = (bool(NEEDS_ALT_WINDOW & set(opts.scores)) or run.head is not None
                or (run.full_window and bool({"llr", "ref_logp", "alt_logp"} & set(opts.scores))))
    order = sorted(placed)
    site_logps = shared_site_log_probs(group, order, run) if run.site_runner else {}
    need_windows = need_alt or run.site_runner is None
    texts = ([placed[i].ref_text for i in order] if need_windows else []) + (
        [placed[i].alt_text for i in order] if need_alt else [])
    where = f"{run.reference.path}: windows of the variants in {opts.vcf}"
    encoded = [encode_reference_text(text, where) for text in texts]
    if run.masked:
        alleles = [group[i].ref for i in order] + ([group[i].alt for i in order] if need_alt else [])
        offsets = [placed[i].offset for i in order] * (2 if need_alt else 1)
        per_base = run.runner.run([with_span_masked(ids, offset, len(allele))
                                   for ids, offset, allele in zip(encoded, offsets, alleles)])
    else:
        per_base = run.runner.run(encoded)
    window_vectors = {pooling: embedder.run(encoded) for pooling, embedder in run.window_embedders.items()}
    position_of = {i: position for position, i in enumerate(order)}

    def windows_of(source, i):
        """(REF, ALT) window outputs of variant i (None for windows not run)."""
        if not need_windows:
            return None, None
        return source[position_of[i]], source[len(order) + position_of[i]] if need_alt else None

    strands = [("", "combined")]
    if opts.rc == "both":
        strands += [("_fwd", "forward"), ("_rev", "reverse")]
    columns = {name: [None] * len(group) for name in run.schema.names}
    for name in RECORD_COLUMNS:
        columns[name] = [getattr(group[i], name) for i in range(len(group))]
    columns["skip_reason"] = skip_reasons
    for i in order:
        for suffix, which in strands:
            ref_out, alt_out = (_strand(o, run.runner.output, which) for o in windows_of(per_base, i))

            def pooled(pooling: str):
                """[2, d]: the REF and ALT windows pooled."""
                if pooling in run.window_embedders:
                    kind = run.window_embedders[pooling].output
                    return torch.cat([_strand(o, kind, which) for o in windows_of(window_vectors[pooling], i)])
                return torch.stack([dnalm.pool(ref_out[:, :-4], pooling), dnalm.pool(alt_out[:, :-4], pooling)])

            site_logp = _strand(site_logps.get(i), BASE_LOG_PROBS, which)
            for name, value in variant_scores(group[i], placed[i], ref_out, alt_out, site_logp, opts.scores, run,
                                              pooled if need_alt else None).items():
                columns[name + suffix][i] = value
    return pa.table({name: pa.array(columns[name], run.schema.field(name).type) for name in run.schema.names})


def shared_site_log_probs(group: list[Variant], order: list[int], run: ScoreRun) -> dict[int, StrandOutputs]:
    """Per-base log-probabilities [len(REF), 4] at the bases of each placed substitution, read from
    the shared reference tiles (SiteTiling); each tile runs once however many variants it serves,
    and a tile the previous chunk ran is not run again."""
    tiling = SiteTiling(run.window)
    tile_of, tiles = {}, {}
    for i in order:
        variant = group[i]
        if len(variant.ref) != len(variant.alt):
            continue
        contig = run.matcher(variant.chrom)
        start = tiling.tile_start(variant.pos - 1, len(variant.ref), run.reference.lengths[contig], run.opts.edge)
        tile_of[i] = (contig, start)
        tiles[contig, start] = None
    where = f"{run.reference.path}: reference tiles of the variants in {run.opts.vcf}"
    missing = [tile for tile in tiles if tile not in run.recent_tiles]
    computed = run.site_runner.run([encode_reference_text(run.reference.fetch_padded(contig, start, start + run.window),
                                                          where) for contig, start in missing])
    outputs = {**{tile: run.recent_tiles[tile] for tile in tiles if tile in run.recent_tiles}, **dict(zip(missing, computed))}
    run.recent_tiles = outputs
    found = {}
    for i, (contig, start) in tile_of.items():
        bases = slice(group[i].pos - 1 - start, group[i].pos - 1 - start + len(group[i].ref))
        strands = outputs[contig, start]
        found[i] = StrandOutputs(strands.forward[bases], None if strands.reverse is None else strands.reverse[bases])
    return found


BASE_INDEX = {base: i for i, base in enumerate("ACGT")}


def with_span_masked(ids: torch.Tensor, start: int, length: int) -> torch.Tensor:
    """A copy of a window's ids with [start, start + length) replaced by [MASK]."""
    masked = ids.clone()
    masked[start:start + length] = MASK
    return masked


def _strand(outputs, kind, which: str) -> torch.Tensor | None:
    if outputs is None:
        return None
    return kind.combined(outputs) if which == "combined" else getattr(outputs, which)


def variant_scores(variant: Variant, placed: Windows, ref_out: torch.Tensor | None, alt_out: torch.Tensor | None,
                   site_logp: torch.Tensor | None, wanted: list[str], run: ScoreRun, pooled) -> dict[str, float | None]:
    """Scores of one variant from the [L, d + 4] outputs (hidden states, then base log-probs) of
    its reference and alternative windows (None where not run), and site_logp [len(REF), 4], the
    log-probabilities at its bases from the shared reference tiles (substitutions, when shared);
    pooled(pooling) gives both windows' pooled vectors."""
    scores = {}
    ref_logp = None if ref_out is None else ref_out[:, -4:]
    alt_logp = None if alt_out is None else alt_out[:, -4:]
    if run.site_runner is not None:
        if site_logp is not None and "N" not in variant.ref + variant.alt:  # substitutions only
            ref_sum = sum(float(site_logp[k, BASE_INDEX[base]]) for k, base in enumerate(variant.ref))
            alt_sum = sum(float(site_logp[k, BASE_INDEX[base]]) for k, base in enumerate(variant.alt))
            scores.update(llr=alt_sum - ref_sum, ref_logp=ref_sum, alt_logp=alt_sum)
    elif run.full_window:
        if alt_out is not None:
            ref_ll = sequence_log_likelihood(ref_logp, placed.ref_text)
            alt_ll = sequence_log_likelihood(alt_logp, placed.alt_text)
            scores.update(llr=alt_ll - ref_ll, ref_logp=ref_ll, alt_logp=alt_ll)
    elif len(variant.ref) == len(variant.alt) and "N" not in variant.ref + variant.alt:
        positions = range(placed.offset, min(placed.offset + len(variant.ref), len(placed.ref_text)))
        ref_sum = sum(float(ref_logp[p, BASE_INDEX[placed.ref_text[p]]]) for p in positions)
        alt_sum = sum(float(ref_logp[p, BASE_INDEX[placed.alt_text[p]]]) for p in positions)
        scores.update(llr=alt_sum - ref_sum, ref_logp=ref_sum, alt_logp=alt_sum)
    if alt_out is not None:
        if run.masked:
            ref_span, alt_span = (slice(placed.offset, placed.offset + len(allele)) for allele in (variant.ref, variant.alt))
            scores["delta_pll"] = sequence_log_likelihood(alt_logp[alt_span], placed.alt_text[alt_span]) - \
                sequence_log_likelihood(ref_logp[ref_span], placed.ref_text[ref_span])
        else:
            scores["delta_pll"] = sequence_log_likelihood(alt_logp, placed.alt_text) - \
                sequence_log_likelihood(ref_logp, placed.ref_text)
        if {"emb_cosine", "emb_l2"} & set(wanted):
            ref_pooled, alt_pooled = pooled(run.embedding_pooling)
            scores["emb_cosine"] = float(torch.nn.functional.cosine_similarity(ref_pooled, alt_pooled, dim=0))
            scores["emb_l2"] = float((ref_pooled - alt_pooled).norm())
        if run.head is not None:
            scores |= run.head.scores(pooled(run.head.pooling))
    head_columns = set(run.head.columns()) if run.head else set()
    return {name: value for name, value in scores.items() if name in wanted or name in head_columns}


def sequence_log_likelihood(logp: torch.Tensor, text: str) -> float:
    """Sum over positions of log P(observed base), N positions left out."""
    index = torch.tensor([BASE_INDEX.get(base, -1) for base in text])
    known = index >= 0
    return float(logp[known.nonzero()[:, 0], index[known]].sum())


def _vcf_sink(contig_lengths: dict[str, int], info_fields: dict[str, str]):
    def write(path: Path, tables, schema: pa.Schema, metadata: dict):
        # the chunk bookkeeping is for janus merge, which reads Parquet only
        provenance_only = {k: v for k, v in metadata.items() if k not in ("janus_chunks", "janus_shard")}
        write_scores_vcf(path, tables, contig_lengths, info_fields, provenance_only)

    return write
