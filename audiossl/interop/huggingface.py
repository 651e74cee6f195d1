"""Hugging Face model directories (``config.json`` + weights) of HuBERT, wav2vec 2.0, WavLM and UniSpeech-SAT.

:func:`load_hf` reads what ``save_pretrained`` writes (``model.safetensors`` or
``pytorch_model.bin``, loaded weights-only, or their shards beside an ``.index.json`` that names
each weight's shard) for the classes in :data:`HF_FAMILIES`;
:func:`save_hf` writes a directory that those classes load with the same hidden states.
Nothing is downloaded: the directory must be on disk. ``config.json``'s ``model_type``
chooses the family, its ``architectures`` the class.

``*ForCTC`` directories load as the family's encoder model: the CTC head (``lm_head``) is
dropped. An audiossl :class:`~audiossl.models.ctc.CtcModel` would need HF's vocabulary as it
is, and audiossl's tokenizers cannot hold it: HF's always carries ``<s>`` and ``</s>`` (with
rows in ``lm_head``) and puts the blank at ``pad_token_id``, while a
:class:`~audiossl.text.tokenizer.CharTokenizer` holds ``<blank>``, ``<unk>``, ``|`` at ids
0-2 and single characters after; dropping rows would change every log-probability. The other
way fits: :func:`save_hf` writes an audiossl CTC model of a char tokenizer as ``*ForCTC`` with a
``Wav2Vec2CTCTokenizer`` of audiossl's ids, the blank as its pad token.

Padded batches: audiossl keeps padding out of the first CNN layer's group norm (base layout),
so each item's valid frames equal HF's output for that item alone; HF's group norm takes
padding into its statistics, so HF's own padded-batch output differs from both. The large
layout (layer norms) agrees with HF on padded batches given HF's ``attention_mask``.
"""
from __future__ import annotations

import fnmatch
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from audiossl.atomic import atomic_dir
from audiossl.checkpoint import load_failure, weights_mismatch
from audiossl.errors import InteropError
from audiossl.models.encoder import SpeechEncoder
from audiossl.models.hf_layout import SAMPLE_RATE, checked_settings
from audiossl.models.hubert import interop as hubert
from audiossl.models.unispeech_sat import interop as unispeech_sat
from audiossl.models.wav2vec2 import interop as wav2vec2
from audiossl.models.wavlm import interop as wavlm
from audiossl.registry import get_family
from audiossl.text.tokenizer import BLANK_ID, CharTokenizer

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json",
                "pytorch_model.bin", "pytorch_model.bin.index.json")
