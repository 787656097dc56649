"""The janus command: each command parses options and calls one library function."""

from __future__ import annotations

import json
from pathlib import Path

import typer

import janusdna

from .errors import reported_errors

app = typer.Typer(
    name="janus",
    help="Genomics with JanusDNA, a bidirectional DNA foundation model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool):
    if value:
        print(janusdna.__version__)
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
):
    """Genomics with JanusDNA, a bidirectional DNA foundation model."""


@app.command(
    epilog="Examples:\n\n  janus info janusdna-d144\n\n  janus info my_model_dir --json",
)
def info(
    model: str = typer.Argument(..., help="Model directory, shipped model name, or preset name (random weights)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of key<TAB>value lines."),
):
    """Print a model's config, total and activated parameter counts, and weights sha256."""
    from .model_info import describe_model

    with reported_errors():
        described = describe_model(model)
    if as_json:
        print(json.dumps(described, indent=2))
    else:
        for key, value in described.items():
            print(f"{key}\t{value}")


@app.command(
    "import-checkpoint",
    epilog="Example:\n\n  janus import-checkpoint last.ckpt model_config.json -o janusdna-d72/",
)
def import_checkpoint(
    ckpt: Path = typer.Argument(..., help="Original JanusDNA training checkpoint (Lightning .ckpt), read weights-only."),
    model_config: Path = typer.Argument(..., help="The run's model_config.json ({\"config\": {...}})."),
    out: Path = typer.Option(..., "-o", "--out", help="Output model directory (native config.json + model.safetensors)."),
):
    """Convert an original JanusDNA checkpoint into a native model directory."""
    with reported_errors():
        model = janusdna.from_original(ckpt, model_config)
        janusdna.save(model, out)
    typer.echo(f"janus: wrote {out} ({model.num_parameters():,} parameters)", err=True)

