"""Where the reference FASTA comes from: --fasta, else $JANUS_FASTA, else the user config file
${XDG_CONFIG_HOME:-~/.config}/janus/config.toml with a line `fasta = "/path/to/ref.fa"`."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError, UsageError

FASTA_ENV = "JANUS_FASTA"
HOW_TO_SET = (
    "no reference FASTA: give --fasta REF.fa, set JANUS_FASTA=REF.fa, "
    'or put fasta = "/path/REF.fa" in ~/.config/janus/config.toml'
)


def config_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "janus" / "config.toml"


def resolve_fasta(fasta: str | Path | None) -> Path:
    """The reference FASTA path from the command line, the environment or the config file."""
    if fasta:
        return Path(fasta)
    if os.environ.get(FASTA_ENV):
        return Path(os.environ[FASTA_ENV])
    path = config_file()
    if path.is_file():
        configured = _read_config(path).get("fasta")
        if configured is not None:
            if not isinstance(configured, str) or not configured:
                raise DataError(f"{path}: 'fasta' must be a non-empty string path")
            return Path(configured).expanduser()
    raise UsageError(HOW_TO_SET)


def _read_config(path: Path) -> dict:
    import tomllib

    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise DataError(f"{path}: not valid TOML ({exc})") from None
