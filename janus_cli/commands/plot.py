"""`janus plot`: figures from the Parquet outputs of janus likelihood, score-variants, embed,
tokenize and pretrain.

Each plot_* function reads one input, draws one matplotlib figure and writes it to `out` in the
format its suffix names (.png at 150 dpi, .svg, .pdf), under a temporary name in the output
directory renamed into place, so `out` holds either a complete image or nothing.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, PathPatch
from matplotlib.path import Path as MplPath
from matplotlib.textpath import TextPath
from matplotlib.ticker import EngFormatter, MaxNLocator, StrMethodFormatter
from matplotlib.transforms import Affine2D

from ..errors import DataError, UsageError
from ..io.intervals import parse_region

matplotlib.use("Agg")  # before pyplot: no display, and no GUI toolkit import
import matplotlib.pyplot as plt  # noqa: E402

PNG_DPI = 150
# dates left out so that the same input gives the same file
_FORMAT_METADATA = {"png": {}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}

BASES = "ACGT"
BASE_COLORS = {"A": "#109648", "C": "#255c99", "G": "#f7b32b", "T": "#d62839", "N": "#9e9e9e"}
MAX_REGION_BP = 1_000
LETTER_TICKS_MAX_BP = 100

KIND_LOGO, KIND_LOGP = "logo", "logp"
LIKELIHOOD_COLUMNS = ["chrom", "pos", "ref", *(f"logp_{b}" for b in BASES), "skip_reason"]
LLR_COLUMNS = [f"llr_{b}" for b in BASES]

TRANSITIONS = ({"A", "G"}, {"C", "T"})
VARIANT_CLASSES = ["SNV transition", "SNV transversion", "insertion", "deletion", "other/MNV"]
SCORED = "scored"
SCORE_LABELS = {
    "llr": "log-likelihood ratio, alt vs ref (nats)",
    "ref_logp": "log P(ref base) (nats)",
    "alt_logp": "log P(alt base) (nats)",
    "delta_pll": "change in pseudo-log-likelihood (nats)",
}

TRAINING_COLUMNS = ["step", "train_loss", "val_loss", "val_perplexity", "lr"]
MAX_LEGEND_CATEGORIES = 20


# ---- output and input --------------------------------------------------------------------------

def image_format(out: Path) -> str:
    """The format named by the output's suffix; anything else is a usage error."""
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in _FORMAT_METADATA:
        raise UsageError(f"{out}: cannot write a {out.suffix or 'suffix-less'} image; name the output .png, .svg or .pdf")
    if out.is_dir():
        raise UsageError(f"{out}: is a directory; give an output file name ending in .png, .svg or .pdf")
    if not out.parent.is_dir():
        raise DataError(f"{out}: directory {out.parent} does not exist; create it first")
    return fmt


def save_figure(fig, out: Path, fmt: str):
    temp_path = out.parent / f".{out.name}.{os.getpid()}.tmp"
    try:
        fig.savefig(temp_path, format=fmt, dpi=PNG_DPI, metadata=_FORMAT_METADATA[fmt])
        os.replace(temp_path, out)
    finally:
        plt.close(fig)
        temp_path.unlink(missing_ok=True)


def parquet_file(path: Path, what: str) -> pq.ParquetFile:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: cannot read it as Parquet ({exc}); give the Parquet output of {what}") from None


def require_columns(path: Path, schema: pa.Schema, columns: list[str], what: str, hint: str = ""):
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise DataError(
            f"{path}: no column{'s' * (len(missing) > 1)} {', '.join(missing)}; is this the output of {what}?"
            f"{' ' + hint if hint else ''}"
        )


def read_table(path: Path, columns: list[str], what: str, hint: str = "", filters=None) -> pd.DataFrame:
    """The named columns of a Parquet file (all required), optionally only the rows matching filters."""
    schema = parquet_file(path, what).schema_arrow
    require_columns(path, schema, columns, what, hint)
    return pq.read_table(path, columns=columns, filters=filters).to_pandas()