"""The weights of a directory, whole or sharded (an index of shards), in the order transformers prefers them."""
SHARD_FILES = ("model-*-of-*.safetensors", "pytorch_model-*-of-*.bin")
"""The names ``save_pretrained`` gives shards."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HfFamily:
    """How one Hugging Face ``model_type`` maps onto an audiossl family (its pure converters).

    Attributes:
        model_type: config.json's ``model_type``.
        classes: the HF classes read (``architectures``); the first is written for an encoder.
        pretraining_class: the HF class that also stores :attr:`pretraining_parts` (None: no class does).
        pretraining_parts: prefixes of audiossl weights that other classes lack (new on import).
        config_from_hf: (HF config dict, targets of a new masked-prediction head; unused by wav2vec 2.0)
            → audiossl config.
    """

    model_type: str
    classes: tuple[str, ...]
    pretraining_class: str | None
    pretraining_parts: tuple[str, ...]
    config_from_hf: Callable[[dict[str, Any], int], Any]
    config_to_hf: Callable[[Any], dict[str, Any]]
    state_dict_from_hf: Callable[[dict[str, Tensor]], dict[str, Tensor]]
    state_dict_to_hf: Callable[[dict[str, Tensor]], dict[str, Tensor]]


HF_FAMILIES: dict[str, HfFamily] = {
    "hubert": HfFamily("hubert", ("HubertModel", "HubertForCTC"), None, ("head.",), hubert.config_from_hf,
                       hubert.config_to_hf, hubert.state_dict_from_hf, hubert.state_dict_to_hf),
    "wav2vec2": HfFamily("wav2vec2", ("Wav2Vec2Model", "Wav2Vec2ForPreTraining", "Wav2Vec2ForCTC"),
                         "Wav2Vec2ForPreTraining", ("quantizer.", "project_q.", "final_proj."),
                         lambda hf, num_classes: wav2vec2.config_from_hf(hf), wav2vec2.config_to_hf,
                         wav2vec2.state_dict_from_hf, wav2vec2.state_dict_to_hf),
    "wavlm": HfFamily("wavlm", ("WavLMModel", "WavLMForCTC"), None, ("head.",), wavlm.config_from_hf,
                      wavlm.config_to_hf, wavlm.state_dict_from_hf, wavlm.state_dict_to_hf),
    "unispeech_sat": HfFamily(unispeech_sat.MODEL_TYPE, ("UniSpeechSatModel", "UniSpeechSatForCTC",
                                                        "UniSpeechSatForPreTraining"), None,
                              unispeech_sat.PRETRAINING_PARTS, unispeech_sat.config_from_hf, unispeech_sat.config_to_hf,
                              unispeech_sat.state_dict_from_hf, unispeech_sat.state_dict_to_hf),
}
"""audiossl family → its HF ``model_type``, classes and converters."""
SUPPORTED_CLASSES = {name: family for family, entry in HF_FAMILIES.items() for name in entry.classes}
"""HF class → its audiossl family."""
FAMILY_OF_MODEL_TYPE = {entry.model_type: family for family, entry in HF_FAMILIES.items()}


def read_weights(directory: Path) -> dict[str, Tensor]:
    """The state dict of a Hugging Face model directory: its first file of :data:`WEIGHT_FILES`, or the shards
    that index names."""
    for name in WEIGHT_FILES:
        path = directory / name
        if path.exists():
            return _read_shards(path) if name.endswith(".index.json") else _read_state(path)
    raise InteropError(f"{directory}: no weights ({' or '.join(WEIGHT_FILES)})")


def _read_state(path: Path) -> dict[str, Tensor]:
    """The state dict in one safetensors file or weights-only pickle."""
    safetensors = path.name.endswith(".safetensors")
    try:
        state = load_file(path) if safetensors else torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # safetensors and torch raise many types for a truncated or foreign file
        raise InteropError(f"{path}: cannot read weights: {err if safetensors else load_failure(err)}") from err
    if not isinstance(state, dict) or not all(isinstance(value, Tensor) for value in state.values()):
        held = "values other than tensors" if isinstance(state, dict) else f"a {type(state).__name__}"
        raise InteropError(f"{path}: not a state dict (names to tensors): holds {held}")
    return state


def _read_shards(index: Path) -> dict[str, Tensor]:
    """The state dict of the shards that a sharded checkpoint's ``index`` names in its ``weight_map``."""
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))
    except ValueError as err:  # not JSON, or not UTF-8
        raise InteropError(f"{index}: not JSON: {err}") from None
    weight_map = weight_map.get("weight_map") if isinstance(weight_map, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(shard, str) for shard in weight_map.values()):
        raise InteropError(f"{index}: no weight_map (weight names to shard file names)")
    state = {}
    for shard in sorted(set(weight_map.values())):
        # named, not resolved: the snapshots of transformers' cache link their shards to files elsewhere
        if Path(shard).is_absolute() or ".." in Path(shard).parts:
            raise InteropError(f"{index}: shard {shard!r} is not a file of {index.parent}")
        path = index.parent / shard
        if not path.is_file():
            raise InteropError(f"{path}: no such shard file ({index.name} names it)")
        shard_state = _read_state(path)
        lacking = sorted(name for name, named in weight_map.items() if named == shard and name not in shard_state)
        if lacking:
            raise InteropError(f"{path}: lacks {len(lacking)} weight(s) that {index.name} places there, "
                               f"{lacking[0]} first")
        state.update(shard_state)
    return state


def read_config(directory: Path) -> tuple[dict[str, Any], str, str | None]:
    """``config.json``, its audiossl family and its class (None when it names none); refuses unsupported classes."""
    path = directory / "config.json"
    if not path.is_file():
        raise InteropError(f"{directory}: no config.json: not a Hugging Face model directory")
    try:
        hf = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:  # not JSON, or not UTF-8
        raise InteropError(f"{path}: not JSON: {err}") from None
    hf = checked_settings(hf, str(path))
    supported = ", ".join(SUPPORTED_CLASSES)
    architectures = hf.get("architectures") or [None]
    if len(architectures) != 1:
        raise InteropError(f"{directory}: config.json names several classes {architectures}; need one of {supported}")
    architecture, model_type = architectures[0], hf.get("model_type")
    if architecture is not None and architecture not in SUPPORTED_CLASSES:
        raise InteropError(f"{directory}: Hugging Face class {architecture} is not supported; supported: {supported}")
    family = FAMILY_OF_MODEL_TYPE.get(model_type)
    if family is None:
        raise InteropError(f"{directory}: Hugging Face model_type {model_type!r} is not supported; "
                           f"supported: {', '.join(FAMILY_OF_MODEL_TYPE)}")
    if architecture is not None and SUPPORTED_CLASSES[architecture] != family:
        raise InteropError(f"{directory}: class {architecture} does not go with model_type {model_type!r}")
    return hf, family, architecture


