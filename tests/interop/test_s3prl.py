"""s3prl interop: s3prl imports on torchaudio 2.9 through the shim, and its SUPERB Featurizer
(learned weighted sum of layers) runs on an audiossl model through S3prlUpstream."""
from __future__ import annotations

import torch

from audiossl.interop.s3prl import S3prlUpstream, import_s3prl_nn
from audiossl.models.hubert import HubertConfig, build_hubert


def test_featurizer_weighted_sum_over_an_audiossl_model():
    s3prl_nn = import_s3prl_nn()
    model = build_hubert(HubertConfig.tiny("fbank")).eval()
    upstream = S3prlUpstream(model)
    assert upstream.num_layers == 3 == len(model.extract_features(torch.zeros(1, 16000), torch.tensor([16000]))[0])
    assert upstream.num_layers == 3 and upstream.hidden_sizes == [64] * 3 and upstream.downsample_rates == [320] * 3
    wavs, lengths = torch.randn(2, 16000, 1) * 0.1, torch.tensor([16000, 12000])
    with torch.no_grad():
        all_hs, all_lens = upstream(wavs, lengths)
        expected, frames = model.extract_features(wavs.squeeze(-1), lengths)
    # s3prl's length convention: (samples - 1) // 320 + 1 frames, the last frame repeated to fill
    assert frames.tolist() == [49, 37] and all(lens.tolist() == [50, 38] for lens in all_lens)
    for ours, theirs in zip(all_hs, expected):
        assert ours.shape == (2, 50, 64)
        assert torch.equal(ours[:, :49], theirs) and torch.equal(ours[:, 49], theirs[:, 48])
    featurizer = s3prl_nn.Featurizer(upstream)
    assert featurizer.output_size == 64 and featurizer.downsample_rate == 320
    summed, summed_lens = featurizer(all_hs, all_lens)
    # s3prl starts its layer weights at zero: the weighted sum begins as the mean of the layers
    torch.testing.assert_close(summed, torch.stack(all_hs).mean(dim=0))
    assert summed_lens.tolist() == [50, 38]
    summed.sum().backward()
    assert featurizer.weights.grad is not None


def test_batches_shorter_than_s3prl_minimum_are_padded():
    upstream = S3prlUpstream(build_hubert(HubertConfig.tiny()).eval())
    with torch.no_grad():
        all_hs, all_lens = upstream(torch.randn(1, 300), torch.tensor([300]))
    assert all_lens[0].tolist() == [1] and all_hs[0].shape[1] == 1