# ---- janus likelihood: region selection and the reference axis ---------------------------------

def likelihood_region(path: Path, region: str | None, columns: list[str], hint: str = "") -> tuple[pd.DataFrame, str, int, int]:
    """Rows of a janus likelihood file in a region of at most MAX_REGION_BP, one per position,
    sorted; and the region as (chrom, start, end), 0-based half-open."""
    what = "janus likelihood"
    if region is None:
        n_rows = parquet_file(path, what).metadata.num_rows
        if n_rows > MAX_REGION_BP:
            raise UsageError(f"{path} has {n_rows:,} rows; choose at most {MAX_REGION_BP:,} bp with -r chrom:beg-end")
        rows = read_table(path, columns, what, hint)
        chroms = rows["chrom"].unique()
        if len(chroms) != 1:
            raise UsageError(f"{path} covers {len(chroms)} contigs; choose a region with -r chrom:beg-end")
        chrom, start, end = chroms[0], None, None
    else:
        chrom, start, end = parse_region(region)
        if end is not None and end - start > MAX_REGION_BP:
            raise UsageError(f"region {region} is {end - start:,} bp; narrow -r to at most {MAX_REGION_BP:,} bp")
        filters = [("chrom", "=", chrom), ("pos", ">=", start)] + ([("pos", "<", end)] if end is not None else [])
        rows = read_table(path, columns, what, hint, filters=filters)
        if rows.empty:
            raise DataError(f"{path}: no rows in region {region}; check the contig name and coordinates against the file")
    # overlapping input records repeat positions: keep one row per position, a scored one if any
    rows = (rows.assign(_skipped=rows["skip_reason"].notna()).sort_values(["pos", "_skipped"])
            .drop_duplicates("pos").drop(columns="_skipped"))
    start = int(rows["pos"].min()) if start is None else start
    end = int(rows["pos"].max()) + 1 if end is None else end
    if end - start > MAX_REGION_BP:
        raise UsageError(f"{path}: the rows span {end - start:,} bp; narrow -r to at most {MAX_REGION_BP:,} bp")
    every_position = pd.DataFrame({"pos": np.arange(start, end, dtype=np.int64)})
    rows = every_position.merge(rows.drop(columns="chrom"), on="pos", how="left")
    rows["ref"] = rows["ref"].fillna("")
    return rows, chrom, start, end


def region_label(chrom: str, start: int, end: int) -> str:
    return f"{chrom}:{start + 1:,}-{end:,}"


def figure_width(n_positions: int) -> float:
    return float(np.clip(2 + 0.14 * n_positions, 7, 20))


def reference_figure(n_positions: int, height: float):
    """A figure with a main axes and, below it on the same x axis, a strip for the reference."""
    fig, (ax, strip) = plt.subplots(
        2, 1, sharex=True, figsize=(figure_width(n_positions), height), layout="constrained",
        gridspec_kw={"height_ratios": [1, 0.1]},
    )
    return fig, ax, strip


def draw_reference_strip(strip, rows: pd.DataFrame, chrom: str, start: int, end: int):
    """The reference as coloured cells (letters inside them for short regions), and 1-based
    genomic coordinates as x tick labels."""
    positions, refs = rows["pos"].to_numpy(), rows["ref"].to_numpy()
    colours = [matplotlib.colors.to_rgba(BASE_COLORS.get(base, BASE_COLORS["N"]) if base else "none") for base in refs]
    strip.imshow([colours], aspect="auto", interpolation="nearest", extent=(start - 0.5, end - 0.5, 0, 1))
    if end - start <= LETTER_TICKS_MAX_BP:
        for pos, base in zip(positions, refs):
            strip.text(pos, 0.5, base, ha="center", va="center", color="white", fontweight="bold",
                       fontsize=7, family="monospace")
    strip.set_xlim(start - 0.5, end - 0.5)
    strip.set_yticks([])
    strip.set_ylabel("ref", rotation=0, ha="right", va="center")
    ticks = [int(t) for t in MaxNLocator(nbins=10, integer=True).tick_values(start + 1, end) if start + 1 <= t <= end]
    strip.set_xticks([t - 1 for t in ticks], [f"{t:,}" for t in ticks])
    strip.set_xlabel(f"{chrom} position (1-based)")