def load_weights(model: SpeechEncoder, hf_state: dict[str, Tensor], entry: HfFamily, stores_pretraining: bool,
                 source: str) -> None:
    """Load an HF state dict into ``model``, converted weight by weight.

    The mask embedding and, unless ``stores_pretraining``, the pretraining parts may be absent
    (they keep their fresh values). :class:`InteropError` names the weights missing (by HF's base
    model names), unexpected (no audiossl equivalent, or none in this config) or of the wrong shape
    (both by the names in ``hf_state``).
    """
    expected = model.state_dict()
    state, unexpected, wrong_shape = {}, [], []
    for hf_name, tensor in hf_state.items():
        try:
            converted = entry.state_dict_from_hf({hf_name: tensor})  # empty for a dropped task head
        except InteropError:
            unexpected.append(hf_name)
            continue
        for name, value in converted.items():
            state[name] = value
            if name not in expected:
                unexpected.append(hf_name)
            elif value.shape != expected[name].shape:
                wrong_shape.append(f"{hf_name} {tuple(value.shape)} (config: {tuple(expected[name].shape)})")
    optional = ("mask_embedding",) + (() if stores_pretraining else entry.pretraining_parts)
    missing = [next(iter(entry.state_dict_to_hf({name: tensor})), name)  # audiossl's name where HF has none
               for name, tensor in expected.items() if name not in state and not name.startswith(optional)]
    if missing or unexpected or wrong_shape:
        raise InteropError(f"{source}: weights do not fit config.json: "
                           + weights_mismatch(missing, unexpected, wrong_shape))
    model.load_state_dict(state, strict=False)


def load_hf(directory: str | os.PathLike, num_classes: int = 100) -> SpeechEncoder:
    """The audiossl model (eval mode) of a local Hugging Face directory of a class in :data:`HF_FAMILIES`.

    ``model.extract_features(wavs (B, S), lengths (B,))`` gives HF's ``hidden_states``, layer by
    layer. What the HF class does not store is freshly initialised: the masked-prediction head
    of HuBERT, WavLM and UniSpeech-SAT (``num_classes`` targets), UniSpeech-SAT's utterance quantizer
    and projections, the quantizer and projections of wav2vec 2.0 unless the class is
    ``Wav2Vec2ForPreTraining``, the mask embedding of a model saved without
    masking. A ``*ForCTC`` class loads as its encoder (the CTC head is dropped: see the module notes).
    """
    directory = Path(directory)
    hf, family, architecture = read_config(directory)
    entry = HF_FAMILIES[family]
    try:
        config = entry.config_from_hf(hf, num_classes)
    except InteropError as err:
        raise InteropError(f"{directory}: {err}") from None
    audio = _feature_extractor_settings(directory)
    config.frontend.sample_rate = audio.get("sampling_rate") or SAMPLE_RATE
    model = get_family(family).build(config)
    stores_pretraining = architecture is not None and architecture == entry.pretraining_class
    load_weights(model, read_weights(directory), entry, stores_pretraining, str(directory))
    if audio.get("do_normalize") is True:
        logger.warning("%s: its preprocessor_config.json standardises waveforms to zero mean and unit variance "
                       "(do_normalize); audiossl does not: do so before extract_features or training", directory)
    return model.eval()


def _feature_extractor_settings(directory: Path) -> dict[str, Any]:
    """The directory's feature extractor settings (``preprocessor_config.json``; none without one), its
    ``sampling_rate`` a whole number of Hz: the rate of the audio the model takes, which config.json does not hold."""
    path = directory / "preprocessor_config.json"
    try:
        settings = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except ValueError as err:
        raise InteropError(f"{path}: not JSON: {err}") from None
    if not isinstance(settings, dict):
        return {}
    rate = settings.get("sampling_rate")
    if rate is not None and (type(rate) is not int or rate < 1):
        raise InteropError(f"{path}: sampling_rate must be a whole number of Hz, got {rate!r}")
    return settings


