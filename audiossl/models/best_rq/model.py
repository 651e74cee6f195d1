"""BEST-RQ: masked prediction of random-projection quantizer ids of stacked fbank (Chiu et al., 2022)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from audiossl.models.best_rq.config import BestRqConfig
from audiossl.models.encoder import FrontendTransformer
from audiossl.nn.frontends import FeatureProjection, utterance_cmvn, valid_mask, waveform_to_fbank
from audiossl.nn.quantizer import perplexity
from audiossl.nn.random_projection import RandomProjectionQuantizer
from audiossl.nn.transformer import TransformerEncoder
from audiossl.objectives.masked_prediction import PredictionCollapseMonitor
from audiossl.objectives.output import MetricRatios, ObjectiveOutput

IGNORE_INDEX = -100

# logged figures (each the mean over codebooks): top-1 accuracy and cross entropy per masked frame, the
# accuracy at masked frames of always naming each batch's commonest target id (chosen on the batch's own
# targets; acc_masked above it: the model has learned more than how often each id occurs), and the
# perplexity of the batch's target ids (at most codebook_size; low: a degenerate quantizer)
BEST_RQ_METRICS: MetricRatios = {
    "acc_masked": ("correct_masked", "masked_frames"),
    "acc_commonest": ("correct_commonest", "masked_frames"),
    "loss_masked": ("loss_masked", "masked_frames"),
    "target_perplexity": ("target_perplexity", "batches"),
}


def stack_fbank(fbank: Tensor, lengths: Tensor, stack: int, normalize: bool,
                eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """Concatenate each run of ``stack`` consecutive fbank frames into one vector.

    Stack ``j`` holds frames ``stack * j ... stack * j + stack - 1`` (as NeMo's ``combine_time_steps``
    and SpeechBrain's recipe), so a trailing partial stack is dropped.

    Args:
        fbank: ``(B, T, F)`` features.
        lengths: ``(B,)`` valid frames.
        stack: frames per stack.
        normalize: first normalise each bin to zero mean and unit variance over the item's valid frames.

    Returns:
        ``(B, T // stack, stack * F)`` fp32 stacks and ``(B,)`` stacks made only of valid frames.
    """
    batch, time, bins = fbank.shape
    x = fbank.float().masked_fill(~valid_mask(lengths, time)[..., None], 0.0)
    if normalize:
        x = utterance_cmvn(x, lengths, eps)
    num_stacks = time // stack
    stacks = x[:, :num_stacks * stack].reshape(batch, num_stacks, stack * bins)
    return stacks, torch.div(lengths, stack, rounding_mode="floor")


class BestRqModel(FrontendTransformer):
    """Front end → feature projection → (mask embedding) → transformer → one softmax head per codebook.

    Built by :func:`audiossl.models.best_rq.factory.build_best_rq`. The targets are made inside:
    the unmasked fbank (the inputs, or Kaldi fbank of the waveforms), normalised per utterance and
    stacked ``stack_frames`` at a time so that stack ``t`` covers model frame ``t``, go through the
    frozen quantizer. A frame gets targets only when its stack is made of valid fbank frames: never
    padding, and not the last frame of an item whose fbank frames are one short of a whole stack
    (the subsampler's ``ceil(T / 2)`` frames; the CNN's frame count is ``T // 2`` or one more). The
    masked frames' last hidden states predict each codebook's id; cross entropy as the paper. The paper
    replaces masked input frames with N(0, 0.1) noise; here, as in every family, masked frames get the
    learned mask embedding after the front end (NeMo's "post_conv" masking).

    Args:
        config: the config the parts were built from (``mask``, ``stack_frames``,
            ``normalize_per_utterance``, ``frontend.num_mel_bins`` and ``feature_grad_mult`` are read).
        frontend, feature_projection, encoder: see :class:`~audiossl.models.encoder.FrontendTransformer`.
        quantizer: the frozen random-projection quantizer of stacked fbank frames.
        heads: one ``Linear(dim, codebook_size)`` per codebook (the paper's softmax layer; NeMo
            ``MultiSoftmaxDecoder``).
        collapse_monitor: names a run whose masked predictions collapsed, from the logged figures.
    """

    metrics = BEST_RQ_METRICS
    valid_metric = "loss_masked"

    def __init__(self, config: BestRqConfig, frontend: nn.Module, feature_projection: FeatureProjection,
                 encoder: TransformerEncoder, quantizer: RandomProjectionQuantizer, heads: nn.ModuleList,
                 collapse_monitor: PredictionCollapseMonitor) -> None:
        super().__init__(config, frontend, feature_projection, encoder, config.feature_grad_mult)
        self.quantizer = quantizer
        self.heads = heads
        self.collapse_monitor = collapse_monitor

    def health_warnings(self, figures: dict[str, float]) -> list[str]:
        return self.collapse_monitor.check(figures)

    @torch.no_grad()
    def make_targets(self, inputs: Tensor, lengths: Tensor) -> Tensor:
        """The quantizer's ids of every model frame, in fp32 even under autocast.

        Args:
            inputs, lengths: as :meth:`encode` (unmasked).

        Returns:
            ``(B, T, num_codebooks)`` long on the front end's frame grid (``T = num_frames(inputs.shape[1])``),
            ``-100`` at frames without targets (see the class docstring).
        """
        config = self.config
        lengths = lengths.to(inputs.device)
        frame_lengths = self.num_frames(lengths)
        time = int(self.num_frames(lengths.new_tensor([inputs.shape[1]])))
        with torch.autocast(device_type=inputs.device.type, enabled=False):
            if self.input_kind == "fbank":
                fbank, fbank_lengths = inputs, lengths
            else:
                fbank, fbank_lengths = waveform_to_fbank(inputs.float(), lengths, config.frontend.num_mel_bins)
            stacks, stack_lengths = stack_fbank(fbank, fbank_lengths, config.stack_frames,
                                                config.normalize_per_utterance)
        width = min(stacks.shape[1], time)
        targeted = valid_mask(torch.minimum(stack_lengths, frame_lengths), width)
        targets = torch.full((inputs.shape[0], time, self.quantizer.num_codebooks), IGNORE_INDEX,
                             dtype=torch.long, device=inputs.device)
        targets[:, :width][targeted] = self.quantizer(stacks[:, :width][targeted])
        return targets

    def forward(self, inputs: Tensor, lengths: Tensor, targets: Tensor | None,
                generator: torch.Generator) -> ObjectiveOutput:
        """One masked-prediction step.

        Args:
            inputs, lengths: as :meth:`encode`.
            targets: must be None: the targets are the quantizer's ids (:meth:`make_targets`).
            generator: draws the span mask (``config.mask``) and the layer drop.

        Returns:
            The loss (cross entropy per masked frame with targets, averaged over codebooks as NeMo's
            ``MultiMLMLoss``) and the sums of :attr:`metrics`.
        """
        if targets is not None:
            raise ValueError("BEST-RQ makes its own targets: pass targets=None")
        lengths = lengths.to(inputs.device)
        targets = self.make_targets(inputs, lengths)  # (B, T, G)
        mask = self.span_mask(tuple(targets.shape[:2]), self.num_frames(lengths), generator)
        hidden_states, _ = self.encode(inputs, lengths, mask, generator)
        targeted = targets[..., 0] != IGNORE_INDEX
        scored = mask & targeted
        states, labels = hidden_states[-1][scored], targets[scored]  # (N, D), (N, G)
        cross_entropy = hidden_states[-1].new_zeros((), dtype=torch.float32)
        predictions = []
        for codebook, head in enumerate(self.heads):
            logits = head(states).float()
            cross_entropy = cross_entropy + nn.functional.cross_entropy(logits, labels[:, codebook], reduction="sum")
            predictions.append(logits.argmax(dim=-1))
        num_codebooks = len(self.heads)
        num_scored = scored.sum()
        loss = cross_entropy / (num_codebooks * num_scored.clamp(min=1))
        with torch.no_grad():
            ids = targets[targeted]  # (M, G)
            counts = torch.zeros(num_codebooks, self.quantizer.codebook_size, device=ids.device)
            counts.scatter_add_(1, ids.t(), torch.ones(ids.t().shape, device=ids.device))
            usage = perplexity(counts / counts.sum(dim=1, keepdim=True).clamp(min=1.0)) / num_codebooks
            correct = (torch.stack(predictions, dim=1) == labels).sum()
            commonest = (labels == counts.argmax(dim=1)).sum()
            stats = torch.stack([cross_entropy.detach() / num_codebooks, correct.float() / num_codebooks,
                                 commonest.float() / num_codebooks, num_scored.float(), usage]).tolist()
        names = ("loss_masked", "correct_masked", "correct_commonest", "masked_frames", "target_perplexity")
        return ObjectiveOutput(loss, {**dict(zip(names, stats)), "batches": 1.0})

    def encoder_only(self) -> BestRqModel:
        self.quantizer = self.heads = None
        return self
