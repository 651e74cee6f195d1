"""Self-describing checkpoints: family, config, weights and, for training, the whole state.

A checkpoint is a ``torch.save`` of plain containers and tensors only, so it loads with
``torch.load(weights_only=True)``: loading never unpickles arbitrary objects. Layout::

    {"format": "audiossl/1", "family": str, "config": dict, "model": state_dict,
     "train_state": dict (training checkpoints only)}

Writes are atomic (a temporary file, fsync, rename): a killed job or a full disk leaves
the previous checkpoint intact.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audiossl.atomic import atomic_path
from audiossl.errors import UserError
from audiossl.registry import build_model  # re-exported: callers build models through the checkpoint module too

FORMAT = "audiossl/1"


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be read or is not an audiossl checkpoint; names the file."""


def save_checkpoint(path: str | os.PathLike, family: str, config: dict, model_state: dict,
                    train_state: dict | None = None) -> None:
    """Write a checkpoint atomically to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {"format": FORMAT, "family": family, "config": config, "model": model_state}
    if train_state is not None:
        payload["train_state"] = train_state
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint (weights-only unpickling)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(f"{path}: cannot read checkpoint: {err}") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an audiossl checkpoint (format {FORMAT})")
    return payload


def model_from_checkpoint(payload: dict) -> nn.Module:
    """The model a checkpoint describes, with its weights (train mode, as built)."""
    model = build_model(payload["family"], payload["config"])
    model.load_state_dict(payload["model"])
    return model


def load_model(path: str | os.PathLike) -> nn.Module:
    """The model saved in any audiossl checkpoint, in a local Hugging Face model directory
    (HuBERT, wav2vec 2.0, WavLM: see :func:`audiossl.interop.huggingface.load_hf`) or in a fairseq
    checkpoint (wav2vec 2.0, HuBERT, unilm's WavLM: see :func:`audiossl.interop.fairseq.load_fairseq`),
    in eval mode, built from the file or directory alone.

    ``model.extract_features(wavs (B, S) at 16 kHz, lengths (B,))`` returns one
    (B, frames, dim) tensor per layer and the valid frames of each item; ASR models also
    have ``model.transcribe(wavs, lengths) -> list[str]``.
    """
    if Path(path).is_dir():
        from audiossl.interop.huggingface import load_hf  # only Hugging Face directories need the converters

        return load_hf(path)
    try:
        payload = load_checkpoint(path)
    except CheckpointError as not_audiossl:
        from audiossl.interop import fairseq  # foreign files only: unpickled with fairseq's allow-list

        try:
            foreign = fairseq.read_fairseq(path)
        except fairseq.UnsafeCheckpointError:
            raise
        except UserError:
            raise not_audiossl from None
        if not fairseq.is_fairseq_checkpoint(foreign):
            raise not_audiossl from None
        return fairseq.model_from_fairseq(foreign, source=str(path))
    return model_from_checkpoint(payload).eval()
