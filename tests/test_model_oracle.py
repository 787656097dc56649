"""Our model against outputs of the original JanusDNA code on fixed weights (tests/data/oracle_fixture_1)."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import janusdna
from conftest import ORACLE


@pytest.fixture(scope="module")
def imported():
    return janusdna.from_original(ORACLE / "last.ckpt", ORACLE / "model_config.json")


@pytest.fixture(scope="module")
def ids():
    return torch.from_numpy(np.load(ORACLE / "input_ids.npy"))


def test_imported_config_matches_fixture(imported):
    cfg = imported.config
    assert (cfg.d_model, cfg.mid_attention_layers, cfg.final_mlp, cfg.vocab_size) == (32, (4,), False, 16)
    assert cfg.fusion_attn_dim == 64 and cfg.resolved_ffn_dim == 128 and cfg.resolved_dt_rank == 2


def test_logits_hidden_and_losses_match_original(imported, ids):
    with torch.inference_mode():
        logits, aux = imported.forward_with_aux(ids)
        hidden = imported.hidden_states(ids)
    assert np.abs(logits.numpy() - np.load(ORACLE / "logits.npy")).max() <= 1e-4
    assert np.abs(hidden.numpy() - np.load(ORACLE / "hidden.npy")).max() <= 1e-4
    expected = json.loads((ORACLE / "aux_loss.json").read_text())
    assert aux.item() == pytest.approx(expected["aux_loss"], abs=1e-5)
    ce = F.cross_entropy(logits.reshape(-1, 16), ids.reshape(-1), ignore_index=4)
    assert ce.item() == pytest.approx(expected["ce_loss_ignore_index_4"], abs=1e-5)


def test_router_logits_match_original_per_block(imported, ids):
    taps = np.load(ORACLE / "intermediates.npz")
    with torch.inference_mode():
        _, router_f, router_b = imported.trunk(ids)
    for k, layer in enumerate((1, 3, 5, 7)):
        prefix = f"router_logits.model.layers.{layer}.mamba_module"
        assert np.abs(router_f[k].numpy() - taps[f"{prefix}.feed_forward_fwd"]).max() <= 1e-4
        assert np.abs(router_b[k].numpy() - taps[f"{prefix}.feed_forward_bwd"]).max() <= 1e-4


def test_batch_rows_are_independent(imported, ids):
    with torch.inference_mode():
        together = imported(ids)
        alone = torch.cat([imported(ids[i : i + 1]) for i in range(ids.shape[0])])
    assert torch.allclose(together, alone, atol=1e-5)
