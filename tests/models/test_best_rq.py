"""BEST-RQ: config, targets made inside the model (seeded, aligned, padding-free), the step, encoder-only use."""
from __future__ import annotations

import json

import pytest
import torch

from audiossl.errors import ConfigError
from audiossl.models.best_rq import NAMED_CONFIGS, BestRqConfig, BestRqModel, build_best_rq
from audiossl.models.best_rq.model import IGNORE_INDEX, stack_fbank
from audiossl.nn.frontends import fbank_num_frames, waveform_to_fbank
from audiossl.tasks.pretrain import PretrainingTask
from tests.conftest import synth_speechlike

FRONTENDS = ("fbank", "waveform")


def tiny(frontend="fbank", seed=0, **changes):
    torch.manual_seed(seed)
    config = BestRqConfig.from_dict({**BestRqConfig.tiny(frontend).to_dict(), **changes})
    return build_best_rq(config).with_layer_drop(0.0)


def speech(lengths=(16000, 11000), seed=0):
    """``(B, S)`` speech-like waveforms zero-padded to the longest, and ``(B,)`` samples."""
    wavs = torch.zeros(len(lengths), max(lengths))
    for i, length in enumerate(lengths):
        wavs[i, :length] = torch.from_numpy(synth_speechlike(length / 16000, seed + i))
    return wavs, torch.tensor(lengths)


def inputs_for(model, lengths=(16000, 11000), seed=0):
    return model.inputs_from_waveforms(*speech(lengths, seed))


# --- config -----------------------------------------------------------------------------


def test_named_sizes_keep_the_paper_quantizer_and_masking():
    assert sorted(NAMED_CONFIGS) == ["base", "large", "small", "tiny"]
    base = BestRqConfig.base()
    assert base.frontend.kind == "fbank" and base.feature_grad_mult == 1.0
    enc = base.encoder
    assert (enc.num_layers, enc.dim, enc.ffn_dim, enc.num_heads) == (12, 768, 3072, 12)
    assert (base.stack_frames, base.codebook_dim, base.codebook_size, base.num_codebooks) == (2, 16, 8192, 1)
    assert (base.mask.prob, base.mask.length, base.mask.min_masks) == (0.4, 20, 1)
    assert base.normalize_per_utterance
    large, small, tiny_config = BestRqConfig.large(), BestRqConfig.small(), BestRqConfig.tiny()
    assert (large.encoder.num_layers, large.encoder.dim, large.encoder.layer_norm_first) == (24, 1024, True)
    assert (small.encoder.num_layers, small.encoder.dim, small.codebook_size) == (6, 256, 8192)
    assert (tiny_config.encoder.num_layers, tiny_config.encoder.dim) == (2, 64)
    assert small.mask == base.mask and small.quantizer_seed == base.quantizer_seed
    assert BestRqConfig.base("waveform").feature_grad_mult == 0.1


@pytest.mark.parametrize("name", sorted(NAMED_CONFIGS))
@pytest.mark.parametrize("frontend", FRONTENDS)
def test_config_json_round_trip(name, frontend):
    config = NAMED_CONFIGS[name](frontend)
    data = json.loads(json.dumps(config.to_dict()))
    assert BestRqConfig.from_dict(data) == config
    assert data["frontend"]["kind"] == frontend and data["quantizer_seed"] == 0 and data["stack_frames"] == 2


def test_validation_names_every_broken_field():
    data = BestRqConfig.tiny().to_dict()
    with pytest.raises(ConfigError) as err:
        BestRqConfig.from_dict({**data, "codebook_size": 1, "quantizer_seed": -1, "dropout_input": 1.0,
                                "mask": {"prob": 1.5, "length": 20, "min_masks": 1}})
    message = str(err.value)
    assert all(name in message for name in ("codebook_size", "quantizer_seed", "dropout_input", "mask.prob"))
    with pytest.raises(ConfigError, match=r"stack_frames must be 2 \(10 ms fbank frames per 20 ms frame"):
        BestRqConfig.from_dict({**data, "stack_frames": 4})
    waveform = BestRqConfig.tiny("waveform").to_dict()
    waveform["frontend"]["conv_layers"] = [[32, 10, 5], [32, 3, 3]]
    with pytest.raises(ConfigError, match="frontend.conv_layers hop 15 samples"):
        BestRqConfig.from_dict(waveform)
    with pytest.raises(ConfigError, match=r"BestRqConfig: unknown keys \[.num_classes.\]"):
        BestRqConfig.from_dict({**data, "num_classes": 100})


