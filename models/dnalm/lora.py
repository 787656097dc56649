"""Low-rank adaptation (LoRA, Hu et al. 2021) of any DNALM's linear layers.

add_lora() wraps each target nn.Linear of a model (DNALM.lora_targets: by default every linear
layer of the residual blocks) in a LoRALinear and freezes the rest of the model; finetuning then
trains only the adapters (and whatever head sits on top). merge_lora() folds each adapter into its
weight, W + (alpha / rank) B A, and puts plain nn.Linear layers back, so the merged model is an
ordinary model of its architecture and saves, loads and runs at the original cost.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class LoRALinear(nn.Module):
    """A frozen nn.Linear plus a trainable low-rank update: y = base(x) + (alpha / rank) x Aᵀ Bᵀ.
    B starts at zero, so the adapted layer starts equal to its base."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.rank, self.alpha, self.scale = rank, alpha, alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device,
                                               dtype=base.weight.dtype))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device,
                                               dtype=base.weight.dtype))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, x):
        return self.base(x) + self.scale * F.linear(F.linear(x, self.lora_a), self.lora_b)

    @property
    def weight(self) -> torch.Tensor:
        """The adapted weight, for code that reads a linear layer's weight directly (fused kernels)."""
        return self.base.weight + self.scale * self.lora_b @ self.lora_a

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    def merged(self) -> nn.Linear:
        """A plain nn.Linear computing what this layer computes."""
        linear = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None,
                           device=self.base.weight.device, dtype=self.base.weight.dtype)
        with torch.no_grad():
            linear.weight.copy_(self.weight)
            if self.base.bias is not None:
                linear.bias.copy_(self.base.bias)
        return linear


def add_lora(model: nn.Module, rank: int, alpha: float, targets: list[str]) -> list[str]:
    """Freeze model and wrap each named target nn.Linear in a LoRALinear; returns the names."""
    if rank < 1:
        raise ValueError(f"LoRA rank {rank}: must be at least 1")
    model.requires_grad_(False)
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        linear = getattr(parent, child)
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"LoRA target {name} is a {type(linear).__name__}, not a Linear")
        setattr(parent, child, LoRALinear(linear, rank, alpha))
    return list(targets)


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every LoRALinear in model by its merged nn.Linear; returns model."""
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRALinear):
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, module.merged())
    return model


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for module in model.modules() if isinstance(module, LoRALinear) for p in (module.lora_a, module.lora_b)]
