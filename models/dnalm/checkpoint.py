"""The native model format every architecture shares: a directory holding config.json (with
"arch") and model.safetensors. Nothing here unpickles data."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from . import registry
from .interface import DNALM

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_NAME = "janus-model"
FORMAT_VERSION = 2
# version 1, written by janus 0.1: JanusDNA only, no "arch"
LEGACY_FORMAT = ("janusdna-native", 1)


class CheckpointError(ValueError):
    """A model file that cannot be used as it is; the message says why and what to do."""


def from_preset(name: str, seed: int | None = None) -> DNALM:
    """A randomly initialised model of a preset configuration (see `janus info --list`)."""
    known = registry.presets()
    if name not in known:
        raise CheckpointError(f"unknown preset {name!r}; choose one of: {', '.join(known)}")
    arch, config = known[name]
    if seed is not None:
        torch.manual_seed(seed)
    return arch.model_class(config)


def save(model: DNALM, path: str | Path, state_dict: dict | None = None) -> Path:
    """Write model to the directory path (created if needed) in the native format; state_dict
    (default: the model's) supplies the weights, e.g. gathered from a sharded model."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in (state_dict or model.state_dict()).items()}
    tmp = path / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp), metadata={"format": FORMAT_NAME, "arch": model.arch})
    tmp.replace(path / WEIGHTS_FILE)
    config = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "arch": model.arch, **model.config.to_dict()}
    (path / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return path


def resolve_model_path(path_or_name: str | Path) -> Path:
    """A model directory, or the name of a model shipped inside a package."""
    path = Path(path_or_name)
    if (path / CONFIG_FILE).is_file():
        return path
    shipped = registry.shipped_models()
    if str(path_or_name) in shipped:
        return shipped[str(path_or_name)][1]
    raise CheckpointError(
        f"{path_or_name}: not a model directory (no {CONFIG_FILE}) and not a shipped model name"
        + (f" ({', '.join(shipped)})" if shipped else "")
        + "; give a directory written by `janus pretrain`, `janus finetune`, `janus import-checkpoint` or dnalm.save()"
    )


def is_model_reference(path_or_name: str | Path) -> bool:
    try:
        resolve_model_path(path_or_name)
    except CheckpointError:
        return False
    return True


def read_config(path: Path) -> tuple[registry.Architecture, object]:
    """(architecture, config) of a model directory."""
    source = path / CONFIG_FILE
    try:
        raw = json.loads(source.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{source}: cannot read the model config: {exc}") from None
    form = (raw.pop("format", None), raw.pop("format_version", None))
    if form == LEGACY_FORMAT:
        arch_name = raw.pop("arch", registry.LEGACY_ARCH)
    elif form == (FORMAT_NAME, FORMAT_VERSION):
        arch_name = raw.pop("arch", None)
    else:
        raise CheckpointError(f"{source}: format {form[0]!r} version {form[1]!r} is not a janus model config "
                              f"(this janus reads {FORMAT_NAME} {FORMAT_VERSION} and {LEGACY_FORMAT[0]} {LEGACY_FORMAT[1]})")
    try:
        arch = registry.architecture(arch_name)
        return arch, arch.config_class.from_dict(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: {exc}") from None


def load(path_or_name: str | Path, device: str | torch.device = "cpu") -> DNALM:
    """Load a native model directory (or shipped model name) of any architecture, in eval mode."""
    path = resolve_model_path(path_or_name)
    arch, config = read_config(path)
    model = arch.model_class(config)
    state = load_file(str(path / WEIGHTS_FILE), device=str(device))
    load_state_strict(model, state, str(path / WEIGHTS_FILE))
    return model.to(device).eval()


def load_or_preset(model_ref: str, seed: int | None = None,
                   device: str | torch.device = "cpu") -> tuple[DNALM, dict]:
    """(model, provenance) from a model directory or shipped name, else a preset name (random
    initialisation seeded with seed)."""
    if is_model_reference(model_ref):
        path = resolve_model_path(model_ref)
        model = load(path, device=device)
        return model, {"model": str(model_ref), "source": "model directory", "path": str(path.resolve()),
                       "weights_sha256": weights_sha256(path), "name": model.config.name, "arch": model.arch,
                       "extra": model.config.extra}
    if model_ref not in registry.presets():
        raise CheckpointError(f"{model_ref}: not a model directory, a shipped model or a preset; "
                              "`janus info --list` lists the shipped models and presets")
    model = from_preset(model_ref, seed=seed).to(device)
    return model, {"model": model_ref, "source": "preset (random init)", "seed": seed, "name": model.config.name,
                   "arch": model.arch}


def weights_sha256(path_or_name: str | Path) -> str:
    digest = hashlib.sha256()
    with open(resolve_model_path(path_or_name) / WEIGHTS_FILE, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_state_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str):
    expected = model.state_dict()
    problems = [f"missing {k} {tuple(v.shape)}" for k, v in expected.items() if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in expected]
    problems += [
        f"shape of {k}: file {tuple(state[k].shape)}, model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if problems:
        shown = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise CheckpointError(f"{source}: weights do not match the config ({len(problems)} problems):\n  {shown}")
    model.load_state_dict(state, strict=True)


def list_models() -> list[dict]:
    """One entry per shipped model and per preset: name, arch, kind, parameters (counted on the
    meta device, so even the largest preset costs no memory)."""
    entries = []
    for name, (arch, path) in registry.shipped_models().items():
        _, config = read_config(path)
        entries.append({"name": name, "arch": arch.name, "kind": "shipped", "parameters": _count(arch, config)})
    for name, (arch, config) in registry.presets().items():
        entries.append({"name": name, "arch": arch.name, "kind": "preset", "parameters": _count(arch, config)})
    return entries


def _count(arch: registry.Architecture, config) -> int:
    with torch.device("meta"):
        return arch.model_class(config).num_parameters()
