"""Run configs: a YAML file of sections (``model``, ``trainer``, ...) plus ``key.path=value`` overrides."""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import yaml

from audiossl.config_fields import dataclass_from_dict
from audiossl.errors import ConfigError
from audiossl.train.precision import PRECISIONS
from audiossl.train.schedules import SCHEDULES, ScheduleConfig
from audiossl.train.trainer import TrainerConfig


def load_run_config(path: str | os.PathLike | None, overrides=()) -> dict[str, Any]:
    """Read a YAML run config (or start empty) and apply ``a.b.c=value`` overrides (values parsed as YAML)."""
    config: dict[str, Any] = {}
    if path:
        with open(path, encoding="utf-8") as f:
            config = _parse_yaml(f, str(path)) or {}
        if not isinstance(config, dict):
            raise ConfigError(f"{path}: expected a mapping of sections")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"override '{item}' is not key.path=value")
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}': '{part}' is not a section")
        node[leaf] = _parse_yaml(value, f"override '{item}'")
    return config


def _parse_yaml(text, where: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: not valid YAML: {err}") from None


def check_sections(run: dict[str, Any], allowed, source: str | os.PathLike | None) -> None:
    """Refuse a run config section this command does not read (e.g. a misspelt ``trainr:``), by name."""
    unknown = sorted(set(run) - set(allowed))
    if unknown:
        raise ConfigError(f"{source or 'run config'}: unknown sections {unknown}; this command reads {sorted(allowed)}")


def trainer_config(values: dict[str, Any] | None) -> TrainerConfig:
    """A :class:`TrainerConfig` from the ``trainer`` section, every value checked by type and range;
    the schedule's length follows ``max_updates``."""
    config = dataclass_from_dict(TrainerConfig, {} if values is None else values, "trainer")
    problems = [f"trainer.{name} is {getattr(config, name)!r}; it must be {rule}"
                for name, rule, holds in _trainer_rules(config) if not holds]
    problems += [f"trainer.schedule.{name} is {getattr(config.schedule, name)!r}; it must be {rule}"
                 for name, rule, holds in _schedule_rules(config.schedule) if not holds]
    if problems:
        raise ConfigError("invalid trainer section:\n  " + "\n  ".join(problems))
    if config.language_stages is not None:
        language_stages(config)
    if config.strategy == "fsdp" and config.precision == "fp16":
        raise ConfigError("trainer.precision fp16 with strategy fsdp: the loss scaler would check each rank's shard "
                          "of the gradients apart; train FSDP in bf16 (or fp32)")
    config.schedule = dataclasses.replace(config.schedule, total_updates=config.max_updates)
    return config


def _trainer_rules(c: TrainerConfig) -> list[tuple[str, str, bool]]:
    """``(field, rule, whether it holds)`` for each trainer value with a range or a set of choices."""
    return [
        ("max_updates", "at least 1", c.max_updates >= 1),
        ("batch_seconds", "more than 0", c.batch_seconds > 0),
        ("max_batch_size", "at least 1 (or null: no bound)", c.max_batch_size is None or c.max_batch_size >= 1),
        ("language_alpha", "at least 0 (or null)", c.language_alpha is None or c.language_alpha >= 0),
        ("accum_steps", "at least 1", c.accum_steps >= 1),
        ("lr", "more than 0", c.lr > 0),
        ("weight_decay", "at least 0", c.weight_decay >= 0),
        ("betas", "two numbers in [0, 1)", all(0 <= beta < 1 for beta in c.betas)),
        ("eps", "more than 0", c.eps > 0),
        ("clip_norm", "more than 0 (the largest gradient norm kept)", c.clip_norm > 0),
        ("precision", f"one of {list(PRECISIONS)}", c.precision in PRECISIONS),
        ("log_interval", "at least 1", c.log_interval >= 1),
        ("valid_interval", "at least 1", c.valid_interval >= 1),
        ("save_interval", "at least 1", c.save_interval >= 1),
        ("keep_last", "at least 1", c.keep_last >= 1),
        ("num_workers", "at least 0", c.num_workers >= 0),
        ("num_threads", "at least 0 (0: cores / ranks)", c.num_threads >= 0),
        ("max_bad_updates", "at least 1", c.max_bad_updates >= 1),
        ("loss_scale_floor", "more than 0", c.loss_scale_floor > 0),
        ("loss_scale_patience", "at least 1", c.loss_scale_patience >= 1),
        ("on_scale_collapse", "bf16 or stop", c.on_scale_collapse in ("bf16", "stop")),
        ("device", "auto, cpu or cuda", c.device in ("auto", "cpu", "cuda")),
        ("strategy", "ddp or fsdp", c.strategy in ("ddp", "fsdp")),
        ("watchdog_seconds", "at least 0 (0: never)", c.watchdog_seconds >= 0),
    ]


def _schedule_rules(c: ScheduleConfig) -> list[tuple[str, str, bool]]:
    return [
        ("name", f"one of {list(SCHEDULES)}", c.name in SCHEDULES),
        ("warmup_updates", "at least 0", c.warmup_updates >= 0),
        ("hold_updates", "at least 0", c.hold_updates >= 0),
        ("final_lr_scale", "at least 0", c.final_lr_scale >= 0),
        ("power", "more than 0", c.power > 0),
        ("initial_lr_scale", "at least 0", c.initial_lr_scale >= 0),
    ]


def language_stages(config: TrainerConfig) -> None:
    """Check ``trainer.language_stages``: each stage but the last with its ``updates``, all within ``max_updates``."""
    where = "trainer.language_stages"
    if config.language_alpha is not None:
        raise ConfigError(f"{where} and trainer.language_alpha are both set; language_alpha is one stage's alpha")
    stages = config.language_stages
    if not stages:
        raise ConfigError(f"{where}: expected a list of stages such as {{alpha: 1.0, updates: 500}}, got {stages!r}")
    end = 0
    for i, stage in enumerate(stages[:-1]):
        if stage.updates is None or stage.updates <= 0:
            raise ConfigError(f"{where}[{i}]: a stage before the last needs its length, updates: N > 0")
        end += stage.updates
    if end >= config.max_updates:
        raise ConfigError(f"{where}: the stages before the last end at update {end}, not before max_updates "
                          f"{config.max_updates}: the last stage would never run")
