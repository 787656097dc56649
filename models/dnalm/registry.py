"""The architectures janus knows, each described by its package's ARCHITECTURE.

Architecture packages import dnalm, so they are imported here lazily, on first use."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# architecture name -> the package that defines it
ARCHITECTURE_PACKAGES = {"janusdna": "janusdna", "hybridna": "hybridna", "mergedna": "mergedna"}

LEGACY_ARCH = "janusdna"  # what a config.json without "arch" is


@dataclass(frozen=True)
class Architecture:
    name: str
    model_class: type  # a dnalm.DNALM subclass
    config_class: type
    presets: dict  # preset name (starting with the architecture's name) -> config
    pretrained_dir: Path | None = None  # shipped models, one directory each
    # (checkpoint, config file) -> model, for checkpoints of the architecture's original code
    import_original: Callable | None = None

    def shipped_models(self) -> dict[str, Path]:
        if self.pretrained_dir is None or not self.pretrained_dir.is_dir():
            return {}
        return {p.name: p for p in sorted(self.pretrained_dir.iterdir()) if (p / "config.json").is_file()}


def architectures() -> dict[str, Architecture]:
    return {name: importlib.import_module(package).ARCHITECTURE for name, package in ARCHITECTURE_PACKAGES.items()}


def architecture(name: str) -> Architecture:
    if name not in ARCHITECTURE_PACKAGES:
        raise ValueError(f"unknown architecture {name!r}; janus knows {', '.join(ARCHITECTURE_PACKAGES)}")
    return importlib.import_module(ARCHITECTURE_PACKAGES[name]).ARCHITECTURE


def presets() -> dict[str, tuple[Architecture, object]]:
    """preset name -> (architecture, config), over every architecture."""
    return {name: (arch, config) for arch in architectures().values() for name, config in arch.presets.items()}


def shipped_models() -> dict[str, tuple[Architecture, Path]]:
    """shipped model name -> (architecture, directory), over every architecture."""
    return {name: (arch, path) for arch in architectures().values() for name, path in arch.shipped_models().items()}
