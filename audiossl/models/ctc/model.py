"""CTC ASR model: encoder hidden states → token log-probabilities; greedy or beam decoding."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from audiossl.models.ctc.config import CtcConfig
from audiossl.nn.frontends import waveform_to_fbank
from audiossl.nn.masking import compute_span_mask
from audiossl.text.ctc_decode import beam_search_decode, greedy_decode


class CtcModel(nn.Module):
    """Encoder → dropout → linear head, trained with CTC (blank id 0).

    Args:
        config: kept for checkpoints and the fine-tuning settings (masking, freezing).
        encoder: a model with ``encode(inputs, lengths, mask)``, ``num_frames`` and
            ``frontend.input_kind`` (e.g. :class:`~audiossl.models.hubert.HubertModel`).
        dropout, head: applied to the last hidden state.
        tokenizer: maps token ids to text.
    """

    def __init__(self, config: CtcConfig, encoder: nn.Module, dropout: nn.Module, head: nn.Linear, tokenizer):
        super().__init__()
        self.config = config
        self.encoder = encoder
        self.dropout = dropout
        self.head = head
        self.tokenizer = tokenizer
        self.encoder_frozen = False

    @property
    def input_kind(self) -> str:
        return self.encoder.frontend.input_kind

    def num_frames(self, input_lengths: Tensor) -> Tensor:
        return self.encoder.num_frames(input_lengths)

    def forward(self, inputs: Tensor, lengths: Tensor, generator: torch.Generator | None = None
                ) -> tuple[Tensor, Tensor]:
        """``(B, S)`` waveforms or ``(B, T_in, F)`` fbank → ``(B, T, V)`` log-probs (fp32), ``(B,)`` frames.

        With a ``generator`` in training mode, frames are masked as configured (SpecAugment-like)
        and the encoder drops layers with its configured ``layer_drop``.
        """
        mask = None
        if generator is not None and self.training and self.config.mask_prob > 0:
            frames = self.num_frames(lengths)
            time = int(self.num_frames(lengths.new_tensor([inputs.shape[1]])))
            mask = compute_span_mask((inputs.shape[0], time), frames, self.config.mask_prob,
                                     self.config.mask_length, 0, generator)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.encoder_frozen):
            hidden, frame_lengths = self.encoder.encode(inputs, lengths, mask, generator)
        logits = self.head(self.dropout(hidden[-1]))
        return logits.float().log_softmax(-1), frame_lengths

    @property
    def hidden_sizes(self) -> list[int]:
        """Feature size of each hidden state :meth:`extract_features` returns."""
        return self.encoder.hidden_sizes

    def extract_features(self, wavs: Tensor, lengths: Tensor) -> tuple[list[Tensor], Tensor]:
        """Every hidden state of the encoder from ``(B, S)`` 16 kHz waveforms (see the encoder's)."""
        return self.encoder.extract_features(wavs, lengths)

    @torch.no_grad()
    def transcribe(self, wavs: Tensor, lengths: Tensor, beam_size: int = 1, lm=None) -> list[str]:
        """Text of each ``(B, S)`` 16 kHz waveform (decoded as :meth:`decode` does)."""
        inputs, input_lengths = wavs, lengths
        if self.input_kind == "fbank":
            inputs, input_lengths = waveform_to_fbank(wavs, lengths, self.encoder.frontend.num_mel_bins)
        log_probs, frames = self(inputs, input_lengths)
        return self.decode(log_probs, frames, beam_size, lm)

    def decode(self, log_probs: Tensor, frames: Tensor, beam_size: int = 1, lm=None) -> list[str]:
        """Token log-probs ``(B, T, V)`` → text per item.

        Greedy (``beam_size`` 1) or prefix beam search; with ``lm`` (a
        :class:`~audiossl.text.lexicon_decode.LexiconDecoder`) its lexicon search instead.
        """
        if lm is not None:
            return lm(log_probs, frames)
        if beam_size > 1:
            ids = beam_search_decode(log_probs.cpu(), frames.cpu(), beam_size)
        else:
            ids = greedy_decode(log_probs.cpu(), frames.cpu())
        return [self.tokenizer.decode(seq) for seq in ids]


def ctc_loss(log_probs: Tensor, frames: Tensor, targets: Tensor, target_lengths: Tensor) -> Tensor:
    """Summed CTC loss of a batch (blank 0; impossible alignments count zero, as fairseq).

    log_probs: (B, T, V); targets: (B, L) padded with any value beyond target_lengths.
    """
    return nn.functional.ctc_loss(log_probs.transpose(0, 1), targets.clamp(min=0), frames, target_lengths,
                                  blank=0, reduction="sum", zero_infinity=True)

