"""Learning-rate schedules as multipliers of the peak learning rate, per update.

``polynomial``: linear warmup to the peak, then polynomial decay to ``final_lr_scale``
(fairseq ``polynomial_decay``; power 1 is linear). ``tri_stage``: warmup, hold, then
exponential decay to ``final_lr_scale`` (fairseq ``tri_stage``, wav2vec 2.0 fine-tuning).
``constant``: warmup then constant.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch

from audiossl.errors import ConfigError

SCHEDULES = ("polynomial", "tri_stage", "constant")

@dataclass
class ScheduleConfig:
    name: str = "polynomial"
    warmup_updates: int = 0
    hold_updates: int = 0          # tri_stage only
    total_updates: int = 1000
    final_lr_scale: float = 0.0    # polynomial: end multiplier; tri_stage: decay target (e.g. 0.05)
    power: float = 1.0             # polynomial only
    initial_lr_scale: float = 0.0  # multiplier at update 0 of warmup


def lr_multiplier(update: int, config: ScheduleConfig) -> float:
    """Multiplier of the peak learning rate at ``update`` (0-based)."""
    warmup = config.warmup_updates
    if update < warmup:
        return config.initial_lr_scale + (1 - config.initial_lr_scale) * update / warmup
    if config.name == "constant":
        return 1.0
    if config.name == "polynomial":
        span = max(1, config.total_updates - warmup)
        progress = min(1.0, (update - warmup) / span)
        return config.final_lr_scale + (1 - config.final_lr_scale) * (1 - progress) ** config.power
    if config.name == "tri_stage":
        if update < warmup + config.hold_updates:
            return 1.0
        span = max(1, config.total_updates - warmup - config.hold_updates)
        progress = min(1.0, (update - warmup - config.hold_updates) / span)
        return math.exp(math.log(max(config.final_lr_scale, 1e-12)) * progress)
    raise ConfigError(f"unknown schedule {config.name!r}: expected one of {list(SCHEDULES)}")


def build_scheduler(optimizer: torch.optim.Optimizer, config: ScheduleConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR applying :func:`lr_multiplier`; its state dict is plain (the lambda is not saved)."""
    lr_multiplier(0, config)  # fail early on a bad name
    return torch.optim.lr_scheduler.LambdaLR(optimizer, partial(lr_multiplier, config=config))
