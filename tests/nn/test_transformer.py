import math

import pytest
import torch
from torch import nn

from audiossl.nn.transformer import (
    AlibiPositionBias,
    ConvPositionalEmbedding,
    DynamicChunks,
    EncoderLayer,
    FeedForward,
    PositionBiasGate,
    RelativePositionBias,
    SelfAttention,
    TransformerEncoder,
    chunk_mask,
    init_bert_params,
)

DIM, HEADS = 32, 4


def make_encoder(num_layers=3, layer_norm_first=False, layer_drop=0.0, kernel=8, p=0.1):
    layers = [
        EncoderLayer(SelfAttention(DIM, HEADS, p), FeedForward(DIM, 64, p, p), p, layer_norm_first)
        for _ in range(num_layers)
    ]
    return TransformerEncoder(
        ConvPositionalEmbedding(DIM, kernel, 4), layers, nn.LayerNorm(DIM), layer_norm_first, p, layer_drop
    )


def padding_mask(lengths, time):
    return torch.arange(time)[None, :] >= torch.tensor(lengths)[:, None]


def test_attention_matches_reference_softmax_with_key_padding():
    torch.manual_seed(0)
    attn = SelfAttention(DIM, HEADS, 0.0).eval()
    x = torch.randn(2, 7, DIM)
    pad = padding_mask([4, 7], 7)
    out = attn(x, pad)

    def split(t):
        return t.view(2, 7, HEADS, DIM // HEADS).transpose(1, 2)

    q, k, v = split(attn.q_proj(x)), split(attn.k_proj(x)), split(attn.v_proj(x))
    scores = q @ k.transpose(-1, -2) / math.sqrt(DIM // HEADS)
    scores = scores.masked_fill(pad[:, None, None, :], float("-inf"))
    ref = attn.out_proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 7, DIM))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_alibi_bias_is_minus_slope_times_distance():
    bias = AlibiPositionBias(4)(5)
    assert bias.shape == (4, 5, 5)
    torch.testing.assert_close(bias[:, 1, 3], -torch.tensor([2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8]) * 2)
    torch.testing.assert_close(bias, bias.transpose(1, 2))
    assert bool((bias.diagonal(dim1=1, dim2=2) == 0).all())


def test_attention_with_alibi_matches_reference_and_ignores_padding():
    torch.manual_seed(0)
    alibi = AlibiPositionBias(HEADS)
    attn = SelfAttention(DIM, HEADS, 0.0).eval()
    x = torch.randn(2, 7, DIM)
    x[0, 4:] = 50.0
    pad = padding_mask([4, 7], 7)
    out = attn(x, pad, alibi(7))

    def split(t, time=7):
        return t.view(-1, time, HEADS, DIM // HEADS).transpose(1, 2)

    q, k, v = split(attn.q_proj(x)), split(attn.k_proj(x)), split(attn.v_proj(x))
    scores = q @ k.transpose(-1, -2) / math.sqrt(DIM // HEADS) + alibi(7)
    scores = scores.masked_fill(pad[:, None, None, :], float("-inf"))
    ref = attn.out_proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 7, DIM))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[0, :4], attn(x[:1, :4], padding_mask([4], 4), alibi(4))[0], atol=1e-5, rtol=1e-5)


