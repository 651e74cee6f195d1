"""Multi-codebook acoustic targets without a download: a residual-VQ autoencoder trained here.

MERT predicts the 8 residual-VQ codes of EnCodec, a neural codec trained elsewhere. This is the
same kind of teacher made from the corpus at hand: a convolutional autoencoder over log-mel
frames on the CNN's 75 frames/s grid (:mod:`audiossl.features.music`) whose bottleneck is a
:class:`~audiossl.nn.quantizer.ResidualVectorQuantizer` of K codebooks; a frame's targets are its
K codes ``(T, K)``, coarse to fine. It reconstructs log-mel, not audio: the codes need to carry
what the spectrum holds, not to be decodable to a waveform.

A saved teacher is one safetensors file: the weights and, in its metadata, the format, the
feature kind and the sizes, so that ``apply`` needs nothing else.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm import tqdm

from audiossl.atomic import atomic_path
from audiossl.errors import UserError
from audiossl.nn.quantizer import ResidualVectorQuantizer
from audiossl.targets.kmeans import FeatureSource, checked_features

logger = logging.getLogger(__name__)

FORMAT = "audiossl.rvq/1"


class RvqError(UserError, ValueError):
    """A residual-VQ teacher input or file problem; the message names the utterance or file."""


@dataclass
class RvqConfig:
    """features: the :class:`~audiossl.features.music.MusicFeatureSource` kind it was trained on;
    input_dim: their size; hidden: conv channels; latent_dim: the quantized vectors' size;
    num_codebooks: ``K``; codebook_size: ``V``; commitment: weight of the commitment loss (VQ-VAE's beta)."""

    features: str = "logmel"
    input_dim: int = 128
    hidden: int = 256
    latent_dim: int = 64
    num_codebooks: int = 8
    codebook_size: int = 256
    commitment: float = 0.25


class RvqAutoencoder(nn.Module):
    """Normalised ``(B, T, F)`` frames → conv encoder → residual VQ → conv decoder → ``(B, T, F)``.

    Three 3-tap convolutions each way, so a frame's codes see 7 frames (93 ms) around it.
    ``mean`` and ``std`` (per feature, of the training frames) are buffers saved with the weights.
    """

    def __init__(self, config: RvqConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden

        def stack(inputs: int, outputs: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv1d(inputs, h, 3, padding=1), nn.GELU(), nn.Conv1d(h, h, 3, padding=1),
                                 nn.GELU(), nn.Conv1d(h, outputs, 3, padding=1))

        self.encoder = stack(config.input_dim, config.latent_dim)
        self.decoder = stack(config.latent_dim, config.input_dim)
        self.quantizer = ResidualVectorQuantizer(config.num_codebooks, config.codebook_size, config.latent_dim)
        self.register_buffer("mean", torch.zeros(config.input_dim))
        self.register_buffer("std", torch.ones(config.input_dim))

    def _latents(self, frames: Tensor) -> Tensor:
        x = (frames - self.mean) / self.std
        return self.encoder(x.transpose(1, 2)).transpose(1, 2)

    def forward(self, frames: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``(B, T, F)`` frames → loss, reconstruction MSE (normalised features) and codes ``(B, T, K)``."""
        latents = self._latents(frames)
        batch, time, dim = latents.shape
        quantized, codes, commitment = self.quantizer(latents.reshape(-1, dim), generator)
        decoded = self.decoder(quantized.reshape(batch, time, dim).transpose(1, 2)).transpose(1, 2)
        mse = nn.functional.mse_loss(decoded, (frames - self.mean) / self.std)
        return mse + self.config.commitment * commitment, mse.detach(), codes.reshape(batch, time, -1)

    @torch.no_grad()
    def codes(self, frames: np.ndarray) -> np.ndarray:
        """``(T, F)`` frames of one utterance → ``(T, K)`` int64 codes (eval mode: no codebook update)."""
        latents = self._latents(torch.from_numpy(frames)[None])[0]
        _, codes, _ = self.quantizer.eval()(latents)
        return codes.numpy().astype(np.int64)

    def save(self, path: str | os.PathLike) -> None:
        """Write the teacher as safetensors, atomically: a kill or full disk keeps an earlier teacher at ``path``."""
        metadata = {"format": FORMAT, "config": json.dumps(asdict(self.config))}
        with atomic_path(path) as tmp:
            save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(tmp), metadata=metadata)

    @classmethod
    def load(cls, path: str | os.PathLike) -> RvqAutoencoder:
        try:
            with safe_open(str(path), "pt") as f:
                metadata = f.metadata() or {}
            if metadata.get("format") != FORMAT:
                raise RvqError(f"{path}: not a residual-VQ teacher (format {metadata.get('format')!r}, "
                               f"expected {FORMAT!r})")
            model = cls(RvqConfig(**json.loads(metadata["config"])))
            model.load_state_dict(load_file(str(path)))
        except (OSError, RuntimeError, KeyError, TypeError, SafetensorError) as err:
            raise RvqError(f"{path}: cannot load the residual-VQ teacher: {err}") from err
        return model.eval()


def load_frames(source: FeatureSource, max_frames: int, seed: int = 0, progress: bool = False) -> np.ndarray:
    """The features of ``source``'s utterances in a seeded random order (as k-means takes its frames), until
    ``max_frames``: ``(N, F)``. In their sorted order a budget took the first speakers or genres alone."""
    order = [source.utterances[i] for i in np.random.default_rng(seed).permutation(len(source.utterances))]
    chunks, total = [], 0
    for utt in tqdm(order, disable=not progress, unit="utt", desc="reading frames"):
        feats = checked_features(source, utt, chunks[0].shape[1] if chunks else None)
        chunks.append(feats[:max_frames - total])
        total += len(chunks[-1])
        if total >= max_frames:
            break
    if total == 0:
        raise RvqError("no frames to train on: the feature source is empty")
    return np.concatenate(chunks)


def fit_rvq(frames: np.ndarray, config: RvqConfig, updates: int, seed: int = 0, window: int = 64,
            batch_windows: int = 32, learning_rate: float = 1e-3, progress: bool = False) -> RvqAutoencoder:
    """Train a teacher on ``frames`` ``(N, F)`` (utterances one after another): ``updates`` Adam steps,
    each on ``batch_windows`` random windows of ``window`` frames drawn from a generator seeded with ``seed``.
    Logs the reconstruction MSE and each codebook's perplexity every 10 % of the run."""
    if len(frames) < window:
        raise RvqError(f"{len(frames)} frames are fewer than one training window of {window}")
    if frames.shape[1] != config.input_dim:
        raise RvqError(f"frames have dimension {frames.shape[1]}, the config says input_dim {config.input_dim}")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = RvqAutoencoder(config)
    data = torch.from_numpy(frames)
    model.mean.copy_(data.mean(0))
    model.std.copy_(data.std(0).clamp(min=1e-3))
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    offsets = torch.arange(window)
    for update in tqdm(range(1, updates + 1), disable=not progress, unit="update", desc="residual VQ"):
        starts = torch.randint(0, len(data) - window + 1, (batch_windows,), generator=generator)
        loss, mse, codes = model(data[starts[:, None] + offsets], generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if update % max(updates // 10, 1) == 0 or update == updates:
            logger.info("update %d: reconstruction MSE %.4f; code perplexity per codebook %s", update, float(mse),
                        " ".join(f"{p:.0f}" for p in code_perplexities(codes.reshape(-1, config.num_codebooks),
                                                                        config.codebook_size)))
    return model.eval()


def code_perplexities(codes: Tensor | np.ndarray, codebook_size: int) -> list[float]:
    """Perplexity of each codebook's code distribution over ``(N, K)`` codes (``codebook_size`` at best)."""
    codes = torch.as_tensor(codes)
    result = []
    for k in range(codes.shape[1]):
        p = torch.bincount(codes[:, k], minlength=codebook_size).double()
        p = p[p > 0] / p.sum()
        result.append(float(torch.exp(-(p * p.log()).sum())))
    return result


def apply_rvq(model: RvqAutoencoder, source: FeatureSource, progress: bool = False) -> dict[str, np.ndarray]:
    """``{utt: codes (frames, K) int64}`` of every utterance of ``source``."""
    labels = {}
    for utt in tqdm(source.utterances, disable=not progress, unit="utt", desc="residual VQ codes"):
        labels[utt] = model.codes(checked_features(source, utt, model.config.input_dim))
    return labels
