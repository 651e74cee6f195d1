"""HuBERT-style k-means targets: frames to shards on disk, Lloyd's k-means streamed over them, labels.

Features come from a :class:`FeatureSource`: a callable ``utt -> (frames, dim) float32``
with an ``utterances`` list. Iteration 1 of HuBERT clusters 39-dim MFCC + deltas +
delta-deltas (:class:`ScpFeatureSource` with ``deltas=2``); iteration 2 clusters a
transformer layer of the iteration-1 model, which is just another source.

Fitting never holds the corpus in memory: :func:`write_frame_shards` writes the frames of
randomly ordered utterances into ``.npy`` shards (resumable; rebuilt when the source's settings or
inputs change), and :func:`fit_kmeans` runs
k-means++ with Lloyd refinement on a sample, then full Lloyd passes streamed over the shards a
block at a time, saving its state after every pass. As in fairseq's
``examples/hubert/simple_kmeans``, features are clustered as they come, without per-dimension
standardization, so a :class:`KMeansModel` is its centers only. The model file is safetensors (one
``centers`` tensor and a format tag), never a pickle.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from audiossl.atomic import atomic_path, write_text_atomic
from audiossl.config_fields import differences
from audiossl.data.kaldi_dir import DataDir, table_digest
from audiossl.errors import UserError
from audiossl.features.store import FeatureError, ark_stamps, load_features

FORMAT = "audiossl.kmeans/1"
POSTERIORS = "posteriors"   # the layer name of a CTC model's token probabilities


class KMeansError(UserError, ValueError):
    """A k-means input or model problem; the message names the utterance or file."""


class FeatureSource(Protocol):
    """Frame features per utterance: ``source(utt)`` is (frames, dim) float32.

    ``settings`` is how the features are made, as JSON-able values (kind, options, model weights' digest and
    layer): a k-means model records them, and labels only features of the same. ``identity`` adds the
    inputs' digests or file sizes and times; frame shards record it, and are made again when it changes.
    """

    utterances: list[str]
    settings: dict
    identity: dict

    def __call__(self, utt: str) -> np.ndarray: ...


class ScpFeatureSource:
    """Features of a data dir's ``feats.scp``: per-utterance CMVN when ``utt_cmvn``, then Kaldi
    deltas appended up to ``deltas``.

    Per-utterance CMVN takes each voice's spectral tilt and level out of the clusters, so that
    they follow the phones rather than the speakers (the model sees normalised inputs too).

    ``utterances`` are the data dir's (sorted); each must have a ``feats.scp`` entry.
    """

    def __init__(self, data: DataDir | str | os.PathLike, deltas: int = 0, utt_cmvn: bool = False):
        name = "data dir" if isinstance(data, DataDir) else str(data)
        data = data if isinstance(data, DataDir) else DataDir.read(data)
        if "feats.scp" not in data:
            raise KMeansError(f"{name}: no feats.scp (compute features first)")
        self.scp = data["feats.scp"]
        self.utterances = data.utterances
        self.deltas = deltas
        self.utt_cmvn = utt_cmvn
        missing = [u for u in self.utterances if u not in self.scp]
        if missing:
            raise KMeansError(f"{name}/feats.scp: no features for {len(missing)} utterance(s), e.g. '{missing[0]}'")

    def __call__(self, utt: str) -> np.ndarray:
        try:
            feats = load_features(self.scp[utt], deltas=self.deltas, utt_cmvn=self.utt_cmvn)
        except FeatureError as err:
            raise FeatureError(f"utterance '{utt}': {err}") from err
        return np.asarray(feats, dtype=np.float32)

    @property
    def settings(self) -> dict:
        return dict(source="feats.scp", deltas=self.deltas, utt_cmvn=self.utt_cmvn)

    @property
    def identity(self) -> dict:
        return dict(self.settings, feats_scp=table_digest(self.scp), arks=ark_stamps(self.scp))


class ModelLayerSource:
    """Hidden states of one layer of a model, per utterance of a data dir (HuBERT iteration 2), or
    the frame-level CTC posteriors of a fine-tuned CTC model (GigaAM's HuBERT-CTC targets).

    Args:
        model: any family's :class:`~audiossl.models.encoder.SpeechEncoder` (its ``input_kind``
            decides what is read: feats.scp for ``"fbank"``, wav.scp for ``"waveform"``), or a
            :class:`~audiossl.models.ctc.model.CtcModel`.
        data_dir: the utterances and their model inputs.
        layer: index into the hidden states (0: the transformer input; L: layer L's output;
            negative: from the end; the layers above it are not run), or ``"posteriors"``: the
            token probabilities ``(T, V)`` of a CTC model's head.
    """

    def __init__(self, model: torch.nn.Module, data_dir: str | os.PathLike, layer: int | str):
        from audiossl.data.dataset import UtteranceDataset
        from audiossl.models.ctc.model import CtcModel

        self.model = model.eval()
        self.dataset = UtteranceDataset(data_dir, model.input_kind, num_mel_bins=model.num_mel_bins,
                                        sample_rate=model.sample_rate)
        self.utterances = self.dataset.utterances
        self.index = {utt: i for i, utt in enumerate(self.utterances)}
        if layer == POSTERIORS:
            if not isinstance(model, CtcModel):
                raise KMeansError(f"layer '{POSTERIORS}' needs a CTC model, not a {type(model).__name__}")
            self.layer = layer
            return
        hidden_states = len(model.hidden_sizes)
        if not -hidden_states <= layer < hidden_states:
            raise KMeansError(f"layer {layer} does not exist: the model has {hidden_states} hidden states")
        self.layer = layer % hidden_states

    @functools.cached_property
    def settings(self) -> dict:
        weights = hashlib.sha256()
        for name, tensor in self.model.state_dict().items():
            weights.update(f"{name} {tuple(tensor.shape)} {tensor.dtype}".encode("utf-8"))
            weights.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        return dict(source="model", model=type(self.model).__name__, weights=weights.hexdigest(), layer=self.layer)

    @property
    def identity(self) -> dict:
        return dict(self.settings, inputs=self.dataset.identity)

    @torch.no_grad()
    def __call__(self, utt: str) -> np.ndarray:
        _, inputs, _ = self.dataset[self.index[utt]]
        lengths = torch.tensor([inputs.shape[0]])
        if self.layer == POSTERIORS:
            log_probs, _ = self.model(inputs[None], lengths)
            return log_probs[0].exp().numpy()
        hidden, _ = self.model.encode(inputs[None], lengths, num_layers=self.layer)
        return hidden[self.layer][0].float().numpy()


def parse_layer(text: str) -> int | str:
    """A layer as given on a command line: an integer index or ``"posteriors"``."""
    if text == POSTERIORS:
        return text
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"a layer is an integer or '{POSTERIORS}', not '{text}'") from None


def checked_features(source: FeatureSource, utt: str, dim: int | None) -> np.ndarray:
    """``source(utt)``, checked to be finite 2-D with ``dim`` columns (when given)."""
    feats = source(utt)
    if feats.ndim != 2:
        raise KMeansError(f"utterance '{utt}': features have shape {tuple(feats.shape)}, expected (frames, dim)")
    if dim is not None and feats.shape[1] != dim:
        raise KMeansError(f"utterance '{utt}': features have dimension {feats.shape[1]}, expected {dim}")
    if not np.isfinite(feats).all():
        raise KMeansError(f"utterance '{utt}': features contain NaN or inf")
    return feats


class FrameShards:
    """Frames of a corpus in ``.npy`` shards, ``(n_i, dim)`` float32 each, read a block at a time.

    Made by :func:`write_frame_shards` (a directory of ``frames.<i>.npy`` beside ``frames.<i>.utts``)
    or from arrays of frames (tests, small fits). Reads go through plain file reads, not memory maps,
    so a process's memory stays one block whatever the corpus size.
    """

    def __init__(self, parts: list[Path | np.ndarray]):
        self.parts = parts
        self.sizes: list[int] = []
        self.offsets: list[int] = []   # where each file's data starts (0 for arrays)
        dims = set()
        for part in parts:
            shape, offset = _npy_layout(part) if isinstance(part, Path) else (part.shape, 0)
            self.offsets.append(offset)
            if len(shape) != 2:
                raise KMeansError(f"{part if isinstance(part, Path) else 'frames'}: shape {shape}, "
                                  f"expected (frames, dim)")
            self.sizes.append(shape[0])
            dims.add(shape[1])
        if len(dims) > 1:
            raise KMeansError(f"frame shards of different dimensions {sorted(dims)}")
        self.dim = dims.pop() if dims else 0
        self.num_frames = sum(self.sizes)

    @classmethod
    def of(cls, frames: np.ndarray) -> "FrameShards":
        """One in-memory shard of (frames, dim) features."""
        return cls([np.ascontiguousarray(frames, dtype=np.float32)])

    def blocks(self, block_frames: int = 8192) -> Iterator[np.ndarray]:
        """Every frame once, in order, as (<= block_frames, dim) float32 arrays."""
        for part, size, offset in zip(self.parts, self.sizes, self.offsets):
            if isinstance(part, np.ndarray):
                yield from (part[i:i + block_frames] for i in range(0, size, block_frames))
                continue
            with open(part, "rb") as f:
                f.seek(offset)
                for start in range(0, size, block_frames):
                    count = min(block_frames, size - start)
                    block = np.fromfile(f, dtype=np.float32, count=count * self.dim)
                    if block.size != count * self.dim:
                        raise KMeansError(f"{part}: ends after {start * self.dim + block.size} of "
                                          f"{size * self.dim} values (a truncated shard)")
                    yield block.reshape(count, self.dim)

    def sample(self, count: int, seed: int) -> np.ndarray:
        """A uniform sample of ``min(count, num_frames)`` distinct frames, in shard order: (n, dim)."""
        if count >= self.num_frames:
            return np.concatenate(list(self.blocks()))
        chosen = np.sort(np.random.default_rng(seed).choice(self.num_frames, count, replace=False))
        out, start = [], 0
        for block in self.blocks():
            lo, hi = np.searchsorted(chosen, [start, start + len(block)])
            out.append(block[chosen[lo:hi] - start])
            start += len(block)
        return np.concatenate(out)


def _npy_layout(path: Path) -> tuple[tuple[int, ...], int]:
    """The shape of a C-order float32 ``.npy`` file and the byte offset of its data."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, fortran_order, dtype = read_header(f)
            offset = f.tell()
    except (OSError, ValueError) as err:
        raise KMeansError(f"{path}: not a readable .npy shard: {err}") from err
    if fortran_order or dtype != np.float32:
        raise KMeansError(f"{path}: a shard is C-order float32, not {dtype}{' (Fortran order)' * fortran_order}")
    return shape, offset


