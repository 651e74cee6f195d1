"""s3prl interop: s3prl imports on torchaudio 2.9 through the shim, and its SUPERB Featurizer
(learned weighted sum of layers) runs on an audiossl model through S3prlUpstream."""
from __future__ import annotations

import pytest
import torch

from audiossl import load_model
from audiossl.bin import convert
from audiossl.checkpoint import save_checkpoint
from audiossl.errors import UserError
from audiossl.interop.s3prl import S3prlUpstream, import_s3prl_nn
from audiossl.models.hubert import HubertConfig, build_hubert
from tests.interop.test_fairseq import tiny


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


def s3prl_expert(family: str, path):
    """s3prl's own upstream of ``family`` (``hubert_local``, ``wav2vec2_local``, ``wavlm_local``) on ``path``."""
    import importlib

    import_s3prl_nn()
    return importlib.import_module(f"s3prl.upstream.{family}.expert").UpstreamExpert(str(path)).eval()


@pytest.mark.parametrize("family", ["hubert", "wav2vec2", "wavlm"])
@pytest.mark.parametrize("pre_norm", [False, True], ids=["base-layout", "large-layout"])
def test_s3prl_upstreams_load_the_written_file_with_the_same_hidden_states(tmp_path, family, pre_norm):
    ours = tiny(family, pre_norm)
    save_checkpoint(tmp_path / "model.pt", family, ours.config.to_dict(), ours.state_dict())
    assert convert.main(["to-s3prl", str(tmp_path / "model.pt"), str(tmp_path / "s3prl.pt")]) == 0
    expert = s3prl_expert(family, tmp_path / "s3prl.pt")
    torch.manual_seed(1)
    wavs = torch.randn(2, 16000)
    with torch.no_grad():
        theirs = expert([wav for wav in wavs])["hidden_states"]
        hidden, _ = ours.extract_features(wavs, torch.tensor([16000, 16000]))
    assert len(theirs) == len(hidden)
    for layer, (mine, other) in enumerate(zip(hidden, theirs)):
        torch.testing.assert_close(mine, other, atol=1e-4, rtol=1e-4, msg=lambda text: f"layer {layer}: {text}")
    back = load_model(tmp_path / "s3prl.pt")  # and convert from-fairseq: the same reader
    for name, tensor in ours.state_dict().items():
        if not (family == "wavlm" and name.startswith("head.")):   # unilm's files hold no head
            assert torch.equal(back.state_dict()[name], tensor), name


def test_an_s3prl_file_of_another_layout_is_named(tmp_path, capsys):
    path = tmp_path / "s3prl.pt"
    torch.save({"task_cfg": ["not", "settings"], "model_cfg": {}, "model_weight": {}}, path)
    with pytest.raises(UserError, match=r"s3prl\.pt: its task_cfg and model_cfg \(s3prl's layout\) are not both"):
        load_model(path)
    assert convert.main(["from-fairseq", str(path), str(tmp_path / "model.pt")]) == 1
    assert "s3prl.pt: its task_cfg and model_cfg" in capsys.readouterr().err
