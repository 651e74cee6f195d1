"""HuBERT-style k-means targets: sample frames, fit mini-batch k-means, label every frame.

Features come from a :class:`FeatureSource`: a callable ``utt -> (frames, dim) float32``
with an ``utterances`` list. Iteration 1 of HuBERT clusters 39-dim MFCC + deltas +
delta-deltas (:class:`ScpFeatureSource` with ``deltas=2``); iteration 2 clusters a
transformer layer of the iteration-1 model, which is just another source.

As in fairseq's ``examples/hubert/simple_kmeans``, features are clustered as they come,
without per-dimension standardization, so a :class:`KMeansModel` is its centers only.
The model file is safetensors (one ``centers`` tensor and a format tag), never a pickle.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from sklearn.cluster import MiniBatchKMeans
from tqdm import tqdm

from audiossl.atomic import atomic_path
from audiossl.data.kaldi_dir import DataDir
from audiossl.errors import UserError
from audiossl.features.store import FeatureError, load_features

FORMAT = "audiossl.kmeans/1"
POSTERIORS = "posteriors"   # the layer name of a CTC model's token probabilities


class KMeansError(UserError, ValueError):
    """A k-means input or model problem; the message names the utterance or file."""


class FeatureSource(Protocol):
    """Frame features per utterance: ``source(utt)`` is (frames, dim) float32."""

    utterances: list[str]

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
        except (OSError, ValueError) as err:
            raise FeatureError(f"utterance '{utt}': cannot read features '{self.scp[utt]}': {err}") from err
        return np.asarray(feats, dtype=np.float32)


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


def sample_frames(source: FeatureSource, max_frames: int, seed: int, progress: bool = False) -> np.ndarray:
    """A uniform random sample of at most ``max_frames`` frames of the whole corpus: (n, dim).

    One pass of reservoir sampling (Vitter's algorithm R, vectorized per utterance):
    memory is ``max_frames`` frames plus one utterance; ``n = min(max_frames, total)``.
    The same source, ``max_frames`` and ``seed`` give the same sample.
    """
    if max_frames < 1:
        raise KMeansError(f"max_frames must be positive, got {max_frames}")
    rng = np.random.default_rng(seed)
    filling: list[np.ndarray] = []  # the first max_frames frames, until the reservoir is full
    reservoir: np.ndarray | None = None
    dim, seen = None, 0
    for utt in tqdm(source.utterances, disable=not progress, unit="utt", desc="sampling frames"):
        feats = checked_features(source, utt, dim)
        dim = feats.shape[1]
        fill = 0
        if reservoir is None:
            fill = min(max_frames - seen, len(feats))
            filling.append(feats[:fill])
            if seen + fill == max_frames:
                reservoir = np.concatenate(filling)
        rest = np.arange(seen + fill, seen + len(feats))  # global indices of frames past the fill
        if rest.size:
            slots = rng.integers(0, rest + 1)  # frame i replaces slot j ~ U{0..i} when j < max_frames
            keep = np.flatnonzero(slots < max_frames)
            # Where a slot is hit twice the later frame wins, as in the sequential algorithm.
            last = len(keep) - 1 - np.unique(slots[keep][::-1], return_index=True)[1]
            chosen = keep[last]
            reservoir[slots[chosen]] = feats[fill + chosen]
        seen += len(feats)
    if seen == 0:
        raise KMeansError("no frames to sample: the feature source is empty")
    return reservoir if reservoir is not None else np.concatenate(filling)


@dataclass
class KMeansModel:
    """Cluster centers ``centers`` (num_clusters, dim) float32; a frame's label is its nearest center."""

    centers: torch.Tensor

    @property
    def num_clusters(self) -> int:
        return self.centers.shape[0]

    @property
    def dim(self) -> int:
        return self.centers.shape[1]

    @classmethod
    def fit(cls, frames: np.ndarray, num_clusters: int, seed: int, batch_size: int = 10000,
            max_iter: int = 100, n_init: int = 20, max_no_improvement: int = 100,
            reassignment_ratio: float = 0.0, init_size: int | None = None) -> "KMeansModel":
        """Mini-batch k-means with k-means++ init on (frames, dim) features.

        Defaults are fairseq ``simple_kmeans/learn_kmeans.py``'s (same names there);
        ``batch_size`` and ``init_size`` (default ``3 * batch_size``) are capped at the
        number of frames. ``max_iter`` counts passes over ``frames``; ``n_init`` k-means++
        initializations are tried on ``init_size`` frames and the best is refined.
        """
        frames = np.asarray(frames, dtype=np.float32)
        if frames.ndim != 2:
            raise KMeansError(f"frames must be (frames, dim), got shape {frames.shape}")
        if num_clusters < 1 or num_clusters > len(frames):
            raise KMeansError(f"cannot fit {num_clusters} clusters to {len(frames)} frames")
        batch_size = min(batch_size, len(frames))
        init_size = min(init_size or 3 * batch_size, len(frames))
        km = MiniBatchKMeans(n_clusters=num_clusters, init="k-means++", max_iter=max_iter, batch_size=batch_size,
                             tol=0.0, max_no_improvement=max_no_improvement, init_size=init_size, n_init=n_init,
                             reassignment_ratio=reassignment_ratio, compute_labels=False, random_state=seed)
        km.fit(frames)
        return cls(torch.from_numpy(km.cluster_centers_.astype(np.float32)))

    def assign(self, features: np.ndarray, batch_frames: int = 8192) -> tuple[np.ndarray, np.ndarray]:
        """Nearest center of each frame of (frames, dim) features.

        Returns:
            labels (frames,) int64 and squared distances (frames,) float64.
        Distances use the expanded square ``|x|^2 - 2 x.c + |c|^2`` in float64,
        ``batch_frames`` frames at a time.
        """
        features = np.asarray(features)
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise KMeansError(f"features of shape {tuple(features.shape)} do not match the model's "
                              f"dimension {self.dim}")
        centers = self.centers.to(torch.float64)
        center_sq = (centers ** 2).sum(1)
        labels = np.empty(len(features), dtype=np.int64)
        dists = np.empty(len(features), dtype=np.float64)
        for start in range(0, len(features), batch_frames):
            x = torch.from_numpy(features[start:start + batch_frames]).to(torch.float64)
            d = (x ** 2).sum(1, keepdim=True) - 2 * x @ centers.T + center_sq
            best, index = d.min(1)
            labels[start:start + len(x)] = index.numpy()
            dists[start:start + len(x)] = best.clamp_min(0).numpy()
        return labels, dists

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Labels of (frames, dim) features: (frames,) int64 in ``[0, num_clusters)``."""
        return self.assign(features)[0]

    def inertia(self, features: np.ndarray) -> float:
        """Mean squared distance of (frames, dim) features to their nearest center (sklearn's is the sum)."""
        return float(self.assign(features)[1].mean())

    def save(self, path: str | os.PathLike) -> None:
        """Write the centers as safetensors, atomically."""
        with atomic_path(path) as tmp:
            save_file({"centers": self.centers.contiguous()}, str(tmp), metadata={"format": FORMAT})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "KMeansModel":
        """Read a model written by :meth:`save` (safetensors; nothing is unpickled)."""
        try:
            with safe_open(str(path), framework="pt") as f:
                fmt = (f.metadata() or {}).get("format")
                if fmt != FORMAT or "centers" not in f.keys():
                    raise KMeansError(f"{path}: not an audiossl k-means model (format {fmt!r})")
                centers = f.get_tensor("centers")
        except SafetensorError as err:
            raise KMeansError(f"{path}: not a safetensors file: {err}") from err
        if centers.ndim != 2 or centers.dtype != torch.float32:
            raise KMeansError(f"{path}: centers have shape {tuple(centers.shape)} and dtype {centers.dtype}, "
                              f"expected (clusters, dim) float32")
        return cls(centers)


def apply_kmeans(model: KMeansModel, source: FeatureSource,
                 progress: bool = False) -> tuple[dict[str, np.ndarray], float]:
    """Label every frame of every utterance of ``source``.

    Returns:
        ``{utt: labels (frames,) int64}`` and the mean squared distance over all frames.
    """
    labels: dict[str, np.ndarray] = {}
    total, frames = 0.0, 0
    for utt in tqdm(source.utterances, disable=not progress, unit="utt", desc="k-means labels"):
        feats = checked_features(source, utt, model.dim)
        labels[utt], dists = model.assign(feats)
        total += float(dists.sum())
        frames += len(feats)
    return labels, total / max(frames, 1)
