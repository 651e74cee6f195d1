"""Hugging Face model directories (``config.json`` + ``model.safetensors``) for HuBERT.

A directory written by :func:`save_hubert` loads with ``transformers.HubertModel.from_pretrained``
and gives the same hidden states; :func:`load_hubert` reads what ``save_pretrained`` writes
(``model.safetensors`` or ``pytorch_model.bin``, of ``HubertModel`` or ``HubertForCTC``).
Nothing is downloaded: the directory must be on disk.

Padded batches: audiossl keeps padding out of the first CNN layer's group norm (BASE layout),
so each item's valid frames equal HF's output for that item alone; HF's group norm takes
padding into its statistics, so HF's own padded-batch output differs from both. The LARGE
layout (layer norms) agrees with HF on padded batches given HF's ``attention_mask``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from audiossl.models.hubert import HubertModel, build_hubert
from audiossl.errors import InteropError
from audiossl.models.hubert.interop import config_from_hf, config_to_hf, state_dict_from_hf, state_dict_to_hf

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def read_weights(directory: Path) -> dict[str, torch.Tensor]:
    """The state dict of a Hugging Face model directory (safetensors first, weights-only pickle)."""
    for name in WEIGHT_FILES:
        path = directory / name
        if path.exists():
            if name.endswith(".safetensors"):
                return load_file(path)
            return torch.load(path, map_location="cpu", weights_only=True)
    raise InteropError(f"{directory}: no weights ({' or '.join(WEIGHT_FILES)}); sharded checkpoints are not supported")


def load_hubert(directory: str | os.PathLike, num_classes: int = 100) -> HubertModel:
    """An audiossl :class:`HubertModel` (eval mode) from a local Hugging Face HuBERT directory.

    The masked-prediction head, which Hugging Face does not store, is freshly initialised
    with ``num_classes`` targets; so is the mask embedding when HF has none (a model saved
    with ``mask_time_prob`` and ``mask_feature_prob`` 0).
    """
    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.exists():
        raise InteropError(f"{directory}: no config.json: not a Hugging Face model directory")
    model = build_hubert(config_from_hf(json.loads(config_path.read_text()), num_classes))
    missing, unexpected = model.load_state_dict(state_dict_from_hf(read_weights(directory)), strict=False)
    missing = [name for name in missing if not name.startswith("head.") and name != "mask_embedding"]
    if missing or unexpected:
        raise InteropError(f"{directory}: weights do not fit the config: missing {missing}, unexpected {unexpected}")
    return model.eval()


def save_hubert(model: HubertModel, directory: str | os.PathLike) -> Path:
    """Write ``model`` (without its head) as a Hugging Face ``HubertModel`` directory; returns it."""
    config = config_to_hf(model.config)  # first: it names an unconvertible front end
    state = {name: tensor.detach().contiguous() for name, tensor in state_dict_to_hf(model.state_dict()).items()}
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(state, directory / "model.safetensors", metadata={"format": "pt"})
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return directory
