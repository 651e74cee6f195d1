"""MERT: masked prediction of K codebooks of acoustic targets plus CQT reconstruction, on music (Li et al., 2023)."""
from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from audiossl.features.music import cqt_magnitude
from audiossl.models.encoder import FrontendTransformer
from audiossl.models.hubert.model import align_frame_targets
from audiossl.models.mert.config import MertConfig
from audiossl.nn.frontends import FeatureProjection, valid_mask
from audiossl.nn.transformer import TransformerEncoder
from audiossl.objectives.masked_prediction import MASKED_PREDICTION_METRICS
from audiossl.objectives.output import ObjectiveOutput


class MertModel(FrontendTransformer):
    """24 kHz waveform → CNN (75 frames/s) → feature projection → (mask embedding) → transformer → heads.

    Built by :func:`audiossl.models.mert.factory.build_mert`. A training step, as the reference:

    1. the CQT magnitudes of the clean clips (:func:`~audiossl.features.music.cqt_magnitude`, librosa)
       are the reconstruction targets;
    2. in training, each clip gets, with probability ``mix_prob``, 1-3 segments of other clips of the
       batch added (in-batch mixing), its targets staying those of the clean clip;
    3. span-masked frames are encoded; each codebook's head scores its codes at the masked frames
       (HuBERT's cosine logits and cross entropy, summed over codebooks), and a linear head
       reconstructs the CQT frames there (mean squared error, weight ``cqt_weight``).

    Args:
        config, frontend, feature_projection, encoder: see :class:`~audiossl.models.encoder.FrontendTransformer`.
        heads: one :class:`~audiossl.objectives.masked_prediction.MaskedPredictionHead` per codebook.
        cqt_head: ``D → cqt_bins`` (the reference's ``encoder_cqt_model.fc``).
    """

    metrics = {**MASKED_PREDICTION_METRICS, "loss_cqt": ("cqt_squared_error", "cqt_values")}
    valid_metric = "loss_masked"

    def __init__(self, config: MertConfig, frontend: nn.Module, feature_projection: FeatureProjection,
                 encoder: TransformerEncoder, heads: nn.ModuleList, cqt_head: nn.Linear) -> None:
        super().__init__(config, frontend, feature_projection, encoder, config.feature_grad_mult)
        self.heads = heads
        self.cqt_head = cqt_head

    @property
    def target_codebooks(self) -> int:
        return self.config.num_codebooks

    def forward(self, inputs: Tensor, lengths: Tensor, targets: Tensor, generator: torch.Generator) -> ObjectiveOutput:
        """One pretraining step.

        Args:
            inputs: ``(B, S)`` waveforms at :attr:`sample_rate`; lengths: ``(B,)`` samples.
            targets: ``(B, T_t, K)`` codes (or ``(B, T_t)`` for one codebook); item ``b`` holds
                ``num_frames(lengths)[b]`` frames followed by ``-100`` padding.
            generator: draws the mixing, the span mask and the layer drop.

        Returns:
            The loss and the sums of :attr:`metrics`: masked-prediction figures summed over codebooks
            (``acc_masked`` is the mean accuracy of the codebooks) and the CQT squared error.
        """
        lengths = lengths.to(inputs.device)
        frame_lengths = self.num_frames(lengths)
        time = int(self.num_frames(lengths.new_tensor([inputs.shape[1]])))
        targets = align_frame_targets(targets, frame_lengths, time, inputs.shape)
        if targets.ndim == 2:
            targets = targets[..., None]
        if targets.shape[2] != self.config.num_codebooks:
            raise ValueError(f"targets have {targets.shape[2]} codebook(s) per frame, the model predicts "
                             f"{self.config.num_codebooks}")
        cqt = self.cqt_targets(inputs, lengths, time)
        if self.training and self.config.mix_prob > 0.0:
            inputs = self.mix_in_batch(inputs, lengths, generator)
        mask = self.span_mask((inputs.shape[0], time), frame_lengths, generator)
        hidden, _ = self.encode(inputs, lengths, mask, generator)
        padding_mask = ~valid_mask(frame_lengths, time)
        outputs = [head(hidden[-1], targets[..., k], mask, padding_mask, 0.0) for k, head in enumerate(self.heads)]
        sums = {name: sum(out.sums[name] for out in outputs) for name in outputs[0].sums}
        masked = mask & ~padding_mask
        with torch.autocast(device_type=inputs.device.type, enabled=False):
            error = (self.cqt_head(hidden[-1][masked].float()) - cqt[masked]).pow(2).sum()
        values = cqt[masked].numel()
        loss = sum(out.loss for out in outputs) + self.config.cqt_weight * error / max(values, 1)
        sums.update(cqt_squared_error=float(error.detach()), cqt_values=float(values))
        return ObjectiveOutput(loss=loss, sums=sums)

    @torch.no_grad()
    def cqt_targets(self, wavs: Tensor, lengths: Tensor, time: int) -> Tensor:
        """``(B, time, cqt_bins)`` CQT magnitudes of each clip's valid samples on the frame grid (zeros past them)."""
        targets = torch.zeros(wavs.shape[0], time, self.config.cqt_bins, device=wavs.device)
        for b, length in enumerate(lengths.tolist()):
            frames = cqt_magnitude(wavs[b, :length].float().cpu().numpy(), self.sample_rate, self.config.cqt_bins)
            targets[b, :len(frames)] = torch.from_numpy(frames).to(wavs.device)
        return targets

    @torch.no_grad()
    def mix_in_batch(self, wavs: Tensor, lengths: Tensor, generator: torch.Generator) -> Tensor:
        """``(B, S)`` clips with, for each clip drawn with probability ``mix_prob``, ``mix_count`` segments of
        ``mix_seconds`` from other clips of the batch added at ``mix_volume`` within its valid samples."""
        config = self.config
        batch = wavs.shape[0]
        if batch < 2:
            return wavs
        mixed = wavs.clone()
        lengths = lengths.tolist()

        def draw(low: int, high: int) -> int:  # uniform on [low, high]
            return int(torch.randint(low, high + 1, (1,), generator=generator))

        shortest, longest = (round(seconds * self.sample_rate) for seconds in config.mix_seconds)
        for b in range(batch):
            if float(torch.rand((), generator=generator)) >= config.mix_prob:
                continue
            for _ in range(draw(*config.mix_count)):
                other = draw(0, batch - 2)
                other += other >= b
                span = min(draw(shortest, longest), lengths[b], lengths[other])
                start, at = draw(0, lengths[other] - span), draw(0, lengths[b] - span)
                mixed[b, at:at + span] += config.mix_volume * wavs[other, start:start + span]
        return mixed

    def reset_targets(self, codebook_size: int) -> None:
        """New random label embeddings of ``codebook_size`` entries in every head (targets of another
        teacher); ``config.codebook_size`` is updated. Rebuild the optimizer afterwards."""
        for head in self.heads:
            head.reset_classes(codebook_size)
        self.config = dataclasses.replace(self.config, codebook_size=codebook_size)

    def encoder_only(self) -> MertModel:
        self.heads = None
        self.cqt_head = None
        return self
