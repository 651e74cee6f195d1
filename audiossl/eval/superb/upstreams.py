"""The upstreams a SUPERB-style evaluation freezes: audiossl checkpoints, Hugging Face directories, s3prl baselines.

:func:`open_upstream` turns the ``--upstream`` argument into an :class:`Upstream`: a path is read
by :func:`audiossl.load_model` (any family's checkpoint, a fine-tuned one included, a local
Hugging Face, fairseq, s3prl or fairseq2 model); a bare name of :data:`S3PRL_BASELINES` is s3prl's own
download-free feature extractor, run through s3prl itself. Anything else is an error naming it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from audiossl.errors import UserError

S3PRL_BASELINES = ("fbank", "fbank_no_cmvn", "mfcc", "mel", "linear", "spectrogram")
"""s3prl 0.4.18's baseline upstreams (``s3prl/upstream/baseline``): Kaldi-style features, no weights."""

SAMPLE_RATE = 16000


class UpstreamError(UserError, ValueError):
    """An ``--upstream`` that names nothing the runner can load; the message names it."""


@dataclass
class Upstream:
    """A frozen feature extractor: ``(B, S)`` waveforms at ``sample_rate`` → every hidden state.

    Attributes:
        name: what the user passed (a path or a baseline name), for tables and logs.
        identity: a digest of what the upstream computes (the checkpoint's bytes, the Hugging Face
            directory's files, or the s3prl baseline and version): caches are keyed by it.
        hidden_sizes: feature size of each hidden state (the encoder input first).
        frame_rate: hidden-state frames per second.
        sample_rate: of the waveforms it takes (16 kHz; MERT 24 kHz).
        run: ``(wavs (B, S), lengths (B,))`` → the ``(B, T, D)`` hidden states and ``(B,)`` valid frames.
    """

    name: str
    identity: str
    hidden_sizes: list[int]
    frame_rate: float
    sample_rate: int
    run: Callable[[Tensor, Tensor], tuple[list[Tensor], Tensor]]

    @property
    def num_states(self) -> int:
        return len(self.hidden_sizes)

    def hidden_states(self, wavs: Tensor, lengths: Tensor) -> tuple[list[Tensor], Tensor]:
        """Every hidden state ``(B, T, D)`` and the ``(B,)`` valid frames, without gradients."""
        with torch.inference_mode():
            return self.run(wavs, lengths)


def encoder_upstream(path: str) -> Upstream:
    """The encoder of any model :func:`audiossl.load_model` reads (its downstream head, if any, dropped)."""
    from audiossl.checkpoint import content_digest, load_model

    encoder = load_model(path).encoder_only().eval()
    return Upstream(str(path), f"audiossl:{content_digest(path)}", list(encoder.hidden_sizes), float(encoder.frame_rate),
                    int(encoder.sample_rate), encoder.extract_features)


def s3prl_upstream(name: str) -> Upstream:
    """s3prl's baseline ``name`` (:data:`S3PRL_BASELINES`), through ``s3prl.nn.S3PRLUpstream``."""
    import s3prl

    from audiossl.interop.s3prl import import_s3prl_nn

    model = import_s3prl_nn().S3PRLUpstream(name).eval()
    rate = SAMPLE_RATE / model.downsample_rates[0]

    def run(wavs: Tensor, lengths: Tensor) -> tuple[list[Tensor], Tensor]:
        states, state_lengths = model(wavs, lengths)
        return states, state_lengths[0]

    return Upstream(name, f"s3prl:{name}:{s3prl.__version__}", list(model.hidden_sizes), rate, SAMPLE_RATE, run)


def open_upstream(spec: str) -> Upstream:
    """The upstream ``spec`` names: an existing path (audiossl checkpoint, Hugging Face or fairseq
    model), else an s3prl baseline name; anything else is an :class:`UpstreamError`."""
    if os.path.exists(spec):
        try:
            return encoder_upstream(spec)
        except UserError as err:
            raise UpstreamError(f"upstream {spec}: neither an audiossl checkpoint nor a Hugging Face model directory "
                                f"the toolkit reads ({err})") from err
    if spec in S3PRL_BASELINES:
        return s3prl_upstream(spec)
    raise UpstreamError(f"upstream {spec!r}: no such file or directory, and not an s3prl baseline "
                        f"({', '.join(S3PRL_BASELINES)})")


def default_name(spec: str) -> str:
    """A short name for the upstream ``spec``: the baseline name, or ``<dir>_<file stem>`` of a checkpoint
    (``wavlm_iter2_best`` for ``.../wavlm_iter2/checkpoints/best.pt``), or a directory's name."""
    if not os.path.exists(spec):
        return spec
    path = Path(spec).resolve()
    if path.is_dir():
        return path.name
    owner = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return f"{owner.name}_{path.stem}".replace(" ", "_")
