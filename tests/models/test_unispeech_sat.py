"""UniSpeech-SAT: masked prediction plus the utterance-wise contrastive term; sizes and fine-tuning."""
from __future__ import annotations

import pytest
import torch

from audiossl.checkpoint import build_model
from audiossl.errors import ConfigError
from audiossl.models.ctc.factory import ctc_over_encoder
from audiossl.models.unispeech_sat import NAMED_CONFIGS, UniSpeechSatConfig, UniSpeechSatModel, build_unispeech_sat
from audiossl.models.unispeech_sat.config import contrasted_layer
from audiossl.tasks.pretrain import PretrainingTask
from audiossl.text.tokenizer import build_tokenizer

from tests.models.test_hubert import batch, model_inputs, random_targets


def test_named_sizes_contrast_the_middle_layer():
    assert sorted(NAMED_CONFIGS) == ["base", "base_plus", "large", "small", "tiny"]
    assert [contrasted_layer(NAMED_CONFIGS[name]()) for name in ("base", "large", "small", "tiny")] == [6, 12, 3, 1]
    base = UniSpeechSatConfig.base()
    assert (base.codebook_groups, base.codebook_entries, base.utterance_samples, base.encoder.position_bias) == (
        2, 320, 100, "none")
    assert UniSpeechSatConfig.large().encoder.layer_norm_first
    with pytest.raises(ConfigError, match="utterance_layer must be in"):
        UniSpeechSatConfig.from_dict({**UniSpeechSatConfig.tiny().to_dict(), "utterance_layer": 3})
    with pytest.raises(ConfigError, match="codebook_dim 32 must be divisible by codebook_groups 3"):
        UniSpeechSatConfig.from_dict({**UniSpeechSatConfig.tiny().to_dict(), "codebook_groups": 3})


@pytest.mark.parametrize("frontend", ["waveform", "fbank"])
def test_step_trains_every_part_and_reports_both_objectives(frontend):
    torch.manual_seed(0)
    model = build_unispeech_sat(UniSpeechSatConfig.tiny(frontend))
    inputs, lengths = model_inputs(model, *batch(lengths=(16000, 9000)))
    targets = random_targets(model, lengths, model.config.num_classes)
    out = model(inputs, lengths, targets, torch.Generator().manual_seed(0))
    out.loss.backward()
    unused = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert unused == ["mask_embedding"] or not unused, unused
    figures = PretrainingTask(model).summarize({**out.sums, "loss": out.loss.item(), "utterances": 2.0})
    assert {"acc_masked", "utt_loss", "utt_acc", "code_perplexity", "temperature"} <= figures.keys()
    assert 0.0 <= figures["utt_acc"] <= 1.0 and figures["temperature"] == 2.0
    model.eval()  # no dropout: the generator makes every draw
    first, again = (model(inputs, lengths, targets, torch.Generator().manual_seed(0)) for _ in range(2))
    assert again.loss.item() == pytest.approx(first.loss.item(), rel=1e-6)
    model.set_num_updates(100_000)
    assert model.temperature == pytest.approx(max(2.0 * 0.999995 ** 100_000, 0.5))


def test_pre_norm_layout_normalises_the_contrasted_states():
    config = UniSpeechSatConfig.tiny()
    config.encoder.layer_norm_first = True
    model = build_unispeech_sat(config)
    assert isinstance(model.utterance_norm, torch.nn.LayerNorm)
    assert isinstance(build_unispeech_sat(UniSpeechSatConfig.tiny()).utterance_norm, torch.nn.Identity)


def test_encoder_only_truncates_and_fine_tunes():
    torch.manual_seed(0)
    config = UniSpeechSatConfig.tiny()
    config.utterance_layer = 2
    encoder = build_unispeech_sat(config).encoder_only()
    assert not any(name.startswith(("head", "quantizer", "project_q", "speaker_proj")) for name in encoder.state_dict())
    rebuilt = build_model("unispeech_sat", encoder.config.to_dict()).encoder_only()
    rebuilt.load_state_dict(encoder.state_dict())  # strict
    ctc = ctc_over_encoder(encoder.truncated(1), build_tokenizer("char", ["AB C"], None), {}, copy_weights=True)
    assert encoder.config.utterance_layer == 0  # layer 2 is gone: back to the middle one
    assert ctc.config.encoder_family == "unispeech_sat" and isinstance(ctc.encoder, UniSpeechSatModel)
    build_model("ctc", ctc.config.to_dict()).load_state_dict(ctc.state_dict())