# ---- janus plot track --------------------------------------------------------------------------

def base_probabilities(rows: pd.DataFrame) -> np.ndarray:
    """[L, 4] probabilities over A, C, G, T (NaN rows where unscored), renormalised against
    float32 rounding."""
    probs = np.exp(rows[[f"logp_{b}" for b in BASES]].to_numpy(dtype=np.float64))
    return probs / probs.sum(axis=1, keepdims=True)


def information_content(probs: np.ndarray) -> np.ndarray:
    """Bits per position: 2 - H, H the Shannon entropy in bits."""
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.nansum(np.where(probs > 0, probs * np.log2(probs), 0.0), axis=1)
    return np.where(np.isnan(probs).any(axis=1), np.nan, np.clip(2 - entropy, 0, 2))


def ref_logp(rows: pd.DataFrame) -> np.ndarray:
    """log P(reference base) per position; NaN where the reference is not A, C, G or T."""
    logp = rows[[f"logp_{b}" for b in BASES]].to_numpy(dtype=np.float64)
    index = rows["ref"].map({b: i for i, b in enumerate(BASES)})
    has_base = index.notna().to_numpy()
    out = np.full(len(rows), np.nan)
    out[has_base] = logp[has_base, index[has_base].astype(int)]
    return out


def unit_glyph(base: str) -> MplPath:
    """The letter's outline scaled to fill the unit square."""
    glyph = TextPath((0, 0), base, size=1, prop=FontProperties(family="DejaVu Sans", weight="bold"))
    box = glyph.get_extents()
    return Affine2D().translate(-box.x0, -box.y0).scale(1 / box.width, 1 / box.height).transform_path(glyph)


_GLYPHS = {base: unit_glyph(base) for base in BASES}


def letter_path(base: str, x: float, bottom: float, height: float, width: float = 0.9) -> MplPath:
    """The outline of a letter filling the box [x - width/2, x + width/2] x [bottom, bottom + height]."""
    return Affine2D().scale(width, height).translate(x - width / 2, bottom).transform_path(_GLYPHS[base])


def draw_logo(ax, positions: np.ndarray, probs: np.ndarray):
    content = information_content(probs)
    heights = probs * content[:, None]
    letters = {base: [] for base in BASES}
    for pos, column in zip(positions, heights):
        if np.isnan(column).any():
            continue
        bottom = 0.0
        for i in np.argsort(column):  # the most likely base on top
            if column[i] > 1e-3:
                letters[BASES[i]].append(letter_path(BASES[i], pos, bottom, column[i]))
                bottom += column[i]
    # one patch per base: thousands of single-letter patches draw slowly
    for base, paths in letters.items():
        if paths:
            # add_artist, not add_patch: the limits are set, and computing them from the outlines is slow
            ax.add_artist(PathPatch(MplPath.make_compound_path(*paths), facecolor=BASE_COLORS[base], edgecolor="none"))
    # the 2-bit maximum would flatten the low information content typical of genomic DNA
    top = np.nanmax(content) * 1.1 if np.isfinite(content).any() else 2.0
    ax.set_ylim(0, float(np.clip(top, 0.5, 2.0)))
    ax.set_ylabel("information content (bits)")


def draw_ref_logp(ax, positions: np.ndarray, logp: np.ndarray):
    ax.plot(positions, logp, color="#333333", lw=1, marker="." if len(positions) <= 300 else None, ms=4)
    ax.axhline(math.log(0.25), color="grey", lw=0.8, ls=":", label="uniform, ln(1/4)")
    ax.set_ylim(top=0.05)
    ax.set_ylabel("log P(ref base) (nats)")
    ax.legend(loc="lower right", fontsize=8, frameon=False)


