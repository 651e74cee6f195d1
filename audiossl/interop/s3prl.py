"""s3prl (SUPERB) interop: any audiossl model as an s3prl upstream, and s3prl's import on torchaudio 2.9.

s3prl 0.4.18 calls ``torchaudio.set_audio_backend`` and imports ``torchaudio.sox_effects`` at
import time; torchaudio 2.9 has neither. :func:`import_s3prl_nn` installs two inert stand-ins
first (this module is the only place that does). :class:`S3prlUpstream` gives an audiossl
model s3prl's ``S3PRLUpstream`` interface, so s3prl's ``Featurizer`` (the SUPERB learned
weighted sum of layers) and ``UpstreamDownstreamModel`` take it unchanged.
"""
from __future__ import annotations

import sys
import types

import torch
from torch import Tensor, nn

SAMPLE_RATE = 16000


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
    """An audiossl model behind s3prl's ``S3PRLUpstream`` interface.

    Args:
        model: anything with ``extract_features(wavs (B, S), lengths (B,))`` returning every
            hidden state and the valid frames (``audiossl.load_model`` gives one).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        frame_rate = next(m.frame_rate_hz for m in model.modules() if hasattr(m, "frame_rate_hz"))
        was_training = model.training
        with torch.no_grad():
            hidden, _ = model.eval().extract_features(torch.zeros(1, SAMPLE_RATE), torch.tensor([SAMPLE_RATE]))
        model.train(was_training)
        self._hidden_sizes = [h.shape[-1] for h in hidden]
        self._downsample_rates = [round(SAMPLE_RATE / frame_rate)] * len(hidden)

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
        """``(B, S)`` or ``(B, S, 1)`` waveforms and ``(B,)`` samples → hidden states and their lengths."""
        if wavs.dim() == 3:
            wavs = wavs.squeeze(-1)
        hidden, frames = self.model.extract_features(wavs, wavs_len)
        return list(hidden), [frames] * len(hidden)
