"""Training over several processes (torchrun): DDP, where every process holds the whole model, or
FSDP (PyTorch's fully_shard), where each process holds 1/world of every weight, gradient and
optimizer state, for models larger than one device.

Under FSDP the model's residual blocks (DNALM.shard_units) are sharded one unit at a time and the
training module (the loss) is the root, so each forward gathers one block's weights at a time.
Checkpoints are written unsharded: the weights as a normal model directory and the optimizer state
keyed by parameter name, so a run can be inspected, loaded or evaluated without torchrun.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

FULL_ON_CPU = StateDictOptions(full_state_dict=True, cpu_offload=True)
FULL = StateDictOptions(full_state_dict=True)


def parallelize(trainer: nn.Module, model, device: torch.device, fsdp: bool) -> nn.Module:
    """The module to call for training steps: trainer (which holds model) wrapped in DDP, or
    sharded in place with FSDP. Build the optimizer after this: FSDP replaces the parameters."""
    if fsdp:
        from torch.distributed.fsdp import fully_shard

        for unit in model.shard_units():
            fully_shard(unit)
        fully_shard(trainer)
        return trainer
    return nn.parallel.DistributedDataParallel(
        trainer, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
    )


def full_model_state(model: nn.Module, sharded: bool) -> dict[str, torch.Tensor]:
    """The whole state dict on the CPU; under FSDP every process must call this (it gathers), and
    the result is complete on rank 0 only."""
    if sharded:
        return get_model_state_dict(model, options=FULL_ON_CPU)
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, sharded: bool) -> dict:
    """The optimizer state, keyed by parameter name under FSDP (gathered; complete on rank 0)."""
    if sharded:
        return get_optimizer_state_dict(model, optimizer, options=FULL_ON_CPU)
    return optimizer.state_dict()


def load_full_state(model: nn.Module, optimizer: torch.optim.Optimizer, model_state: dict, optimizer_state: dict,
                    sharded: bool) -> None:
    """Load unsharded states written by full_model_state / full_optimizer_state; under FSDP each
    process keeps its own shard of them."""
    if sharded:
        set_model_state_dict(model, model_state, options=FULL)
        set_optimizer_state_dict(model, optimizer, optimizer_state, options=FULL)
    else:
        model.load_state_dict(model_state)
        optimizer.load_state_dict(optimizer_state)
