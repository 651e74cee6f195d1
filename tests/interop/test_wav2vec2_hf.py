"""wav2vec 2.0 against transformers' Wav2Vec2ForPreTraining built offline from a small config with
random weights: the same hidden states layer by layer, and the same contrastive and diversity
losses given the same mask and distractors."""
from __future__ import annotations

import pytest
import torch
import transformers

from audiossl.errors import InteropError
from audiossl.models.wav2vec2 import Wav2Vec2Config, build_wav2vec2
from audiossl.models.wav2vec2.interop import config_from_hf, config_to_hf, state_dict_from_hf, state_dict_to_hf
from audiossl.nn.masking import compute_span_mask
from audiossl.objectives.contrastive import sample_distractors

LAYOUTS = {"base-layout": False, "large-layout": True}


def hf_pretraining(pre_norm: bool) -> transformers.Wav2Vec2ForPreTraining:
    torch.manual_seed(0)
    config = transformers.Wav2Vec2Config(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, conv_dim=(32,) * 7,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, do_stable_layer_norm=pre_norm,
        feat_extract_norm="layer" if pre_norm else "group", conv_bias=pre_norm, num_codevector_groups=2,
        num_codevectors_per_group=12, codevector_dim=32, proj_codevector_dim=24, num_negatives=7)
    return transformers.Wav2Vec2ForPreTraining(config).eval()


def ours_from(reference: transformers.Wav2Vec2ForPreTraining):
    model = build_wav2vec2(config_from_hf(reference.config.to_dict())).eval()
    model.load_state_dict(state_dict_from_hf(reference.state_dict()))  # strict: every weight, both ways
    return model


@pytest.mark.parametrize("pre_norm", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_same_hidden_states(pre_norm):
    reference = hf_pretraining(pre_norm)
    ours = ours_from(reference)
    wavs = torch.randn(2, 8000)
    with torch.no_grad():
        expected = reference.wav2vec2(wavs, output_hidden_states=True).hidden_states
        hidden, frames = ours.extract_features(wavs, torch.tensor([8000, 8000]))
    assert frames.tolist() == [24, 24] and len(hidden) == len(expected) == 3
    for index, (a, b) in enumerate(zip(expected, hidden)):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4, msg=f"hidden state {index}")


@pytest.mark.parametrize("pre_norm", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_same_losses_given_the_same_mask_and_distractors(pre_norm):
    reference = hf_pretraining(pre_norm)
    ours = ours_from(reference)
    wavs, lengths = torch.randn(2, 16000), torch.tensor([16000, 16000])
    # the draws our forward makes in eval mode: the span mask, then the distractors
    draws = torch.Generator().manual_seed(3)
    frames = ours.num_frames(lengths)
    time = int(frames.max())
    mask_config = ours.config.mask
    mask = compute_span_mask((2, time), frames, mask_config.prob, mask_config.length, mask_config.min_masks, draws)
    positions = mask.nonzero()
    distractors, scored = sample_distractors(positions[:, 0], ours.config.num_distractors, draws)
    assert bool(scored.all())
    flat = positions[:, 0] * time + positions[:, 1]  # HF indexes distractors in the flattened (B x T) frames
    negatives = torch.zeros(2, time, ours.config.num_distractors, dtype=torch.long)
    negatives[positions[:, 0], positions[:, 1]] = flat[distractors]
    with torch.no_grad():
        expected = reference(wavs, mask_time_indices=mask, sampled_negative_indices=negatives)
        out = ours(wavs, lengths, None, torch.Generator().manual_seed(3))
    sums = out.sums
    assert sums["scored_frames"] == mask.sum()
    assert sums["contrastive_loss"] == pytest.approx(expected.contrastive_loss.item(), rel=1e-4)
    # In eval mode HF's perplexity (and so its diversity loss) is that of the chosen codes; fairseq's
    # diversity loss, and ours, use the softmax probabilities (HF's in training mode).
    assert sums["code_perplexity"] == pytest.approx(expected.codevector_perplexity.item(), rel=1e-4)
    num_codes = ours.config.codebook_groups * ours.config.codebook_entries
    hard_diversity = (num_codes - sums["code_perplexity"]) / num_codes * sums["scored_frames"]
    assert hard_diversity == pytest.approx(expected.diversity_loss.item(), rel=1e-4)


def test_audiossl_weights_load_into_transformers():
    config = Wav2Vec2Config.tiny()
    torch.manual_seed(0)
    ours = build_wav2vec2(config).eval()
    hf_config = transformers.Wav2Vec2Config(**config_to_hf(ours.config))
    reference = transformers.Wav2Vec2ForPreTraining(hf_config).eval()
    reference.load_state_dict(state_dict_to_hf(ours.state_dict()))  # strict
    wavs = torch.randn(1, 8000)
    with torch.no_grad():
        expected = reference.wav2vec2(wavs, output_hidden_states=True).hidden_states
        hidden, _ = ours.extract_features(wavs, torch.tensor([8000]))
    for a, b in zip(expected, hidden):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
    encoder_only = state_dict_to_hf(ours.encoder_only().state_dict())
    transformers.Wav2Vec2Model(hf_config).load_state_dict(encoder_only)  # a Wav2Vec2Model's names
    back = config_from_hf(config_to_hf(config))
    fe, back_fe = config.frontend, back.frontend
    assert (back.encoder, back_fe.conv_layers, back_fe.conv_mode, back.codebook_entries, back.final_dim) == (
        config.encoder, fe.conv_layers, fe.conv_mode, config.codebook_entries, config.final_dim)
    with pytest.raises(InteropError, match="not a wav2vec 2.0 config"):
        config_from_hf({"model_type": "hubert"})
    with pytest.raises(InteropError, match="with no equivalent"):
        state_dict_from_hf({"wav2vec2.adapter.weight": torch.zeros(1)})


def test_training_mode_perplexity_is_that_of_the_softmax():
    """In training both take the perplexity of the mean softmax over masked frames (the diversity loss's)."""
    reference = hf_pretraining(False)
    ours = ours_from(reference)
    features = torch.randn(2, 9, 32)
    mask = torch.rand(2, 9, generator=torch.Generator().manual_seed(0)) < 0.5
    reference.quantizer.train()
    with torch.no_grad():
        _, expected = reference.quantizer(features, mask_time_indices=mask)
        out = ours.quantizer.train()(features[mask], 2.0, torch.Generator().manual_seed(0))
    assert out.prob_perplexity.item() == pytest.approx(expected.item(), rel=1e-5)