def write_frame_shards(source: FeatureSource, directory: str | os.PathLike, max_frames: int, seed: int,
                       shard_frames: int = 100_000, progress: bool = False,
                       log: Callable[[str], None] = lambda message: None) -> FrameShards:
    """The frames of ``source``'s utterances in a seeded random order, up to ``max_frames``, as shards.

    Shard ``i`` is ``frames.<i>.npy`` with ``frames.<i>.utts`` ("utt frames" per line), each written
    atomically, the list last; ``shards.json`` records the settings and ``source.identity``. A rerun
    with the same record keeps the finished shards and continues after them; with another (other
    features, deltas, CMVN, budget, seed, or inputs written again) everything in ``directory``, the
    shards' own, is removed and made again, with a ``log`` line saying what changed. Memory is one shard.
    """
    if max_frames < 1:
        raise KMeansError(f"max_frames must be positive, got {max_frames}")
    directory = Path(directory)
    order = [source.utterances[i] for i in np.random.default_rng(seed).permutation(len(source.utterances))]
    record = dict(max_frames=max_frames, seed=seed, shard_frames=shard_frames,
                  utterances=hashlib.sha256("\n".join(order).encode("utf-8")).hexdigest(), source=source.identity)
    _start_shards(directory, record, log)
    paths, done, written = [], 0, 0
    while (directory / f"frames.{len(paths)}.utts").exists():
        for line in (directory / f"frames.{len(paths)}.utts").read_text(encoding="utf-8").splitlines():
            done, written = done + 1, written + int(line.split()[1])
        paths.append(directory / f"frames.{len(paths)}.npy")
    buffer: list[np.ndarray] = []
    listing: list[str] = []
    dim = FrameShards(paths).dim or None

    def flush() -> None:
        path = directory / f"frames.{len(paths)}.npy"
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, np.concatenate(buffer))
        write_text_atomic(path.with_suffix(".utts"), "".join(listing))
        paths.append(path)
        buffer.clear()
        listing.clear()

    for utt in tqdm(order[done:], disable=not progress, unit="utt", desc="frames to shards"):
        if written >= max_frames:
            break
        feats = checked_features(source, utt, dim)[:max_frames - written]
        dim = feats.shape[1]
        buffer.append(feats)
        listing.append(f"{utt} {len(feats)}\n")
        written += len(feats)
        if sum(map(len, buffer)) >= shard_frames:
            flush()
    if buffer:
        flush()
    if written == 0:
        raise KMeansError("no frames to cluster: the feature source is empty")
    return FrameShards(paths)


