"""`janus info`: what a model is, as flat key/value pairs."""

from __future__ import annotations

import janusdna
from janusdna.checkpoint import resolve_model_path


def describe_model(model_ref: str) -> dict[str, object]:
    """Config, parameter counts and weights sha256 of a model directory, shipped model or preset
    (a preset has no weights, so its sha256 is '-')."""
    if model_ref in janusdna.PRESETS and not _is_model_dir(model_ref):
        model, path, sha = janusdna.from_preset(model_ref), "-", "-"
    else:
        path = resolve_model_path(model_ref)
        model, sha = janusdna.load(path), janusdna.weights_sha256(path)
    info: dict[str, object] = {
        "model": model.config.name,
        "path": str(path),
        "weights_sha256": sha,
        "parameters_total": model.num_parameters(),
        "parameters_activated": model.num_activated_parameters(),
    }
    info.update({f"config.{k}": v for k, v in model.config.to_dict().items() if k != "extra"})
    info.update({f"extra.{k}": v for k, v in model.config.extra.items()})
    return info


def _is_model_dir(ref: str) -> bool:
    try:
        resolve_model_path(ref)
    except janusdna.CheckpointError:
        return False
    return True
