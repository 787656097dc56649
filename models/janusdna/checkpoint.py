"""Import of original JanusDNA training checkpoints (a Lightning .ckpt plus its model_config.json),
read with torch.load(weights_only=True) and checked key by key and shape by shape. The native
format every architecture shares is dnalm.checkpoint."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch
from safetensors.torch import load_file

from dnalm.checkpoint import CheckpointError

from .model import JanusDNA, JanusDNAConfig

# --- original JanusDNA checkpoints ------------------------------------------------------------

# Keys that Lightning's metric collections add to every original checkpoint; they hold no weights.
_LIGHTNING_METRIC_KEY = re.compile(r"^(train|val|test)_torchmetrics\.")

_UNSUPPORTED = {  # original option -> value the architecture here implements
    "layer_fusion": False,
    "final_attention": True,
    "bidirectional": True,
    "bidirectional_weight_tie": True,
    "bidirectional_attn_tie": False,
    "mid_single_direction_attention": True,
}


def config_from_original(original: dict, has_final_mlp: bool) -> JanusDNAConfig:
    """Map an original JanusDNAConfig dict (the "config" of model_config.json) to ours."""
    c = original.get("config", original)
    mismatches = []
    for key, supported in _UNSUPPORTED.items():
        if key in c and bool(c[key]) != supported:  # the original reads these flags by truthiness
            mismatches.append(f"{key}={c[key]!r} (only {supported} is supported)")
    ssm = c.get("ssm_cfg", {})
    if not ssm.get("conv_bias", True) or ssm.get("bias", False):
        mismatches.append("ssm_cfg conv_bias must be true and bias false")
    if c.get("layer_fusion_strategy", "pool") != "pool":
        mismatches.append(f"layer_fusion_strategy={c['layer_fusion_strategy']!r} (only 'pool' is supported)")
    if c.get("bidirectional_strategy", "add") != "add":
        mismatches.append(f"bidirectional_strategy={c['bidirectional_strategy']!r} (only 'add' is supported)")
    if mismatches:
        raise CheckpointError("unsupported original configuration: " + "; ".join(mismatches))

    d = int(c["hidden_size"])
    n_layers = int(c.get("num_hidden_layers", 8))
    multiple = int(c.get("pad_vocab_size_multiple", 8))
    vocab = int(c.get("vocab_size", 12))
    vocab += (-vocab) % multiple
    dt_rank = ssm.get("dt_rank", "auto")
    period, offset = int(c.get("attn_layer_period", 1)), int(c.get("attn_layer_offset", 1_000_000))
    return JanusDNAConfig(
        d_model=d,
        n_layers=n_layers,
        vocab_size=vocab,
        d_state=int(ssm.get("d_state", 16)),
        d_conv=int(ssm.get("d_conv", 4)),
        expand=int(ssm.get("expand", 2)),
        dt_rank=math.ceil(d / 16) if dt_rank == "auto" else int(dt_rank),
        ffn_dim=int(c.get("intermediate_size") or c.get("intermediate_factor", 4) * d),
        n_experts=int(c.get("num_experts", 16)),
        experts_per_token=int(c.get("num_experts_per_tok", 2)),
        moe_period=int(c.get("expert_layer_period", 2)),
        moe_offset=int(c.get("expert_layer_offset", 1)),
        mid_attention_layers=tuple(i for i in range(n_layers) if i % period == offset),
        n_heads=int(c.get("num_attention_heads", 4)),
        fusion_attn_dim=int(c.get("flex_attn_n_embd", d)),
        final_mlp=has_final_mlp,
        rms_norm_eps=float(c.get("rms_norm_eps", 1e-6)),
        router_aux_loss_coef=float(c.get("router_aux_loss_coef", 0.2)),
        name="janusdna-imported",
    )


_SSM_NAMES = {"dt_norm": "dt_layernorm", "B_norm": "b_layernorm", "C_norm": "c_layernorm"}


def original_keys(native_key: str, cfg: JanusDNAConfig) -> list[str]:
    """The key(s) an original JanusDNAForCausalLM state_dict uses for one of our parameters.
    Two keys for the shared in/out projections, which the original stores once per direction."""
    simple = {
        "embed.weight": "model.embed_tokens.weight",
        "norm_f.weight": "model.final_layernorm.weight",
        "lm_head.weight": "lm_head.weight",
        "final_mlp.fc1.weight": "model.final_mlp.0.weight",
        "final_mlp.fc1.bias": "model.final_mlp.0.bias",
        "final_mlp.fc2.weight": "model.final_mlp.2.weight",
        "final_mlp.fc2.bias": "model.final_mlp.2.bias",
    }
    if native_key in simple:
        return [simple[native_key]]
    if native_key.startswith("fusion."):
        rest = native_key[len("fusion.") :]
        rest = rest.replace("mixer_norm.", "input_layernorm.").replace("ffn_norm.", "pre_ff_layernorm.")
        rest = rest.replace("ffn.", "feed_forward.").replace("mixer.o_proj.", "self_attn.o_projs.0.")
        rest = rest.replace("mixer.", "self_attn.")
        return [f"model.final_attention.{rest}"]
    m = re.fullmatch(r"layers\.(\d+)\.(.+)", native_key)
    if not m:
        raise KeyError(native_key)
    i, rest = int(m.group(1)), m.group(2)
    if i in cfg.mid_attention_layers:
        prefix = f"model.layers.{i}.attn"
        direction, tail = rest.split(".", 1)
        side = {"fwd": "fwd", "bwd": "bwd"}[direction]
        tail = tail.replace("mixer_norm.", f"input_layernorm_{side}.").replace("ffn_norm.", f"pre_ff_layernorm_{side}.")
        tail = tail.replace("ffn.", f"feed_forward_{side}.").replace("mixer.", f"self_attn_{side}.")
        return [f"{prefix}.{tail}"]
    prefix = f"model.layers.{i}.mamba_module"
    if rest.startswith(("in_proj.", "out_proj.")):
        return [f"{prefix}.mamba_fwd.{rest}", f"{prefix}.mamba_rev.{rest}"]
    direction, tail = rest.split(".", 1)
    side, mamba = {"fwd": ("fwd", "mamba_fwd"), "bwd": ("bwd", "mamba_rev")}[direction]
    if tail.startswith("mixer."):
        name = tail[len("mixer.") :]
        head = name.split(".", 1)[0]
        name = name.replace(head, _SSM_NAMES.get(head, head), 1)
        return [f"{prefix}.{mamba}.{name}"]
    tail = tail.replace("mixer_norm.", f"input_layernorm_{side}.").replace("ffn_norm.", f"pre_ff_layernorm_{side}.")
    return [f"{prefix}.{tail.replace('ffn.', f'feed_forward_{side}.')}"]


def read_original_state_dict(ckpt_path: str | Path) -> dict[str, torch.Tensor]:
    """Raw JanusDNAForCausalLM keys from a Lightning .ckpt ("model." prefix) or a safetensors file."""
    ckpt_path = Path(ckpt_path)
    if ckpt_path.suffix == ".safetensors":
        state = load_file(str(ckpt_path))
    else:
        try:
            obj = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle errors, truncated files, disallowed globals
            raise CheckpointError(f"{ckpt_path}: cannot read as a weights-only torch checkpoint: {exc}") from exc
        state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
        if not isinstance(state, dict):
            raise CheckpointError(f"{ckpt_path}: no state_dict in this checkpoint")
    state = {k: v for k, v in state.items() if not _LIGHTNING_METRIC_KEY.match(k)}
    if "model.lm_head.weight" in state:  # Lightning wraps the model as self.model
        state = {k[len("model.") :] if k.startswith("model.") else k: v for k, v in state.items()}
    return state


def from_original(ckpt_path: str | Path, model_config_json: str | Path) -> JanusDNA:
    """Build our model from an original training checkpoint, with strict key and shape checks."""
    ckpt_path, model_config_json = Path(ckpt_path), Path(model_config_json)
    try:
        original_config = json.loads(model_config_json.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{model_config_json}: cannot read the model config: {exc}") from exc
    state = read_original_state_dict(ckpt_path)
    has_final_mlp = any(k.startswith("model.final_mlp.") for k in state)
    try:
        cfg = config_from_original(original_config, has_final_mlp)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{model_config_json}: {exc}") from exc
    model = JanusDNA(cfg)

    native, problems, used = {}, [], set()
    for key, param in model.state_dict().items():
        sources = original_keys(key, cfg)
        present = [s for s in sources if s in state]
        if not present:
            problems.append(f"missing {sources[0]} {tuple(param.shape)}")
            continue
        used.update(present)
        tensor = state[present[0]]
        if tensor.shape != param.shape:
            problems.append(f"shape of {present[0]}: checkpoint {tuple(tensor.shape)}, expected {tuple(param.shape)}")
            continue
        if any(not torch.equal(state[s], tensor) for s in present[1:]):
            problems.append(f"{' and '.join(present)} differ: only tied forward/backward projections are supported")
        native[key] = tensor
    problems += [f"unexpected {k} {tuple(state[k].shape)}" for k in sorted(set(state) - used)]
    if problems:
        shown = "\n  ".join(problems[:30]) + (f"\n  ... and {len(problems) - 30} more" if len(problems) > 30 else "")
        raise CheckpointError(
            f"{ckpt_path}: does not match {model_config_json} ({len(problems)} problems):\n  {shown}"
        )
    model.load_state_dict(native, strict=True)
    return model.eval()


def to_original_state_dict(model: JanusDNA) -> dict[str, torch.Tensor]:
    """Our weights under the original's key names (tied projections written under both)."""
    return {
        original: tensor
        for key, tensor in model.state_dict().items()
        for original in original_keys(key, model.config)
    }
