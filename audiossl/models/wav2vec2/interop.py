"""wav2vec 2.0 weights and configs to and from the Hugging Face ``transformers`` layout.

Pure functions over plain dicts and state dicts (see :mod:`audiossl.models.hf_layout` for the
body shared with HuBERT). ``Wav2Vec2ForPreTraining`` keeps the quantizer and both projections,
so a pretraining checkpoint converts whole; ``Wav2Vec2Model`` and ``Wav2Vec2ForCTC`` hold the
encoder only (their quantizer is freshly initialised on import).
"""
from __future__ import annotations

from typing import Any

from torch import Tensor

from audiossl.errors import ConfigError, InteropError
from audiossl.models.components import MaskConfig
from audiossl.models.hf_layout import BODY_NAMES, body_from_hf, body_to_hf, hf_weights, rename_weights
from audiossl.models.wav2vec2.config import Wav2Vec2Config

# (Hugging Face name prefix, audiossl name prefix) of the pretraining parts
PRETRAINING_NAMES: tuple[tuple[str, str], ...] = (
    ("quantizer.", "quantizer."),
    ("project_q.", "project_q."),
    ("project_hid.", "final_proj."),
)


def config_from_hf(hf: dict[str, Any]) -> Wav2Vec2Config:
    """An audiossl :class:`Wav2Vec2Config` from a Hugging Face ``Wav2Vec2Config`` dict (config.json).

    The codebook, distractor and loss settings are HF's (``num_codevector_groups``,
    ``num_codevectors_per_group``, ``codevector_dim``, ``proj_codevector_dim``, ``num_negatives``,
    ``contrastive_logits_temperature``, ``diversity_loss_weight``, ``feat_quantizer_dropout``);
    the span mask and the training-only settings HF does not store keep the paper's values.
    """
    if hf.get("model_type", "wav2vec2") != "wav2vec2":
        raise InteropError(f"not a wav2vec 2.0 config: model_type {hf.get('model_type')!r}")
    frontend, encoder = body_from_hf(hf, "wav2vec 2.0")
    try:
        config = Wav2Vec2Config(
            frontend=frontend, encoder=encoder, mask=MaskConfig(prob=0.65, length=10, min_masks=2),
            final_dim=hf.get("proj_codevector_dim", 256), codebook_groups=hf.get("num_codevector_groups", 2),
            codebook_entries=hf.get("num_codevectors_per_group", 320), codebook_dim=hf.get("codevector_dim", 256),
            num_distractors=hf.get("num_negatives", 100), logit_temp=hf.get("contrastive_logits_temperature", 0.1),
            diversity_weight=hf.get("diversity_loss_weight", 0.1), dropout_input=hf.get("feat_proj_dropout", 0.0),
            dropout_features=hf.get("feat_quantizer_dropout", 0.0))
        config.validate()
    except ConfigError as err:
        raise InteropError(f"Hugging Face wav2vec 2.0 config does not make a valid audiossl config: {err}") from err
    return config


def config_to_hf(config: Wav2Vec2Config) -> dict[str, Any]:
    """The Hugging Face ``Wav2Vec2Config`` dict (config.json) of an audiossl waveform wav2vec 2.0."""
    return {
        "model_type": "wav2vec2", "architectures": ["Wav2Vec2ForPreTraining"],
        **body_to_hf(config.frontend, config.encoder, config.dropout_input),
        "num_codevector_groups": config.codebook_groups, "num_codevectors_per_group": config.codebook_entries,
        "codevector_dim": config.codebook_dim, "proj_codevector_dim": config.final_dim,
        "num_negatives": config.num_distractors, "contrastive_logits_temperature": config.logit_temp,
        "diversity_loss_weight": config.diversity_weight, "feat_quantizer_dropout": config.dropout_features,
    }


def state_dict_from_hf(hf_state: dict[str, Tensor]) -> dict[str, Tensor]:
    """audiossl wav2vec 2.0 weights from a Hugging Face ``Wav2Vec2Model``, ``Wav2Vec2ForPreTraining``
    or ``Wav2Vec2ForCTC`` state dict (the CTC head is dropped); :class:`InteropError` names an unknown weight."""
    state = hf_weights(hf_state, "wav2vec2.", dropped=("lm_head.",))
    return rename_weights(state, BODY_NAMES + PRETRAINING_NAMES, to_hf=False, source="Hugging Face")


def state_dict_to_hf(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A Hugging Face ``Wav2Vec2ForPreTraining`` state dict from audiossl wav2vec 2.0 weights: the body
    under ``wav2vec2.``, the quantizer and projections at the top (without them, a ``Wav2Vec2Model``'s)."""
    hf = rename_weights(state, BODY_NAMES + PRETRAINING_NAMES, to_hf=True, source="audiossl")
    pretraining = tuple(hf_name for hf_name, _ in PRETRAINING_NAMES)
    if not any(name.startswith(pretraining) for name in hf):
        return hf
    return {name if name.startswith(pretraining) else f"wav2vec2.{name}": tensor for name, tensor in hf.items()}
