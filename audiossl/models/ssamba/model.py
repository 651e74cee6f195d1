"""SSAMBA: masked patch modelling (SSAST's joint discriminative and generative objective) on a
bidirectional Mamba encoder."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from audiossl.models.encoder import FrontendTransformer
from audiossl.models.ssamba.config import SsambaConfig
from audiossl.nn.frontends import FbankPatches, FeatureProjection
from audiossl.nn.mamba import BiMambaEncoder
from audiossl.objectives.output import MetricRatios, ObjectiveOutput

# logged figures per masked patch: InfoNCE accuracy (the prediction picks its own patch among the
# batch's masked patches) and loss, and the reconstruction's mean squared error
SSAMBA_METRICS: MetricRatios = {
    "acc_masked": ("correct_masked", "masked_patches"),
    "loss_nce": ("loss_nce", "masked_patches"),
    "loss_mse": ("loss_mse", "masked_patches"),
}


class SsambaModel(FrontendTransformer):
    """Fbank patches → patch embedding → (mask embedding) → encoder → a discriminative and a generative head.

    Built by :func:`audiossl.models.ssamba.factory.build_ssamba`. Pretraining masks patches of the
    token sequence (time-major; ``config.mask``) and predicts each masked patch from the last
    hidden state twice: the discriminative head's output must pick its own patch among every
    masked patch of the batch (InfoNCE over dot products), the generative head's output must
    reconstruct it (MSE); ``loss = nce + generative_weight * mse``, each a mean over masked patches.
    The patches are the per-utterance normalised fbank the encoder reads (SSAST normalises with
    AudioSet's global mean and variance, which do not hold for Kaldi-scaled fbank).

    :meth:`encode` gives one state per time step (the mean of its ``rows`` patch states), at
    ``frame_rate`` steps per second, so every downstream task sees frames.

    Args:
        config: the config the parts were built from (``mask`` and ``generative_weight`` are read).
        frontend: the :class:`~audiossl.nn.frontends.FbankPatches`.
        feature_projection: the patch embedding (a linear map of each patch).
        encoder: the bidirectional Mamba (or transformer) stack.
        discriminative_head, generative_head: last hidden state → patch (SSAST's ``cpredlayer``, ``gpredlayer``).
    """

    metrics = SSAMBA_METRICS
    valid_metric = "loss"

    def __init__(self, config: SsambaConfig, frontend: FbankPatches, feature_projection: FeatureProjection,
                 encoder: BiMambaEncoder, discriminative_head: nn.Module, generative_head: nn.Module) -> None:
        super().__init__(config, frontend, feature_projection, encoder, feature_grad_mult=1.0)
        self.discriminative_head = discriminative_head
        self.generative_head = generative_head

    def encode(self, inputs: Tensor, lengths: Tensor, mask: Tensor | None = None,
               generator: torch.Generator | None = None, num_layers: int | None = None) -> tuple[list[Tensor], Tensor]:
        """Hidden states per time step: each the mean of its patches' states (``mask``: time steps)."""
        rows = self.frontend.rows
        patches, patch_lengths = self.frontend_features(inputs, lengths)
        patch_mask = None if mask is None else mask.repeat_interleave(rows, dim=1)
        hidden, _ = self.encode_features(self.feature_projection(patches), patch_lengths, patch_mask, generator,
                                         num_layers)
        batch, tokens, dim = hidden[0].shape
        return [h.view(batch, tokens // rows, rows, dim).mean(2) for h in hidden], patch_lengths // rows

    def forward(self, inputs: Tensor, lengths: Tensor, targets: Tensor | None,
                generator: torch.Generator) -> ObjectiveOutput:
        """One masked patch modelling step.

        Args:
            inputs, lengths: as :meth:`encode`.
            targets: must be None: the targets are the input's patches.
            generator: draws the patch mask (``config.mask``) and the layer drop.

        Returns:
            The loss and the sums of :attr:`metrics`.
        """
        if targets is not None:
            raise ValueError("SSAMBA reconstructs its input's patches: pass targets=None")
        patches, patch_lengths = self.frontend_features(inputs, lengths)
        mask = self.span_mask(tuple(patches.shape[:2]), patch_lengths, generator)
        hidden, _ = self.encode_features(self.feature_projection(patches), patch_lengths, mask, generator)
        states, truth = hidden[-1][mask], patches[mask].float()  # (M, D), (M, P)
        scores = self.discriminative_head(states).float() @ truth.t()  # (M, M): prediction i against patch j
        own = torch.arange(len(truth), device=truth.device)
        nce = nn.functional.cross_entropy(scores, own, reduction="sum")
        mse = (self.generative_head(states).float() - truth).square().mean(-1).sum()
        count = mask.sum()
        loss = (nce + self.config.generative_weight * mse) / count.clamp(min=1)
        with torch.no_grad():
            correct = (scores.argmax(-1) == own).sum()
            stats = torch.stack([correct.float(), nce.detach(), mse.detach(), count.float()]).tolist()
        return ObjectiveOutput(loss, dict(zip(("correct_masked", "loss_nce", "loss_mse", "masked_patches"), stats)))

    def encoder_only(self) -> SsambaModel:
        self.discriminative_head = self.generative_head = None
        return self
