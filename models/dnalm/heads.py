"""Sequence-level heads on a backbone, and the finetuned model directory that holds them.

A finetuned model directory is a native model directory (the backbone) plus
    head.safetensors   the linear head (weight, bias)
    head.json          the task, label names, pooling, the backbone's provenance, the options
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from .checkpoint import CheckpointError, load, save
from .interface import DNALM
from .tokenizer import reverse_complement

HEAD_FORMAT = "janus-sequence-head"
HEAD_FORMAT_VERSION = 1
HEAD_META_FILE = "head.json"
HEAD_WEIGHTS_FILE = "head.safetensors"


@dataclass
class Task:
    """Classification over named labels, or regression on targets standardised with the training
    set's mean and standard deviation (so that the outputs start at a sensible scale)."""

    regression: bool
    labels: list[str] = field(default_factory=list)
    target_mean: float = 0.0
    target_std: float = 1.0

    @property
    def kind(self) -> str:
        return "regression" if self.regression else "classification"

    @property
    def n_outputs(self) -> int:
        return 1 if self.regression else len(self.labels)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.regression:
            return F.mse_loss(outputs[:, 0], targets)
        return F.cross_entropy(outputs, targets)

    def unstandardise(self, values: np.ndarray) -> np.ndarray:
        return values * self.target_std + self.target_mean

    def output_columns(self, outputs: np.ndarray) -> dict[str, np.ndarray]:
        """Head outputs [N, n_outputs] -> prediction (regression), or prob_<label>... and pred_label."""
        if self.regression:
            return {"prediction": self.unstandardise(outputs[:, 0])}
        probs = softmax(outputs)
        columns = {f"prob_{name}": probs[:, i] for i, name in enumerate(self.labels)}
        return {**columns, "pred_label": np.array(self.labels, dtype=object)[probs.argmax(1)]}

    def to_meta(self) -> dict:
        if self.regression:
            return {"task": self.kind, "target_mean": self.target_mean, "target_std": self.target_std}
        return {"task": self.kind, "labels": self.labels}

    @classmethod
    def from_meta(cls, meta: dict) -> "Task":
        if meta["task"] == "regression":
            return cls(True, target_mean=meta["target_mean"], target_std=meta["target_std"])
        return cls(False, labels=list(meta["labels"]))


def softmax(outputs: np.ndarray) -> np.ndarray:
    exp = np.exp(outputs - outputs.max(1, keepdims=True))
    return exp / exp.sum(1, keepdims=True)


class SequenceClassifier(nn.Module):
    """Backbone -> pooled embedding (by default the architecture's default pooling) -> linear head.

    With variant_pair, an example is a variant's REF and ALT windows, ids [B, 2, L]; both are
    pooled and the head sees [ref, alt, alt - ref] (3 x d_model)."""

    def __init__(self, backbone: DNALM, n_outputs: int, pooling: str | None = None, variant_pair: bool = False):
        super().__init__()
        self.pooling = pooling or backbone.default_pooling
        if self.pooling not in backbone.poolings:
            raise ValueError(f"pooling {self.pooling!r}: a {backbone.arch} model pools by {', '.join(backbone.poolings)}")
        self.backbone = backbone
        self.variant_pair = variant_pair
        self.head = nn.Linear(backbone.d_model * (3 if variant_pair else 1), n_outputs)

    def head_input(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled windows [B, d] (a variant pair: [2B, d], REF and ALT of each in turn) -> the
        head's input [B, d] or [B, 3d]."""
        if not self.variant_pair:
            return pooled
        ref, alt = pooled.view(-1, 2, pooled.shape[-1]).unbind(1)
        return torch.cat([ref, alt, alt - ref], -1)

    def _windows(self, ids: torch.Tensor) -> torch.Tensor:
        return ids.flatten(0, 1) if self.variant_pair else ids

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B, L] (a variant pair: [B, 2, L]) -> outputs [B, n_outputs] (float32)."""
        return self.head(self.head_input(self.backbone.sequence_embedding(self._windows(ids), self.pooling))).float()

    def forward_with_aux(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(outputs, the backbone's auxiliary loss)."""
        pooled, aux = self.backbone.sequence_embedding_with_aux(self._windows(ids), self.pooling)
        return self.head(self.head_input(pooled)).float(), aux

    def strand_averaged(self, ids: torch.Tensor) -> torch.Tensor:
        """Mean of the outputs for the sequences and their reverse complements (one forward pass)."""
        forward, reverse = self(torch.cat([ids, reverse_complement(ids)])).chunk(2)
        return (forward + reverse) / 2


@dataclass
class Finetuned:
    classifier: SequenceClassifier
    task: Task
    meta: dict  # head.json


def is_finetuned(model_dir: str | Path) -> bool:
    return (Path(model_dir) / HEAD_META_FILE).is_file()


def save_finetuned(classifier: SequenceClassifier, task: Task, out: str | Path, **meta) -> Path:
    """Write the backbone, the head and head.json (task, pooling, and meta's entries) to out."""
    out = save(classifier.backbone, out)
    save_file({k: v.detach().contiguous().cpu() for k, v in classifier.head.state_dict().items()},
              str(out / HEAD_WEIGHTS_FILE))
    head_meta = {"format": HEAD_FORMAT, "format_version": HEAD_FORMAT_VERSION, **task.to_meta(),
                 "pooling": classifier.pooling, **meta}
    (out / HEAD_META_FILE).write_text(json.dumps(head_meta, indent=2) + "\n")
    return out


def load_finetuned(model_dir: str | Path, device: str | torch.device = "cpu") -> Finetuned:
    """The classifier, task and head.json of a directory written by `janus finetune`."""
    model_dir = Path(model_dir)
    meta_path = model_dir / HEAD_META_FILE
    if not meta_path.is_file():
        raise CheckpointError(f"{model_dir}: not a finetuned model directory (no {HEAD_META_FILE}); "
                              "make one with janus finetune")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != HEAD_FORMAT or meta.get("format_version") != HEAD_FORMAT_VERSION:
        raise CheckpointError(f"{meta_path}: not a {HEAD_FORMAT} version {HEAD_FORMAT_VERSION} file")
    task = Task.from_meta(meta)
    classifier = SequenceClassifier(load(model_dir, device=device), task.n_outputs, meta.get("pooling"),
                                    variant_pair=meta.get("variant_features") == "pair")
    try:
        classifier.head.load_state_dict(load_file(str(model_dir / HEAD_WEIGHTS_FILE), device=str(device)))
    except (OSError, RuntimeError) as exc:
        raise CheckpointError(f"{model_dir / HEAD_WEIGHTS_FILE}: cannot load the head: {exc}") from None
    return Finetuned(classifier.to(device).eval(), task, meta)
