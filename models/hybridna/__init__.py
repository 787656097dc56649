"""HybriDNA: a causal hybrid Mamba2/attention DNA language model (Ma et al. 2025), one
architecture of the dnalm layer.

The model, its presets and the inference cache are in model.py; the SSD kernel and its sequential
reference twin are in ssd.py."""

from pathlib import Path

from dnalm.registry import Architecture

from .model import (
    BOS,
    PRESETS,
    HybriDNA,
    HybriDNAConfig,
    InferenceCache,
    KVCache,
    Mamba2,
    Mamba2State,
)

ARCHITECTURE = Architecture("hybridna", HybriDNA, HybriDNAConfig, PRESETS, Path(__file__).parent / "pretrained")

__all__ = [
    "ARCHITECTURE",
    "BOS",
    "PRESETS",
    "HybriDNA",
    "HybriDNAConfig",
    "InferenceCache",
    "KVCache",
    "Mamba2",
    "Mamba2State",
]
