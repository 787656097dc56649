"""MergeDNA: a hierarchical autoencoder Transformer with a learned, context-aware DNA tokenizer (Li et al. 2025).

One architecture of the dnalm layer; dnalm.load/save/from_preset read and write it. What is
MergeDNA's own is the model (model.py), its merge algorithm (merging.py) and its presets."""

from pathlib import Path

from dnalm.registry import Architecture

from .merging import TokenState, unmerge
from .model import PRESETS, MergeDNA, MergeDNAConfig

ARCHITECTURE = Architecture("mergedna", MergeDNA, MergeDNAConfig, PRESETS, Path(__file__).parent / "pretrained")

__all__ = ["ARCHITECTURE", "MergeDNA", "MergeDNAConfig", "PRESETS", "TokenState", "unmerge"]
