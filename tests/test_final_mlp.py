"""final_mlp, the residual MLP after the final norm that newer original JanusDNA weights carry:
h + silu(Linear(2d, d)(silu(Linear(d, 2d)(h)))), with biases.

tests/data/oracle_fixture_2 holds a d=32 model with final_mlp in the original checkpoint format and
the outputs of the original code for it (made by tests/data/make_oracle_fixture_2.py)."""

import dataclasses
import importlib.util
import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import janusdna
from conftest import DATA
from janusdna import JanusDNA
from janusdna.checkpoint import config_from_original, to_original_state_dict

ORACLE_2 = DATA / "oracle_fixture_2"
UPSTREAM = Path(__file__).resolve().parents[2] / "shared/upstream/JanusDNA-03cd86e"  # shared/ beside the checkout


@pytest.fixture(scope="module")
def imported():
    return janusdna.from_original(ORACLE_2 / "last.ckpt", ORACLE_2 / "model_config.json")


@pytest.fixture(scope="module")
def ids():
    return torch.from_numpy(np.load(ORACLE_2 / "input_ids.npy"))


def test_imported_config_has_final_mlp(imported):
    cfg = imported.config
    assert cfg.final_mlp and (cfg.d_model, cfg.n_layers, cfg.n_experts, cfg.mid_attention_layers) == (32, 4, 8, ())
    assert imported.final_mlp.fc1.weight.shape == (64, 32) and imported.final_mlp.fc2.weight.shape == (32, 64)
    assert imported.num_parameters() == 520_656  # sum(p.numel() for p in original.parameters())


def test_logits_hidden_and_losses_match_original(imported, ids):
    with torch.inference_mode():
        logits, aux = imported.forward_with_aux(ids)
        hidden = imported.hidden_states(ids)
    assert np.abs(logits.numpy() - np.load(ORACLE_2 / "logits.npy")).max() <= 1e-4
    assert np.abs(hidden.numpy() - np.load(ORACLE_2 / "hidden.npy")).max() <= 1e-4
    expected = json.loads((ORACLE_2 / "aux_loss.json").read_text())
    assert aux.item() == pytest.approx(expected["aux_loss"], abs=1e-5)
    ce = F.cross_entropy(logits.reshape(-1, 16), ids.reshape(-1), ignore_index=4)
    assert ce.item() == pytest.approx(expected["ce_loss_ignore_index_4"], abs=1e-5)


def test_final_mlp_is_a_residual_on_the_normed_state(imported, ids):
    """The original's taps: its final_mlp reads the final norm's output and adds to it."""
    taps = np.load(ORACLE_2 / "intermediates.npz")
    seen = {}
    handle = imported.norm_f.register_forward_hook(lambda module, args, out: seen.update(normed=out))
    try:
        with torch.inference_mode():
            imported.hidden_states(ids)
    finally:
        handle.remove()
    assert np.abs(seen["normed"].numpy() - taps["after_final_norm"]).max() <= 1e-4
    normed = torch.from_numpy(taps["after_final_norm"])
    with torch.inference_mode():
        branch = imported.final_mlp(normed) - normed
    assert np.abs(branch.numpy() - taps["final_mlp_branch"]).max() <= 1e-5


def test_d144_with_final_mlp_has_the_original_parameter_count():
    preset = janusdna.PRESETS["janusdna-d144"]
    assert not preset.final_mlp  # the paper's Table 4 counts leave final_mlp out
    with torch.device("meta"):
        with_mlp = JanusDNA(dataclasses.replace(preset, final_mlp=True))
        without = JanusDNA(preset)
    assert with_mlp.num_parameters() == 35_616_752
    assert with_mlp.num_parameters() - without.num_parameters() == 2 * 144 * 288 + 288 + 144


# --- against the original code itself (slow; needs the upstream checkout and transformers) ----------


def _import_upstream():
    """The original modeling module, imported under another package name than ours (janusdna)."""
    if not (UPSTREAM / "janusdna" / "modeling_janusdna.py").is_file():
        pytest.skip(f"the original JanusDNA code is not at {UPSTREAM}")
    if importlib.util.find_spec("transformers") is None:
        pytest.skip("transformers is not installed (it is not a janus dependency; the original code needs it)")
    if not any(shutil.which(cxx) for cxx in ("g++", "c++", "clang++")):
        pytest.skip("no C++ compiler: the original's torch.compile'd FlexAttention cannot run on CPU")
    name = "janusdna_upstream"
    if f"{name}.modeling_janusdna" in sys.modules:
        return sys.modules[f"{name}.modeling_janusdna"]
    package_dir = UPSTREAM / "janusdna"
    spec = importlib.util.spec_from_file_location(
        name, package_dir / "__init__.py", submodule_search_locations=[str(package_dir)]
    )
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    stub_wandb = importlib.util.find_spec("wandb") is None  # imported at module level, never used here
    if stub_wandb:
        sys.modules["wandb"] = types.ModuleType("wandb")
    try:
        spec.loader.exec_module(package)
        return importlib.import_module(f"{name}.modeling_janusdna")
    finally:
        if stub_wandb:
            del sys.modules["wandb"]


@pytest.mark.slow
def test_original_code_on_our_random_weights():
    modeling = _import_upstream()
    original_config = json.loads((ORACLE_2 / "model_config.json").read_text())["config"]
    original_config.update(attn_layer_period=4, attn_layer_offset=2)  # also a mid attention layer (2)
    cfg = config_from_original(original_config, has_final_mlp=True)
    assert cfg.final_mlp and cfg.mid_attention_layers == (2,)

    torch.manual_seed(5)
    ours = JanusDNA(cfg)
    g = torch.Generator().manual_seed(6)
    with torch.no_grad():  # move biases and norm weights off their initial zeros and ones
        for p in ours.parameters():
            p += 0.05 * torch.randn(p.shape, generator=g)
    ours.eval()

    kwargs = {k: v for k, v in original_config.items() if k != "_target_"}
    kwargs.update(use_mamba_kernels=False, attn_implementation="sdpa")
    original = modeling.JanusDNAForCausalLM(modeling.JanusDNAConfig(**kwargs))
    original.config._attn_implementation = "flash_attention_2"  # as on GPU; see /work/shared/upstream/README.md
    original.load_state_dict(to_original_state_dict(ours), strict=True)
    original.eval()

    ids = torch.randint(7, 11, (2, 96), generator=g)
    ids[torch.rand(ids.shape, generator=g) < 0.05] = 11
    with torch.no_grad():
        out = original(input_ids=ids, return_dict=True)
        logits, aux = ours.forward_with_aux(ids)
    assert (logits - out.logits.float()).abs().max().item() <= 1e-4
    assert aux.item() == pytest.approx(float(out.aux_loss), abs=1e-5)