def plot_track(likelihood: Path, out: Path, region: str | None = None, kind: str = KIND_LOGO) -> None:
    """Per-base model predictions along a region: a sequence logo of information content (bits),
    or the log-probability of the reference base (nats)."""
    fmt = image_format(out)
    if kind not in (KIND_LOGO, KIND_LOGP):
        raise UsageError(f"--kind {kind!r}: choose {KIND_LOGO} or {KIND_LOGP}")
    rows, chrom, start, end = likelihood_region(likelihood, region, LIKELIHOOD_COLUMNS)
    fig, ax, strip = reference_figure(end - start, 3.6)
    positions = rows["pos"].to_numpy()
    if kind == KIND_LOGO:
        draw_logo(ax, positions, base_probabilities(rows))
        title = "Predicted base at each position, given all others: information content"
    else:
        draw_ref_logp(ax, positions, ref_logp(rows))
        title = "Log-probability of the reference base, given all other bases"
    ax.set_title(f"{title}\n{region_label(chrom, start, end)} ({end - start:,} bp)", fontsize=10)
    draw_reference_strip(strip, rows, chrom, start, end)
    save_figure(fig, out, fmt)


# ---- janus plot mutagenesis --------------------------------------------------------------------

def plot_mutagenesis(likelihood: Path, out: Path, region: str | None = None) -> None:
    """In-silico mutagenesis: a 4 x L heatmap of log-likelihood ratios of each base against the
    reference base, the reference base marked in each column."""
    fmt = image_format(out)
    hint = "The llr columns come from: janus likelihood --mutagenesis; rerun it with that option."
    rows, chrom, start, end = likelihood_region(likelihood, region, ["chrom", "pos", "ref", *LLR_COLUMNS, "skip_reason"], hint)
    llr = rows[LLR_COLUMNS].to_numpy(dtype=np.float64).T
    limit = np.nanmax(np.abs(llr)) if np.isfinite(llr).any() else 1.0
    limit = limit if limit > 0 else 1.0
    fig, ax, strip = reference_figure(end - start, 3.2)
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="#e0e0e0")
    image = ax.imshow(np.ma.masked_invalid(llr), aspect="auto", cmap=cmap, vmin=-limit, vmax=limit,
                      interpolation="nearest", extent=(start - 0.5, end - 0.5, 3.5, -0.5))
    ref_row = rows["ref"].map({b: i for i, b in enumerate(BASES)})
    is_base = ref_row.notna().to_numpy()
    dot_size = min(30.0, (figure_width(end - start) * 72 * 0.8 / (end - start) * 0.45) ** 2)
    ax.scatter(rows["pos"].to_numpy()[is_base], ref_row[is_base].to_numpy(), s=dot_size, color="black", lw=0)
    ref_dot = Line2D([], [], marker="o", ls="", ms=4, color="black", label="reference base")
    no_score = Patch(color=cmap.get_bad(), label="no score (reference N or skipped)")
    ax.set_yticks(range(4), list(BASES))
    ax.set_ylabel("alt base")
    ax.legend(handles=[ref_dot, no_score], loc="lower left", bbox_to_anchor=(0, 1.0), ncols=2, fontsize=8, frameon=False, handletextpad=0.4)
    ax.set_title(f"In-silico mutagenesis, {region_label(chrom, start, end)} ({end - start:,} bp)", fontsize=10, pad=18)
    fig.colorbar(image, ax=[ax, strip], label="log-likelihood ratio\n(alt vs ref, nats)", shrink=0.9, pad=0.01)
    draw_reference_strip(strip, rows, chrom, start, end)
    save_figure(fig, out, fmt)


# ---- janus plot variants -----------------------------------------------------------------------

def variant_class(ref: str, alt: str) -> str:
    ref, alt = (ref or "").upper(), (alt or "").upper()
    if len(ref) == len(alt) == 1 and ref in BASES and alt in BASES and ref != alt:
        return VARIANT_CLASSES[0] if {ref, alt} in TRANSITIONS else VARIANT_CLASSES[1]
    if len(alt) > len(ref) >= 1 and alt.startswith(ref):
        return "insertion"
    if len(ref) > len(alt) >= 1 and ref.startswith(alt):
        return "deletion"
    return "other/MNV"


