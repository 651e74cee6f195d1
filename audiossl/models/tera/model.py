"""TERA: L1 reconstruction of fbank frames altered along time, frequency and magnitude."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from audiossl.models.encoder import FrontendTransformer
from audiossl.models.tera.config import TeraConfig
from audiossl.nn.frontends import FbankFrames, FeatureProjection, valid_mask
from audiossl.nn.transformer import TransformerEncoder
from audiossl.objectives.output import MetricRatios, ObjectiveOutput

# logged figures: the L1 error per reconstructed value, and the share of valid frames altered along time
TERA_METRICS: MetricRatios = {
    "loss_l1": ("l1", "scored_values"),
    "time_altered": ("time_altered_frames", "valid_frames"),
}


class TeraModel(FrontendTransformer):
    """Normalised fbank frames → alteration → input projection → transformer → reconstruction head.

    Built by :func:`audiossl.models.tera.factory.build_tera`. Training alters the input frames
    (:meth:`alter`: time spans zeroed, replaced or kept; a band of bins zeroed; noise on some
    utterances) and reconstructs the unaltered normalised frames at the time-altered frames and
    the frequency-altered bins, L1 per value. The encoder sees the altered frames themselves (no
    mask embedding); features (:meth:`encode`) come from unaltered input at 100 frames/s.

    Args:
        config: the config the parts were built from (``mask``, ``replace_prob``, ``keep_prob``,
            ``max_frequency_mask``, ``noise_prob``, ``noise_std`` are read).
        frontend: :class:`~audiossl.nn.frontends.FbankFrames`.
        feature_projection: the input projection (layer norm, linear, dropout).
        encoder: the transformer.
        head: last hidden state → reconstructed fbank frame.
    """

    metrics = TERA_METRICS
    valid_metric = "loss_l1"

    def __init__(self, config: TeraConfig, frontend: FbankFrames, feature_projection: FeatureProjection,
                 encoder: TransformerEncoder, head: nn.Module) -> None:
        super().__init__(config, frontend, feature_projection, encoder, feature_grad_mult=1.0)
        self.head = head

    def alter(self, frames: Tensor, lengths: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """TERA's alterations, drawn from ``generator``.

        Args:
            frames: ``(B, T, F)`` normalised fbank (zero at padding).
            lengths: ``(B,)`` valid frames.

        Returns:
            The altered frames ``(B, T, F)``, the ``(B, T, F)`` bool values to reconstruct and the
            ``(B, T)`` bool time-altered frames.
        """
        config = self.config
        batch, time, bins = frames.shape
        device = frames.device
        valid = valid_mask(lengths, time)
        spans = self.span_mask((batch, time), lengths, generator) & valid
        dice = torch.rand(batch, generator=generator, device=generator.device).to(device)
        zeroed = dice < 1.0 - config.replace_prob - config.keep_prob
        replaced = ~zeroed & (dice < 1.0 - config.keep_prob)
        # replacement: the frames `offset` further on (cyclically within the utterance), offset in [1, length)
        offset = (torch.rand(batch, generator=generator, device=generator.device).to(device)
                  * (lengths - 1).clamp(min=1)).long() + 1
        source = (torch.arange(time, device=device)[None] + offset[:, None]) % lengths.clamp(min=1)[:, None]
        shifted = frames.gather(1, source[..., None].expand_as(frames))
        altered = torch.where((spans & replaced[:, None])[..., None], shifted, frames)
        altered = altered.masked_fill((spans & zeroed[:, None])[..., None], 0.0)
        # a band of bins, width uniform in 0 .. max_frequency_mask * F
        widths = (torch.rand(batch, generator=generator, device=generator.device)
                  * (int(config.max_frequency_mask * bins) + 1)).long().to(device)
        starts = (torch.rand(batch, generator=generator, device=generator.device).to(device)
                  * (bins - widths + 1)).long()
        bin_index = torch.arange(bins, device=device)[None]
        band = (bin_index >= starts[:, None]) & (bin_index < (starts + widths)[:, None])  # (B, F)
        altered = altered.masked_fill(band[:, None, :] & valid[..., None], 0.0)
        noisy = torch.rand(batch, generator=generator, device=generator.device).to(device) < config.noise_prob
        noise = torch.randn(frames.shape, generator=generator, device=generator.device).to(device) * config.noise_std
        altered = altered + (noise * (noisy[:, None] & valid)[..., None])
        scored = (spans[..., None] | band[:, None, :]) & valid[..., None]
        return altered, scored, spans

    def forward(self, inputs: Tensor, lengths: Tensor, targets: Tensor | None,
                generator: torch.Generator) -> ObjectiveOutput:
        """One reconstruction step.

        Args:
            inputs, lengths: as :meth:`encode`.
            targets: must be None: the targets are the unaltered input.
            generator: draws the alterations and the layer drop.

        Returns:
            The mean L1 error over the values to reconstruct, and the sums of :attr:`metrics`.
        """
        if targets is not None:
            raise ValueError("TERA reconstructs its input: pass targets=None")
        frames, frame_lengths = self.frontend_features(inputs, lengths)
        frames = frames.float()
        altered, scored, spans = self.alter(frames, frame_lengths, generator)
        hidden, _ = self.encode_features(self.feature_projection(altered.to(inputs.dtype)), frame_lengths, None,
                                         generator)
        error = (self.head(hidden[-1]).float() - frames).abs().masked_fill(~scored, 0.0).sum()
        count = scored.sum()
        with torch.no_grad():
            stats = torch.stack([error.detach(), count.float(), spans.sum().float(), frame_lengths.sum().float()])
        names = ("l1", "scored_values", "time_altered_frames", "valid_frames")
        return ObjectiveOutput(error / count.clamp(min=1), dict(zip(names, stats.tolist())))

    def encoder_only(self) -> TeraModel:
        self.head = None
        return self
