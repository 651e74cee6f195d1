"""Music features on the frame grid of the waveform CNN: MERT's targets and its teachers' inputs.

The CNN (fairseq's default ``conv_feature_layers``) has a receptive field of 400 samples and a
hop of 320: at 24 kHz, 75 frames/s, frame ``t`` covering samples ``[320 t, 320 t + 400)``. Every
feature here is computed on that grid, centred on each frame's window, and has exactly the CNN's
frame count, so it can be a frame-level target without any cropping downstream:

- :func:`cqt_magnitude`: librosa's constant-Q transform from C1 (32.7 Hz), the musical teacher
  MERT reconstructs (the reference computes it with nnAudio, magnitude output);
- :func:`log_mel` and :func:`chroma`: inputs of the acoustic teachers (the residual-VQ
  autoencoder's log-mel; MERT-v0's k-means on log-mel + chroma).
"""
from __future__ import annotations

import os
from typing import Callable

import librosa
import numpy as np

from audiossl.data.dataset import UtteranceDataset
from audiossl.errors import UserError
from audiossl.features.store import apply_cmvn, cmvn_stats

MUSIC_SAMPLE_RATE = 24000
CNN_WINDOW = 400      # samples of one frame of the default CNN
CNN_HOP = 320         # samples between frames (75 frames/s at 24 kHz)
CQT_FMIN = 32.7       # C1, as the reference
CQT_OCTAVES = 7
MEL_FFT = 2048
FEATURE_KINDS = ("logmel", "logmel_chroma")


class MusicFeatureError(UserError, ValueError):
    """Audio too short for one frame, or a feature setting that does not fit; names the utterance."""


def cnn_frames(num_samples: int) -> int:
    """Frames the default CNN gives for ``num_samples`` samples: ``floor((S - 400) / 320) + 1``."""
    return max((num_samples - CNN_WINDOW) // CNN_HOP + 1, 0)


def _on_cnn_grid(samples: np.ndarray, transform: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``transform`` (a centred librosa analysis with hop 320, ``(F, T')``) of ``samples`` starting half a
    window in, so that its frame ``t`` is centred on CNN frame ``t``; cut to the CNN's count: ``(T, F)``."""
    frames = cnn_frames(len(samples))
    if frames < 1:
        raise MusicFeatureError(f"{len(samples)} samples are shorter than one {CNN_WINDOW}-sample frame")
    features = transform(np.ascontiguousarray(samples[CNN_WINDOW // 2:], dtype=np.float32))
    return np.ascontiguousarray(features[:, :frames].T, dtype=np.float32)


def cqt_magnitude(samples: np.ndarray, sample_rate: int, bins: int) -> np.ndarray:
    """``(S,)`` audio → ``(T, bins)`` CQT magnitudes over 7 octaves from C1 (``bins / 7`` per octave;
    MERT's ``audio_cqt_bins``: 84 or 336)."""
    if bins % CQT_OCTAVES:
        raise MusicFeatureError(f"CQT bins must be a multiple of {CQT_OCTAVES} (octaves), got {bins}")
    return _on_cnn_grid(samples, lambda x: np.abs(librosa.cqt(
        x, sr=sample_rate, hop_length=CNN_HOP, fmin=CQT_FMIN, n_bins=bins, bins_per_octave=bins // CQT_OCTAVES)))


def log_mel(samples: np.ndarray, sample_rate: int, num_mels: int = 128) -> np.ndarray:
    """``(S,)`` audio → ``(T, num_mels)`` log mel power (2048-point FFT, Slaney mel)."""
    return _on_cnn_grid(samples, lambda x: np.log(librosa.feature.melspectrogram(
        y=x, sr=sample_rate, n_fft=MEL_FFT, hop_length=CNN_HOP, n_mels=num_mels) + 1e-6))


def chroma(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """``(S,)`` audio → ``(T, 12)`` chroma of the power spectrogram, each frame max-normalised."""
    return _on_cnn_grid(samples, lambda x: librosa.feature.chroma_stft(
        y=x, sr=sample_rate, n_fft=MEL_FFT, hop_length=CNN_HOP))


def check_kind(kind: str) -> None:
    if kind not in FEATURE_KINDS:
        raise MusicFeatureError(f"unknown music feature kind {kind!r}; known: {', '.join(FEATURE_KINDS)}")


def music_features(samples: np.ndarray, sample_rate: int, kind: str) -> np.ndarray:
    """``"logmel"`` (128) or ``"logmel_chroma"`` (128 + 12) frames ``(T, F)`` of ``(S,)`` audio."""
    check_kind(kind)
    if kind == "logmel":
        return log_mel(samples, sample_rate)
    return np.concatenate([log_mel(samples, sample_rate), chroma(samples, sample_rate)], axis=1)


class MusicFeatureSource:
    """Music features per utterance of a data dir, its audio read at ``sample_rate`` by an
    :class:`~audiossl.data.dataset.UtteranceDataset` (a k-means or RVQ feature source).

    ``utterances`` are the data dir's; ``source(utt)`` is ``(frames, F)`` float32 on the CNN's grid,
    with ``utt_cmvn`` normalised per utterance to zero mean and unit variance in every dimension
    (so that chroma's 12 dimensions in [0, 1] are not lost beside log-mel's wide range).
    """

    def __init__(self, data_dir: str | os.PathLike, kind: str, sample_rate: int = MUSIC_SAMPLE_RATE,
                 utt_cmvn: bool = False):
        check_kind(kind)
        self.audio = UtteranceDataset(data_dir, "waveform", sample_rate=sample_rate)
        self.data_dir = data_dir
        self.utterances = self.audio.utterances
        self.index = {utt: i for i, utt in enumerate(self.utterances)}
        self.kind = kind
        self.sample_rate = sample_rate
        self.utt_cmvn = utt_cmvn

    @property
    def settings(self) -> dict:
        """How the features are made (see :class:`~audiossl.targets.kmeans.FeatureSource`)."""
        return dict(source="music", kind=self.kind, utt_cmvn=self.utt_cmvn)

    @property
    def identity(self) -> dict:
        """The settings and inputs the features are made of."""
        return dict(self.settings, inputs=self.audio.identity)

    def __call__(self, utt: str) -> np.ndarray:
        _, samples, _ = self.audio[self.index[utt]]
        try:
            feats = music_features(samples.numpy(), self.sample_rate, self.kind)
        except MusicFeatureError as err:
            raise MusicFeatureError(f"{self.data_dir}: utterance '{utt}': {err}") from None
        return apply_cmvn(feats, cmvn_stats(feats), norm_vars=True).astype(np.float32) if self.utt_cmvn else feats