def save_hf(model: SpeechEncoder, directory: str | os.PathLike) -> Path:
    """Write a HuBERT, wav2vec 2.0, WavLM or UniSpeech-SAT ``model``, or a CTC model over one, as a Hugging
    Face directory; returns it.

    The class is the family's base model (``HubertModel``, ``Wav2Vec2Model``, ``WavLMModel``,
    ``UniSpeechSatModel``), ``Wav2Vec2ForPreTraining`` (with the quantizer) for a wav2vec 2.0 model
    that has its pretraining parts, or the family's ``*ForCTC`` for a CTC model of a char tokenizer,
    written with ``Wav2Vec2CTCTokenizer`` and ``Wav2Vec2FeatureExtractor`` files (:func:`ctc_files`), so
    that ``Wav2Vec2Processor`` and the class transcribe as audiossl's greedy decoding does. The
    masked-prediction heads (and UniSpeech-SAT's utterance parts) have no HF counterpart.
    Only the waveform front end converts. An existing directory keeps its other files; its
    model is replaced whole or, on a failure, kept as it was.
    """
    ctc = model.config.family == "ctc"
    encoder = model.encoder if ctc else model
    family = encoder.config.family
    if family not in HF_FAMILIES:
        raise InteropError(f"a {family!r} {'encoder' if ctc else 'model'} has no Hugging Face class here; "
                           f"converts: {', '.join(HF_FAMILIES)}")
    entry = HF_FAMILIES[family]
    config = entry.config_to_hf(encoder.config)  # first: it names an unconvertible front end
    state = encoder.state_dict()
    hf_state = entry.state_dict_to_hf(state)
    files: dict[str, Any] = {}
    if ctc:
        files = ctc_files(model)
        config |= {"architectures": [next(name for name in entry.classes if name.endswith("ForCTC"))],
                   "vocab_size": model.config.vocab_size, "pad_token_id": BLANK_ID,
                   "final_dropout": model.config.final_dropout}
        hf_state = {f"{family}.{name}": tensor for name, tensor in hf_state.items()}
        hf_state |= {f"lm_head.{name}": tensor for name, tensor in model.head.state_dict().items()}
    else:
        pretraining = entry.pretraining_class is not None and any(name.startswith(entry.pretraining_parts)
                                                                  for name in state)
        config["architectures"] = [entry.pretraining_class if pretraining else entry.classes[0]]
    hf_state = {name: tensor.detach().contiguous() for name, tensor in hf_state.items()}
    directory = Path(directory)
    # the directory is replaced whole: its other files (a preprocessor config, a tokenizer) are linked into
    # the new one; the old model's files (weights of another format, shards) would be another model's
    with atomic_dir(directory) as tmp:
        if directory.is_dir():
            shutil.copytree(directory, tmp, dirs_exist_ok=True, copy_function=_link_or_copy,
                            ignore=lambda folder, names: _model_files(names) if Path(folder) == directory else [])
        save_file(hf_state, tmp / WEIGHT_FILES[0], metadata={"format": "pt"})
        for name, content in {"config.json": config, **files}.items():
            (tmp / name).unlink(missing_ok=True)  # a linked file of the old directory: not written through
            (tmp / name).write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return directory


def ctc_files(model) -> dict[str, Any]:
    """The tokenizer and feature-extractor files of a CTC model's ``*ForCTC`` directory: its char
    vocabulary as ``Wav2Vec2CTCTokenizer``'s ``vocab.json`` (``<blank>`` the pad token, ``|`` the word
    delimiter, ids as audiossl's), and raw 16 kHz waveforms, not standardised."""
    tokenizer = model.tokenizer
    if not isinstance(tokenizer, CharTokenizer):
        raise InteropError(f"only a CTC model of a char tokenizer has a Hugging Face tokenizer (Wav2Vec2CTCTokenizer); "
                           f"this one's is {tokenizer.kind!r}")
    blank, unk, word = CharTokenizer.SPECIALS
    return {
        "vocab.json": {token: index for index, token in enumerate(tokenizer.tokens)},
        "tokenizer_config.json": {"tokenizer_class": "Wav2Vec2CTCTokenizer", "pad_token": blank, "unk_token": unk,
                                  "word_delimiter_token": word, "bos_token": None, "eos_token": None,
                                  "do_lower_case": False},
        "special_tokens_map.json": {"pad_token": blank, "unk_token": unk},
        "preprocessor_config.json": {
            "feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1, "sampling_rate": SAMPLE_RATE,
            "padding_value": 0.0, "padding_side": "right", "do_normalize": False,
            "return_attention_mask": model.encoder.config.frontend.conv_mode == "layer_norm"},
    }


def _model_files(names: list[str]) -> list[str]:
    """Those of a directory's file ``names`` that hold its model: config.json, weights, shards."""
    return [name for name in names if name in ("config.json", *WEIGHT_FILES)
            or any(fnmatch.fnmatch(name, pattern) for pattern in SHARD_FILES)]


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:  # a file system without hard links
        shutil.copy2(source, target)
