"""Self-describing checkpoints: family, config, weights and, for training, the whole state.

A checkpoint is a ``torch.save`` of plain containers and tensors only, so it loads with
``torch.load(weights_only=True)``: loading never unpickles arbitrary objects. Layout::

    {"format": "audiossl/1", "family": str, "config": dict, "model": state_dict,
     "train_state": dict (training checkpoints only), "checksum": str}

Writes are atomic (a temporary file, fsync, rename): a killed job or a full disk leaves
the previous checkpoint intact. ``checksum`` (BLAKE2b of every value, tensors' bytes included)
is verified on load, so a file damaged on disk or in transfer is refused by name, not used.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from audiossl.atomic import atomic_path
from audiossl.errors import ConfigError, UserError
from audiossl.registry import build_model  # re-exported: callers build models through the checkpoint module too

logger = logging.getLogger(__name__)

FORMAT = "audiossl/1"
FORMAT_VERSION = 1
LISTED_WEIGHTS = 10  # weights named of each kind when they do not fit a model; the others are counted


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
    payload["checksum"] = checksum(payload)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def checksum(payload: dict) -> str:
    """BLAKE2b of ``payload`` without its ``checksum``: keys, values and every tensor's dtype, shape and bytes."""
    digest = hashlib.blake2b(digest_size=16)

    def feed(value) -> None:
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(value, dict):
            digest.update(f"D{len(value)}".encode())
            for key in sorted(value, key=repr):
                feed(key)
                feed(value[key])
        elif isinstance(value, (list, tuple)):
            digest.update(f"L{len(value)}".encode())
            for item in value:
                feed(item)
        else:
            digest.update(f"V{value!r}".encode())

    feed({key: value for key, value in payload.items() if key != "checksum"})
    return digest.hexdigest()


MODEL_WEIGHT_SUFFIXES = (".pt", ".safetensors", ".bin")  # below a model directory's top (fairseq2's step_<N>/model/)


