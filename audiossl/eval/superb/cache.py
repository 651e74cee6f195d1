"""Hidden states of a frozen upstream on a data dir, computed once and shared by the tasks that read them.

A cache holds one data dir's states in one of two kinds:

* ``frames``: every frame of every hidden state, ``states.npy`` ``(N_frames, L, D)`` float16,
  utterance ``i`` at rows ``offsets[i]:offsets[i] + lengths[i]`` (frame-level tasks: PR, ASR, ASV);
* ``mean``: each hidden state averaged over the utterance's valid frames, ``states.npy``
  ``(N_utts, L, D)`` float32 (mean-pooled tasks: a weighted sum of layers commutes with the mean,
  and so does the linear projector SUPERB puts before its mean pooling).

Its directory is named by a digest of the upstream's :attr:`~Upstream.identity`, the audio
(``wav.scp``, ``segments`` and the utterance list) and the kind, so another upstream, changed
audio or another kind never finds it; ``meta.json`` repeats what the digest covers and is checked
on every load. A cache is written under a temporary name and renamed when complete: a killed
extraction leaves no cache, and the next run starts that data dir again. Runs that need the same
cache at once (tasks side by side) take turns on ``<cache>.lock``: one computes, the others read.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from audiossl.atomic import atomic_dir, waiting_lock, write_text_atomic
from audiossl.data.dataset import UtteranceDataset, sorted_batches
from audiossl.data.kaldi_dir import DataDir
from audiossl.errors import UserError
from audiossl.eval.superb.upstreams import Upstream, default_name

logger = logging.getLogger("audiossl.superb")

KINDS = ("frames", "mean")
FORMAT = "audiossl-hidden-states/1"


class CacheError(UserError, RuntimeError):
    """A cache directory whose contents do not match what its name promises."""


def audio_identity(data_dir: str | os.PathLike) -> str:
    """sha256 of a data dir's utterance list, ``wav.scp`` and ``segments`` (what decides its audio)."""
    data = DataDir.read(data_dir)
    digest = hashlib.sha256("\n".join(data.utterances).encode())
    for table in ("wav.scp", "segments"):
        if table in data:
            digest.update(f"\0{table}\0".encode() + json.dumps(sorted(data[table].items())).encode())
    return digest.hexdigest()


@dataclass
class HiddenStates:
    """A loaded cache: ``states`` (memory-mapped), and per utterance its row (``mean``) or its frames."""

    kind: str
    utterances: list[str]
    states: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    frame_rate: float

    @property
    def num_states(self) -> int:
        return self.states.shape[1]

    @property
    def dim(self) -> int:
        return self.states.shape[2]

    def index(self) -> dict[str, int]:
        return {utt: i for i, utt in enumerate(self.utterances)}

    def frames(self, i: int) -> np.ndarray:
        """``(T, L, D)`` the hidden states of utterance ``i`` (``frames`` kind)."""
        return self.states[self.offsets[i]:self.offsets[i] + self.lengths[i]]


def cache_dir(root: str | os.PathLike, upstream: Upstream, data_dir: str | os.PathLike, kind: str) -> Path:
    """Where the ``kind`` cache of ``upstream`` on ``data_dir`` lives under ``root``."""
    if kind not in KINDS:
        raise ValueError(f"cache kind {kind!r} not one of {KINDS}")
    key = hashlib.sha256(f"{upstream.identity}\0{audio_identity(data_dir)}\0{kind}".encode()).hexdigest()[:20]
    return Path(root) / default_name(upstream.name) / f"{Path(data_dir).name}-{kind}-{key}"


def hidden_states(root: str | os.PathLike, upstream: Upstream, data_dir: str | os.PathLike, kind: str,
                  batch_seconds: float = 60.0, progress: bool = False) -> HiddenStates:
    """The ``kind`` hidden states of ``upstream`` on every utterance of ``data_dir``: read from
    the cache under ``root``, else computed (in length-sorted batches of ``batch_seconds``) and cached."""
    path = cache_dir(root, upstream, data_dir, kind)
    meta = {"format": FORMAT, "upstream": upstream.identity, "audio": audio_identity(data_dir), "kind": kind}
    with waiting_lock(path.with_name(path.name + ".lock"), f"{path}: another run is computing this cache"):
        if not (path / "meta.json").is_file():
            write_cache(path, upstream, data_dir, kind, meta, batch_seconds, progress)
        else:
            logger.info("%s: hidden states of %s from the cache %s", data_dir, upstream.name, path)
    return read_cache(path, meta)


def write_cache(path: Path, upstream: Upstream, data_dir: str | os.PathLike, kind: str, meta: dict,
                batch_seconds: float, progress: bool) -> None:
    data = UtteranceDataset(data_dir, "waveform", sample_rate=upstream.sample_rate)
    rows: dict[str, np.ndarray] = {}
    for batch in tqdm(sorted_batches(data, batch_seconds), desc=f"{default_name(upstream.name)} on {data_dir}",
                      disable=not progress, unit="batch"):
        states, frames = upstream.hidden_states(batch.inputs, batch.lengths)
        stacked = torch.stack([s.float() for s in states], dim=2)  # (B, T, L, D)
        for utt, item, count in zip(batch.utterances, stacked, frames.tolist()):
            if count < 1:
                raise UserError(f"{data_dir}: utterance '{utt}' is too short for {upstream.name}: no frames")
            valid = item[:count]
            rows[utt] = valid.mean(0, keepdim=True).numpy() if kind == "mean" else valid.half().numpy()
    order = data.utterances
    lengths = np.array([rows[u].shape[0] for u in order], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    info = {**meta, "upstream_name": upstream.name, "data_dir": str(data_dir), "frame_rate": upstream.frame_rate,
            "hidden_sizes": upstream.hidden_sizes, "utterances": len(order), "frames": int(lengths.sum())}
    with atomic_dir(path) as tmp:   # replaces a cache dir left without its meta.json (removed by hand)
        np.save(tmp / "states.npy", np.concatenate([rows[u] for u in order]))
        np.savez(tmp / "index.npz", offsets=offsets, lengths=lengths)
        write_text_atomic(tmp / "utterances", "".join(f"{u}\n" for u in order))
        write_text_atomic(tmp / "meta.json", json.dumps(info, indent=1) + "\n")
    logger.info("%s: %d utterances, %d frames of %d hidden states cached in %s", data_dir, len(order),
                int(lengths.sum()), upstream.num_states, path)


def read_cache(path: Path, meta: dict) -> HiddenStates:
    info = json.loads((path / "meta.json").read_text())
    wrong = [key for key, value in meta.items() if info.get(key) != value]
    if wrong:
        raise CacheError(f"{path}: its meta.json disagrees on {wrong} with what its name stands for; remove the "
                         "directory")
    index = np.load(path / "index.npz")
    utterances = (path / "utterances").read_text().split()
    return HiddenStates(info["kind"], utterances, np.load(path / "states.npy", mmap_mode="r"), index["offsets"],
                        index["lengths"], info["frame_rate"])
