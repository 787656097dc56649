"""Build and load the small C kernels that some fast paths use, on first use.

A kernel is one C file beside the Python module that calls it, with any local headers it
includes (`#include "name.h"`, beside it). It is compiled once per machine with the system C
compiler (`$CC`, else `cc`) for the host CPU and cached under `$JANUS_CACHE_DIR` (default
`~/.cache/janus`), keyed by the source and its headers, the flags, the compiler and the CPU's
feature flags. Without a compiler, or with `JANUS_NATIVE=0`, `load` returns None and
the caller falls back to its pure-PyTorch path; a missing compiler is noted once on stderr,
however many kernels wanted it.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp-simd", "-fPIC", "-shared", "-pthread"]
LIBRARIES = ["-lm"]


def _cpu_features() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cache_dir() -> Path:
    root = os.environ.get("JANUS_CACHE_DIR") or Path.home() / ".cache" / "janus"
    return Path(root) / "native"


def source_text(source: Path) -> str:
    """The C file and the local headers it includes: everything its build depends on but the system."""
    text = source.read_text()
    headers = re.findall(r'^#include "([^"]+)"', text, flags=re.MULTILINE)
    return "\0".join([text, *(source.with_name(header).read_text() for header in headers)])


@functools.cache
def _notice(message: str) -> None:
    print(f"janus: {message}; using the pure-PyTorch path (slower, same results)", file=sys.stderr)


def _compile(source: Path, compiler: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        built = Path(tmp) / target.name
        subprocess.run([compiler, *FLAGS, str(source), "-o", str(built), *LIBRARIES],
                       check=True, capture_output=True, text=True)
        os.replace(built, target)  # atomic: concurrent processes never load a half-written file


@functools.cache
def load(source: Path) -> ctypes.CDLL | None:
    """The compiled kernel library for the C file `source`, or None (after one stderr notice)."""
    if os.environ.get("JANUS_NATIVE", "1") == "0":
        return None
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        _notice("no C compiler found to build the CPU kernels")
        return None
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
        key = hashlib.sha256("\0".join([source_text(source), " ".join(FLAGS), version, _cpu_features()]).encode())
        target = _cache_dir() / f"{source.stem}-{key.hexdigest()[:16]}.so"
        if not target.exists():
            try:
                _compile(source, compiler, target)
            except PermissionError:
                target = Path(tempfile.gettempdir()) / "janus-native" / target.name
                if not target.exists():
                    _compile(source, compiler, target)
        return ctypes.CDLL(str(target))
    except (OSError, subprocess.CalledProcessError) as err:
        detail = getattr(err, "stderr", "") or str(err)
        _notice(f"could not build {source.name} ({detail.strip().splitlines()[-1] if detail.strip() else err})")
        return None