def draw_score_distributions(ax, variants: pd.DataFrame, score: str, path: Path):
    values = variants[score].astype("float64")
    if values.notna().sum() == 0:
        ax.text(0.5, 0.5, f"no {score} values: the column is null in all {len(variants):,} rows of {path.name}",
                ha="center", va="center", transform=ax.transAxes, wrap=True)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    groups = [values[variants["class"] == c].dropna().to_numpy() for c in VARIANT_CLASSES]
    present = [i for i, g in enumerate(groups) if len(g)]
    ax.boxplot([groups[i] for i in present], positions=present, widths=0.5, showfliers=False,
               medianprops={"color": "black"})
    jitter = np.random.default_rng(0)
    for i in present:
        ax.scatter(i + jitter.uniform(-0.18, 0.18, len(groups[i])), groups[i], s=8, alpha=0.6, lw=0,
                   color=plt.get_cmap("tab10")(i))
    ax.axhline(0, color="grey", lw=0.8, ls=":")
    ax.set_xticks(range(len(VARIANT_CLASSES)),
                  [f"{c}\n(n={len(g):,})" for c, g in zip(VARIANT_CLASSES, groups)], fontsize=8)
    ax.set_xlim(-0.6, len(VARIANT_CLASSES) - 0.4)
    ax.set_ylabel(SCORE_LABELS.get(score, score))


def draw_skip_counts(ax, variants: pd.DataFrame):
    reasons = variants["skip_reason"].fillna(SCORED)
    counts = reasons.value_counts()
    order = [SCORED] * (SCORED in counts.index) + sorted(r for r in counts.index if r != SCORED)
    bars = ax.barh(range(len(order)), [counts[r] for r in order],
                   color=["#4c72b0" if r == SCORED else "#c44e52" for r in order])
    ax.bar_label(bars, [f"{counts[r]:,}" for r in order], padding=2, fontsize=8)
    ax.set_yticks(range(len(order)), order)
    ax.invert_yaxis()
    ax.set_xlabel("variants")
    ax.set_xlim(0, counts.max() * 1.2)
    ax.set_title("Scored or skipped (skip_reason)", fontsize=10)


def plot_variants(scores: Path, out: Path, score: str = "llr") -> None:
    """The distribution of one score by variant class, and the count of variants per skip_reason."""
    fmt = image_format(out)
    what = "janus score-variants"
    schema = parquet_file(scores, what).schema_arrow
    require_columns(scores, schema, ["ref", "alt", "skip_reason"], what)
    known = {"chrom", "pos", "id", "ref", "alt", "alt_index", "skip_reason"}
    if score not in schema.names:
        available = [n for n in schema.names if n not in known]
        raise DataError(f"{scores}: no score column {score!r}; choose --score among {', '.join(available) or '(none)'}")
    variants = read_table(scores, ["ref", "alt", score, "skip_reason"], what)
    variants["class"] = [variant_class(r, a) for r, a in zip(variants["ref"], variants["alt"])]
    fig, (dist_ax, skip_ax) = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained",
                                           gridspec_kw={"width_ratios": [2.2, 1]})
    draw_score_distributions(dist_ax, variants, score, scores)
    dist_ax.set_title(f"{score} by variant class", fontsize=10)
    draw_skip_counts(skip_ax, variants)
    fig.suptitle(f"{scores.name}: {len(variants):,} variant alleles")
    save_figure(fig, out, fmt)


# ---- janus plot training -----------------------------------------------------------------------

def tokens_per_step(metrics: pd.DataFrame) -> float | None:
    """Tokens per optimizer step when constant over the run (so tokens is a linear axis), else None."""
    if "tokens" not in metrics or metrics["tokens"].isna().any() or (metrics["step"] <= 0).any():
        return None
    ratios = metrics["tokens"] / metrics["step"]
    return float(ratios.iloc[0]) if np.allclose(ratios, ratios.iloc[0]) else None


