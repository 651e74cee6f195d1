import json

import pytest
import torch

from audiossl.models.hubert import NAMED_CONFIGS, HubertConfig, HubertModel, build_hubert
from audiossl.models.hubert import model as hubert_model
from audiossl.nn.frontends import waveform_to_fbank
from audiossl.nn.transformer import AlibiPositionBias
from audiossl.tasks.pretrain import PretrainingTask

FRONTENDS = ["waveform", "fbank"]


def model_inputs(model, wavs, lengths):
    """Inputs of the model's front-end kind for waveforms."""
    if model.frontend.input_kind == "fbank":
        return waveform_to_fbank(wavs, lengths)
    return wavs, lengths


def random_targets(model, input_lengths, num_classes, seed=0):
    frames = model.num_frames(input_lengths)
    gen = torch.Generator().manual_seed(seed)
    targets = torch.full((len(frames), int(frames.max())), -100)
    for b, n in enumerate(frames.tolist()):
        targets[b, :n] = torch.randint(0, num_classes, (n,), generator=gen)
    return targets


def batch(seed=0, lengths=(16000, 11000)):
    gen = torch.Generator().manual_seed(seed)
    wavs = torch.randn(len(lengths), max(lengths), generator=gen) * 0.1
    return wavs, torch.tensor(lengths)


# --- config -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(NAMED_CONFIGS))
@pytest.mark.parametrize("frontend", FRONTENDS)
def test_config_json_round_trip(name, frontend):
    config = NAMED_CONFIGS[name](frontend)
    data = json.loads(json.dumps(config.to_dict()))
    assert HubertConfig.from_dict(data) == config
    assert data["frontend"]["kind"] == frontend
    assert isinstance(data["frontend"]["conv_layers"][0], list)


def test_base_is_the_paper_base_and_small_sizes_derive_from_it():
    base = HubertConfig.base()
    enc = base.encoder
    assert (enc.num_layers, enc.dim, enc.ffn_dim, enc.num_heads) == (12, 768, 3072, 12)
    assert (enc.conv_pos, enc.conv_pos_groups) == (128, 16)
    assert (base.final_dim, base.num_classes, base.logit_temp, base.feature_grad_mult) == (256, 100, 0.1, 0.1)
    assert base.frontend.conv_layers == ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2
    assert (base.mask.prob, base.mask.length) == (0.8, 10)
    small, tiny = HubertConfig.small("fbank"), HubertConfig.tiny()
    assert (small.encoder.num_layers, small.encoder.dim, small.encoder.ffn_dim) == (6, 256, 1024)
    assert small.encoder.num_heads == 4
    assert (tiny.encoder.num_layers, tiny.encoder.dim, tiny.encoder.num_heads) == (2, 64, 4)
    assert small.frontend.kind == "fbank" and small.mask == base.mask and small.logit_temp == base.logit_temp
    assert [k for _, k, _ in tiny.frontend.conv_layers] == [k for _, k, _ in base.frontend.conv_layers]


def test_validate_names_every_broken_rule():
    config = HubertConfig.tiny()
    config.encoder.num_heads = 5
    config.mask.prob = 1.5
    config.frontend.kind = "mfcc"
    with pytest.raises(ValueError) as err:
        config.validate()
    message = str(err.value)
    assert "divisible by encoder.num_heads" in message and "mask.prob" in message and "frontend.kind" in message
    with pytest.raises(ValueError, match="divisible"):
        build_hubert(config)


def test_large_is_the_papers_large_and_buckets_only_matter_to_the_gated_bias():
    large = HubertConfig.large()
    enc = large.encoder
    assert (enc.num_layers, enc.dim, enc.num_heads, enc.layer_norm_first, large.frontend.conv_mode) == (
        24, 1024, 16, True, "layer_norm")
    assert (enc.dropout, enc.layer_drop, large.dropout_input, large.feature_grad_mult, large.final_dim) == (
        0.0, 0.0, 0.0, 1.0, 768)
    config = HubertConfig.tiny()
    config.encoder.position_buckets = 2
    config.validate()  # unused without the gated relative bias
    config.encoder.position_bias = "gated_relative"
    with pytest.raises(ValueError, match="position_buckets must be a multiple of 4"):
        config.validate()


