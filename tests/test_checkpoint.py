"""Native save/load and the import of original checkpoints."""

import json

import pytest
import torch
from safetensors.torch import load_file

import janusdna
from conftest import ORACLE
from janusdna.checkpoint import CheckpointError, to_original_state_dict
from janusdna.model import JanusDNA, JanusDNAConfig


def test_save_load_round_trip_is_bit_identical(tmp_path):
    model = janusdna.from_preset("janusdna-d32-midattn", seed=1)
    janusdna.save(model, tmp_path / "m")
    loaded = janusdna.load(tmp_path / "m")
    assert loaded.config == model.config
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    ids = torch.randint(7, 11, (2, 17))
    with torch.inference_mode():
        assert torch.equal(model.eval()(ids), loaded(ids))
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]


def test_load_rejects_weights_that_do_not_match_config(tmp_path):
    janusdna.save(janusdna.from_preset("janusdna-d32"), tmp_path / "m")
    config = json.loads((tmp_path / "m/config.json").read_text())
    config["d_model"] = 48
    (tmp_path / "m/config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="shape of embed.weight"):
        janusdna.load(tmp_path / "m")


def test_load_names_a_missing_directory():
    with pytest.raises(CheckpointError, match="not a model directory"):
        janusdna.load("/nonexistent/model")


def write_original(tmp_path, model: JanusDNA, original_config: dict, lightning=True, mutate=None):
    state = to_original_state_dict(model)
    if mutate:
        mutate(state)
    if lightning:
        state = {"model." + k: v for k, v in state.items()}
        state["train_torchmetrics.num_tokens.count"] = torch.tensor(0)
    torch.save({"state_dict": state, "global_step": 0}, tmp_path / "last.ckpt")
    (tmp_path / "model_config.json").write_text(json.dumps({"config": original_config}))
    return tmp_path / "last.ckpt", tmp_path / "model_config.json"


def original_config(d=32, midattn=True):
    fixture = json.loads((ORACLE / "model_config.json").read_text())["config"]
    fixture["hidden_size"] = d
    fixture["intermediate_size"] = 4 * d
    fixture["flex_attn_n_embd"] = {32: 64, 72: 128}[d]
    if not midattn:
        fixture["attn_layer_offset"] = 100
    return fixture


@pytest.mark.parametrize("midattn", [True, False])
@pytest.mark.parametrize("final_mlp", [True, False])
def test_original_variants_import_to_the_same_function(tmp_path, midattn, final_mlp):
    cfg = JanusDNAConfig(d_model=32, fusion_attn_dim=64, mid_attention_layers=(4,) if midattn else (), final_mlp=final_mlp)
    model = JanusDNA(cfg).eval()
    ckpt, config = write_original(tmp_path, model, original_config(midattn=midattn))
    imported = janusdna.from_original(ckpt, config)
    assert imported.config.mid_attention_layers == cfg.mid_attention_layers
    assert imported.config.final_mlp == final_mlp
    for length in (7, 12):
        ids = torch.randint(7, 12, (3, length))
        with torch.inference_mode():
            assert torch.equal(model(ids), imported(ids))


def test_import_lists_missing_unexpected_and_misshapen_keys(tmp_path):
    model = JanusDNA(JanusDNAConfig(d_model=32, fusion_attn_dim=64, mid_attention_layers=(4,)))

    def break_it(state):
        del state["model.final_layernorm.weight"]
        state["model.layers.0.mamba_module.extra.weight"] = torch.zeros(1)
        state["lm_head.weight"] = torch.zeros(16, 8)

    ckpt, config = write_original(tmp_path, model, original_config(), mutate=break_it)
    with pytest.raises(CheckpointError) as err:
        janusdna.from_original(ckpt, config)
    message = str(err.value)
    assert "missing model.final_layernorm.weight" in message
    assert "unexpected model.layers.0.mamba_module.extra.weight" in message
    assert "shape of lm_head.weight: checkpoint (16, 8), expected (16, 32)" in message


def test_import_rejects_untied_projections_and_unsupported_options(tmp_path):
    model = JanusDNA(JanusDNAConfig(d_model=32, fusion_attn_dim=64, mid_attention_layers=(4,)))

    def untie(state):
        key = "model.layers.0.mamba_module.mamba_rev.in_proj.weight"
        state[key] = state[key] + 1

    ckpt, config = write_original(tmp_path, model, original_config(), mutate=untie)
    with pytest.raises(CheckpointError, match="differ"):
        janusdna.from_original(ckpt, config)
    unsupported = original_config() | {"layer_fusion": True}
    ckpt, config = write_original(tmp_path, model, unsupported)
    with pytest.raises(CheckpointError, match="layer_fusion"):
        janusdna.from_original(ckpt, config)


def test_import_never_unpickles_objects(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("unpickled!",))

    torch.save({"state_dict": {}, "payload": Evil()}, tmp_path / "evil.ckpt")
    (tmp_path / "c.json").write_text(json.dumps({"config": original_config()}))
    with pytest.raises(CheckpointError, match="weights-only"):
        janusdna.from_original(tmp_path / "evil.ckpt", tmp_path / "c.json")


def test_import_accepts_raw_safetensors_state_dict(tmp_path):
    imported = janusdna.from_original(ORACLE / "last.ckpt", ORACLE / "model_config.json")
    janusdna.save(imported, tmp_path / "native")
    assert set(load_file(tmp_path / "native/model.safetensors")) == set(imported.state_dict())
