import pytest
import torch

from audiossl.bin import attention_stats
from audiossl.checkpoint import build_model, save_checkpoint
from audiossl.eval.attention import attention_statistics
from audiossl.models.ctc.config import CtcConfig
from audiossl.models.hubert import HubertConfig, build_hubert
from audiossl.nn.transformer import AlibiPositionBias, PositionBiasGate, RelativePositionBias, SelfAttention
from audiossl.text.tokenizer import build_tokenizer


def tiny(position_bias="none", frontend="fbank"):
    torch.manual_seed(0)
    config = HubertConfig.tiny(frontend)
    config.encoder.position_bias = position_bias
    return build_hubert(config).eval()


def fbank_batches(lengths=(120, 80)):
    gen = torch.Generator().manual_seed(0)
    return [(torch.randn(1, n, 80, generator=gen), torch.tensor([n])) for n in lengths]


@pytest.mark.parametrize("bias", [None, "alibi", "gated_relative"])
def test_explicit_weights_are_what_the_fast_attention_applies(bias):
    torch.manual_seed(0)
    attn = SelfAttention(32, 4, 0.0, PositionBiasGate(4, 8) if bias == "gated_relative" else None).eval()
    biases = {None: lambda time: None, "alibi": AlibiPositionBias(4), "gated_relative": RelativePositionBias(4, 16, 40)}
    position_bias = biases[bias](9)
    x = torch.randn(2, 9, 32)
    pad = torch.arange(9)[None, :] >= torch.tensor([6, 9])[:, None]
    weights = attn.attention_weights(x, pad, position_bias)
    assert bool((weights[0, :, :, 6:] == 0).all())
    v = attn.v_proj(x).view(2, 9, 4, 8).transpose(1, 2)
    ref = attn.out_proj((weights @ v).transpose(1, 2).reshape(2, 9, 32))
    torch.testing.assert_close(attn(x, pad, position_bias), ref, atol=1e-5, rtol=1e-5)


def test_uniform_attention_measures_as_uniform():
    model = tiny()
    for layer in model.encoder.layers:  # q = k = 0: every key gets the same weight
        for proj in (layer.attention.q_proj, layer.attention.k_proj):
            torch.nn.init.zeros_(proj.weight)
            torch.nn.init.zeros_(proj.bias)
    stats = attention_statistics(model, fbank_batches())
    assert stats.entropy.shape == stats.distance.shape == (2, 4)
    assert stats.frames == 60 + 40
    torch.testing.assert_close(stats.entropy, torch.ones(2, 4))
    torch.testing.assert_close(stats.distance, torch.full((2, 4), stats.uniform_distance))


def test_alibi_heads_look_nearer_and_each_more_locally_than_the_next():
    plain = attention_statistics(tiny(), fbank_batches())
    alibi = attention_statistics(tiny("alibi"), fbank_batches())
    assert bool((plain.distance > 0.9 * plain.uniform_distance).all())
    assert bool((alibi.distance[:, 0] < 0.3 * alibi.uniform_distance).all())
    assert bool((alibi.distance.diff(dim=1) > 0).all())  # slopes fall from head 1 to head 4


def test_a_model_in_training_mode_is_refused():
    with pytest.raises(ValueError, match="eval mode"):
        attention_statistics(tiny().train(), fbank_batches())


def test_fine_tuned_models_are_measured_through_their_encoder():
    encoder = tiny()
    tokenizer = build_tokenizer("char", ["AB C"], None)
    ctc = build_model("ctc", CtcConfig(encoder=encoder.config.to_dict(), vocab_size=tokenizer.vocab_size,
                                       tokenizer=tokenizer.to_dict()).to_dict())
    ctc.encoder.load_state_dict(encoder.state_dict(), strict=False)
    ctc.eval()
    torch.testing.assert_close(attention_statistics(ctc, fbank_batches()).distance,
                               attention_statistics(encoder, fbank_batches()).distance)


def test_cli_prints_each_layer_and_plots(tmp_path, data_dir, capsys):
    model = tiny(frontend="waveform")
    save_checkpoint(tmp_path / "m.pt", "hubert", model.config.to_dict(), model.state_dict())
    plot = tmp_path / "attention.png"
    assert attention_stats.main(["--num-utts", "2", "--plot", str(plot), str(data_dir), str(tmp_path / "m.pt")]) == 0
    out = capsys.readouterr().out
    assert "uniform attention would look" in out and out.count("\n    ") >= 2
    assert plot.stat().st_size > 1000
    assert attention_stats.main([str(tmp_path), str(tmp_path / "m.pt")]) == 1
