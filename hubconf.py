"""torch.hub entry points, one per pretraining family, for a local checkout (nothing is downloaded)::

    model = torch.hub.load("/path/to/audiossl", "hubert", path="exp/hubert_iter2/checkpoints/best.pt",
                           source="local")
    model = torch.hub.load("/path/to/audiossl", "wavlm", size="base", source="local")  # random weights

``path`` is an audiossl checkpoint, a Hugging Face model directory or a fairseq checkpoint (the last two
for HuBERT, wav2vec 2.0 and WavLM; see :func:`audiossl.load_model`); without it, ``size`` names a
randomly initialised architecture (:func:`audiossl.list_models`; default ``base``); not both. The model
comes in eval mode; ``model.extract_features(wavs (B, S) at model.sample_rate, lengths (B,))`` gives every
hidden state (B, T, D).
"""
from audiossl.checkpoint import build_model as _build_model  # underscores: torch.hub lists public callables
from audiossl.checkpoint import load_model as _load_model
from audiossl.errors import ConfigError as _ConfigError
from audiossl.models.named import model_config_from_section as _model_config

dependencies = ["torch", "torchaudio", "safetensors", "numpy"]


def _model(family: str, path, size: str | None):
    if path is not None:
        if size is not None:  # the file's model has its own size: a size beside it would be ignored
            raise _ConfigError(f"{family}: give path or size, not both: the model at {path} has its own size")
        model = _load_model(path)
        if model.config.family != family:
            raise _ConfigError(f"{path} holds a {model.config.family!r} model, not a {family!r} one")
        return model
    config = _model_config({"family": family, **({} if size is None else {"size": size})})
    return _build_model(family, config.to_dict()).eval()


def hubert(path=None, size: str | None = None):
    """HuBERT from ``path`` (audiossl, Hugging Face or fairseq), or a random one of ``size``."""
    return _model("hubert", path, size)


def wav2vec2(path=None, size: str | None = None):
    """wav2vec 2.0 from ``path`` (audiossl, Hugging Face or fairseq), or a random one of ``size``."""
    return _model("wav2vec2", path, size)


def wavlm(path=None, size: str | None = None):
    """WavLM from ``path`` (audiossl, Hugging Face or unilm's WavLM checkpoint), or a random one of ``size``."""
    return _model("wavlm", path, size)


def unispeech_sat(path=None, size: str | None = None):
    """UniSpeech-SAT from ``path`` (an audiossl checkpoint), or a random one of ``size``."""
    return _model("unispeech_sat", path, size)


def best_rq(path=None, size: str | None = None):
    """BEST-RQ from ``path`` (an audiossl checkpoint), or a random one of ``size``."""
    return _model("best_rq", path, size)


def ssamba(path=None, size: str | None = None):
    """SSAMBA (masked patches on a bidirectional Mamba encoder) from an audiossl ``path``, or a random one of ``size``."""
    return _model("ssamba", path, size)


def tera(path=None, size: str | None = None):
    """TERA (reconstruction of altered fbank, 100 frames/s) from an audiossl ``path``, or a random one of ``size``."""
    return _model("tera", path, size)


def mert(path=None, size: str | None = None):
    """MERT (24 kHz music): a checkpoint at ``path``, else a randomly initialised ``size``."""
    return _model("mert", path, size)
