"""Run configs: a YAML file of sections (``model``, ``trainer``, ...) plus ``key.path=value`` overrides."""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import yaml

from audiossl.errors import ConfigError
from audiossl.train.schedules import ScheduleConfig
from audiossl.train.trainer import LanguageStage, TrainerConfig


def load_run_config(path: str | os.PathLike | None, overrides=()) -> dict[str, Any]:
    """Read a YAML run config (or start empty) and apply ``a.b.c=value`` overrides (values parsed as YAML)."""
    config: dict[str, Any] = {}
    if path:
        with open(path, encoding="utf-8") as f:
            config = yaml.safe_load(f) or {}
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
        node[leaf] = yaml.safe_load(value)
    return config


def check_sections(run: dict[str, Any], allowed, source: str | os.PathLike | None) -> None:
    """Refuse a run config section this command does not read (e.g. a misspelt ``trainr:``), by name."""
    unknown = sorted(set(run) - set(allowed))
    if unknown:
        raise ConfigError(f"{source or 'run config'}: unknown sections {unknown}; this command reads {sorted(allowed)}")


def _fill(cls, values: dict[str, Any], where: str):
    """``cls(**values)``; float fields also take strings such as ``2e-3`` (YAML 1.1 reads them as text)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; known: {sorted(fields)}")
    values = dict(values)
    for name, value in values.items():
        if isinstance(fields[name].default, float) and isinstance(value, (str, int)):
            try:
                values[name] = float(value)
            except ValueError:
                raise ConfigError(f"{where}.{name}: expected a number, got {value!r}") from None
    return cls(**values)


def trainer_config(values: dict[str, Any] | None) -> TrainerConfig:
    """A :class:`TrainerConfig` from the ``trainer`` section; the schedule's length follows ``max_updates``."""
    values = dict(values or {})
    schedule = _fill(ScheduleConfig, dict(values.pop("schedule", {}) or {}), "trainer.schedule")
    stages = values.pop("language_stages", None)
    config = _fill(TrainerConfig, values, "trainer")
    if stages is not None:
        config.language_stages = language_stages(stages, config)
    if config.strategy not in ("ddp", "fsdp"):
        raise ConfigError(f"trainer.strategy is ddp or fsdp, not {config.strategy!r}")
    if config.strategy == "fsdp" and config.precision == "fp16":
        raise ConfigError("trainer.precision fp16 with strategy fsdp: the loss scaler would check each rank's shard "
                          "of the gradients apart; train FSDP in bf16 (or fp32)")
    if config.on_scale_collapse not in ("bf16", "stop"):
        raise ConfigError(f"trainer.on_scale_collapse is bf16 or stop, not {config.on_scale_collapse!r}")
    config.schedule = dataclasses.replace(schedule, total_updates=config.max_updates)
    if isinstance(config.betas, list):
        config.betas = tuple(config.betas)
    return config


def language_stages(stages, config: TrainerConfig) -> list[LanguageStage]:
    """``trainer.language_stages``: each stage but the last with its ``updates``, all within ``max_updates``."""
    where = "trainer.language_stages"
    if config.language_alpha is not None:
        raise ConfigError(f"{where} and trainer.language_alpha are both set; language_alpha is one stage's alpha")
    if not isinstance(stages, list) or not stages or not all(isinstance(stage, dict) for stage in stages):
        raise ConfigError(f"{where}: expected a list of stages such as {{alpha: 1.0, updates: 500}}, got {stages!r}")
    parsed = [_fill(LanguageStage, stage, f"{where}[{i}]") for i, stage in enumerate(stages)]
    end = 0
    for i, stage in enumerate(parsed[:-1]):
        if not isinstance(stage.updates, int) or stage.updates <= 0:
            raise ConfigError(f"{where}[{i}]: a stage before the last needs its length, updates: N > 0")
        end += stage.updates
    if end >= config.max_updates:
        raise ConfigError(f"{where}: the stages before the last end at update {end}, not before max_updates "
                          f"{config.max_updates}: the last stage would never run")
    return parsed


def save_run_config(run: dict[str, Any], cli_args, exp_dir: str | os.PathLike) -> None:
    """Write ``exp_dir/config.yaml``: the effective run config and the command's other arguments."""
    data = {k: v for k, v in vars(cli_args).items() if k not in ("config", "set")}
    os.makedirs(exp_dir, exist_ok=True)
    with open(os.path.join(exp_dir, "config.yaml"), "w", encoding="utf-8") as f:
        yaml.safe_dump({**run, "data": data}, f, sort_keys=False)