def content_digest(path: str | os.PathLike) -> str:
    """SHA-256 over the names and bytes of a model file, or of a model directory's files: those at its top
    (Hugging Face) and the weights below it (a fairseq2 checkpoint dir's ``step_<N>/model/``), as the
    recipes' ``file_digest`` counts them: what it holds, wherever it lies."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(file for file in path.rglob("*") if file.is_file() and (
        file.parent == path or file.suffix in MODEL_WEIGHT_SUFFIXES)) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode() + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint (weights-only unpickling) and verify its checksum (files written before checksums
    were kept have none)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(f"{path}: cannot read checkpoint: {load_failure(err)}") from err
    return checked_checkpoint(payload, path)


def checked_checkpoint(payload: Any, path: str | os.PathLike) -> dict:
    """``payload``, unpickled from ``path``, if it is a whole audiossl checkpoint of this format whose checksum
    holds (files written before checksums were kept have none); else a CheckpointError saying which not."""
    fmt = payload.get("format") if isinstance(payload, dict) else None
    if isinstance(fmt, str) and fmt.startswith("audiossl/") and fmt != FORMAT:
        version = fmt.removeprefix("audiossl/")
        if version.isdigit() and int(version) > FORMAT_VERSION:
            raise CheckpointError(f"{path}: written by a newer audiossl (format {fmt}); this one reads {FORMAT}: "
                                  "upgrade audiossl to load it")
    if fmt != FORMAT:
        raise CheckpointError(f"{path}: not an audiossl checkpoint (format {FORMAT})")
    wrong = [key for key, kind in (("family", str), ("config", dict), ("model", dict))
             if not isinstance(payload.get(key), kind)]
    if wrong:
        raise CheckpointError(f"{path}: not a whole audiossl checkpoint: {', '.join(wrong)} missing or of another "
                              "type (family is text, config and model are mappings)")
    if "checksum" in payload and checksum(payload) != payload["checksum"]:
        raise CheckpointError(f"{path}: checksum mismatch: the file was damaged after it was written; use an "
                              "earlier checkpoint (checkpoints/update_*.pt) or a copy")
    return payload


def weights_mismatch(missing: list[str], unexpected: list[str], wrong_shape: list[str]) -> str:
    """``missing [...], unexpected [...], wrong shape [...]`` for a message about weights that do not fit a
    model, each list cut to its first :data:`LISTED_WEIGHTS` (a whole model of another size has hundreds)."""
    def listed(names: list[str]) -> str:
        if len(names) <= LISTED_WEIGHTS:
            return repr(names)
        return f"{repr(names[:LISTED_WEIGHTS])[:-1]}, ... ({len(names) - LISTED_WEIGHTS} more)]"

    return f"missing {listed(missing)}, unexpected {listed(unexpected)}, wrong shape {listed(wrong_shape)}"


def unfit_weights(expected: dict[str, torch.Tensor], given: dict, optional: tuple[str, ...] = (),
                  name: Callable[[str], str] = str) -> str | None:
    """:func:`weights_mismatch` of the ``given`` weights against a model's ``expected`` state dict, or None
    when they fit. Weights under a prefix of ``optional`` may be missing; each is named as ``name`` spells it."""
    missing = [name(key) for key in expected if key not in given and not key.startswith(optional)]
    unexpected = [name(key) for key in given if key not in expected]
    wrong_shape = [f"{name(key)} {tuple(getattr(value, 'shape', ()))} (config: {tuple(expected[key].shape)})"
                   for key, value in given.items() if key in expected
                   and not (isinstance(value, torch.Tensor) and value.shape == expected[key].shape)]
    return weights_mismatch(missing, unexpected, wrong_shape) if missing or unexpected or wrong_shape else None


def load_failure(err: Exception) -> str:
    """Why torch could not read a file, without its advice to unpickle it in full (which runs any code in it)."""
    if isinstance(err, OSError):
        return err.strerror or str(err)
    text = str(err)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
    text = text.split(" Please use", 1)[0]  # torch's advice to allow the file's classes
    return (f"not a torch.save file of tensors and plain data, or a damaged one "
            f"({type(err).__name__}: {' '.join(text.split())})")


def model_from_checkpoint(payload: dict, source: str | os.PathLike) -> nn.Module:
    """The model a checkpoint read from ``source`` describes, with its weights (train mode, as built).

    A file of a model's ``encoder_only()`` (its weights without the prediction heads and quantizers)
    gives the whole model, those parts new (logged), as a Hugging Face encoder does. A config that does
    not build, or weights that do not fit it (a file of an older audiossl whose model changed since),
    is a :class:`CheckpointError` naming ``source`` and the weights at fault.
    """
    family, config, weights = payload["family"], payload["config"], payload["model"]
    try:
        model = build_model(family, config)
    except ConfigError as err:
        raise CheckpointError(f"{source}: its model config does not build: {err}") from None
    unfit = unfit_weights(model.state_dict(), weights)
    if unfit and (bare := build_model(family, config)).encoder_only() is bare:  # a family that drops its heads
        heads = tuple(set(model.state_dict()) - set(bare.state_dict()))
        if heads and unfit_weights(model.state_dict(), weights, optional=heads) is None:
            logger.info("%s: no prediction heads in the file (saved from encoder_only()): they start new", source)
            unfit = None
    if unfit:
        raise CheckpointError(f"{source}: its weights do not fit its {family} config: {unfit}")
    model.load_state_dict(weights, strict=not set(model.state_dict()) - set(weights))
    return model


def load_model(path: str | os.PathLike) -> nn.Module:
    """The model saved in any audiossl checkpoint, in a local Hugging Face model directory (HuBERT,
    wav2vec 2.0, WavLM, UniSpeech-SAT: see :func:`audiossl.interop.huggingface.load_hf`), in a fairseq
    checkpoint or s3prl's conversion of one (wav2vec 2.0, HuBERT, unilm's WavLM: see
    :func:`audiossl.interop.fairseq.load_fairseq`) or in a fairseq2 checkpoint dir (wav2vec 2.0: see
    :func:`audiossl.interop.fairseq2.load_fairseq2`), in eval mode, built from the file or directory alone.

    ``model.extract_features(wavs (B, S) at model.sample_rate, lengths (B,))`` returns one
    (B, frames, dim) tensor per layer and the valid frames of each item; ASR models also
    have ``model.transcribe(wavs, lengths) -> list[str]``.
    """
    if not str(path) or not Path(path).exists():
        aside = Path(path).with_name(f".{Path(path).name}.old") if str(path) else None
        if aside is not None and aside.is_dir():  # atomic_dir's replacement of it was killed between renames
            raise CheckpointError(f"{path}: no such directory, but its earlier content is in {aside}: a "
                                  "conversion onto it was stopped midway; run it again or rename that back")
        hub = " (a hub name? nothing is downloaded: save_pretrained the model to a local directory)" \
            if str(path).count("/") == 1 and not str(path).startswith((".", "/")) else ""
        raise CheckpointError(f"{str(path) or 'an empty path'}: no such file or directory{hub}")
    from audiossl.interop import fairseq2  # foreign checkpoints only need the converters

    if Path(path).is_dir():
        if not (Path(path) / "config.json").is_file():
            if fairseq2.checkpoint_root(path) is not None:
                return fairseq2.load_fairseq2(path)
            kept = next((file for file in (Path(path) / "checkpoints" / "best.pt", Path(path) / "best.pt")
                         if file.is_file()), None)
            raise CheckpointError(f"{path}: a directory of no model load_model reads: neither a Hugging Face model "
                                  "directory (config.json) nor a fairseq2 checkpoint dir (model.yaml)"
                                  + (f"; an experiment dir? its model is {kept}" if kept else ""))
        from audiossl.interop.huggingface import load_hf

        return load_hf(path)
    folder = Path(path).parent
    if Path(path).suffix == ".safetensors" or (Path(path).suffix == ".bin" and (folder / "config.json").is_file()):
        raise CheckpointError(f"{path}: the weights of a Hugging Face model alone: load_model reads the model "
                              "directory, " + (f"here {folder}" if (folder / "config.json").is_file()
                                               else "their config.json beside them"))
    from audiossl.interop import fairseq

    try:  # read once, with fairseq's allow-list: it admits all an audiossl checkpoint holds
        payload = fairseq.unpickle(path)
    except fairseq.UnsafeCheckpointError:
        raise
    except UserError as err:
        raise CheckpointError(str(err)) from err.__cause__
    if isinstance(payload, dict) and not str(payload.get("format", "")).startswith("audiossl/"):
        try:
            layout = fairseq.fairseq_layout(payload)
        except UserError as err:
            raise CheckpointError(f"{path}: {err}") from None
        if layout is not None:
            return fairseq.model_from_fairseq(layout, source=str(path))
        if fairseq2.checkpoint_root(path) is not None:  # a state dict below a fairseq2 model.yaml
            return fairseq2.load_fairseq2(path, payload=payload)
    return model_from_checkpoint(checked_checkpoint(payload, path), path).eval()