def test_gated_bias_attention_equals_sdpa_with_the_float_mask_in_values_and_gradients():
    """On the CPU a bias that needs a gradient takes the written-out products; SDPA's float mask is
    the reference, on a padded batch with chunks, float64."""
    torch.manual_seed(0)
    attn = SelfAttention(DIM, HEADS, 0.0, gate=PositionBiasGate(HEADS, DIM // HEADS)).double().eval()
    relative = RelativePositionBias(HEADS, num_buckets=16, max_distance=20).double()
    x = torch.randn(2, 9, DIM, dtype=torch.float64, requires_grad=True)
    pad, chunks = padding_mask([6, 9], 9), chunk_mask(9, 3)
    params = [x, *attn.parameters(), *relative.parameters()]

    out = attn(x, pad, relative(9), chunks)
    grads = torch.autograd.grad(out.square().sum(), params)

    def split(t):
        return t.view(2, 9, HEADS, DIM // HEADS).transpose(1, 2)

    q, k, v = split(attn.q_proj(x)), split(attn.k_proj(x)), split(attn.v_proj(x))
    mask = attn.gate(x, relative(9)).masked_fill(pad[:, None, None, :] | ~chunks, float("-inf"))
    ref_heads = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    ref = attn.out_proj(ref_heads.transpose(1, 2).reshape(2, 9, DIM))
    ref_grads = torch.autograd.grad(ref.square().sum(), params)
    torch.testing.assert_close(out, ref)
    for grad, ref_grad in zip(grads, ref_grads):
        torch.testing.assert_close(grad, ref_grad)
    weights = attn.attention_weights(x, pad, relative(9))
    assert bool((weights[0, :, :, 6:] == 0).all())
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, HEADS, 9, dtype=torch.float64))


def test_gated_bias_attention_under_bf16_autocast_stays_close_to_fp32():
    torch.manual_seed(0)
    attn = SelfAttention(DIM, HEADS, 0.0, gate=PositionBiasGate(HEADS, DIM // HEADS)).eval()
    bias = RelativePositionBias(HEADS, num_buckets=16, max_distance=20)(9)
    x, pad = torch.randn(2, 9, DIM), padding_mask([6, 9], 9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = attn(x, pad, bias)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), attn(x, pad, bias), atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize("bias, rms_range", [(True, (3.0, 8.0)), (False, (25.0, 35.0))])
def test_alibi_makes_fresh_attention_local(bias, rms_range):
    """Freshly initialised (BERT init), head 0 attends almost uniformly without the bias; with it,
    its weights fall off as exp(-|distance| / 4): an rms distance of about 4 * sqrt(2) frames."""
    torch.manual_seed(0)
    time, centre = 101, 50
    attn = SelfAttention(DIM, HEADS, 0.0).eval()
    attn.apply(init_bert_params)
    with torch.no_grad():  # values carry each frame's position and its square; head 0 reads both
        for proj in (attn.v_proj, attn.out_proj):
            proj.weight.copy_(torch.eye(DIM))
            proj.bias.zero_()
        x = torch.randn(1, time, DIM)
        position = torch.arange(time, dtype=torch.float32)
        x[0, :, 0], x[0, :, 1] = position / time, (position / time) ** 2
        out = attn(x, padding_mask([time], time), AlibiPositionBias(HEADS)(time) if bias else None)[0, centre] * time
    mean, mean_square = float(out[0]), float(out[1]) * time
    rms = math.sqrt(mean_square - 2 * centre * mean + centre**2)
    assert rms_range[0] < rms < rms_range[1]


def test_attention_rejects_indivisible_heads():
    with pytest.raises(ValueError, match="divisible"):
        SelfAttention(30, 4, 0.0)


@pytest.mark.parametrize("kernel", [7, 8])
def test_conv_pos_keeps_length_and_ignores_padding(kernel):
    torch.manual_seed(0)
    pos = ConvPositionalEmbedding(DIM, kernel, 4)
    x = torch.randn(1, 10, DIM)
    padded = torch.cat([x, torch.full((1, 5, DIM), 9.0)], dim=1)
    out_alone = pos(x, padding_mask([10], 10))
    out_padded = pos(padded, padding_mask([10], 15))
    assert out_alone.shape == (1, 10, DIM) and out_padded.shape == (1, 15, DIM)
    torch.testing.assert_close(out_padded[:, :10], out_alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layer_norm_first", [False, True])
def test_encoder_padding_invariance(layer_norm_first):
    torch.manual_seed(0)
    enc = make_encoder(layer_norm_first=layer_norm_first).eval()
    short = torch.randn(1, 9, DIM)
    batch = torch.randn(2, 20, DIM)
    batch[0, :9] = short[0]
    batch[0, 9:] = 50.0
    states = enc(batch, padding_mask([9, 20], 20))
    alone = enc(short, padding_mask([9], 9))
    assert len(states) == len(alone) == 4
    for s, a in zip(states, alone):
        torch.testing.assert_close(s[0, :9], a[0], atol=1e-4, rtol=1e-4)


def test_hidden_state_zero_is_post_norm_input_and_last_is_final_norm_in_pre_norm():
    torch.manual_seed(0)
    x = torch.randn(2, 6, DIM)
    pad = padding_mask([6, 6], 6)
    post = make_encoder(layer_norm_first=False).eval()
    states = post(x, pad)
    torch.testing.assert_close(states[0], post.layer_norm(x + post.pos_embedding(x, pad)))
    torch.testing.assert_close(states[1], post.layers[0](states[0], pad))

    pre = make_encoder(layer_norm_first=True).eval()
    states = pre(x, pad)
    torch.testing.assert_close(states[0], x + pre.pos_embedding(x, pad))
    unnormed = pre.layers[2](states[2], pad)
    torch.testing.assert_close(states[3], pre.layer_norm(unnormed))


def test_layer_drop_only_in_training_with_a_generator():
    torch.manual_seed(0)
    enc = make_encoder(num_layers=6, layer_drop=0.5, p=0.0).train()
    x = torch.randn(1, 5, DIM)
    pad = padding_mask([5], 5)
    a = enc(x, pad, torch.Generator().manual_seed(1))
    b = enc(x, pad, torch.Generator().manual_seed(1))
    for s, t in zip(a, b):
        torch.testing.assert_close(s, t)
    dropped = [torch.equal(a[i], a[i + 1]) for i in range(6)]
    assert any(dropped) and not all(dropped)
    no_generator = enc(x, pad)
    assert not any(torch.equal(no_generator[i], no_generator[i + 1]) for i in range(6))
    enc.eval()
    kept = enc(x, pad, torch.Generator().manual_seed(1))
    assert not any(torch.equal(kept[i], kept[i + 1]) for i in range(6))
    for s, t in zip(kept, no_generator):
        torch.testing.assert_close(s, t)


def test_chunk_mask_gives_full_left_context_and_no_look_ahead():
    expected = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    assert torch.equal(chunk_mask(5, 2), expected.bool())
    assert torch.equal(chunk_mask(4, 1), torch.ones(4, 4).tril().bool())   # chunks of one frame: causal


@pytest.mark.parametrize("layer_norm_first", [False, True])
def test_chunked_encoder_never_sees_a_later_chunk(layer_norm_first):
    """With chunk_frames c, changing the frames after chunk k changes no output of chunks 0..k (the
    positional convolution included), at every layer; full context does see them."""
    torch.manual_seed(0)
    enc = make_encoder(layer_norm_first=layer_norm_first, kernel=8).eval()
    x = torch.randn(1, 17, DIM)
    later = x.clone()
    later[:, 10:] = torch.randn(1, 7, DIM)   # chunk size 5: chunks 0 and 1 are frames 0..9
    mask = padding_mask([17], 17)
    enc.chunk_frames = 5
    for a, b in zip(enc(x, mask), enc(later, mask)):
        torch.testing.assert_close(a[:, :10], b[:, :10])
        assert not torch.allclose(a[:, 10:], b[:, 10:])
    enc.chunk_frames = None
    assert not torch.allclose(enc(x, mask)[-1][:, :10], enc(later, mask)[-1][:, :10])


def test_chunked_encoder_padding_invariance():
    torch.manual_seed(0)
    enc = make_encoder().eval()
    enc.chunk_frames = 4
    short = torch.randn(1, 9, DIM)
    batch = torch.randn(2, 20, DIM)
    batch[0, :9] = short[0]
    batch[0, 9:] = 50.0
    for s, a in zip(enc(batch, padding_mask([9, 20], 20)), enc(short, padding_mask([9], 9))):
        torch.testing.assert_close(s[0, :9], a[0], atol=1e-4, rtol=1e-4)


def test_dynamic_chunks_are_drawn_per_training_batch_from_the_generator():
    chunks = DynamicChunks(2, 6, full_context_prob=0.25)
    draws = [chunks.draw(torch.Generator().manual_seed(seed)) for seed in range(400)]
    assert draws == [chunks.draw(torch.Generator().manual_seed(seed)) for seed in range(400)]
    sizes = [d for d in draws if d is not None]
    assert set(sizes) == {2, 3, 4, 5, 6} and 0.18 < draws.count(None) / len(draws) < 0.32
    torch.manual_seed(0)
    enc = make_encoder(p=0.0)
    enc.chunks = DynamicChunks(3, 3, full_context_prob=0.0)
    x, mask = torch.randn(1, 12, DIM), padding_mask([12], 12)
    enc.eval()
    full = enc(x, mask, torch.Generator())[-1]
    enc.chunk_frames = 3
    chunked = enc(x, mask)[-1]
    enc.chunk_frames = None
    enc.train()
    torch.testing.assert_close(enc(x, mask, torch.Generator())[-1], chunked)   # training draws the chunk
    torch.testing.assert_close(enc(x, mask)[-1], full)                        # no generator: full context
