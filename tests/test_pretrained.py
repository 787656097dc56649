"""The shipped default model: it loads by name, stays small, and predicts held-out human DNA far
better than base frequencies do (real hg38 sequence from a chromosome it never saw)."""

import numpy as np
import torch

import janusdna
from conftest import DATA
from janus_cli.io.fasta import Reference
from dnalm.checkpoint import WEIGHTS_FILE, resolve_model_path

HELD_OUT = DATA / "hg38_chr21_22.50-22.52Mb.fa.gz"


def test_default_model_loads_by_name_and_is_small():
    path = resolve_model_path(janusdna.DEFAULT_MODEL)
    assert (path / WEIGHTS_FILE).stat().st_size <= 20 * 2**20
    assert (path / "MODEL_CARD.md").is_file()
    model = janusdna.load(janusdna.DEFAULT_MODEL)
    assert model.config.name == janusdna.DEFAULT_MODEL and not model.training


def test_default_model_beats_base_frequencies_on_held_out_dna():
    with Reference(HELD_OUT) as ref:
        (name, length), = ref.lengths.items()
        ids = janusdna.encode(ref.fetch(name, 0, length))
    windows = ids[: length // 1024 * 1024].view(-1, 1024)
    model = janusdna.load(janusdna.DEFAULT_MODEL)
    with torch.inference_mode():
        log_probs = torch.cat([model.base_log_probs(windows[i : i + 4]) for i in range(0, len(windows), 4)])
    truth = windows - 7  # A C G T -> 0 1 2 3 (the slice has no N)
    nll = -log_probs.gather(-1, truth.unsqueeze(-1)).mean().item()
    freqs = np.bincount(truth.flatten().numpy(), minlength=4) / truth.numel()
    unigram_nll = -(freqs * np.log(freqs)).sum()  # the best any base-frequency model can do here
    accuracy = (log_probs.argmax(-1) == truth).float().mean().item()
    assert np.exp(nll) < np.exp(unigram_nll) - 0.3
    assert accuracy > 0.4