def test_unknown_position_bias_is_named():
    config = HubertConfig.tiny()
    config.encoder.position_bias = "rope"
    with pytest.raises(ValueError, match="encoder.position_bias must be one of"):
        config.validate()


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_alibi_model_trains_and_ignores_padding(frontend):
    torch.manual_seed(0)
    config = HubertConfig.tiny(frontend)
    config.encoder.position_bias = "alibi"
    model = build_hubert(HubertConfig.from_dict(config.to_dict()))
    assert isinstance(model.encoder.position_bias, AlibiPositionBias)  # one bias, computed once for every layer
    inputs, lengths = model_inputs(model, *batch(lengths=(16000, 9000)))
    out = model(inputs, lengths, random_targets(model, lengths, config.num_classes), torch.Generator().manual_seed(0))
    out.loss.backward()
    assert torch.isfinite(out.loss) and model.encoder.layers[0].attention.q_proj.weight.grad.abs().sum() > 0
    model.eval()
    wavs, wav_lengths = batch(seed=1, lengths=(7000, 20000))
    with torch.no_grad():
        batched, frames = model.extract_features(wavs, wav_lengths)
        alone, _ = model.extract_features(wavs[:1, :7000], wav_lengths[:1])
    n = int(frames[0])
    for b, a in zip(batched, alone):
        torch.testing.assert_close(b[0, :n], a[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("spread", [-0.1, 0.5])
def test_frequency_warp_is_checked(spread):
    config = HubertConfig.tiny("fbank")
    config.frequency_warp = spread
    with pytest.raises(ValueError, match="frequency_warp must be in"):
        config.validate()


def test_frequency_warp_needs_fbank():
    config = HubertConfig.tiny("waveform")
    config.frequency_warp = 0.1
    with pytest.raises(ValueError, match="frequency_warp needs the fbank front end"):
        config.validate()


def test_frequency_warp_perturbs_the_inputs_of_training_steps_only(monkeypatch):
    config = HubertConfig.tiny("fbank")
    config.frequency_warp = 0.2
    model = build_hubert(config)
    inputs, lengths = model_inputs(model, *batch())
    targets = random_targets(model, lengths, config.num_classes)
    calls = []

    def spy(features, factors):
        calls.append((features.clone(), factors))
        return features + 1.0

    monkeypatch.setattr(hubert_model, "warp_frequency_axis", spy)
    model.eval()
    model(inputs, lengths, targets, torch.Generator().manual_seed(1))
    assert calls == []
    model.train()
    model(inputs, lengths, targets, torch.Generator().manual_seed(1))
    (seen, factors), = calls
    assert torch.equal(seen, inputs) and factors.shape == (2,)
    assert bool(((factors >= 0.8) & (factors <= 1.2)).all()) and factors[0] != factors[1]


def test_from_dict_rejects_unknown_keys():
    data = HubertConfig.tiny().to_dict()
    data["encoder"]["num_layer"] = 3
    with pytest.raises(ValueError, match="num_layer"):
        HubertConfig.from_dict(data)


# --- model ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(NAMED_CONFIGS))
@pytest.mark.parametrize("frontend", FRONTENDS)
def test_forward_backward_every_size(name, frontend):
    torch.manual_seed(0)
    config = NAMED_CONFIGS[name](frontend)
    model = build_hubert(config).train()
    wavs, lengths = batch(lengths=(16000, 11000))
    inputs, input_lengths = model_inputs(model, wavs, lengths)
    targets = random_targets(model, input_lengths, config.num_classes)
    out = model(inputs, input_lengths, targets, torch.Generator().manual_seed(0))
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    sums = out.sums
    assert {numerator for numerator, _ in model.metrics.values()} <= sums.keys()
    assert sums["masked_frames"] + sums["unmasked_frames"] == 49 + 34
    assert out.loss.item() == pytest.approx(sums["loss_masked"] / sums["masked_frames"], rel=1e-5)
    out.loss.backward()
    assert model.encoder.layers[0].attention.q_proj.weight.grad.abs().sum() > 0
    assert model.mask_embedding.grad.abs().sum() > 0
    assert model.head.label_embeddings.grad.abs().sum() > 0
    frontend_grads = [p.grad for p in model.frontend.parameters()]
    assert all(g is not None for g in frontend_grads) and sum(g.abs().sum() for g in frontend_grads) > 0


def test_acc_commonest_is_what_always_naming_the_commonest_id_scores():
    """The logged ``acc_commonest``: the masked accuracy of a head that names the batch's commonest
    masked target id at every frame (``acc_masked`` above it: the model has learned from the frames)."""
    torch.manual_seed(0)
    config = HubertConfig.tiny("fbank")
    config.num_classes = 8
    model = build_hubert(config).eval()
    inputs, lengths = model_inputs(model, *batch(lengths=(32000, 32000)))
    targets = random_targets(model, lengths, 3)  # ids 0-2 only, so that one of them is the commonest
    masked = model.span_mask(targets.shape, model.num_frames(lengths), torch.Generator().manual_seed(0))
    commonest = int(targets[masked & (targets >= 0)].bincount().argmax())
    with torch.no_grad():
        model.head.label_embeddings.copy_(torch.eye(8, config.final_dim))
        model.head.final_proj.weight.zero_()
        model.head.final_proj.bias.copy_(model.head.label_embeddings[commonest])
    out = model(inputs, lengths, targets, torch.Generator().manual_seed(0))
    assert out.sums["correct_commonest"] == out.sums["correct_masked"] > 0
    figures = PretrainingTask(model).summarize({**out.sums, "loss": out.loss.item() * 2, "utterances": 2.0})
    assert figures["acc_commonest"] == figures["acc_masked"] > 1 / 3


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_encode_shapes_and_frame_counts(frontend):
    torch.manual_seed(0)
    model = build_hubert(HubertConfig.tiny(frontend)).eval()
    wavs, lengths = batch(lengths=(16000, 8000, 4000))
    hidden, frames = model.extract_features(wavs, lengths)
    assert frames.tolist() == [49, 24, 12]
    assert len(hidden) == 3 and all(h.shape == (3, 49, 64) for h in hidden)
    assert model.hidden_sizes == [64] * 3
    inputs, input_lengths = model_inputs(model, wavs, lengths)
    assert model.num_frames(input_lengths).tolist() == [49, 24, 12]
    direct, _ = model.encode(inputs, input_lengths)
    for a, b in zip(hidden, direct):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("layer_norm_first", [False, True])
def test_encoding_fewer_layers_gives_the_same_lower_hidden_states(layer_norm_first):
    """encode(num_layers=k) stops after layer k (k-means 2 clusters a middle layer without the rest)."""
    torch.manual_seed(0)
    config = HubertConfig.tiny("fbank")
    config.encoder.layer_norm_first = layer_norm_first
    model = build_hubert(config).eval()
    inputs, lengths = model_inputs(model, *batch())
    full, _ = model.encode(inputs, lengths)
    first, _ = model.encode(inputs, lengths, num_layers=1)
    assert len(first) == 2
    torch.testing.assert_close(first[1], full[1], rtol=0, atol=0)
    every, _ = model.encode(inputs, lengths, num_layers=2)
    torch.testing.assert_close(every[-1], full[-1], rtol=0, atol=0)   # with the final norm of pre-norm


@pytest.mark.parametrize("name", ["tiny", "small"])
@pytest.mark.parametrize("frontend", FRONTENDS)
def test_padding_invariance(name, frontend):
    torch.manual_seed(0)
    model = build_hubert(NAMED_CONFIGS[name](frontend)).eval()
    wavs, lengths = batch(seed=1, lengths=(7000, 20000))
    wavs[0, 7000:] = 0.5  # padding content must not matter
    with torch.no_grad():
        batched, frames = model.extract_features(wavs, lengths)
        alone, alone_frames = model.extract_features(wavs[:1, :7000], lengths[:1])
    n = int(alone_frames[0])
    assert int(frames[0]) == n
    for b, a in zip(batched, alone):
        torch.testing.assert_close(b[0, :n], a[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_determinism_with_seeded_generator(frontend):
    torch.manual_seed(0)
    model = build_hubert(HubertConfig.tiny(frontend)).eval()
    wavs, lengths = batch()
    inputs, input_lengths = model_inputs(model, wavs, lengths)
    targets = random_targets(model, input_lengths, 100)

    def run(seed):
        return model(inputs, input_lengths, targets, torch.Generator().manual_seed(seed))

    a, b, c = run(7), run(7), run(8)
    assert a.loss.item() == b.loss.item() and a.sums == b.sums
    assert a.sums != c.sums
    # training mode: dropout draws from torch's default generator, masks and layer drop from ours
    model.train()
    torch.manual_seed(3)
    d = run(7)
    torch.manual_seed(3)
    e = run(7)
    assert d.loss.item() == e.loss.item() and d.sums == e.sums


def test_target_length_mismatch_is_a_value_error_with_shapes():
    torch.manual_seed(0)
    model = build_hubert(HubertConfig.tiny())
    wavs, lengths = batch()
    targets = random_targets(model, lengths, 100)
    targets[1, 34] = 3  # item 1 has 34 frames but now 35 labels
    with pytest.raises(ValueError, match=r"items \[1\].*\[35\].*\[34\].*targets shape \(2, 49\)"):
        model(wavs, lengths, targets, torch.Generator().manual_seed(0))
    short = random_targets(model, lengths, 100)[:, :40]
    with pytest.raises(ValueError, match=r"items \[0\]"):
        model(wavs, lengths, short, torch.Generator().manual_seed(0))


def test_extra_target_padding_is_accepted():
    torch.manual_seed(0)
    model = build_hubert(HubertConfig.tiny()).eval()
    wavs, lengths = batch()
    targets = random_targets(model, lengths, 100)
    wider = torch.nn.functional.pad(targets, (0, 5), value=-100)
    a = model(wavs, lengths, targets, torch.Generator().manual_seed(0))
    b = model(wavs, lengths, wider, torch.Generator().manual_seed(0))
    assert a.loss.item() == b.loss.item()


def test_mask_embedding_replaces_masked_frames():
    torch.manual_seed(0)
    model = build_hubert(HubertConfig.tiny()).eval()
    wavs, lengths = batch(lengths=(8000, 8000))
    wavs[1] = torch.randn(8000) * 0.3
    frames = int(model.num_frames(lengths[:1]))
    full_mask = torch.ones(2, frames, dtype=torch.bool)
    hidden, _ = model.encode(wavs, lengths, mask=full_mask)
    torch.testing.assert_close(hidden[-1][0], hidden[-1][1])  # inputs no longer matter
    unmasked, _ = model.encode(wavs, lengths)
    assert not torch.allclose(unmasked[-1][0], unmasked[-1][1])


@pytest.mark.parametrize("mult", [0.0, 0.1])
def test_feature_grad_mult(mult):
    torch.manual_seed(0)
    config = HubertConfig.tiny()
    reference = build_hubert(config).eval()
    config_scaled = HubertConfig.from_dict({**config.to_dict(), "feature_grad_mult": mult})
    scaled = build_hubert(config_scaled).eval()
    scaled.load_state_dict(reference.state_dict())
    reference.feature_grad_mult = 1.0
    wavs, lengths = batch()
    targets = random_targets(reference, lengths, 100)
    for model in (reference, scaled):
        model(wavs, lengths, targets, torch.Generator().manual_seed(0)).loss.backward()
    ref_grad = reference.frontend.blocks[0].conv.weight.grad
    grad = scaled.frontend.blocks[0].conv.weight.grad
    if mult == 0.0:
        assert grad is None
    else:
        torch.testing.assert_close(grad, mult * ref_grad)
    torch.testing.assert_close(scaled.mask_embedding.grad, reference.mask_embedding.grad)


def test_reset_targets_keeps_encoder_and_changes_classes():
    torch.manual_seed(0)
    model = build_hubert(HubertConfig.tiny())
    encoder_state = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    model.reset_targets(500)
    assert model.config.num_classes == 500 and model.head.label_embeddings.shape == (500, 32)
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(v, encoder_state[k])
    wavs, lengths = batch()
    targets = random_targets(model, lengths, 500)
    assert targets.max() >= 100
    out = model(wavs, lengths, targets, torch.Generator().manual_seed(0))
    out.loss.backward()
    assert model.head.label_embeddings.grad is not None
    rebuilt = build_hubert(HubertConfig.from_dict(model.config.to_dict()))
    rebuilt.load_state_dict(model.state_dict())


def test_too_short_input_is_an_error():
    model = build_hubert(HubertConfig.tiny()).eval()
    with pytest.raises(ValueError, match="too short"):
        model.extract_features(torch.zeros(1, 300), torch.tensor([300]))


def test_model_type():
    assert isinstance(build_hubert(HubertConfig.tiny()), HubertModel)


def test_dynamic_chunks_are_configured_checked_and_chosen_at_inference():
    """encoder.dynamic_chunks builds a chunk-drawing transformer; set_attention_chunk fixes the chunk for
    inference (a CTC model passes it to its encoder); bad ranges and a Mamba encoder are refused by name."""
    from audiossl.models.ctc.factory import ctc_over_encoder
    from audiossl.text.tokenizer import build_tokenizer

    config = HubertConfig.tiny("fbank")
    config.encoder.dynamic_chunks = [2, 6]
    config = HubertConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert config.encoder.dynamic_chunks == (2, 6)
    torch.manual_seed(0)
    model = build_hubert(config)
    chunks = model.encoder.chunks
    assert (chunks.min_frames, chunks.max_frames, chunks.full_context_prob) == (2, 6, 0.5)
    inputs, lengths = model_inputs(model, *batch(lengths=(16000, 9000)))
    out = model(inputs, lengths, random_targets(model, lengths, config.num_classes), torch.Generator().manual_seed(0))
    out.loss.backward()
    assert torch.isfinite(out.loss)
    ctc = ctc_over_encoder(model.encoder_only(), build_tokenizer("char", ["AB C"], None), {}, copy_weights=True).eval()
    with torch.no_grad():
        full, _ = ctc(inputs, lengths)
        chunked, _ = ctc.set_attention_chunk(5)(inputs, lengths)
        again, _ = ctc.set_attention_chunk(None)(inputs, lengths)
    assert not torch.allclose(full, chunked) and torch.equal(full, again)
    for bad, message in (([3], "dynamic_chunks must be"), ([5, 2], "dynamic_chunks must be")):
        broken = HubertConfig.tiny()
        broken.encoder.dynamic_chunks = bad
        with pytest.raises(ValueError, match=message):
            broken.validate()
    mamba = HubertConfig.tiny()
    mamba.encoder.kind, mamba.encoder.dynamic_chunks = "bimamba", (2, 4)
    with pytest.raises(ValueError, match="dynamic_chunks .* needs a transformer encoder"):
        mamba.validate()
    mamba.encoder.dynamic_chunks = ()
    with pytest.raises(ValueError, match="chunkwise attention needs a transformer encoder"):
        build_hubert(mamba).set_attention_chunk(4)
