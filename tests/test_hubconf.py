"""``hubconf.py``: torch.hub entry points of a local checkout (no download), one per pretraining family."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from audiossl import load_model
from audiossl.checkpoint import build_model, save_checkpoint
from audiossl.errors import ConfigError
from audiossl.interop.fairseq import save_fairseq
from audiossl.models.hubert import HubertConfig
from audiossl.models.wavlm import WavLMConfig

REPO = str(Path(__file__).resolve().parent.parent)


def hidden_states(model) -> list[torch.Tensor]:
    with torch.no_grad():
        return model.extract_features(torch.randn(1, 4000, generator=torch.Generator().manual_seed(0)),
                                      torch.tensor([4000]))[0]


def test_entry_points_are_the_pretraining_families():
    """What ``torch.hub.list`` shows: the public callables of hubconf.py (it reads GitHub only, so by hand)."""
    spec = importlib.util.spec_from_file_location("hubconf", Path(REPO) / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    entries = [name for name in dir(hubconf) if callable(getattr(hubconf, name)) and not name.startswith("_")]
    assert entries == ["best_rq", "hubert", "mert", "ssamba", "tera", "unispeech_sat", "wav2vec2", "wavlm"]


def test_load_from_a_checkpoint_path(tmp_path):
    """An audiossl checkpoint and a fairseq one load as ``load_model`` loads them."""
    torch.manual_seed(0)
    hubert = build_model("hubert", HubertConfig.tiny().to_dict())
    save_checkpoint(tmp_path / "hubert.pt", "hubert", hubert.config.to_dict(), hubert.state_dict())
    model = torch.hub.load(REPO, "hubert", path=tmp_path / "hubert.pt", source="local")
    assert model.config.family == "hubert" and not model.training
    for a, b in zip(hidden_states(model), hidden_states(load_model(tmp_path / "hubert.pt"))):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    wavlm = build_model("wavlm", WavLMConfig.tiny().to_dict()).eval()
    save_fairseq(wavlm, tmp_path / "WavLM-Tiny.pt")
    model = torch.hub.load(REPO, "wavlm", path=str(tmp_path / "WavLM-Tiny.pt"), source="local")
    for a, b in zip(hidden_states(model), hidden_states(wavlm)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ConfigError, match="hubert.pt holds a 'hubert' model, not a 'wav2vec2' one"):
        torch.hub.load(REPO, "wav2vec2", path=tmp_path / "hubert.pt", source="local")


@pytest.mark.parametrize("family, size", [("unispeech_sat", "tiny"), ("best_rq", "tiny"), ("ssamba", "test"),
                                          ("tera", "tiny")])
def test_random_model_of_a_named_size(family, size):
    model = torch.hub.load(REPO, family, size=size, source="local")
    assert model.config.family == family and not model.training and len(hidden_states(model)) == 3
    with pytest.raises(ConfigError, match=f"model.size must be one of \\['base', .* for {family}, not 'huge'"):
        torch.hub.load(REPO, family, size="huge", source="local")


def test_a_size_beside_a_path_is_refused_not_ignored(tmp_path):
    """The file's model has its own size: ``size="large"`` beside ``path`` would be silently ignored."""
    hubert = build_model("hubert", HubertConfig.tiny().to_dict())
    save_checkpoint(tmp_path / "hubert.pt", "hubert", hubert.config.to_dict(), hubert.state_dict())
    with pytest.raises(ConfigError, match="hubert: give path or size, not both: the model at .*hubert.pt has its own"):
        torch.hub.load(REPO, "hubert", path=tmp_path / "hubert.pt", size="large", source="local")
    assert torch.hub.load(REPO, "hubert", source="local").config.encoder.num_layers == 12  # base without a size
