"""The chunked selective scan against the sequential reference, the bidirectional Mamba encoder's
padding invariance, and its segmented layers against the unsegmented ones."""
from __future__ import annotations

import pytest
import torch

from audiossl.checkpoint import build_model
from audiossl.errors import ConfigError
from audiossl.interop.huggingface import save_hf
from audiossl.models.components import EncoderConfig, build_encoder
from audiossl.models.hubert import HubertConfig
from audiossl.nn import mamba
from audiossl.nn.frontends import valid_mask
from audiossl.nn.mamba import (
    BiMambaBlock,
    BiMambaLayer,
    GatedRMSNorm,
    chunked_final_state,
    chunked_scan,
    segment_sums,
    selective_scan,
    sequential_scan,
)


def scan_inputs(time: int, heads: int = 4, head_dim: int = 3, groups: int = 2, state: int = 5,
                dtype=torch.float64, device: str = "cpu") -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(time)
    x = torch.randn(2, time, heads, head_dim, generator=generator, dtype=dtype)
    dt = torch.rand(2, time, heads, generator=generator, dtype=dtype) * 0.5 + 0.01
    A = -torch.rand(heads, generator=generator, dtype=dtype) * 4 - 0.1
    B = torch.randn(2, time, groups, state, generator=generator, dtype=dtype)
    C = torch.randn(2, time, groups, state, generator=generator, dtype=dtype)
    return [t.to(device).requires_grad_() for t in (x, dt, A, B, C)]


def test_segment_sums_are_sums_of_the_later_terms():
    a = torch.tensor([1.0, 2.0, 4.0, 8.0])
    sums = segment_sums(a)
    assert sums[3, 0] == 14.0 and sums[2, 1] == 4.0 and sums[1, 1] == 0.0 and sums[0, 3] == float("-inf")


@pytest.mark.parametrize("time, chunk_size", [(1, 4), (7, 4), (37, 8), (37, 64), (50, 1), (129, 16)])
def test_chunked_scan_equals_the_sequential_reference(time, chunk_size):
    """Values and the gradients of every input, on odd lengths and chunks that do not divide them."""
    inputs = scan_inputs(time)
    expected = sequential_scan(*inputs)
    got = chunked_scan(*inputs, chunk_size)
    assert got.shape == expected.shape and torch.allclose(got, expected, atol=1e-10)
    weights = torch.randn_like(expected)
    grads = torch.autograd.grad((expected * weights).sum(), inputs)
    chunked_grads = torch.autograd.grad((got * weights).sum(), inputs)
    recomputed = selective_scan(*inputs, chunk_size)  # the chunked scan, recomputed in the backward pass
    recomputed_grads = torch.autograd.grad((recomputed * weights).sum(), inputs)
    for name, g, c, r in zip("x dt A B C".split(), grads, chunked_grads, recomputed_grads):
        assert torch.allclose(c, g, atol=1e-9) and torch.allclose(r, g, atol=1e-9), name


