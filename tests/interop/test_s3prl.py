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
    assert upstream.num_layers == 3 and upstream.hidden_sizes == [64] * 3 and upstream.downsample_rates == [320] * 3
    wavs, lengths = torch.randn(2, 16000, 1) * 0.1, torch.tensor([16000, 12000])
    with torch.no_grad():
        all_hs, all_lens = upstream(wavs, lengths)
        expected, frames = model.extract_features(wavs.squeeze(-1), lengths)
    assert frames.tolist() == [49, 37] and all(torch.equal(a, frames) for a in all_lens)
    featurizer = s3prl_nn.Featurizer(upstream)
    assert featurizer.output_size == 64 and featurizer.downsample_rate == 320
    summed, summed_lens = featurizer(all_hs, all_lens)
    # s3prl starts its layer weights at zero: the weighted sum begins as the mean of the layers
    torch.testing.assert_close(summed, torch.stack(expected).mean(dim=0))
    assert torch.equal(summed_lens, frames)
    summed.sum().backward()
    assert featurizer.weights.grad is not None
