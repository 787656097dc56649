from pathlib import Path

import pytest
import torch

DATA = Path(__file__).parent / "data"
ORACLE = DATA / "oracle_fixture_1"


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    torch.set_num_threads(2)

EXAMPLES = Path(__file__).parents[1] / "examples" / "data" / "hg38_chr21"
HG38 = EXAMPLES / "hg38_chr21_22-23Mb.fa.gz"  # chr21, real sequence at 22,000,000-23,000,000 (1-based), N elsewhere


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A small random JanusDNA (d_model 16, 2 layers, max_seq_len 256) saved as a model directory."""
    import janusdna

    torch.manual_seed(1)
    config = janusdna.JanusDNAConfig(d_model=16, n_layers=2, fusion_attn_dim=32, n_experts=4, max_seq_len=256)
    return janusdna.save(janusdna.JanusDNA(config), tmp_path_factory.mktemp("model") / "tiny")
