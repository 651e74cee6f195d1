"""Self-supervised pretraining of any family: the model computes its objective, the task adds it up."""
from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from audiossl.checkpoint import CheckpointError, build_model, load_checkpoint, load_model
from audiossl.config_fields import checked_value
from audiossl.data.dataset import Batch, UtteranceDataset
from audiossl.data.kaldi_dir import DataDir, DataDirError
from audiossl.data.mixing import NoiseBank, UtteranceMixing
from audiossl.data.transforms import BatchTransform, Compose
from audiossl.errors import ConfigError
from audiossl.nn.frontends import fbank_num_frames
from audiossl.models.named import merge_settings, model_config_from_section
from audiossl.models.encoder import SpeechEncoder
from audiossl.registry import get_family
from audiossl.targets.labels import LabelError, check_label_range, num_codebooks, read_labels
from audiossl.tasks.base import StepOutput, Task

logger = logging.getLogger("audiossl.train")


class PretrainingTask(Task):
    """Batches of (inputs, frame targets or none) → the model's own loss and metric sums.

    The model's ``forward(inputs, lengths, targets, generator)`` returns an
    :class:`~audiossl.objectives.output.ObjectiveOutput`; its ``metrics`` (figure →
    numerator and denominator sums) and ``valid_metric`` (the figure that chooses ``best.pt``,
    lower is better) describe the figures. With ``languages`` (utterance → language; batches of one
    language each, as the trainer's ``language_alpha`` makes them) every figure is also given per
    language, as ``<figure>@<language>``.
    """

    find_unused_parameters = True  # layer drop leaves different layers unused on each rank

    def __init__(self, model: SpeechEncoder, languages: dict[str, str] | None = None):
        self.metrics = dict(model.metrics)
        self.valid_metric = model.valid_metric
        self.model_warnings = model.health_warnings
        self.languages = languages
        self.language_names = sorted(set(languages.values())) if languages else []

    def before_update(self, model: SpeechEncoder, update: int) -> None:
        model.set_num_updates(update)

    def health_warnings(self, figures: dict[str, float]) -> list[str]:
        return self.model_warnings(figures)

    def train_step(self, model: nn.Module, batch: Batch, generator) -> StepOutput:
        out = model(batch.inputs, batch.lengths, batch.targets, generator)
        sums = {**out.sums, "loss": float(out.loss.detach()) * batch.size, "utterances": float(batch.size)}
        if self.languages:  # every language's keys in every step, so that ranks sum the same keys
            spoken = {self.languages[utt] for utt in batch.utterances}
            if len(spoken) != 1:
                raise ValueError(f"a batch of languages {sorted(spoken)}: per-language figures need batches of one")
            sums.update({f"{name}@{lang}": value if lang in spoken else 0.0
                         for lang in self.language_names for name, value in list(sums.items())})
        return StepOutput(out.loss, sums)

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        figures = {}
        heard = [f"@{lang}" for lang in self.language_names if sums.get(f"utterances@{lang}")]
        for suffix in [""] + heard:
            figures[f"loss{suffix}"] = sums[f"loss{suffix}"] / max(sums[f"utterances{suffix}"], 1.0)
            for name, (numerator, denominator) in self.metrics.items():
                figures[f"{name}{suffix}"] = sums.get(numerator + suffix, 0.0) / max(sums.get(denominator + suffix, 0.0), 1.0)
        return figures

    def valid_score(self, summary: dict[str, float]) -> float:
        return summary[self.valid_metric]


def pretraining_model(section: dict[str, Any], init: str | None = None) -> nn.Module:
    """The model a pretraining run trains: built from the run config's ``model`` section, or continued from ``init``.

    ``init`` is anything :func:`audiossl.load_model` reads (an audiossl checkpoint, a Hugging Face
    directory, a fairseq checkpoint, a fairseq2 checkpoint dir): the next HuBERT iteration continuing from the previous one, or
    continued pretraining on new data. The model keeps that checkpoint's config and weights; a family
    that predicts the labels of a file (k-means clusters, a teacher's codes) gets new label tables for
    this run's targets (its registry ``classes`` field, from the section). The section may then name
    the family and size (which must describe the checkpoint's model) or hold only ``set`` changes;
    any setting that differs from the checkpoint's but the classes is refused by name.
    """
    if init is None:
        config = model_config_from_section(section)
        return build_model(config.family, config.to_dict())
    model = load_model(init).train()
    family = get_family(model.config.family)
    if family.targets is None:
        raise ConfigError(f"--init {init}: a fine-tuned {family.name!r} model, not a pretraining family's; "
                          "give a pretrained checkpoint")
    kept = model.config.to_dict()
    if section.get("family"):
        asked_config = model_config_from_section(section)
        if asked_config.family != family.name:
            raise ConfigError(f"--init {init} is a {family.name!r} model, the run config's family is "
                              f"{asked_config.family!r}")
        asked = asked_config.to_dict()
    else:
        other = sorted(set(section) - {"set"})
        if other:
            raise ConfigError(f"model: {other} need model.family; under --init a model section without a family "
                              "may only hold 'set' (the checkpoint's model, changed)")
        asked = merge_settings(kept, section.get("set") or {}, "model.set")
    refused = [difference for difference in config_differences(kept, asked)
               if difference.split(" ", 1)[0] != family.classes]
    if refused:
        raise ConfigError(f"--init {init}: the model keeps the checkpoint's settings, and the run config's model "
                          f"section differs in {'; '.join(refused)}: make them equal or leave them out")
    if family.classes:
        model.reset_targets(asked[family.classes])
    return model


