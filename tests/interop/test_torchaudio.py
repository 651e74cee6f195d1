"""torchaudio's Wav2Vec2Model (wav2vec 2.0, HuBERT, WavLM) built offline by its factories with small sizes and
random weights: imported with torchaudio's hidden states layer by layer, exported back weight for weight, and a
bundle's state dict file read."""
from __future__ import annotations

import argparse

import pytest
import torch
import torchaudio

from audiossl.checkpoint import build_model
from audiossl.errors import InteropError
from audiossl.interop.torchaudio import from_torchaudio, load_torchaudio_state_dict, to_torchaudio
from audiossl.models.hubert import HubertConfig

LAYOUTS = {"base-layout": False, "large-layout": True}
FAMILIES = ("wav2vec2", "hubert", "wavlm", "unispeech_sat")


def torchaudio_model(family: str, pre_norm: bool) -> torchaudio.models.Wav2Vec2Model:
    """A 2 x 64 model of torchaudio's base layout or, with ``pre_norm``, its large one (layer-norm CNN with
    biases, pre-norm encoder), every weight random (norms and WavLM's gates too)."""
    torch.manual_seed(0)
    sizes = dict(
        extractor_mode="layer_norm" if pre_norm else "group_norm",
        extractor_conv_layer_config=[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2,
        extractor_conv_bias=pre_norm, encoder_embed_dim=64, encoder_projection_dropout=0.1,
        encoder_pos_conv_kernel=16, encoder_pos_conv_groups=4, encoder_num_layers=2, encoder_num_heads=4,
        encoder_attention_dropout=0.1, encoder_ff_interm_features=128, encoder_ff_interm_dropout=0.0,
        encoder_dropout=0.1, encoder_layer_norm_first=pre_norm, encoder_layer_drop=0.05, aux_num_out=None)
    if family == "wavlm":  # 24 frames reach the logarithmic buckets
        model = torchaudio.models.wavlm_model(**sizes, encoder_num_buckets=8, encoder_max_distance=20)
    else:
        model = torchaudio.models.wav2vec2_model(**sizes)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model.eval()


def assert_same_hidden_states(reference: torchaudio.models.Wav2Vec2Model, ours, lengths: list[int]) -> None:
    """torchaudio's ``extract_features`` (and, for the last layer, its ``forward``, which adds the final layer
    norm of pre-norm models) equal audiossl's hidden states after the encoder input, on each item's valid frames."""
    lengths = torch.tensor(lengths)
    wavs = torch.randn(2, 8000, generator=torch.Generator().manual_seed(1)) * (torch.arange(8000) < lengths[:, None])
    padded = bool((lengths < 8000).any())  # torchaudio's WavLM takes no lengths
    with torch.no_grad():
        expected, _ = reference.extract_features(wavs, lengths if padded else None)
        final, _ = reference(wavs, lengths if padded else None)
        hidden, frames = ours.extract_features(wavs, lengths)
    assert len(hidden) == len(expected) + 1 == 3
    for index, (a, b) in enumerate(zip(expected[:-1] + [final], hidden[1:]), start=1):
        for item, valid in enumerate(frames.tolist()):
            torch.testing.assert_close(b[item, :valid], a[item, :valid], atol=1e-4, rtol=1e-4,
                                       msg=f"hidden state {index}, item {item}")


@pytest.mark.parametrize("pre_norm", LAYOUTS.values(), ids=LAYOUTS.keys())
@pytest.mark.parametrize("family", FAMILIES)
def test_import_and_export_keep_the_outputs(family, pre_norm):
    """Base layout on full-length items (torchaudio's group norm takes padding in, as HF's); the large
    layout padded, except WavLM."""
    reference = torchaudio_model(family, pre_norm)
    ours = from_torchaudio(reference, family, num_classes=7)
    assert ours.config.family == family and not ours.training
    lengths = [8000, 5000] if pre_norm and family != "wavlm" else [8000, 8000]
    assert_same_hidden_states(reference, ours, lengths)
    back = to_torchaudio(ours)
    expected = reference.state_dict()
    assert back.state_dict().keys() == expected.keys() and not back.training
    for name, tensor in back.state_dict().items():
        torch.testing.assert_close(tensor, expected[name], rtol=0, atol=0, msg=name)
    assert_same_hidden_states(back, ours, lengths)


def test_bundle_state_dict_file(tmp_path):
    """A bundle's file: a plain state dict of torchaudio's named architecture, with the old weight-norm names
    (weight_g, weight_v) and, for ASR bundles, a CTC head (dropped)."""
    reference = torchaudio.models.wavlm_base(aux_num_out=29).eval()
    state = reference.state_dict()
    for old, new in (("weight_g", "original0"), ("weight_v", "original1")):
        state[f"encoder.transformer.pos_conv_embed.conv.{old}"] = state.pop(
            f"encoder.transformer.pos_conv_embed.conv.parametrizations.weight.{new}")
    torch.save(state, tmp_path / "wavlm_base_plus.pth")
    ours = load_torchaudio_state_dict(tmp_path / "wavlm_base_plus.pth", "wavlm", "base")
    wavs = torch.randn(1, 4000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, _ = reference.extract_features(wavs)
        hidden, _ = ours.extract_features(wavs, torch.tensor([4000]))
    assert len(hidden) == 13
    for a, b in zip(expected, hidden[1:]):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)


def test_mismatches_are_named(tmp_path):
    with pytest.raises(InteropError, match="a torchaudio WavLM model is not a 'hubert' model"):
        from_torchaudio(torchaudio_model("wavlm", False), "hubert")
    with pytest.raises(InteropError, match="converts to hubert, wav2vec2, wavlm, unispeech_sat, not 'best_rq'"):
        from_torchaudio(torchaudio_model("hubert", False), "best_rq")
    with pytest.raises(InteropError, match="no torchaudio factory hubert_huge; sizes: wav2vec2: base"):
        load_torchaudio_state_dict(tmp_path / "x.pth", "hubert", "huge")
    torch.save(torchaudio_model("hubert", False).state_dict(), tmp_path / "tiny.pth")
    with pytest.raises(InteropError, match="tiny.pth: weights do not fit the architecture: .*wrong shape"):
        load_torchaudio_state_dict(tmp_path / "tiny.pth", "hubert", "base")
    with pytest.raises(InteropError, match="only the waveform front end"):
        to_torchaudio(build_model("hubert", HubertConfig.tiny("fbank").to_dict()))
    torch.save({"args": argparse.Namespace(lr=1.0)}, tmp_path / "other.pth")  # without torch's advice to unpickle
    with pytest.raises(InteropError, match=r"other.pth: cannot read state dict: not a torch.save file of tensors and "
                                           r"plain data, or a damaged one \(UnpicklingError: [^\n]*Namespace[^\n]*\)$"):
        load_torchaudio_state_dict(tmp_path / "other.pth", "hubert", "base")
