"""The janus plot commands: each parses options and calls one function of janus_cli.plot (imported
inside the command, so that matplotlib is loaded only when a plot is drawn)."""

from __future__ import annotations

from pathlib import Path

import typer

from .errors import reported_errors

plot_app = typer.Typer(
    help="Figures from janus outputs: likelihood tracks, mutagenesis, variant scores, training curves, embeddings, token lengths.",
    no_args_is_help=True,
)

OUT_HELP = "Output image; the suffix sets the format: .png (150 dpi), .svg or .pdf."
REGION_HELP = (
    "Region chr:beg-end, 1-based inclusive, at most 1,000 bp "
    "(default: the whole file, when it covers at most 1,000 positions of one contig)."
)


def _wrote(out: Path):
    typer.echo(f"janus: wrote {out}", err=True)


@plot_app.command(
    epilog=(
        "Examples:\n\n"
        "  janus plot track chr21.ll.parquet -r chr21:22,000,001-22,000,200 -o track.png\n\n"
        "  janus plot track chr21.ll.parquet -r chr21:22,000,001-22,000,200 --kind logp -o logp.pdf"
    ),
)
def track(
    likelihood: Path = typer.Argument(..., help="Per-base Parquet from janus likelihood."),
    out: Path = typer.Option(..., "-o", "--out", help=OUT_HELP, show_default=False),
    region: str = typer.Option(None, "-r", "--region", help=REGION_HELP, show_default=False),
    kind: str = typer.Option(
        "logo", "--kind", show_default=False,
        help="logo: predicted bases as stacked letters, height = probability x information content (bits); "
             "logp: log-probability of the reference base (nats) (default: logo).",
    ),
):
    """Plot the model's per-base predictions along a region, with the reference below."""
    from .commands.plot import plot_track

    with reported_errors():
        plot_track(likelihood, out, region=region, kind=kind)
    _wrote(out)


@plot_app.command(
    epilog="Example:\n\n  janus plot mutagenesis chr21.ism.parquet -r chr21:22,000,001-22,000,100 -o ism.png",
)
def mutagenesis(
    likelihood: Path = typer.Argument(..., help="Per-base Parquet from janus likelihood --mutagenesis (llr_A..llr_T columns)."),
    out: Path = typer.Option(..., "-o", "--out", help=OUT_HELP, show_default=False),
    region: str = typer.Option(None, "-r", "--region", help=REGION_HELP, show_default=False),
):
    """Plot in-silico mutagenesis: log-likelihood ratio of every base against the reference, per position."""
    from .commands.plot import plot_mutagenesis

    with reported_errors():
        plot_mutagenesis(likelihood, out, region=region)
    _wrote(out)


@plot_app.command(
    epilog=(
        "Examples:\n\n"
        "  janus plot variants na12878.scores.parquet -o variants.png\n\n"
        "  janus plot variants na12878.scores.parquet --score delta_pll -o delta_pll.svg"
    ),
)
def variants(
    scores: Path = typer.Argument(..., help="Parquet from janus score-variants."),
    out: Path = typer.Option(..., "-o", "--out", help=OUT_HELP, show_default=False),
    score: str = typer.Option("llr", "--score", help="Score column to plot, e.g. llr, delta_pll, emb_cosine (default: llr).", show_default=False),
):
    """Plot a variant score by class (transition, transversion, insertion, deletion, other) and the skip counts."""
    from .commands.plot import plot_variants

    with reported_errors():
        plot_variants(scores, out, score=score)
    _wrote(out)


@plot_app.command(
    epilog="Examples:\n\n  janus plot training run/ -o curves.png\n\n  janus plot training run/metrics.parquet -o curves.pdf",
)
def training(
    run_dir: Path = typer.Argument(..., help="Run directory of janus pretrain (or its metrics.parquet)."),
    out: Path = typer.Option(..., "-o", "--out", help=OUT_HELP, show_default=False),
):
    """Plot pretraining curves: train and validation loss, validation perplexity and learning rate by step."""
    from .commands.plot import plot_training

    with reported_errors():
        plot_training(run_dir, out)
    _wrote(out)


@plot_app.command(
    epilog=(
        "Examples:\n\n"
        "  janus plot embeddings regions.emb.parquet -o pca.png\n\n"
        "  janus plot embeddings benchmarks.emb.parquet --color-by name --name-field 3 -o pca_by_class.png"
    ),
)
def embeddings(
    embeddings_parquet: Path = typer.Argument(..., metavar="EMBEDDINGS", help="Parquet from janus embed (pooled, not --per-position)."),
    out: Path = typer.Option(..., "-o", "--out", help=OUT_HELP, show_default=False),
    color_by: str = typer.Option("name", "--color-by", help="Column that colours the points (default: name).", show_default=False),
    name_field: int = typer.Option(
        None, "--name-field", show_default=False,
        help="Colour by this 1-based field of the ':'-separated --color-by value, e.g. 3 for the class of "
             "Genomic Benchmarks names task:split:class:id (default: the whole value).",
    ),
):
    """Plot embeddings on their first two principal components, coloured by a column."""
    from .commands.plot import plot_embeddings

    with reported_errors():
        plot_embeddings(embeddings_parquet, out, color_by=color_by, name_field=name_field)
    _wrote(out)


@plot_app.command(
    epilog=(
        "Examples:\n\n"
        "  janus plot tokens tokens.parquet -o token_lengths.png\n\n"
        "  janus plot tokens tokens.parquet --by name --name-field 3 -o token_lengths_by_class.pdf"
    ),
)
def tokens(
    tokens_parquet: Path = typer.Argument(..., metavar="TOKENS", help="Parquet from janus tokenize."),
    out: Path = typer.Option(..., "-o", "--out", help=OUT_HELP, show_default=False),
    by: str = typer.Option("class", "--by", help="Column whose groups get one line each, e.g. class, name, chrom (default: class).", show_default=False),
    name_field: int = typer.Option(
        None, "--name-field", show_default=False,
        help="Group by this 1-based field of the ':'-separated --by value, e.g. 3 for the class of "
             "Genomic Benchmarks names task:split:class:id (default: the whole value).",
    ),
):
    """Plot token-length distributions of janus tokenize output, one line per group of a column."""
    from .commands.plot import plot_tokens

    with reported_errors():
        plot_tokens(tokens_parquet, out, by=by, name_field=name_field)
    _wrote(out)


@plot_app.command(
    epilog=(
        "Examples:\n\n"
        "  python benchmarks/generation_eval.py --generator gen/ --oracle oracle/ --real test.csv.gz --out eval/\n\n"
        "  janus plot generated eval/scored.parquet -o generated.png"
    ),
)
def generated(
    scored: Path = typer.Argument(..., metavar="SCORED", help="Parquet with columns source, label and the score, one row per sequence (benchmarks/generation_eval.py writes it)."),
    out: Path = typer.Option(..., "-o", "--out", help=OUT_HELP, show_default=False),
    score: str = typer.Option("oracle_prob", "--score", help="The score column, e.g. an oracle classifier's probability of the wanted label."),
    threshold: float = typer.Option(0.5, "--threshold", help="Draw this line and report each source's share above it."),
):
    """Plot an oracle's score distributions for generated vs real sequences, one panel per label."""
    from .commands.plot import plot_generated

    with reported_errors():
        plot_generated(scored, out, score=score, threshold=threshold)
    _wrote(out)