def _start_shards(directory: Path, record: dict, log: Callable[[str], None]) -> None:
    """Make ``directory`` hold shards of ``record``: keep it when its ``shards.json`` is ``record``,
    else empty it (saying why) and write ``record``."""
    record_path = directory / "shards.json"
    if record_path.exists():
        changes = [f"{key}: {old!r} -> {new!r}"
                   for key, old, new in differences(json.loads(record_path.read_text(encoding="utf-8")), record)]
        if not changes:
            return
        log(f"{directory}: frames made again, their settings or inputs changed: {'; '.join(changes[:3])}"
            + ("; ..." if len(changes) > 3 else ""))
        shutil.rmtree(directory)
    elif (directory / "frames.0.utts").exists():
        log(f"{directory}: frames made again, the shards there have no record of their settings")
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_text_atomic(record_path, json.dumps(record, indent=1, sort_keys=True) + "\n")


@dataclass
class KMeansModel:
    """Cluster centers ``centers`` (num_clusters, dim) float32; a frame's label is its nearest center.
    ``features``: the :class:`FeatureSource` settings of the frames it was fit on (None: not recorded)."""

    centers: torch.Tensor
    features: dict | None = None

    @property
    def num_clusters(self) -> int:
        return self.centers.shape[0]

    @property
    def dim(self) -> int:
        return self.centers.shape[1]

    def assign(self, features: np.ndarray, block_frames: int = 8192) -> tuple[np.ndarray, np.ndarray]:
        """Nearest center of each frame of (frames, dim) features.

        Returns:
            labels (frames,) int64 and squared distances (frames,) float64.
        """
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise KMeansError(f"features of shape {tuple(features.shape)} do not match the model's "
                              f"dimension {self.dim}")
        labels = np.empty(len(features), dtype=np.int64)
        dists = np.empty(len(features), dtype=np.float64)
        nearest = NearestCenter(self.centers)
        for start in range(0, len(features), block_frames):
            index, dist = nearest(torch.from_numpy(features[start:start + block_frames]))
            labels[start:start + len(index)] = index.numpy()
            dists[start:start + len(index)] = dist.numpy()
        return labels, dists

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Labels of (frames, dim) features: (frames,) int64 in ``[0, num_clusters)``."""
        return self.assign(features)[0]

    def inertia(self, features: np.ndarray) -> float:
        """Mean squared distance of (frames, dim) features to their nearest center (sklearn's is the sum)."""
        return float(self.assign(features)[1].mean())

    def save(self, path: str | os.PathLike) -> None:
        """Write the centers as safetensors, atomically."""
        tensors = {"centers": self.centers.contiguous()}
        if self.features is not None:   # a tensor of JSON text: a second metadata key would be written in random order
            tensors["features"] = torch.tensor(list(json.dumps(self.features, sort_keys=True).encode("utf-8")),
                                               dtype=torch.uint8)
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"format": FORMAT})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "KMeansModel":
        """Read a model written by :meth:`save` (safetensors; nothing is unpickled)."""
        try:
            with safe_open(str(path), framework="pt") as f:
                fmt = (f.metadata() or {}).get("format")
                if fmt != FORMAT or "centers" not in f.keys():
                    raise KMeansError(f"{path}: not an audiossl k-means model (format {fmt!r})")
                centers = f.get_tensor("centers")
                features = bytes(f.get_tensor("features").tolist()) if "features" in f.keys() else None
        except SafetensorError as err:
            raise KMeansError(f"{path}: not a safetensors file: {err}") from err
        if centers.ndim != 2 or centers.dtype != torch.float32:
            raise KMeansError(f"{path}: centers have shape {tuple(centers.shape)} and dtype {centers.dtype}, "
                              f"expected (clusters, dim) float32")
        try:
            return cls(centers, None if features is None else json.loads(features))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise KMeansError(f"{path}: its record of the features is not JSON: {err}") from err

    def check_features(self, settings: dict, name: str) -> None:
        """Refuse features of other ``settings`` than those fit on (a :class:`FeatureSource`'s), naming each
        that differs; ``name``: the model file, for the message."""
        if self.features is None:
            return
        changes = [f"{key}: {old!r} then, {new!r} now" for key, old, new in differences(self.features, settings)]
        if changes:
            raise KMeansError(f"{name} was fit on other features than these ({'; '.join(changes)}): give "
                              f"apply the feature options given to fit")


