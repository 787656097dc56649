"""The shipped models (the default JanusDNA and the causal HybriDNA): each loads by name, stays
small, has a model card, and predicts held-out human DNA far better than base frequencies do (real
hg38 sequence from a chromosome it never saw; HybriDNA from the left context only)."""

import numpy as np
import pytest
import torch

import dnalm
import janusdna
from conftest import DATA
from janus_cli.io.fasta import Reference
from dnalm.checkpoint import WEIGHTS_FILE, resolve_model_path

HELD_OUT = DATA / "hg38_chr21_22.50-22.52Mb.fa.gz"


SHIPPED = {janusdna.DEFAULT_MODEL: "janusdna", "hybridna-d64-chr20": "hybridna"}


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_models_load_by_name_and_are_small(name):
    path = resolve_model_path(name)
    assert (path / WEIGHTS_FILE).stat().st_size <= 20 * 2**20
    assert (path / "MODEL_CARD.md").is_file()
    model = dnalm.load(name)
    assert model.config.name == name and model.arch == SHIPPED[name] and not model.training


@pytest.mark.parametrize("name, accuracy_floor", [(janusdna.DEFAULT_MODEL, 0.4), ("hybridna-d64-chr20", 0.38)])
def test_shipped_models_beat_base_frequencies_on_held_out_dna(name, accuracy_floor):
    with Reference(HELD_OUT) as ref:
        (contig, length), = ref.lengths.items()
        ids = janusdna.encode(ref.fetch(contig, 0, length))
    windows = ids[: length // 1024 * 1024].view(-1, 1024)
    model = dnalm.load(name)
    with torch.inference_mode():
        log_probs = torch.cat([model.base_log_probs(windows[i : i + 4]) for i in range(0, len(windows), 4)])
    truth = windows - 7  # A C G T -> 0 1 2 3 (the slice has no N)
    nll = -log_probs.gather(-1, truth.unsqueeze(-1)).mean().item()
    freqs = np.bincount(truth.flatten().numpy(), minlength=4) / truth.numel()
    unigram_nll = -(freqs * np.log(freqs)).sum()  # the best any base-frequency model can do here
    accuracy = (log_probs.argmax(-1) == truth).float().mean().item()
    assert np.exp(nll) < np.exp(unigram_nll) - 0.3
    assert accuracy > accuracy_floor
