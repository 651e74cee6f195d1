"""Fully sharded data parallel training (FSDP2's ``fully_shard``) and activation checkpointing.

Each encoder layer is a shard unit, the whole model (front end, heads, the rest) the root unit:
parameters, gradients and AdamW moments live 1/world_size on each rank and a layer's weights are
gathered only while it runs. Checkpoints keep the one-process format, whatever the strategy: the
gathered model state dict and the optimizer state keyed by parameter index (AdamW's own layout), so
one-process, DDP and FSDP runs load each other's checkpoints.

torch's FSDP and distributed-checkpoint modules are imported where they are used: they take a third
of a second to import, and most runs never shard.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.distributed._composable import checkpoint

from audiossl.errors import ConfigError
from audiossl.nn.mamba import BiMambaLayer
from audiossl.nn.transformer import EncoderLayer

LAYER_TYPES = (EncoderLayer, BiMambaLayer)


def encoder_layers(model: nn.Module) -> list[nn.Module]:
    """The model's encoder layers (transformer or bidirectional Mamba), in order."""
    return [module for module in model.modules() if isinstance(module, LAYER_TYPES)]


def checkpoint_activations(model: nn.Module) -> int:
    """Recompute each encoder layer's activations in the backward pass instead of keeping them; returns
    the number of layers. State-dict keys do not change."""
    layers = encoder_layers(model)
    for layer in layers:
        checkpoint(layer)
    return len(layers)


def shard_model(model: nn.Module, device: torch.device, world_size: int) -> nn.Module:
    """Shard ``model`` in place over ``world_size`` ranks (each encoder layer, then the root); returns it.

    Refuses layer drop: ranks would skip different layers and wait on each other's all-gathers.
    """
    dropping = sorted({f"{type(m).__name__}.layer_drop={m.layer_drop}" for m in model.modules()
                       if getattr(m, "layer_drop", 0.0) > 0})
    if dropping:
        raise ConfigError(f"trainer.strategy fsdp cannot train with layer drop ({', '.join(dropping)}): "
                          "set the model's layer drop to 0 or use strategy ddp")
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (world_size,))
    for layer in encoder_layers(model):
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def full_norm(norm: torch.Tensor) -> torch.Tensor:
    """A gradient norm as a plain tensor (``clip_grad_norm_`` gives a DTensor for sharded parameters)."""
    return norm.full_tensor() if hasattr(norm, "full_tensor") else norm


def gathered_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The full state dict of a sharded model, on CPU, on rank 0 (empty elsewhere); every rank must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a full (one-process) state dict into a sharded model, each rank keeping its shard."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))


def gathered_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer state of a sharded model as a one-process optimizer's ``state_dict()`` (keyed by
    parameter index), on rank 0 (empty elsewhere); every rank must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    by_name = get_optimizer_state_dict(model, optimizer,
                                       options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not by_name:
        return {}
    names = [name for group in by_name["param_groups"] for name in group["params"]]
    index = {name: i for i, name in enumerate(names)}
    groups, start = [], 0
    for group in by_name["param_groups"]:
        groups.append({**group, "params": list(range(start, start + len(group["params"])))})
        start += len(group["params"])
    return {"state": {index[name]: value for name, value in by_name["state"].items()}, "param_groups": groups}


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load a one-process optimizer ``state_dict()`` into the optimizer of a sharded model."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    name_of = {param: name for name, param in model.named_parameters()}
    names = [name_of[param] for group in optimizer.param_groups for param in group["params"]]
    groups = [{**group, "params": [names[i] for i in group["params"]]} for group in state["param_groups"]]
    by_name = {"state": {names[i]: value for i, value in state["state"].items()}, "param_groups": groups}
    set_optimizer_state_dict(model, optimizer, by_name, options=StateDictOptions(full_state_dict=True))
