"""s3prl (SUPERB) interop: any audiossl model as an s3prl upstream, checkpoints in the files s3prl's
``hubert_local``, ``wav2vec2_local`` and ``wavlm_local`` upstreams load, and s3prl's import on torchaudio 2.9.

s3prl 0.4.18 calls ``torchaudio.set_audio_backend`` and imports ``torchaudio.sox_effects`` at
import time; torchaudio 2.9 has neither. :func:`import_s3prl_nn` installs two inert stand-ins
first (this module is the only place that does). :class:`S3prlUpstream` gives an audiossl
model s3prl's ``S3PRLUpstream`` interface, so s3prl's ``Featurizer`` (the SUPERB learned
weighted sum of layers) and ``UpstreamDownstreamModel`` take it unchanged.
"""
from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import torch
from torch import Tensor, nn

from audiossl.interop.fairseq import NUM_SPECIAL_SYMBOLS, fairseq_payload, write_payload
from audiossl.models.encoder import SpeechEncoder

SAMPLE_RATE = 16000
SPECIAL_SYMBOLS = ["<s>", "<pad>", "</s>", "<unk>"]  # fairseq's Dictionary, before HuBERT's labels
MIN_SAMPLES = 800  # s3prl's MIN_SECOND (0.05 s): shorter batches are zero-padded to this


def _no_sox_effects(*args, **kwargs):
    raise NotImplementedError("torchaudio 2.9 has no sox_effects; audiossl reads audio through audiossl.audio")


def import_s3prl_nn() -> types.ModuleType:
    """``s3prl.nn``, imported on torchaudio 2.9 (see the module docstring)."""
    import torchaudio

    if not hasattr(torchaudio, "set_audio_backend"):
        torchaudio.set_audio_backend = lambda backend: None
    if "torchaudio.sox_effects" not in sys.modules and not hasattr(torchaudio, "sox_effects"):
        stub = types.ModuleType("torchaudio.sox_effects")
        stub.apply_effects_tensor = stub.apply_effects_file = _no_sox_effects
        sys.modules["torchaudio.sox_effects"] = stub
        torchaudio.sox_effects = stub
    import s3prl.nn

    return s3prl.nn


class S3prlUpstream(nn.Module):
    """An audiossl model behind s3prl's ``S3PRLUpstream`` interface, with s3prl's conventions.

    Args:
        model: any family's :class:`~audiossl.models.encoder.SpeechEncoder` (``audiossl.load_model``
            gives one) taking 16 kHz audio. Nothing runs at construction.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        if model.sample_rate != SAMPLE_RATE:
            raise ValueError(f"s3prl upstreams take {SAMPLE_RATE} Hz audio; the model takes {model.sample_rate} Hz")
        self._hidden_sizes = list(model.hidden_sizes)
        self._downsample_rates = [round(SAMPLE_RATE / model.frame_rate)] * len(self._hidden_sizes)

    @property
    def num_layers(self) -> int:
        """Number of hidden states (the encoder input and every layer's output)."""
        return len(self._hidden_sizes)

    @property
    def hidden_sizes(self) -> list[int]:
        return self._hidden_sizes

    @property
    def downsample_rates(self) -> list[int]:
        """Samples of 16 kHz audio per frame, per hidden state."""
        return self._downsample_rates

    def forward(self, wavs: Tensor, wavs_len: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """``(B, S)`` or ``(B, S, 1)`` waveforms and ``(B,)`` samples → hidden states and their lengths.

        As s3prl's ``S3PRLUpstream``: a batch shorter than 0.05 s is zero-padded first; each
        item has ``(samples - 1) // stride + 1`` frames, and the frame axis is cut or extended
        (repeating the last frame) to the longest item's count.
        """
        if wavs.dim() == 3:
            wavs = wavs.squeeze(-1)
        model_lengths = wavs_len
        shortfall = MIN_SAMPLES - int(wavs_len.max())
        if shortfall > 0:
            wavs = nn.functional.pad(wavs, (0, shortfall))
            model_lengths = wavs_len + shortfall
        hidden, _ = self.model.extract_features(wavs, model_lengths)
        all_hs, all_lens = [], []
        for h, stride in zip(hidden, self.downsample_rates):
            lengths = torch.div(wavs_len - 1, stride, rounding_mode="floor") + 1
            frames = int(lengths.max())
            if h.shape[1] < frames:
                h = torch.cat([h, h[:, -1:].expand(-1, frames - h.shape[1], -1)], dim=1)
            all_hs.append(h[:, :frames])
            all_lens.append(lengths)
        return all_hs, all_lens


def save_s3prl(model: SpeechEncoder, path: str | os.PathLike) -> Path:
    """Write a HuBERT, wav2vec 2.0 or WavLM ``model`` as the file s3prl's upstream of its family loads;
    returns ``path``.

    HuBERT and wav2vec 2.0 get s3prl's fairseq-free layout (``hubert_local`` and ``wav2vec2_local`` read
    ``task_cfg``, ``model_cfg``, ``model_weight`` and HuBERT's ``dictionaries_symbols``), WavLM unilm's
    (``wavlm_local``), as :func:`~audiossl.interop.fairseq.save_fairseq` writes it. ``load_model`` and
    ``convert from-fairseq`` read all three.
    """
    payload = fairseq_payload(model)
    if model.config.family != "wavlm":
        cfg = payload["cfg"]
        converted = {"task_cfg": cfg["task"], "model_cfg": cfg["model"], "model_weight": payload["model"]}
        if model.config.family == "hubert":
            classes = payload["model"]["label_embs_concat"].shape[0] - NUM_SPECIAL_SYMBOLS
            converted["dictionaries_symbols"] = [SPECIAL_SYMBOLS + [str(label) for label in range(classes)]]
        payload = converted
    return write_payload(payload, path)