class NearestCenter:
    """Nearest of fixed (k, dim) ``centers`` for blocks of frames.

    One float32 matrix product: ``|x - c|^2 = |x|^2 - 2 x.c + |c|^2``, in coordinates moved to the
    centers' mean so that it does not cancel on features far from the origin (log-mel, MFCC).
    """

    def __init__(self, centers: torch.Tensor):
        self.origin = centers.mean(0)
        self.moved = centers - self.origin
        self.moved_sq = self.moved.square().sum(1)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, dim) frames → labels (n,) int64 and squared distances (n,) float32."""
        x = x - self.origin
        best, index = torch.addmm(self.moved_sq, x, self.moved.T, alpha=-2.0).min(1)
        return index, (best + x.square().sum(1)).clamp_min(0)


def kmeans_plus_plus(frames: torch.Tensor, num_clusters: int, generator: torch.Generator) -> torch.Tensor:
    """Greedy k-means++ seeding (2 + ln k candidates per center, as scikit-learn's):
    (n, dim) frames → (num_clusters, dim) centers."""
    n = len(frames)
    trials = 2 + int(math.log(num_clusters))
    moved = frames - frames.mean(0)   # distances as NearestCenter computes them
    frame_sq = moved.square().sum(1)
    first = int(torch.randint(n, (1,), generator=generator))
    chosen = [first]
    closest = (frame_sq - 2 * moved @ moved[first] + frame_sq[first]).clamp_min(0)
    for _ in range(1, num_clusters):
        weights = closest if float(closest.sum()) > 0 else torch.ones(n)
        candidates = torch.multinomial(weights, trials, replacement=True, generator=generator)
        dists = torch.addmm(frame_sq[:, None] + frame_sq[candidates], moved, moved[candidates].T, alpha=-2.0)
        dists = torch.minimum(dists.clamp_min(0), closest[:, None])   # (n, trials)
        best = int(dists.sum(0).argmin())
        chosen.append(int(candidates[best]))
        closest = dists[:, best].contiguous()
    return frames[chosen].clone()


@dataclass
class LloydPass:
    """One pass of Lloyd's algorithm: the mean squared distance to the centers it started from, and
    the centers it moved them to (empty clusters re-seeded on the frames farthest from theirs)."""

    inertia: float
    centers: torch.Tensor
    empty: int


def lloyd_pass(blocks: Iterator[np.ndarray], centers: torch.Tensor) -> LloydPass:
    """Assign every frame of ``blocks`` to its nearest of (k, dim) ``centers`` and move each center
    to the mean of its frames. Memory: the centers' sums plus one block."""
    k, dim = centers.shape
    nearest = NearestCenter(centers)
    sums = torch.zeros(k, dim, dtype=torch.float64)
    counts = torch.zeros(k, dtype=torch.float64)
    far_dists, far_frames = torch.empty(0), torch.empty(0, dim)
    total, frames = 0.0, 0
    for block in blocks:
        x = torch.from_numpy(block)
        index, dist = nearest(x)
        sums += torch.zeros(k, dim).index_add_(0, index, x).double()   # float32 within a block, float64 across
        counts += torch.bincount(index, minlength=k)
        total += float(dist.double().sum())
        frames += len(x)
        keep = dist.topk(min(k, len(dist))).indices   # the k farthest frames so far, for empty clusters
        far_dists, far_frames = torch.cat((far_dists, dist[keep])), torch.cat((far_frames, x[keep]))
        keep = far_dists.topk(min(k, len(far_dists))).indices
        far_dists, far_frames = far_dists[keep], far_frames[keep]
    moved = (sums / counts.clamp_min(1)[:, None]).float()
    empty = torch.nonzero(counts == 0).flatten()
    moved[empty] = far_frames[:len(empty)]
    return LloydPass(total / max(frames, 1), moved, len(empty))


def fit_kmeans(shards: FrameShards, num_clusters: int, seed: int, n_init: int = 1, init_frames: int | None = None,
               max_passes: int = 10, tol: float = 1e-3, state_path: str | os.PathLike | None = None,
               log: Callable[[str], None] = lambda message: None, features: dict | None = None) -> "KMeansModel":
    """Lloyd's k-means streamed over ``shards``, resumable.

    1. ``n_init`` k-means++ seedings on a uniform sample of ``init_frames`` frames (default
       ``max(20000, 50 k)``), each refined by Lloyd passes over the sample until its inertia improves
       by less than a tenth of ``tol``; the best is kept.
    2. Lloyd passes over every frame, one block in memory, until the inertia improves by less than
       ``tol`` (relative) or after ``max_passes``. With ``state_path`` the centers are saved after
       every pass and a rerun with the same settings continues from the last one saved.

    ``features``: the shards' :class:`FeatureSource` settings, recorded in the model.
    """
    if num_clusters < 1 or num_clusters > shards.num_frames:
        raise KMeansError(f"cannot fit {num_clusters} clusters to {shards.num_frames} frames")
    if init_frames is not None and init_frames < num_clusters:
        raise KMeansError(f"cannot seed {num_clusters} clusters on a sample of {init_frames} frames (init frames): "
                          f"sample at least as many frames as clusters")
    settings = dict(num_clusters=num_clusters, seed=seed, n_init=n_init, init_frames=init_frames,
                    num_frames=shards.num_frames, dim=shards.dim)
    state = _load_fit_state(state_path, settings)
    if state is None:
        sample = torch.from_numpy(shards.sample(init_frames or max(20_000, 50 * num_clusters), seed))
        generator = torch.Generator().manual_seed(seed)
        best = None
        for attempt in range(n_init):
            centers, inertia = kmeans_plus_plus(sample, num_clusters, generator), math.inf
            for passes in range(1, 101):
                step = lloyd_pass(iter([sample.numpy()]), centers)   # step.inertia: that of `centers`
                improved = step.inertia < inertia * (1 - tol / 10)
                inertia = min(inertia, step.inertia)
                if not improved:
                    break
                centers = step.centers
            log(f"seeding {attempt + 1}/{n_init}: inertia {inertia:.6g} on {len(sample)} sampled frames "
                f"after {passes} passes")
            if best is None or inertia < best[1]:
                best = centers, inertia
        state = dict(settings=settings, centers=best[0], history=[])
        _save_fit_state(state_path, state)
    history = state["history"]
    # Decided from the saved history, so that a fit stopped after its last pass ends on rerun as it would have.
    while len(history) < max_passes and not (len(history) > 1 and history[-2] - history[-1] <= tol * history[-1]):
        step = lloyd_pass(shards.blocks(), state["centers"])
        history.append(step.inertia)
        log(f"pass {len(history)}: inertia {step.inertia:.6g} over {shards.num_frames} frames"
            + (f"; {step.empty} empty clusters re-seeded" if step.empty else ""))
        state["centers"] = step.centers
        _save_fit_state(state_path, state)
    return KMeansModel(state["centers"].contiguous(), features)


def _load_fit_state(path: str | os.PathLike | None, settings: dict) -> dict | None:
    if path is None or not Path(path).exists():
        return None
    state = torch.load(path, weights_only=True)
    if state["settings"] != settings:
        raise KMeansError(f"{path}: the saved state of a different fit ({state['settings']}, not {settings}); "
                          f"remove it to start over")
    return state


def _save_fit_state(path: str | os.PathLike | None, state: dict) -> None:
    if path is not None:
        with atomic_path(path) as tmp:
            torch.save(state, tmp)


def apply_kmeans(model: KMeansModel, source: FeatureSource, progress: bool = False,
                 name: str = "the k-means model") -> tuple[dict[str, np.ndarray], float]:
    """Label every frame of every utterance of ``source``, whose settings must be the model's
    (:meth:`KMeansModel.check_features`; ``name`` is the model's file).

    Returns:
        ``{utt: labels (frames,) int64}`` and the mean squared distance over all frames.
    """
    model.check_features(source.settings, name)
    labels: dict[str, np.ndarray] = {}
    total, frames = 0.0, 0
    for utt in tqdm(source.utterances, disable=not progress, unit="utt", desc="k-means labels"):
        feats = checked_features(source, utt, model.dim)
        labels[utt], dists = model.assign(feats)
        total += float(dists.sum())
        frames += len(feats)
    return labels, total / max(frames, 1)
