"""Model families by name: one plain dict, imported lazily (no import side effects).

Each family module exposes a config class (a :class:`~audiossl.models.components.ModelConfig`
with ``from_dict``/``to_dict``), a builder ``build(config) -> nn.Module`` and its named sizes
``NAMED_CONFIGS``; checkpoints store the family name and the config dict. ``targets`` says what a
pretraining family learns to predict: ``"kmeans"`` (cluster labels of a k-means stage),
``"rvq"`` (K codes per frame of a residual-VQ teacher, :mod:`audiossl.targets.rvq`), ``"none"``
(targets the model makes itself), or ``None`` for a downstream model (CTC). ``classes`` names the
config field that holds the number of label classes of a family that reads label files (what a
k-means stage's cluster count sets).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from audiossl.errors import ConfigError

FAMILIES: dict[str, dict[str, Any]] = {
    "hubert": {"module": "audiossl.models.hubert", "config": "HubertConfig", "build": "build_hubert",
               "targets": "kmeans", "classes": "num_classes"},
    "wav2vec2": {"module": "audiossl.models.wav2vec2", "config": "Wav2Vec2Config", "build": "build_wav2vec2",
                 "targets": "none"},
    "wavlm": {"module": "audiossl.models.wavlm", "config": "WavLMConfig", "build": "build_wavlm",
              "targets": "kmeans", "classes": "num_classes"},
    "unispeech_sat": {"module": "audiossl.models.unispeech_sat", "config": "UniSpeechSatConfig",
                      "build": "build_unispeech_sat", "targets": "kmeans", "classes": "num_classes"},
    "best_rq": {"module": "audiossl.models.best_rq", "config": "BestRqConfig", "build": "build_best_rq",
                "targets": "none"},
    "ssamba": {"module": "audiossl.models.ssamba", "config": "SsambaConfig", "build": "build_ssamba",
               "targets": "none"},
    "tera": {"module": "audiossl.models.tera", "config": "TeraConfig", "build": "build_tera", "targets": "none"},
    "mert": {"module": "audiossl.models.mert", "config": "MertConfig", "build": "build_mert", "targets": "rvq",
             "classes": "codebook_size"},
    "ctc": {"module": "audiossl.models.ctc", "config": "CtcConfig", "build": "build_ctc", "targets": None},
    "utterance": {"module": "audiossl.models.utterance", "config": "UtteranceConfig", "build": "build_utterance",
                  "targets": None},
}


@dataclass(frozen=True)
class Family:
    name: str
    config_class: type
    build: Callable[[Any], nn.Module]
    targets: str | None
    classes: str | None


def pretraining_families() -> list[str]:
    """The families that pretrain (those with a target kind), sorted."""
    return sorted(family for family, entry in FAMILIES.items() if entry["targets"] is not None)


def get_family(name: str) -> Family:
    """The family registered as ``name``; an unknown name lists the known ones."""
    if name not in FAMILIES:
        raise ConfigError(f"unknown model family '{name}'; known: {', '.join(sorted(FAMILIES))}")
    entry = FAMILIES[name]
    module = importlib.import_module(entry["module"])
    return Family(name, getattr(module, entry["config"]), getattr(module, entry["build"]), entry["targets"],
                  entry.get("classes"))


def build_model(family: str, config: dict[str, Any]) -> nn.Module:
    """A freshly initialised model of ``family`` from a config dict."""
    entry = get_family(family)
    return entry.build(entry.config_class.from_dict(config))


def named_configs(name: str) -> dict[str, Callable[..., Any]]:
    """Size name -> config factory of family ``name`` (its ``NAMED_CONFIGS``)."""
    get_family(name)
    return getattr(importlib.import_module(FAMILIES[name]["module"]), "NAMED_CONFIGS", {})


def list_models() -> dict[str, list[str]]:
    """Family name -> its named sizes."""
    return {name: sorted(named_configs(name)) for name in FAMILIES}
