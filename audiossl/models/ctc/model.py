"""CTC ASR model: encoder hidden states → token log-probabilities; greedy or beam decoding."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from audiossl.models.ctc.config import CtcConfig
from audiossl.models.encoder import SpeechEncoder
from audiossl.nn.masking import compute_span_mask
from audiossl.text.ctc_decode import beam_search_decode, greedy_decode


class CtcModel(SpeechEncoder):
    """Encoder → dropout → linear head, trained with CTC (blank id 0).

    Offers the encoder interface of its encoder (``extract_features``, ``encode``, ``hidden_sizes``,
    ...), so that a fine-tuned model is inspected and featurized like a pretrained one.

    Args:
        config: kept for checkpoints and the fine-tuning settings (masking, freezing).
        encoder: any family's :class:`~audiossl.models.encoder.SpeechEncoder`, without its pretraining parts.
        dropout, head: applied to the last hidden state.
        tokenizer: maps token ids to text.
    """

    def __init__(self, config: CtcConfig, encoder: SpeechEncoder, dropout: nn.Module, head: nn.Linear, tokenizer):
        super().__init__()
        self.config = config
        self.encoder = encoder
        self.dropout = dropout
        self.head = head
        self.tokenizer = tokenizer
        self.encoder_frozen = False

    @property
    def input_kind(self) -> str:
        return self.encoder.input_kind

    @property
    def frame_rate(self) -> float:
        return self.encoder.frame_rate

    @property
    def sample_rate(self) -> int:
        return self.encoder.sample_rate

    @property
    def num_mel_bins(self) -> int | None:
        return self.encoder.num_mel_bins

    @property
    def hidden_sizes(self) -> list[int]:
        return self.encoder.hidden_sizes

    def num_frames(self, input_lengths: Tensor) -> Tensor:
        return self.encoder.num_frames(input_lengths)

    def encode(self, inputs: Tensor, lengths: Tensor, mask: Tensor | None = None,
               generator: torch.Generator | None = None, num_layers: int | None = None) -> tuple[list[Tensor], Tensor]:
        return self.encoder.encode(inputs, lengths, mask, generator, num_layers)

    def inputs_from_waveforms(self, wavs: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        return self.encoder.inputs_from_waveforms(wavs, lengths)

    def attention_weights(self, inputs: Tensor, lengths: Tensor) -> tuple[list[Tensor], Tensor]:
        return self.encoder.attention_weights(inputs, lengths)

    def set_attention_chunk(self, frames: int | None) -> CtcModel:
        self.encoder.set_attention_chunk(frames)
        return self

    def encoder_only(self) -> SpeechEncoder:
        """The fine-tuned encoder, without the CTC head (e.g. to fine-tune it again)."""
        return self.encoder

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

    @torch.no_grad()
    def transcribe(self, wavs: Tensor, lengths: Tensor | None = None, beam_size: int = 1, lm=None) -> list[str]:
        """Text of each ``(B, S)`` waveform at :attr:`sample_rate` with ``(B,)`` samples, taken as
        :meth:`checked_inputs` (decoded as :meth:`decode` does)."""
        log_probs, frames = self(*self.checked_inputs(wavs, lengths))
        return self.decode(log_probs, frames, beam_size, lm)

    def decode(self, log_probs: Tensor, frames: Tensor, beam_size: int = 1, lm=None) -> list[str]:
        """Token log-probs ``(B, T, V)`` → text per item.

        Greedy (``beam_size`` 1) or prefix beam search; with ``lm`` (a
        :class:`~audiossl.text.lexicon_decode.LexiconDecoder`) its lexicon search instead.
        """
        if beam_size < 1:
            raise ValueError(f"beam_size must be a positive whole number, got {beam_size!r}")
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