# --- targets ----------------------------------------------------------------------------


def test_the_seed_fixes_the_quantizer_and_the_checkpoint_holds_it():
    a, b = tiny(seed=0), tiny(seed=1)  # other encoder weights, the same quantizer seed
    inputs, lengths = inputs_for(a)
    assert not torch.equal(a.heads[0].weight, b.heads[0].weight)
    assert torch.equal(a.make_targets(inputs, lengths), b.make_targets(inputs, lengths))
    other = tiny(quantizer_seed=7)
    assert not torch.equal(a.make_targets(inputs, lengths), other.make_targets(inputs, lengths))
    state = a.state_dict()
    assert {"quantizer.projection", "quantizer.codebooks"} <= state.keys()
    assert not any(name.startswith("quantizer") for name, _ in a.named_parameters())
    other.load_state_dict(state)  # the checkpoint's buffers replace the ones the config drew
    assert torch.equal(other.make_targets(inputs, lengths), a.make_targets(inputs, lengths))


def test_targets_are_the_quantized_normalised_stacks_of_two_fbank_frames():
    model = tiny()
    fbank, frames = inputs_for(model, lengths=(12000,))
    targets = model.make_targets(fbank, frames)[0, :, 0]
    valid = fbank[0, :int(frames[0])]
    normed = (valid - valid.mean(0)) / torch.sqrt(valid.var(0, unbiased=False) + 1e-5)
    for t in range(int(frames[0]) // 2):
        stacked = torch.cat([normed[2 * t], normed[2 * t + 1]])[None]
        assert int(targets[t]) == int(model.quantizer(stacked)[0, 0])


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_every_model_frame_with_a_whole_stack_of_valid_fbank_frames_gets_targets(frontend):
    model = tiny(frontend)
    lengths = torch.arange(8000, 8000 + 480, 37) if frontend == "waveform" else torch.arange(40, 52)
    inputs = torch.randn(len(lengths), int(lengths.max()), *(() if frontend == "waveform" else (80,))) * 0.1
    targets = model.make_targets(inputs, lengths)[..., 0]
    frames = model.num_frames(lengths)
    fbank_frames = lengths if frontend == "fbank" else fbank_num_frames(lengths)
    expected = torch.minimum(frames, fbank_frames // 2)
    assert set((frames - expected).tolist()) == {0, 1}  # both edge cases occur: a whole last stack, one frame short
    targeted = targets != IGNORE_INDEX
    assert targets.shape[1] == int(model.num_frames(lengths.max()[None]))
    assert targeted.sum(dim=1).tolist() == expected.tolist()
    assert torch.equal(targeted, torch.arange(targets.shape[1])[None] < expected[:, None])  # a prefix: padding never


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_an_items_targets_do_not_depend_on_its_batch(frontend):
    model = tiny(frontend)
    wavs, lengths = speech(lengths=(16000, 9000, 12500))
    batched = model.make_targets(*model.inputs_from_waveforms(wavs, lengths))
    for b, length in enumerate(lengths.tolist()):
        alone = model.make_targets(*model.inputs_from_waveforms(wavs[b:b + 1, :length], lengths[b:b + 1]))
        assert torch.equal(batched[b, :alone.shape[1]], alone[0])
        assert (batched[b, alone.shape[1]:] == IGNORE_INDEX).all()


def test_stacking_drops_a_partial_stack_and_normalisation_ignores_padding():
    fbank = torch.randn(2, 7, 3) * 4 + 10
    stacks, stack_lengths = stack_fbank(fbank, torch.tensor([7, 4]), stack=2, normalize=True)
    assert stacks.shape == (2, 3, 6) and stack_lengths.tolist() == [3, 2]
    short, _ = stack_fbank(fbank[1:, :4], torch.tensor([4]), stack=2, normalize=True)
    torch.testing.assert_close(stacks[1, :2], short[0])
    raw, _ = stack_fbank(fbank, torch.tensor([7, 7]), stack=2, normalize=False)
    torch.testing.assert_close(raw[0, 1], torch.cat([fbank[0, 2], fbank[0, 3]]))


def test_per_utterance_normalisation_keeps_the_quantizer_from_collapsing():
    """Raw log-mel fbank has a large common offset: most frames then fall on a few codes."""
    normalised, raw = tiny(), tiny(normalize_per_utterance=False)
    inputs, lengths = inputs_for(normalised, lengths=(32000, 32000))
    usage, collapsed = (model(inputs, lengths, None, torch.Generator().manual_seed(0)).sums["target_perplexity"]
                        for model in (normalised, raw))
    assert usage > 50 and collapsed < 5


# --- the step ---------------------------------------------------------------------------


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_a_step_trains_the_encoder_and_heads_and_leaves_the_quantizer(frontend):
    model = tiny(frontend)
    inputs, lengths = inputs_for(model)
    buffers = {name: value.clone() for name, value in model.quantizer.named_buffers()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    out = model(inputs, lengths, None, torch.Generator().manual_seed(0))
    out.loss.backward()
    params = dict(model.named_parameters())
    for name in ("heads.0.weight", "heads.0.bias", "mask_embedding", "encoder.layers.0.attention.q_proj.weight",
                 "encoder.layers.1.feed_forward.fc2.weight", "feature_projection.projection.weight"):
        assert params[name].grad is not None and params[name].grad.abs().sum() > 0, name
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.frontend.parameters())
    assert all(not b.requires_grad and b.grad is None for b in model.quantizer.buffers())
    before = params["heads.0.weight"].detach().clone()
    optimizer.step()
    assert not torch.equal(before, params["heads.0.weight"])
    for name, value in model.quantizer.named_buffers():
        assert torch.equal(value, buffers[name]), name

    sums = out.sums
    assert out.loss.item() == pytest.approx(sums["loss_masked"] / sums["masked_frames"], rel=1e-5)
    assert sums["masked_frames"] > 0 and 0 <= sums["correct_masked"] <= sums["masked_frames"]
    assert 1.0 <= sums["target_perplexity"] <= model.config.codebook_size
    assert 0 < sums["correct_commonest"] <= sums["masked_frames"]
    figures = PretrainingTask(model).summarize({**sums, "loss": out.loss.item() * 2, "utterances": 2.0})
    assert {"acc_masked", "acc_commonest", "loss_masked", "target_perplexity"} <= figures.keys()
    assert PretrainingTask(model).valid_metric == "loss_masked"


def test_predicting_the_commonest_id_everywhere_is_named_by_the_health_check():
    """A head that names the batch's commonest target id at every frame is exactly as accurate as
    ``acc_commonest``; after ``collapse_patience`` log intervals the task's health check (which the
    trainer logs) says so."""
    model = tiny(collapse_patience=2).eval()
    inputs, lengths = inputs_for(model, lengths=(32000, 32000))
    targets = model.make_targets(inputs, lengths)[..., 0]
    commonest = int(targets[targets != IGNORE_INDEX].bincount().argmax())
    with torch.no_grad():
        model.heads[0].weight.zero_()
        model.heads[0].bias.zero_()
        model.heads[0].bias[commonest] = 10.0
    out = model(inputs, lengths, None, torch.Generator().manual_seed(0))
    assert out.sums["correct_commonest"] == out.sums["correct_masked"] > 0
    task = PretrainingTask(model)
    figures = task.summarize({**out.sums, "loss": out.loss.item() * 2, "utterances": 2.0})
    assert task.health_warnings(figures) == []
    warning, = task.health_warnings(figures)
    assert "masked predictions collapsed" in warning and "mask.length" in warning
    assert task.health_warnings({**figures, "acc_masked": 2 * figures["acc_commonest"]}) == []  # learning again


def test_the_step_is_seeded_scores_masked_targeted_frames_and_refuses_targets(monkeypatch):
    model = tiny().eval()
    inputs, lengths = inputs_for(model, lengths=(16000, 9000))
    first, again = (model(inputs, lengths, None, torch.Generator().manual_seed(3)) for _ in range(2))
    assert first.sums == again.sums and first.loss.item() == again.loss.item()
    drawn = {}
    original = model.encode

    def spy(inputs, lengths, mask=None, generator=None, num_layers=None):
        drawn["mask"] = mask
        return original(inputs, lengths, mask, generator, num_layers)

    monkeypatch.setattr(model, "encode", spy)
    out = model(inputs, lengths, None, torch.Generator().manual_seed(3))
    targeted = model.make_targets(inputs, lengths)[..., 0] != IGNORE_INDEX
    assert out.sums["masked_frames"] == float((drawn["mask"] & targeted).sum())
    with pytest.raises(ValueError, match="makes its own targets"):
        model(inputs, lengths, torch.zeros(2, 50, dtype=torch.long), torch.Generator())


def test_several_codebooks_each_get_a_head_and_the_loss_is_their_mean():
    model = tiny(num_codebooks=3)
    inputs, lengths = inputs_for(model)
    targets = model.make_targets(inputs, lengths)
    assert targets.shape[2] == 3 and len(model.heads) == 3
    assert not torch.equal(targets[..., 0], targets[..., 1])
    out = model(inputs, lengths, None, torch.Generator().manual_seed(0))
    assert out.loss.item() == pytest.approx(out.sums["loss_masked"] / out.sums["masked_frames"], rel=1e-5)
    out.loss.backward()
    assert all(head.weight.grad.abs().sum() > 0 for head in model.heads)
    # acc_commonest: per codebook, the masked frames whose id is that codebook's commonest in the batch
    mask = model.span_mask(tuple(targets.shape[:2]), model.num_frames(lengths), torch.Generator().manual_seed(0))
    targeted = targets[..., 0] != IGNORE_INDEX
    labels = targets[mask & targeted]
    commonest = [int(targets[targeted][:, g].bincount().argmax()) for g in range(3)]
    expected = sum(int((labels[:, g] == commonest[g]).sum()) for g in range(3)) / 3
    assert out.sums["masked_frames"] == len(labels) and out.sums["correct_commonest"] == pytest.approx(expected)


def test_autocast_leaves_the_targets_unchanged():
    model = tiny()
    inputs, lengths = inputs_for(model)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        targets = model.make_targets(inputs, lengths)
    assert torch.equal(targets, model.make_targets(inputs, lengths))


def test_several_updates_on_one_batch_raise_the_masked_accuracy():
    model = tiny(dropout_input=0.0)
    inputs, lengths = inputs_for(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    accuracies = []
    for step in range(30):
        out = model(inputs, lengths, None, torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        accuracies.append(out.sums["correct_masked"] / out.sums["masked_frames"])
    assert sum(accuracies[-5:]) / 5 > sum(accuracies[:5]) / 5 + 0.2


# --- encoder-only use -------------------------------------------------------------------


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_encoder_only_keeps_the_features_and_loads_into_a_rebuilt_model(frontend):
    model = tiny(frontend).eval()
    wavs, lengths = speech()
    before, frames = model.extract_features(wavs, lengths)
    encoder = model.encoder_only()
    assert isinstance(encoder, BestRqModel)
    assert not any(name.startswith(("quantizer", "heads")) for name in encoder.state_dict())
    after, _ = encoder.extract_features(wavs, lengths)
    assert len(after) == 3 and frames.tolist() == [49, 34]
    for a, b in zip(before, after):
        torch.testing.assert_close(a, b)
    rebuilt = build_best_rq(BestRqConfig.from_dict(encoder.config.to_dict())).encoder_only()
    rebuilt.load_state_dict(encoder.state_dict())  # strict


def test_waveform_targets_use_kaldi_fbank_of_the_waveforms():
    waveform_model, fbank_model = tiny("waveform"), tiny("fbank")
    wavs, lengths = speech(lengths=(16000,))
    fbank, frames = waveform_to_fbank(wavs, lengths)
    assert torch.equal(waveform_model.make_targets(wavs, lengths), fbank_model.make_targets(fbank, frames))