def config_differences(kept: dict[str, Any], asked: dict[str, Any], prefix: str = "") -> list[str]:
    """``"<dotted key> (<kept> in the checkpoint, <asked> in the run config)"`` for every leaf that differs."""
    differences = []
    for key in sorted(set(kept) | set(asked)):
        old, new = kept.get(key), asked.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            differences += config_differences(old, new, f"{prefix}{key}.")
        elif old != new:
            differences.append(f"{prefix}{key} ({old!r} in the checkpoint, {new!r} in the run config)")
    return differences


def init_train_state(init: str) -> dict[str, Any]:
    """The optimizer and schedule state of training checkpoint ``init`` (for a run that keeps them)."""
    try:
        payload = load_checkpoint(init)
    except CheckpointError as err:
        raise ConfigError(f"--init {init}: keeping the optimizer needs an audiossl training checkpoint ({err})") from err
    if "train_state" not in payload:
        raise ConfigError(f"--init {init}: holds no optimizer state (not written by training); start a new optimizer")
    return payload["train_state"]


LABEL_TARGETS = ("kmeans", "rvq")  # target kinds read from label files


def read_targets(path: str, model: SpeechEncoder) -> dict[str, np.ndarray]:
    """The label table at ``path``, checked to hold the codebooks per frame that ``model`` predicts, each id
    one of its classes (a larger id failed the first batch holding it, after hours of training)."""
    labels = read_labels(path)
    found = num_codebooks(labels)
    family = model.config.family
    if found != model.target_codebooks:
        raise LabelError(f"{path}: {found} codebook(s) per frame, the {family} model predicts "
                         f"{model.target_codebooks} (its num_codebooks)")
    classes = get_family(family).classes
    try:
        check_label_range(labels, getattr(model.config, classes), path)
    except LabelError as err:
        raise LabelError(f"{err}: the {family} model predicts {classes}={getattr(model.config, classes)} classes; "
                         f"set model.set.{classes} to the number of clusters (codes) the labels were made with"
                         ) from None
    return labels


def check_targets(family: str, train_labels: str | None, valid_labels: str | None, valid_data: str | None) -> None:
    """Labels are given exactly when ``family`` pretrains on label files (k-means labels, residual-VQ codes),
    and for dev when dev is given; dev labels without dev data would leave the run unvalidated, silently."""
    if valid_labels and not valid_data:
        raise ConfigError(f"--valid-labels {valid_labels} without --valid-data: give the validation data dir they "
                          "label (the run would not be validated)")
    kind = get_family(family).targets
    needs_labels = kind in LABEL_TARGETS
    if needs_labels and (train_labels is None or (valid_data and valid_labels is None)):
        what = {"kmeans": "k-means labels", "rvq": "residual-VQ codes"}[kind]
        raise ConfigError(f"{family} predicts {what}: give --train-labels (and --valid-labels with --valid-data)")
    if not needs_labels and (train_labels or valid_labels):
        raise ConfigError(f"{family} makes its own targets: --train-labels and --valid-labels do not apply")


# the mixing section's keys and their types: UtteranceMixing's settings, and speaker_aware
MIXING_KEYS = {"prob": float, "noise_prob": float, "speech_ratio_db": tuple[float, float],
               "noise_ratio_db": tuple[float, float], "max_overlap": float, "speaker_aware": bool}


@dataclass
class PretrainingInputs:
    """What a pretraining run's datasets read and how batches become model inputs.

    input_kind: what the datasets load (``"waveform"`` when audio is mixed before features).
    transform: the batch transform (mixing, then features on the fly), or None.
    num_frames: model frames of an input of a given length (to check frame-level labels).
    mixing: the mixing section's settings, checked (None: no mixing); a resumed run must have the same.
    """

    input_kind: str
    transform: BatchTransform | None
    num_frames: Callable[[int], int]
    mixing: dict[str, Any] | None = None


