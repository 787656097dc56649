"""`janus info`: what a model is, as flat key/value pairs, and the list of models janus knows."""

from __future__ import annotations

import torch

import dnalm


def describe_model(model_ref: str) -> dict[str, object]:
    """Architecture, what its per-base predictions see, parameter counts, config and weights sha256
    of a model directory, shipped model or preset (a preset is built on the meta device, so even
    the largest costs no memory, and has no weights: its sha256 is '-')."""
    if dnalm.is_model_reference(model_ref):
        path = dnalm.resolve_model_path(model_ref)
        model, sha = dnalm.load(path), dnalm.weights_sha256(path)
    else:
        with torch.device("meta"):
            model = dnalm.from_preset(model_ref)
        path, sha = "-", "-"
    info: dict[str, object] = {
        "model": model.config.name,
        "arch": model.arch,
        "path": str(path),
        "weights_sha256": sha,
        "prediction_context": model.prediction_context,
        "capabilities": ",".join(sorted(model.capabilities())) or "-",
        "parameters_total": model.num_parameters(),
        "parameters_activated": model.num_activated_parameters(),
    }
    info.update({f"parameters.{name}": count for name, count in model.module_parameter_counts().items()})
    info.update({f"config.{k}": v for k, v in model.config.to_dict().items() if k != "extra"})
    info.update({f"extra.{k}": v for k, v in model.config.extra.items()})
    return info


def known_models() -> list[dict]:
    """One entry per shipped model and per preset: name, arch, kind, parameters."""
    return dnalm.list_models()