def plot_training(run_dir: Path, out: Path) -> None:
    """Training and validation loss, validation perplexity and learning rate against step."""
    fmt = image_format(out)
    path = run_dir if run_dir.is_file() else run_dir / "metrics.parquet"
    if not path.is_file():
        raise DataError(f"{path}: not found; give a janus pretrain run directory (or its metrics.parquet)")
    has_tokens = "tokens" in parquet_file(path, "janus pretrain").schema_arrow.names
    metrics = read_table(path, TRAINING_COLUMNS + ["tokens"] * has_tokens, "janus pretrain")
    if metrics.empty:
        raise DataError(f"{path}: no rows yet; plot again once the run has logged a step")
    metrics = metrics.sort_values("step")
    validated = metrics[metrics["val_loss"].notna()]
    fig, (loss_ax, ppl_ax, lr_ax) = plt.subplots(3, 1, sharex=True, figsize=(8, 7), layout="constrained",
                                                 gridspec_kw={"height_ratios": [3, 2, 1.2]})
    loss_ax.plot(metrics["step"], metrics["train_loss"], lw=1, color="#4c72b0", label="train")
    if not validated.empty:
        loss_ax.plot(validated["step"], validated["val_loss"], marker="o", ms=4, color="#dd8452", label="validation")
        ppl_ax.plot(validated["step"], validated["val_perplexity"], marker="o", ms=4, color="#dd8452")
    else:
        ppl_ax.text(0.5, 0.5, "no validation in this run", ha="center", va="center", transform=ppl_ax.transAxes)
    loss_ax.set_ylabel("cross-entropy\n(nats per base)")
    loss_ax.legend(frameon=False)
    loss_ax.grid(alpha=0.3)
    ppl_ax.set_ylabel("validation\nperplexity (per base)")
    ppl_ax.grid(alpha=0.3)
    lr_ax.plot(metrics["step"], metrics["lr"], lw=1, color="#55a868")
    lr_ax.set_ylabel("learning rate")
    lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    lr_ax.set_xlabel("optimizer step")
    lr_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    per_step = tokens_per_step(metrics)
    if per_step:
        tokens_axis = loss_ax.secondary_xaxis("top", functions=(lambda s: s * per_step, lambda t: t / per_step))
        tokens_axis.xaxis.set_major_formatter(EngFormatter(sep=""))
        tokens_axis.set_xlabel("tokens")
    fig.suptitle(f"Pretraining curves of {path.parent.resolve().name}/ ({int(metrics['step'].max()):,} steps)", fontsize=11)
    save_figure(fig, out, fmt)


# ---- janus plot embeddings ---------------------------------------------------------------------