def pretraining_inputs(model: SpeechEncoder, mixing: dict[str, Any] | None, train_data: str,
                       noise_data: str | None) -> PretrainingInputs:
    """The inputs of a run whose config has the ``mixing`` section (None: no mixing).

    ``mixing`` holds :class:`~audiossl.data.mixing.UtteranceMixing`'s settings (``prob``,
    ``noise_prob``, ``speech_ratio_db``, ``noise_ratio_db``, ``max_overlap``) and
    ``speaker_aware`` (mix in only other speakers' utterances, by ``train_data``'s utt2spk).
    With mixing, the datasets read waveforms and the model's features are computed after the
    mixing; ``noise_data`` is the noise data dir, loaded here so that a bad one fails before training.
    """
    if mixing is None:
        if noise_data:
            raise ConfigError("--noise-data is used by utterance mixing: add a mixing section to the run config")
        return PretrainingInputs(model.input_kind, None, lambda length: int(model.num_frames(torch.tensor([length]))[0]))
    if not isinstance(mixing, dict):
        raise ConfigError(f"mixing: expected a mapping of keys, got {mixing!r}")
    unknown = sorted(set(mixing) - set(MIXING_KEYS))
    if unknown:
        raise ConfigError(f"unknown mixing keys {unknown}; known: {list(MIXING_KEYS)}")
    mixing = {key: checked_value(value, MIXING_KEYS[key], f"mixing.{key}") for key, value in mixing.items()}
    family = model.config.family
    if get_family(family).targets != "kmeans":
        raise ConfigError(f"mixing keeps the targets of the clean utterance, but {family} makes its targets from "
                          "its input: mixing applies to families with k-means targets only")
    options = dict(mixing)
    speakers = None
    if options.pop("speaker_aware", False):
        data = DataDir.read(train_data)
        if "utt2spk" not in data:
            raise DataDirError(f"{train_data}: no utt2spk, which speaker-aware mixing needs")
        speakers = dict(data["utt2spk"])
    if noise_data is None and options.get("noise_prob", 0.0) > 0.0:
        raise ConfigError(f"mixing.noise_prob is {options['noise_prob']}: give the noise data dir (--noise-data)")
    noise = NoiseBank(noise_data, model.sample_rate) if noise_data else None  # the audio's rate (an 8 kHz model's)
    mix = UtteranceMixing(**options, noise=noise, speakers=speakers)
    if speakers is not None and len(set(speakers.values())) == 1 and mix.prob > 0 and (
            noise is None or mix.noise_prob < 1):
        raise DataDirError(f"{train_data}/utt2spk: every utterance is of speaker '{next(iter(speakers.values()))}': "
                           "speaker-aware mixing would find no other speaker's utterance to mix in, and mix no "
                           "speech at all; give the speakers in utt2spk, or leave out mixing.speaker_aware")
    features = model.waveform_transform()
    transform = Compose([mix] if features is None else [mix, features])

    def num_frames(samples: int) -> int:
        lengths = torch.tensor([samples])
        return int(model.num_frames(lengths if features is None else fbank_num_frames(lengths))[0])

    return PretrainingInputs("waveform", transform, num_frames, mixing)


def pretraining_dataset(data_dir: str, labels: str | None, model: SpeechEncoder,
                        inputs: PretrainingInputs) -> UtteranceDataset:
    """The utterances of ``data_dir`` as ``inputs`` reads them for ``model``, with the label table at ``labels``
    (families that predict labels; None: the model makes its targets).

    An utterance too short for one model frame (shorter than the CNN's receptive field, or than an SSAMBA
    patch) is an error naming it and the shortest length that gives a frame: it failed the batch holding
    it, mid-training, naming no utterance.
    """
    if labels is None:
        data = UtteranceDataset(data_dir, inputs.input_kind, num_mel_bins=model.num_mel_bins,
                                sample_rate=model.sample_rate)
    else:
        data = UtteranceDataset(data_dir, inputs.input_kind, read_targets(labels, model), inputs.num_frames,
                                targets_name=labels, num_mel_bins=model.num_mel_bins, sample_rate=model.sample_rate)
    # frames grow with the input length: the utterances without one are the shortest ones
    short = []
    for length, utt in sorted(zip(data.lengths, data.utterances)):
        if inputs.num_frames(length) >= 1:
            break
        short.append((utt, length))
    if short:
        unit = "samples" if data.input_kind == "waveform" else "fbank frames"
        shortest = next(n for n in itertools.count(short[-1][1] + 1) if inputs.num_frames(n) >= 1)
        utt, length = short[0]
        raise DataDirError(f"{data_dir}: {len(short)} utterance(s) too short for one frame of the "
                           f"{model.config.family} model (it needs at least {shortest} {unit}), e.g. '{utt}' of "
                           f"{length} {unit}; leave them out (python -m audiossl.bin.data_dir subset --utt-list)")
    return data
