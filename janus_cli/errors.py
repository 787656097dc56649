"""Exit codes and the one place that turns library errors into a one-line message on stderr."""

from __future__ import annotations

import contextlib
import os
import sys

import typer

EXIT_OK = 0
EXIT_DATA_ERROR = 1  # bad or unreadable input data that stops a run
EXIT_USAGE_ERROR = 2  # wrong options or arguments (also Typer/Click's own code)


class UsageError(Exception):
    """The command line asks for something impossible; the message says what to change."""


class DataError(Exception):
    """The input data (a file, a record) cannot be used; the message names it and what to do."""


@contextlib.contextmanager
def reported_errors():
    """Print known errors as 'janus: error: ...' and exit with their code; no traceback."""
    from dnalm import CapabilityError, CheckpointError

    try:
        yield
    except (UsageError, CapabilityError) as exc:
        print(f"janus: error: {exc}", file=sys.stderr)
        raise typer.Exit(EXIT_USAGE_ERROR) from None
    except (DataError, CheckpointError, FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        print(f"janus: error: {exc}", file=sys.stderr)
        raise typer.Exit(EXIT_DATA_ERROR) from None
    except BrokenPipeError:
        # the reader of stdout has gone (janus ... | head): stop quietly; later writes (the
        # interpreter's final flush) go nowhere instead of raising again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(EXIT_OK) from None
