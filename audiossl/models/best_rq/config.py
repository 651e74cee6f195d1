"""BEST-RQ configuration: one nested dataclass, named sizes derived from :meth:`BestRqConfig.base`.

The paper (Chiu et al., 2022, "Self-supervised Learning with Random-projection Quantizer for
Speech Recognition") trains Conformers; here its objective drives the shared transformer body.
Brackets name the equivalent of NeMo (``RandomProjectionVectorQuantizer``, ``RandomBlockMasking``)
or SpeechBrain's recipe (``recipes/LibriSpeech/self-supervised-learning/BEST-RQ``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, ClassVar

from audiossl.models.components import (EncoderConfig, FrontendConfig, MaskConfig, ModelConfig, resize_body,
                                       validation_errors)
from audiossl.nn.frontends import FBANK_SHIFT, SAMPLE_RATE


@dataclass
class BestRqConfig(ModelConfig):
    """BEST-RQ: masked prediction of the ids a frozen random-projection quantizer gives stacked fbank frames.

    frontend: the fbank subsampler by default; with the waveform CNN the targets come from Kaldi
        fbank (``frontend.num_mel_bins`` bins) computed inside the model.
    mask: span masking of model frames (replaced by the learned mask embedding after the front end).
        The paper starts a mask at each 10 ms frame with probability 0.01 and masks 400 ms from
        there (NeMo ``block_size=40, mask_prob=0.01, allow_overlap``). At 50 frames/s that is 20
        frames and 0.02 starts per frame; :func:`~audiossl.nn.masking.compute_span_mask` draws
        ``prob * n / length`` starts, so ``prob = 0.02 * 20 = 0.4``, and overlapping spans then
        cover about ``1 - 0.98 ** 20 = 33 %`` of the frames, as the paper's ``1 - 0.99 ** 40``.
        ``min_masks = 1`` (the paper's draw may mask nothing) so every utterance is scored.
    stack_frames: 10 ms fbank frames stacked into one quantizer input, so that one target covers one
        model frame: 2 for the 20 ms frames of the subsampler and the default CNN (the paper stacks
        4 for its 40 ms frames) [NeMo ``combine_time_steps``; SpeechBrain ``pad_to_divisible_by``].
    codebook_dim: size of the random projection's output (paper 16) [NeMo ``code_dim``].
    codebook_size: entries per codebook (paper 8192) [NeMo ``num_classes``].
    num_codebooks: independent projections and codebooks, one softmax head each (paper 1; more in
        its multilingual runs) [NeMo ``num_books``].
    quantizer_seed: seeds the projection and the codebooks; the drawn buffers are also in the
        checkpoint, so a checkpoint's targets never depend on the RNG implementation.
    normalize_per_utterance: before stacking, each fbank bin is normalised to zero mean and unit
        variance over the utterance's valid frames (the paper normalises its input features, which
        keeps the quantizer from collapsing onto a few codes; SpeechBrain's recipe uses this
        sentence-level normalisation). Without it the log-mel offset dominates every projection.
    feature_grad_mult: gradient scale into the front end [fairseq ``feature_grad_mult``]: 1.0 with
        the fbank subsampler (the paper trains its conv subsampling fully), 0.1 as fairseq for the CNN.
    dropout_input: dropout after the feature projection [fairseq ``dropout_input``].
    collapse_patience: a run whose masked accuracy stays at most that of always naming each batch's
        commonest target id for this many log intervals is named in the log
        (:class:`~audiossl.objectives.masked_prediction.PredictionCollapseMonitor`).
    """

    family: ClassVar[str] = "best_rq"

    frontend: FrontendConfig = field(default_factory=lambda: FrontendConfig(kind="fbank"))
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    mask: MaskConfig = field(default_factory=lambda: MaskConfig(prob=0.4, length=20, min_masks=1))
    stack_frames: int = 2
    codebook_dim: int = 16
    codebook_size: int = 8192
    num_codebooks: int = 1
    quantizer_seed: int = 0
    normalize_per_utterance: bool = True
    feature_grad_mult: float = 1.0
    dropout_input: float = 0.1
    collapse_patience: int = 4

    @classmethod
    def base(cls, frontend: str = "fbank") -> BestRqConfig:
        """HuBERT BASE's body (12 x 768, post-norm) with the paper's quantizer: 8192 codes of 16 dims."""
        config = cls(frontend=FrontendConfig(kind=frontend), feature_grad_mult=1.0 if frontend == "fbank" else 0.1)
        config.validate()
        return config

    @classmethod
    def large(cls, frontend: str = "fbank") -> BestRqConfig:
        """HuBERT LARGE's body: 24 x 1024 (16 heads, 4096 ffn), pre-norm, layer-norm CNN."""
        config = cls.base(frontend)
        resize_body(config.frontend, config.encoder, "large")
        config.validate()
        return config

    @classmethod
    def small(cls, frontend: str = "fbank") -> BestRqConfig:
        """HuBERT's small body (6 x 256, 1024 ffn, 4 heads, 256 front-end channels, no attention
        dropout, 32-tap positional convolution) for CPU training, with the paper's quantizer."""
        config = cls.base(frontend)
        resize_body(config.frontend, config.encoder, "small")
        config.validate()
        return config

    @classmethod
    def tiny(cls, frontend: str = "fbank") -> BestRqConfig:
        """A 2 x 64 model with 32 front-end channels and 256 codes, for tests."""
        config = cls.base(frontend)
        resize_body(config.frontend, config.encoder, "tiny")
        config.codebook_size = 256
        config.validate()
        return config

    def errors(self) -> list[str]:
        """Violated rules, each a line naming the field (empty when valid)."""
        errors = validation_errors(self.frontend, self.encoder, self.mask) + self.mask.prediction_errors()
        if not errors:
            errors += self._stacking_errors()
        if min(self.stack_frames, self.codebook_dim, self.num_codebooks) < 1 or self.codebook_size < 2:
            errors.append(f"stack_frames, codebook_dim and num_codebooks must be >= 1 and codebook_size >= 2, got "
                          f"{self.stack_frames}, {self.codebook_dim}, {self.num_codebooks}, {self.codebook_size}")
        if not 0 <= self.quantizer_seed < 2 ** 63:
            errors.append(f"quantizer_seed must be in [0, 2**63), got {self.quantizer_seed}")
        if self.feature_grad_mult < 0.0:
            errors.append(f"feature_grad_mult must be >= 0, got {self.feature_grad_mult}")
        if not 0.0 <= self.dropout_input < 1.0:
            errors.append(f"dropout_input must be in [0, 1), got {self.dropout_input}")
        if self.collapse_patience < 1:
            errors.append(f"collapse_patience must be >= 1, got {self.collapse_patience}")
        return errors

    def _stacking_errors(self) -> list[str]:
        """One target per model frame: ``stack_frames`` fbank hops must make one front-end hop."""
        if self.frontend.kind == "fbank":
            hop = 2 * FBANK_SHIFT  # the subsampler's stride 2
        else:
            hop = math.prod(stride for _, _, stride in self.frontend.conv_layers)
        if hop % FBANK_SHIFT:
            return [f"frontend.conv_layers hop {hop} samples is not a whole number of 10 ms fbank frames "
                    f"({FBANK_SHIFT} samples): BEST-RQ stacks fbank frames into one target per model frame"]
        if self.stack_frames != hop // FBANK_SHIFT:
            frame_ms = hop * 1000 // SAMPLE_RATE
            return [f"stack_frames must be {hop // FBANK_SHIFT} (10 ms fbank frames per {frame_ms} ms frame of "
                    f"frontend.kind {self.frontend.kind!r}), got {self.stack_frames}"]
        return []


NAMED_CONFIGS: dict[str, Callable[..., BestRqConfig]] = {
    "base": BestRqConfig.base,
    "large": BestRqConfig.large,
    "small": BestRqConfig.small,
    "tiny": BestRqConfig.tiny,
}