def principal_components(embeddings: np.ndarray, n: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates on the first n principal components, and the fraction of variance of each."""
    centred = embeddings - embeddings.mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    variance = s**2
    fraction = variance / variance.sum() if variance.sum() > 0 else np.zeros_like(variance)
    return u[:, :n] * s[:n], fraction[:n]


def name_field_values(names: pd.Series, field: int, path: Path) -> pd.Series:
    """The field-th (1-based) ':'-separated field of each name."""
    parts = names.astype(str).str.split(":")
    short = parts.str.len() < field
    if short.any():
        example = names[short].iloc[0]
        raise DataError(f"{path}: name {example!r} has no field {field} (fields are separated by ':'); choose a smaller --name-field")
    return parts.str[field - 1]


def draw_categories(fig, ax, coords: np.ndarray, values: pd.Series, label: str):
    counts = values.value_counts()
    categories = sorted(counts.index, key=str)
    if len(categories) <= MAX_LEGEND_CATEGORIES:
        palette = plt.get_cmap("tab10" if len(categories) <= 10 else "tab20")
        for i, category in enumerate(categories):
            mask = (values == category).to_numpy()
            ax.scatter(coords[mask, 0], coords[mask, 1], s=18, alpha=0.8, lw=0, color=palette(i),
                       label=f"{category} ({counts[category]:,})")
        ax.legend(title=label, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
        return
    numeric = pd.api.types.is_numeric_dtype(values)
    colour = values.to_numpy(dtype=float) if numeric else values.map({c: i for i, c in enumerate(categories)}).to_numpy()
    points = ax.scatter(coords[:, 0], coords[:, 1], c=colour, cmap="viridis", s=18, alpha=0.8, lw=0)
    integers = numeric and pd.api.types.is_integer_dtype(values)
    fig.colorbar(points, ax=ax, format=StrMethodFormatter("{x:,.0f}") if integers else None,
                 label=label if numeric else f"{label} ({len(categories):,} categories, in sorted order)")


def plot_embeddings(embeddings: Path, out: Path, color_by: str = "name", name_field: int | None = None) -> None:
    """The embedded (non-skipped) regions on their first two principal components, coloured by a column."""
    fmt = image_format(out)
    what = "janus embed"
    if name_field is not None and name_field < 1:
        raise UsageError(f"--name-field {name_field}: fields are numbered from 1")
    schema = parquet_file(embeddings, what).schema_arrow
    require_columns(embeddings, schema, ["embedding", "skip_reason", color_by], what)
    if pa.types.is_list(schema.field("embedding").type.value_type):
        raise DataError(f"{embeddings}: holds per-position embeddings; plot pooled ones (janus embed without --per-position)")
    table = read_table(embeddings, list(dict.fromkeys(["embedding", "skip_reason", color_by])), what)
    table = table[table["skip_reason"].isna() & table["embedding"].notna()].reset_index(drop=True)
    if len(table) < 2:
        raise DataError(f"{embeddings}: {len(table)} embedded (non-skipped) rows; a PCA needs at least 2")
    coords, fraction = principal_components(np.stack(table["embedding"].to_numpy()).astype(np.float64))
    values = table[color_by]
    label = color_by
    if name_field is not None:
        values, label = name_field_values(values, name_field, embeddings), f"{color_by} field {name_field}"
    values = values.fillna("(none)") if not pd.api.types.is_numeric_dtype(values) else values
    fig, ax = plt.subplots(figsize=(8.5, 6), layout="constrained")
    draw_categories(fig, ax, coords, values, label)
    ax.set_xlabel(f"PC1 ({fraction[0]:.1%} variance)")
    ax.set_ylabel(f"PC2 ({fraction[1]:.1%} variance)")
    ax.set_title(f"PCA of {len(table):,} embeddings, {embeddings.name}", fontsize=10)
    save_figure(fig, out, fmt)


# ---- janus plot tokens -------------------------------------------------------------------------

MAX_TOKEN_GROUPS = 10  # lines drawn; smaller groups are pooled into one "other" line


def token_length_groups(values: pd.Series, lengths: pd.Series) -> list[tuple[str, np.ndarray]]:
    """(label, token lengths) per group: the MAX_TOKEN_GROUPS groups with most tokens in sorted
    order, then the others pooled."""
    counts = values.value_counts()
    kept = sorted(counts.index[:MAX_TOKEN_GROUPS], key=str) if len(counts) > MAX_TOKEN_GROUPS else sorted(counts.index, key=str)
    groups = [(str(group), lengths[values == group].to_numpy()) for group in kept]
    rest = ~values.isin(kept)
    if rest.any():
        groups.append((f"other ({len(counts) - len(kept):,} groups)", lengths[rest].to_numpy()))
    return groups


def plot_tokens(tokens: Path, out: Path, by: str = "class", name_field: int | None = None) -> None:
    """Token-length distributions (the fraction of a group's tokens of each length) of the groups
    of a column, one line per group (as MergeDNA's Fig. 2 draws promoters, enhancers and splice
    sites)."""
    fmt = image_format(out)
    what = "janus tokenize"
    if name_field is not None and name_field < 1:
        raise UsageError(f"--name-field {name_field}: fields are numbered from 1")
    table = read_table(tokens, list(dict.fromkeys(["length", "skip_reason", by])), what)
    table = table[table["skip_reason"].isna() & table["length"].notna()].reset_index(drop=True)
    if table.empty:
        raise DataError(f"{tokens}: no tokens (every record was skipped); nothing to plot")
    values, label = table[by], by
    if name_field is not None:
        values, label = name_field_values(values, name_field, tokens), f"{by} field {name_field}"
    values = values.astype(str) if not pd.api.types.is_numeric_dtype(values) else values
    lengths = table["length"].astype(np.int64)
    longest = int(lengths.max())
    x = np.arange(1, longest + 1)
    groups = token_length_groups(values, lengths)
    pooled = values.nunique() > MAX_TOKEN_GROUPS  # the last group is "other"
    fig, ax = plt.subplots(figsize=(9.5, 4.8), layout="constrained")
    for i, (group, group_lengths) in enumerate(groups):
        fraction = np.bincount(group_lengths, minlength=longest + 1)[1:] / len(group_lengths)
        other = pooled and i == len(groups) - 1
        ax.plot(x, fraction, marker="o", ms=3.5, lw=1.4, color="black" if other else plt.get_cmap("tab10")(i),
                ls="--" if other else "-",
                label=f"{group}\n  {len(group_lengths):,} tokens, mean {group_lengths.mean():.2f} bp, "
                      f"peak {int(x[np.argmax(fraction)])} bp")
    ax.set_xticks(x if longest <= 32 else MaxNLocator(integer=True).tick_values(1, longest))
    ax.set_xlim(0.5, longest + 0.5)
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
    ax.set_xlabel("token length (bp)")
    ax.set_ylabel("share of the group's tokens")
    ax.grid(alpha=0.3)
    ax.legend(title=label, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False, labelspacing=0.8)
    ax.set_title(f"Token lengths by {label}: {len(table):,} tokens, {tokens.name}", fontsize=10)
    save_figure(fig, out, fmt)


# ---- janus plot generated ----------------------------------------------------------------------


def plot_generated(scored: Path, out: Path, score: str = "oracle_prob", threshold: float = 0.5) -> None:
    """An oracle's score distributions of generated and real sequences: one panel per label, one
    histogram per source (e.g. beam search, sampling, real held-out sequences), with each
    source's count, mean and share above the threshold."""
    fmt = image_format(out)
    what = "scored sequences (source, label and a score column, e.g. from benchmarks/generation_eval.py)"
    table = read_table(scored, ["source", "label", score], what)
    table = table[table[score].notna()]
    if table.empty:
        raise DataError(f"{scored}: no row has a {score}; nothing to plot")
    labels = sorted(table["label"].astype(str).unique())
    sources = list(dict.fromkeys(table["source"].astype(str)))
    bins = np.linspace(min(0.0, table[score].min()), max(1.0, table[score].max()), 26)
    fig, axes = plt.subplots(1, len(labels), figsize=(5.2 * len(labels), 4.2), sharey=True, layout="constrained",
                             squeeze=False)
    for ax, label in zip(axes[0], labels):
        rows = table[table["label"].astype(str) == label]
        for i, source in enumerate(sources):
            values = rows.loc[rows["source"].astype(str) == source, score].to_numpy(dtype=float)
            if not len(values):
                continue
            ax.hist(values, bins=bins, histtype="step", lw=1.8, color=plt.get_cmap("tab10")(i),
                    ls="--" if source.startswith("real") else "-",
                    label=f"{source}: n {len(values)}, mean {values.mean():.2f}, > {threshold:g}: "
                          f"{(values > threshold).mean():.0%}")
        ax.axvline(threshold, color="grey", lw=0.8, ls=":")
        ax.set_title(f"label {label}", fontsize=10)
        ax.set_xlabel(score)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False)
    axes[0][0].set_ylabel("sequences")
    fig.suptitle(f"{score} of generated and real sequences, by label ({scored.name})", fontsize=10)
    save_figure(fig, out, fmt)
