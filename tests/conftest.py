import os
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


@pytest.fixture(scope="session")
def tiny_hybridna_dir(tmp_path_factory):
    """A small random HybriDNA (d_model 16, 2 layers: Mamba2 then attention, max_seq_len 256)."""
    import dnalm

    torch.manual_seed(1)
    config = dnalm.architecture("hybridna").config_class(
        d_model=16, n_layers=2, attn_period=2, attn_offset=1, n_heads=2, n_kv_heads=1, d_state=8, headdim=8,
        chunk_size=32, max_seq_len=256, name="tiny-hybridna")
    return dnalm.save(dnalm.architecture("hybridna").model_class(config), tmp_path_factory.mktemp("model") / "tiny-hybridna")


@pytest.fixture(scope="session")
def tiny_mergedna_dir(tmp_path_factory):
    """A small random MergeDNA (d_model 16, one block per stack, max_seq_len 256)."""
    import dnalm

    torch.manual_seed(1)
    config = dnalm.architecture("mergedna").config_class(
        d_model=16, n_heads=2, ffn_dim=32, local_encoder_layers=1, latent_encoder_layers=1, latent_decoder_layers=1,
        local_decoder_layers=1, group_dim=8, max_seq_len=256, name="tiny-mergedna")
    return dnalm.save(dnalm.architecture("mergedna").model_class(config), tmp_path_factory.mktemp("model") / "tiny-mergedna")


@pytest.fixture(scope="session", params=["janusdna", "hybridna", "mergedna"])
def model_dir_of_every_arch(request, tiny_model_dir, tiny_hybridna_dir, tiny_mergedna_dir):
    """The tiny model of every architecture (MergeDNA predicts a base with that base masked)."""
    return {"janusdna": tiny_model_dir, "hybridna": tiny_hybridna_dir, "mergedna": tiny_mergedna_dir}[request.param]


@pytest.fixture(scope="session", params=["janusdna", "hybridna"])
def model_dir_of_each_arch(request, tiny_model_dir, tiny_hybridna_dir):
    """The tiny model of each architecture that predicts every base (see tiny_model_dir)."""
    return {"janusdna": tiny_model_dir, "hybridna": tiny_hybridna_dir}[request.param]


@pytest.fixture
def read_only_dir(tmp_path, monkeypatch):
    """A directory nobody can create files in. Root writes in read-only directories anyway, so
    there creating anything is made to fail the same way (Path.mkdir raises PermissionError)."""
    directory = tmp_path / "read_only"
    directory.mkdir()
    directory.chmod(0o555)
    if os.access(directory, os.W_OK):

        def permission_denied(path, *args, **kwargs):
            raise PermissionError(13, "Permission denied", str(path))

        monkeypatch.setattr("pathlib.Path.mkdir", permission_denied)
    yield directory
    monkeypatch.undo()
    directory.chmod(0o755)
