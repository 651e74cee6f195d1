"""Layer featurizer against both of s3prl's Featurizers; poolings against direct formulas, blind to padding."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from audiossl.errors import ConfigError
from audiossl.interop.s3prl import import_s3prl_nn
from audiossl.nn.pooling import AttentiveStatisticsPooling, LayerWeightedSum, MeanPooling, ValidFrameBatchNorm


def hidden_states(layers=5, batch=2, time=7, dim=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, time, dim, generator=generator) * (i + 1) + i for i in range(layers)]


class FakeUpstream(nn.Module):
    """What s3prl's legacy Featurizer asks of an upstream: a list of waveforms → ``{"hidden_states": [...]}``."""

    def __init__(self, layers: int, dim: int):
        super().__init__()
        self.layers, self.dim = layers, dim

    def forward(self, wavs):
        return {"hidden_states": [torch.zeros(len(wavs), 50, self.dim) for _ in range(self.layers)]}


@pytest.mark.parametrize("normalize", [False, True])
def test_weighted_sum_equals_s3prl_featurizers(normalize):
    s3prl_nn = import_s3prl_nn()
    from s3prl.upstream.interfaces import Featurizer as LegacyFeaturizer

    states = hidden_states()
    ours = LayerWeightedSum(5, normalize=normalize)
    with torch.no_grad():
        ours.weights.copy_(torch.tensor([0.3, -1.0, 2.0, 0.0, 0.7]))
    upstream = SimpleNamespace(num_layers=5, hidden_sizes=[6] * 5, downsample_rates=[320] * 5)
    current = s3prl_nn.Featurizer(upstream, normalize=normalize)
    legacy = LegacyFeaturizer(FakeUpstream(5, 6), upstream_device="cpu", normalize=normalize)
    for theirs in (current, legacy):
        theirs.load_state_dict({"weights": ours.weights.detach().clone()})
    expected, _ = current(states, [torch.tensor([7, 5])] * 5)
    torch.testing.assert_close(ours(states), expected)
    torch.testing.assert_close(ours(states), legacy._weighted_sum(states))
    # a subset of layers, given in any order and from the end, is s3prl's sorted layer_selections
    subset = LayerWeightedSum(5, [-1, 1], normalize=normalize)
    assert subset.layers == (1, 4)
    current = s3prl_nn.Featurizer(upstream, layer_selections=[4, 1], normalize=normalize)
    with torch.no_grad():
        subset.weights.copy_(torch.tensor([1.5, -0.5]))
        current.weights.copy_(subset.weights)
    torch.testing.assert_close(subset(states), current(states, [torch.tensor([7, 5])] * 5)[0])


def test_weights_start_uniform_and_learn():
    states = hidden_states()
    featurizer = LayerWeightedSum(5)
    torch.testing.assert_close(featurizer(states), torch.stack(states).mean(0))
    torch.testing.assert_close(featurizer.layer_weights(), torch.full((5,), 0.2))
    featurizer(states).sum().backward()
    assert featurizer.weights.grad is not None and featurizer.weights.grad.abs().sum() > 0


def test_last_layer_single_layers_and_prefixes():
    states = hidden_states()
    last = LayerWeightedSum.last_layer(5)
    assert torch.equal(last(states), states[-1]) and not list(last.parameters())
    normalized = LayerWeightedSum.last_layer(5, normalize=True)(states)
    torch.testing.assert_close(normalized.mean(-1), torch.zeros(2, 7), atol=1e-5, rtol=0)
    second = LayerWeightedSum(5, [1])
    assert second.states_needed == 2 and torch.equal(second(states[:2]), states[1])
    with pytest.raises(ValueError, match="needs 2 to 5"):
        second(states[:1])
    for layers, message in (([5], "indices into 5"), ([-6], "indices into 5"), ([], "non-empty"), ([1, -4], "twice")):
        with pytest.raises(ConfigError, match=message):
            LayerWeightedSum(5, layers)


def padded(items, time, fill):
    """Items of different lengths stacked into ``(B, time, D)``, the padding set to ``fill``."""
    batch = torch.full((len(items), time, items[0].shape[-1]), fill)
    for i, item in enumerate(items):
        batch[i, :len(item)] = item
    return batch, torch.tensor([len(item) for item in items])