@pytest.mark.parametrize("time, chunk_size, initial", [(1, 4, True), (37, 8, False), (37, 8, True), (129, 16, True)])
def test_chunked_scan_states_equal_the_sequential_reference(time, chunk_size, initial):
    """From an initial state (or zeros) to the final state, with the outputs and without them: values
    and the gradients of every input."""
    inputs = scan_inputs(time)
    if initial:
        inputs.append(torch.randn(2, 4, 3, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
        inputs[-1].requires_grad_()
    x, dt, A, B, C, *state = inputs
    expected = sequential_scan(x, dt, A, B, C, *state, return_final_state=True)
    got = chunked_scan(x, dt, A, B, C, chunk_size, *state, return_final_state=True)
    final = chunked_final_state(x, dt, A, B, chunk_size, *state)
    for e, g in zip(expected + expected[1:], got + (final,)):
        assert g.shape == e.shape and torch.allclose(g, e, atol=1e-10)
    generator = torch.Generator().manual_seed(2)
    weights = [torch.randn(t.shape, generator=generator, dtype=t.dtype) for t in expected]
    grads = torch.autograd.grad(sum((t * w).sum() for t, w in zip(expected, weights)), inputs, retain_graph=True)
    chunked_grads = torch.autograd.grad(sum((t * w).sum() for t, w in zip(got, weights)), inputs)
    for name, g, c in zip("x dt A B C initial".split(), grads, chunked_grads):
        assert torch.allclose(c, g, atol=1e-9), name
    final_inputs = [x, dt, A, B, *state]
    final_grads = torch.autograd.grad((expected[1] * weights[1]).sum(), final_inputs)
    for name, g, c in zip("x dt A B initial".split(), final_grads,
                          torch.autograd.grad((final * weights[1]).sum(), final_inputs)):
        assert torch.allclose(c, g, atol=1e-9), name


def test_long_chunked_scan_keeps_fp32_precision():
    """1,000 frames in fp32 (decays over hundreds of chunks) against the fp64 reference."""
    inputs = [t.detach() for t in scan_inputs(1000)]
    expected = sequential_scan(*inputs)
    got = chunked_scan(*(t.float() for t in inputs), 32).double()
    assert (got - expected).abs().max() < 1e-4 * expected.abs().max()


@pytest.mark.skipif(not torch.cuda.is_available() or mamba.mamba_chunk_scan_combined is None,
                    reason="mamba-ssm's kernel runs on CUDA only")
def test_mamba_ssm_kernel_equals_the_chunked_scan():
    inputs = [t.detach().float() for t in scan_inputs(300, heads=4, head_dim=16, groups=1, state=16, device="cuda")]
    fused = selective_scan(*inputs, 64)
    assert torch.allclose(fused, chunked_scan(*inputs, 64), atol=1e-3, rtol=1e-3)


def test_gated_rms_norm_equals_its_formula():
    """Values and the gradients of y, z and the scale: its backward pass is written out."""
    torch.manual_seed(0)
    norm = GatedRMSNorm(16).double()
    with torch.no_grad():
        norm.weight.normal_()
    y, z = (torch.randn(3, 5, 16, dtype=torch.float64, requires_grad=True) for _ in range(2))
    gated = y * torch.nn.functional.silu(z)
    expected = gated * torch.rsqrt(gated.pow(2).mean(-1, keepdim=True) + norm.eps) * norm.weight
    got = norm(y, z)
    assert torch.allclose(got, expected, atol=1e-12)
    weights = torch.randn_like(got)
    for g, e in zip(torch.autograd.grad((got * weights).sum(), [y, z, norm.weight]),
                    torch.autograd.grad((expected * weights).sum(), [y, z, norm.weight])):
        assert torch.allclose(g, e, atol=1e-12)


def test_bidirectional_block_ignores_padding_and_sees_both_directions():
    torch.manual_seed(0)
    block = BiMambaBlock(dim=16, state_dim=4, expand=2, head_dim=8, conv_kernel=4, chunk_size=8).double()
    x, lengths = torch.randn(3, 21, 16, dtype=torch.float64), torch.tensor([21, 9, 14])
    x[~valid_mask(lengths, 21)] = 1e3  # padding that would show if it leaked
    padding = ~valid_mask(lengths, 21)
    batched = block(x, padding)
    for i, length in enumerate(lengths.tolist()):
        alone = block(x[i:i + 1, :length], padding[i:i + 1, :length])
        assert torch.allclose(batched[i, :length], alone[0], atol=1e-10)
    changed = x.clone()
    changed[0, -1] += 1.0  # the last frame reaches the first through the backward scan
    assert not torch.allclose(block(changed, padding)[0, 0], batched[0, 0])


def bimamba_config(segment_frames: int, **changes) -> EncoderConfig:
    return EncoderConfig(kind="bimamba", num_layers=2, dim=16, head_dim=8, state_dim=4, chunk_size=16,
                         segment_frames=segment_frames, segment_above=segment_frames, **changes)


def close(got: torch.Tensor, expected: torch.Tensor, tolerance: float) -> bool:
    return bool((got - expected).abs().max() <= tolerance * expected.abs().max())


def step(encoder: torch.nn.Module, x: torch.Tensor, padding: torch.Tensor, seed: int = 0) -> list[torch.Tensor]:
    """The last hidden state and the gradients of x and of every parameter, for a random linear loss;
    dropout and layer drop drawn from ``seed``."""
    x = x.detach().requires_grad_()
    torch.manual_seed(seed)
    out = encoder(x, padding, torch.Generator().manual_seed(seed))[-1]
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    grads = torch.autograd.grad((out * weights).sum(), [x, *encoder.parameters()], allow_unused=True)
    return [out, *(torch.zeros(()) if g is None else g for g in grads)]  # a dropped layer's are None


@pytest.mark.parametrize("dropout, layer_drop", [(0.0, 0.0), (0.1, 0.3)])
def test_segmented_layers_equal_unsegmented_ones(dropout, layer_drop):
    """Segments of 48 frames (3 chunks) on 173 frames, items of different lengths: the output and the
    gradients of the input and of every parameter, in training with dropout and layer drop too."""
    torch.manual_seed(0)
    whole = build_encoder(bimamba_config(0, dropout=dropout, layer_drop=layer_drop)).train()
    segmented = build_encoder(bimamba_config(48, dropout=dropout, layer_drop=layer_drop)).train()
    segmented.load_state_dict(whole.state_dict())
    x, padding = torch.randn(3, 173, 16), ~valid_mask(torch.tensor([173, 120, 47]), 173)
    for seed in range(2):
        for name, got, expected in zip(["output", "x"] + [n for n, _ in whole.named_parameters()],
                                       step(segmented, x, padding, seed), step(whole, x, padding, seed)):
            assert close(got, expected, 1e-5), name


def test_segmented_layer_ignores_padding():
    torch.manual_seed(0)
    block = BiMambaBlock(dim=16, state_dim=4, expand=2, head_dim=8, conv_kernel=4, chunk_size=16).double()
    layer = BiMambaLayer(block, 0.0, segment_frames=32, segment_above=32).double()
    lengths = torch.tensor([101, 40, 77])
    x, padding = torch.randn(3, 101, 16, dtype=torch.float64), ~valid_mask(lengths, 101)
    x[padding] = 1e3  # padding that would show if it leaked
    batched = layer(x, padding)
    for i, length in enumerate(lengths.tolist()):
        alone = layer(x[i:i + 1, :length], padding[i:i + 1, :length])
        assert torch.allclose(batched[i, :length], alone[0], atol=1e-10)


def test_segmented_layer_under_bf16_autocast_follows_the_unsegmented_one():
    """The forward pass under bf16 autocast, the backward pass outside it as the trainer runs them (and
    inside it): the recomputation restores the forward pass's autocast, and the values and gradients
    follow the unsegmented layers' to bf16's precision."""
    torch.manual_seed(0)
    whole, segmented = (build_encoder(bimamba_config(frames, dropout=0.0, layer_drop=0.0)) for frames in (0, 48))
    segmented.load_state_dict(whole.state_dict())
    dtypes = []  # of the output projection's results, forward and backward passes
    for layer in segmented.layers:
        layer.block.out_proj.register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    x, padding = torch.randn(2, 173, 16), ~valid_mask(torch.tensor([173, 150]), 173)
    with torch.autocast("cpu", torch.bfloat16):
        outputs = [encoder(x, padding)[-1] for encoder in (segmented, whole)]
    forward_calls = len(dtypes)
    weights = torch.randn(outputs[0].shape, generator=torch.Generator().manual_seed(1))
    got, expected = (torch.autograd.grad((out * weights).sum(), list(encoder.parameters()))
                     for out, encoder in zip(outputs, (segmented, whole)))
    assert len(dtypes) > forward_calls and set(dtypes) == {torch.bfloat16}
    assert close(outputs[0], outputs[1], 0.05)
    for (name, _), g, e in zip(whole.named_parameters(), got, expected):
        assert close(g, e, 0.05), name
    with torch.autocast("cpu", torch.bfloat16):  # the backward pass inside: no weight cast without gradients reused
        inside = step(segmented, x, padding)[2:]
    for (name, _), g, e in zip(whole.named_parameters(), inside, got):
        assert close(g, e, 0.05), name


def test_bimamba_encoder_returns_every_state_and_drops_layers_from_the_generator():
    config = EncoderConfig(kind="bimamba", num_layers=3, dim=16, head_dim=8, state_dim=4, layer_drop=0.5, dropout=0.0,
                           chunk_size=8)
    encoder = build_encoder(config)
    x, padding = torch.randn(2, 11, 16), ~valid_mask(torch.tensor([11, 6]), 11)
    states = encoder.eval()(x, padding)
    assert len(states) == 4 and all(s.shape == x.shape for s in states)
    assert len(encoder(x, padding, num_layers=2)) == 3
    encoder.train()
    first = encoder(x, padding, torch.Generator().manual_seed(1))
    again = encoder(x, padding, torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(first, again))


@pytest.mark.parametrize("changes, message", [
    ({"kind": "conformer"}, r"encoder.kind must be one of \('transformer', 'bimamba'\)"),
    ({"kind": "bimamba", "position_bias": "alibi"}, "position_bias must be 'none' for a bimamba"),
    ({"kind": "bimamba", "dim": 24, "head_dim": 64}, "expand \\* encoder.dim = 48 must be a multiple"),
    ({"kind": "bimamba", "segment_frames": 100}, "segment_frames must be 0 or a positive multiple of encoder.chunk_size"),
    ({"kind": "bimamba", "segment_frames": 128, "segment_above": 64}, "segment_above must be >= encoder.segment_frames"),
])
def test_bad_encoder_settings_are_named(changes, message):
    config = HubertConfig.tiny()
    config.encoder = EncoderConfig(**{**config.encoder.__dict__, **changes})
    with pytest.raises(ConfigError, match=message):
        config.validate()


def test_hubert_on_a_bimamba_encoder_trains_and_refuses_attention_and_export(tmp_path):
    config = HubertConfig.tiny()
    config.encoder.kind = "bimamba"
    torch.manual_seed(0)
    model = build_model("hubert", config.to_dict())
    wavs, lengths = torch.randn(2, 8000), torch.tensor([8000, 6000])
    frames = model.num_frames(lengths)
    labels = torch.randint(0, config.num_classes, (2, int(frames.max())))
    labels[~valid_mask(frames, labels.shape[1])] = -100
    output = model(wavs, lengths, labels, torch.Generator().manual_seed(0))
    output.loss.backward()
    assert torch.isfinite(output.loss)
    assert all(p.grad is not None for n, p in model.encoder.named_parameters() if "layer_norm" not in n)
    with pytest.raises(ConfigError, match="attention weights need a transformer encoder; this one is 'bimamba'"):
        model.eval().attention_weights(wavs, lengths)
    with pytest.raises(Exception, match="only the transformer encoder has a Hugging Face equivalent"):
        save_hf(model, tmp_path / "hf")
