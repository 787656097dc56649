"""Make tests/data/oracle_fixture_2/: a small JanusDNA WITH final_mlp, in the original training
checkpoint format, and the outputs that the ORIGINAL JanusDNA code computes for it.

The original code is github.com/Qihao-Duan/JanusDNA at commit 03cd86e ("final mlp update"), whose
janusdna/ package lies unmodified in /work/shared/upstream/JanusDNA-03cd86e/ (see
/work/shared/upstream/README.md). This script imports it from there; nothing of it is copied into
this repository. It does not import janus at all, and it does not run in the project's virtualenv
(transformers is not a janus dependency). Run it in a separate virtualenv, from the repository root:

    python3 -m venv /tmp/upstream-venv
    /tmp/upstream-venv/bin/pip install torch==2.13.0          # first and alone (the CPU build)
    /tmp/upstream-venv/bin/pip install transformers==4.49.0
    /tmp/upstream-venv/bin/python tests/data/make_oracle_fixture_2.py \\
        --upstream /work/shared/upstream/JanusDNA-03cd86e --out tests/data/oracle_fixture_2

What the script does to make the original run on a CPU (the recipe of /work/shared/upstream/README.md):
- the original imports `wandb` at module level: when wandb is not installed an empty module named
  `wandb` is put in sys.modules (an empty wandb module on the path does the same);
- the upstream package is imported under the name `janusdna_upstream`, so that it can never be
  confused with this project's own `janusdna` package;
- JanusDNAConfig(**config, use_mamba_kernels=False, attn_implementation="sdpa") (pure-torch Mamba
  path; flash_attention_2 cannot be built without flash-attn), then
  config._attn_implementation = "flash_attention_2" on the built model, as on GPU (no dense mask);
- the final attention is the original's torch.compile'd FlexAttention, which runs on CPU through
  inductor (needs a C++ compiler).

The model: d=32, 4 layers, 8 experts top-2 on layers 1 and 3, no mid attention, final flex
attention, final_mlp present (always built by 03cd86e). Its weights are the original's
initialisation (torch.manual_seed(1234)) plus 0.02 * N(0, 1) on every parameter (generator seed 99),
so that norms and biases are not at their trivial initial values. The input is 2 x 64 random
A/C/G/T tokens with ~5% N (generator seed 7), as in oracle_fixture_1.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

SEED_INIT, SEED_PERTURB, SEED_INPUT = 1234, 99, 7
BATCH, LENGTH = 2, 64

# The original model_config.json of a training run (src/utils/train.py::print_config output), in the
# same shape as oracle_fixture_1's, quirks included ("bidirectional": "true," is what the yaml
# resolves to; "_target_"; no use_mamba_kernels key). Differences from fixture 1: 4 layers, 8
# experts, no mid attention (attn_layer_offset 100 as in the wo_midattn pretraining scripts).
MODEL_CONFIG = {
    "config": {
        "_target_": "janusdna.configuration_janusdna.JanusDNAConfig",
        "hidden_size": 32,
        "flex_attn_n_embd": 64,
        "num_hidden_layers": 4,
        "vocab_size": 12,
        "ssm_cfg": {
            "d_state": 16,
            "d_conv": 4,
            "expand": 2,
            "dt_rank": "auto",
            "dt_min": 0.001,
            "dt_max": 0.1,
            "dt_init": "random",
            "dt_scale": 1.0,
            "dt_init_floor": 0.0001,
            "conv_bias": True,
            "bias": False,
            "use_fast_path": True,
        },
        "rms_norm_eps": 1e-06,
        "initializer_range": 0.02,
        "bidirectional": "true,",
        "bidirectional_strategy": "add",
        "bidirectional_weight_tie": True,
        "return_dict": True,
        "num_experts": 8,
        "num_experts_per_tok": 2,
        "expert_layer_period": 2,
        "expert_layer_offset": 1,
        "output_hidden_states": False,
        "intermediate_factor": 4,
        "layer_fusion": False,
        "num_attention_heads": 4,
        "attn_implementation": "flash_attention_2",
        "attn_layer_period": 8,
        "attn_layer_offset": 100,
        "final_attention": True,
        "mid_single_direction_attention": True,
        "layer_fusion_strategy": "pool",
        "final_attention_class": "flex_attention",
        "bidirectional_attn_tie": False,
        "gradient_checkpointing": True,
        "output_router_logits": True,
        "router_aux_loss_coef": 0.2,
        "intermediate_size": 128,
    }
}

LIGHTNING_METRIC_KEYS = [f"{split}_torchmetrics.num_tokens.count" for split in ("train", "val", "test")]


def import_upstream(upstream_dir: Path):
    """The original modeling module, imported as janusdna_upstream.modeling_janusdna."""
    package_dir = upstream_dir / "janusdna"
    if "wandb" not in sys.modules and importlib.util.find_spec("wandb") is None:
        sys.modules["wandb"] = types.ModuleType("wandb")
    name = "janusdna_upstream"
    spec = importlib.util.spec_from_file_location(
        name, package_dir / "__init__.py", submodule_search_locations=[str(package_dir)]
    )
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    return importlib.import_module(f"{name}.modeling_janusdna")


def new_model(modeling, config_dict: dict):
    """The original JanusDNAForCausalLM for a model_config.json "config", built for a CPU."""
    kwargs = {k: v for k, v in config_dict.items() if k != "_target_"}
    kwargs.update(use_mamba_kernels=False, attn_implementation="sdpa")
    model = modeling.JanusDNAForCausalLM(modeling.JanusDNAConfig(**kwargs))
    model.config._attn_implementation = "flash_attention_2"  # as on GPU: no dense [2L, 2L] mask
    return model


def build_model(modeling, config_dict: dict):
    torch.manual_seed(SEED_INIT)
    model = new_model(modeling, config_dict)
    g = torch.Generator().manual_seed(SEED_PERTURB)
    with torch.no_grad():
        for _, p in model.named_parameters():  # tied parameters are visited once: the tie stays
            p += 0.02 * torch.randn(p.shape, generator=g)
    return model.eval()


def make_inputs():
    g = torch.Generator().manual_seed(SEED_INPUT)
    ids = torch.randint(7, 11, (BATCH, LENGTH), generator=g)  # A=7 C=8 G=9 T=10
    n_mask = torch.rand((BATCH, LENGTH), generator=g) < 0.05
    ids[n_mask] = 11  # N
    return ids


def run(modeling, model, ids):
    """(output, taps): the original forward with hooks on the final norm, final_mlp, lm_head and
    every MoE block."""
    taps, moe_names, handles = {}, [], []

    def keep(name, take):
        def hook(module, args, output):
            taps[name] = take(args, output).detach().clone()
        return hook

    m = model.model
    handles.append(m.final_layernorm.register_forward_hook(keep("after_final_norm", lambda a, o: o)))
    handles.append(m.final_mlp.register_forward_hook(keep("final_mlp_branch", lambda a, o: o)))
    handles.append(model.lm_head.register_forward_hook(keep("hidden_before_lm_head", lambda a, o: a[0])))
    for name, module in model.named_modules():
        if isinstance(module, modeling.JanusDNASparseMoeBlock):
            moe_names.append(name)
            handles.append(module.register_forward_hook(keep(f"router_logits.{name}", lambda a, o: o[1])))
    with torch.no_grad():
        out = model(input_ids=ids, return_dict=True)
    for h in handles:
        h.remove()
    return out, taps, moe_names


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", type=Path, default=Path("/work/shared/upstream/JanusDNA-03cd86e"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "oracle_fixture_2")
    args = parser.parse_args()
    torch.set_num_threads(2)

    modeling = import_upstream(args.upstream)
    config_dict = copy.deepcopy(MODEL_CONFIG["config"])
    model = build_model(modeling, config_dict)
    assert isinstance(model.model.final_mlp, torch.nn.Sequential) and len(model.model.final_mlp) == 4
    ids = make_inputs()
    out, taps, moe_names = run(modeling, model, ids)
    logits = out.logits.float()

    # the final_mlp residual, re-derived from the taps: hidden = after_final_norm + final_mlp(after_final_norm)
    residual_check = (taps["after_final_norm"] + taps["final_mlp_branch"] - taps["hidden_before_lm_head"]).abs().max()
    assert residual_check == 0.0, residual_check
    fwd = tuple(taps[f"router_logits.{n}"] for n in moe_names if n.endswith("_fwd"))
    bwd = tuple(taps[f"router_logits.{n}"] for n in moe_names if n.endswith("_bwd"))
    cfg = model.config
    lb_fwd = modeling.load_balancing_loss_func(fwd, cfg.num_experts, cfg.num_experts_per_tok, None)
    lb_bwd = modeling.load_balancing_loss_func(bwd, cfg.num_experts, cfg.num_experts_per_tok, None)
    aux = float(out.aux_loss)
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids.reshape(-1), ignore_index=4).item()

    # the same weights read back from the checkpoint into a model built with another seed
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    reload = new_model(modeling, config_dict)
    reload.load_state_dict(state, strict=True)
    with torch.no_grad():
        reload_diff = (reload.eval()(input_ids=ids, return_dict=True).logits.float() - logits).abs().max().item()
    assert reload_diff == 0.0, reload_diff

    out_dir = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = {
        "state_dict": {
            **{"model." + k: v for k, v in model.state_dict().items()},
            **{k: torch.tensor(0) for k in LIGHTNING_METRIC_KEYS},
        },
        "epoch": 0,
        "global_step": 0,
        "pytorch-lightning_version": "2.5.0.post0",
        "hyper_parameters": {"model": {"_name_": "janusdna_lm", "config": copy.deepcopy(MODEL_CONFIG["config"])}},
    }
    torch.save(ckpt, out_dir / "last.ckpt")
    (out_dir / "model_config.json").write_text(json.dumps(MODEL_CONFIG, indent=4) + "\n")
    np.save(out_dir / "input_ids.npy", ids.numpy())
    np.save(out_dir / "logits.npy", logits.numpy())
    np.save(out_dir / "hidden.npy", taps["hidden_before_lm_head"].numpy())
    np.savez(
        out_dir / "intermediates.npz",
        after_final_norm=taps["after_final_norm"].numpy(),
        final_mlp_branch=taps["final_mlp_branch"].numpy(),
        **{f"router_logits.{n}": taps[f"router_logits.{n}"].numpy() for n in moe_names},
    )
    (out_dir / "aux_loss.json").write_text(json.dumps({
        "aux_loss": aux,
        "aux_loss_definition": "MoeCausalLMOutputWithPast.aux_loss of the original = router_aux_loss_coef * "
                               "(LB(fwd router logits of all MoE blocks) + LB(bwd router logits)), LB = the original "
                               f"load_balancing_loss_func (top_k={cfg.num_experts_per_tok}, num_experts={cfg.num_experts}, "
                               "attention_mask=None)",
        "load_balancing_fwd_unscaled": float(lb_fwd),
        "load_balancing_bwd_unscaled": float(lb_bwd),
        "router_aux_loss_coef": cfg.router_aux_loss_coef,
        "moe_block_names_in_order": moe_names,
        "ce_loss_ignore_index_4": ce,
        "total_training_loss": ce + aux,
    }, indent=2) + "\n")
    n_params = sum(p.numel() for p in model.parameters())
    print(f"wrote {out_dir}: parameters {n_params}, logits {tuple(logits.shape)}, aux_loss {aux:.10g}, ce {ce:.10g}")
    print(f"logits[0, 0, :4] = {logits[0, 0, :4].tolist()}; #N = {int((ids == 11).sum())}")
    print(f"final_mlp: {model.model.final_mlp}")


if __name__ == "__main__":
    main()