def test_mean_pooling_equals_s3prl_and_ignores_padding():
    import_s3prl_nn()  # s3prl imports on torchaudio 2.9 only through the shim
    from s3prl.nn.pooling import MeanPooling as S3prlMeanPooling

    items = [torch.randn(n, 4) for n in (9, 3, 6)]
    batch, lengths = padded(items, 9, 0.0)
    pooled = MeanPooling()(batch, lengths)
    torch.testing.assert_close(pooled, S3prlMeanPooling(4)(batch, lengths))
    torch.testing.assert_close(pooled, torch.stack([item.mean(0) for item in items]))
    torch.testing.assert_close(MeanPooling()(*padded(items, 12, float("nan"))), pooled)


def attentive_reference(pooling: AttentiveStatisticsPooling, x: torch.Tensor) -> torch.Tensor:
    """The pooling of one unpadded ``(T, D)`` item written out (eval mode)."""
    if pooling.global_context:
        stats = torch.cat([x.mean(0), x.std(0, unbiased=False)])
        x_in = torch.cat([x, stats.expand(len(x), -1)], dim=-1)
    else:
        x_in = x
    norm = pooling.attention_norm
    hidden = torch.relu(x_in @ pooling.attention_in.weight.T + pooling.attention_in.bias)
    hidden = (hidden - norm.running_mean) / torch.sqrt(norm.running_var + norm.eps) * norm.weight + norm.bias
    scores = torch.tanh(hidden) @ pooling.attention_out.weight.T + pooling.attention_out.bias
    weights = torch.exp(scores - scores.max(0).values) / torch.exp(scores - scores.max(0).values).sum(0)
    mean = (weights * x).sum(0)
    return torch.cat([mean, torch.sqrt((weights * x * x).sum(0) - mean * mean)])


@pytest.mark.parametrize("global_context", [True, False])
def test_attentive_statistics_equals_the_formula_and_ignores_padding(global_context):
    torch.manual_seed(0)
    pooling = AttentiveStatisticsPooling(4, attention_channels=5, global_context=global_context)
    with torch.no_grad():
        pooling.attention_norm.running_mean.uniform_(-0.5, 0.5)
        pooling.attention_norm.running_var.uniform_(0.5, 2.0)
        pooling.attention_norm.weight.uniform_(0.5, 2.0)
    pooling.eval()
    items = [torch.randn(n, 4) * 2 + 1 for n in (8, 2, 5)]
    batch, lengths = padded(items, 8, 0.0)
    pooled = pooling(batch, lengths)
    assert pooled.shape == (3, 8)
    torch.testing.assert_close(pooled, torch.stack([attentive_reference(pooling, item) for item in items]))
    for i, item in enumerate(items):  # alone, and padded with NaN in a longer batch
        torch.testing.assert_close(pooling(item[None], torch.tensor([len(item)]))[0], pooled[i])
    torch.testing.assert_close(pooling(*padded(items, 13, float("nan"))), pooled)


def test_uniform_attention_gives_plain_mean_and_std():
    pooling = AttentiveStatisticsPooling(3, attention_channels=4).eval()
    with torch.no_grad():
        pooling.attention_out.weight.zero_()
        pooling.attention_out.bias.zero_()
    items = [torch.randn(n, 3) for n in (6, 4)]
    expected = torch.stack([torch.cat([x.mean(0), x.std(0, unbiased=False)]) for x in items])
    torch.testing.assert_close(pooling(*padded(items, 6, 5.0)), expected)


def test_training_statistics_come_from_valid_frames_only():
    items = [torch.randn(n, 3) for n in (7, 2, 5)]
    norm, reference = ValidFrameBatchNorm(3), nn.BatchNorm1d(3)
    batch, lengths = padded(items, 7, 100.0)
    mask = torch.arange(7)[None] < lengths[:, None]
    out = norm(batch, mask)
    valid = torch.cat(items)
    torch.testing.assert_close(out[mask], reference(valid))
    torch.testing.assert_close(norm.running_var, reference.running_var)
    assert torch.equal(out[~mask], torch.zeros_like(out[~mask]))
    torch.manual_seed(0)
    pooling = AttentiveStatisticsPooling(3, attention_channels=4)
    # in training mode too, longer padding changes nothing
    torch.testing.assert_close(pooling(batch, lengths), pooling(*padded(items, 11, -3.0)))
