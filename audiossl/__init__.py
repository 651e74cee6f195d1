"""audiossl: speech and audio self-supervised learning with Kaldi-style recipes.

``audiossl.load_model(path)`` rebuilds the model of any checkpoint a recipe wrote, or of a local
Hugging Face HuBERT, wav2vec 2.0 or WavLM directory.
Importing the package is cheap (torch loads on first use), so the data-dir tools start fast.
"""

__version__ = "0.1.0"


def load_model(path):
    """The model of an audiossl checkpoint or a Hugging Face directory, in eval mode
    (see :func:`audiossl.checkpoint.load_model`)."""
    from audiossl.checkpoint import load_model as load

    return load(path)


def list_models() -> dict[str, list[str]]:
    """Registered model families and their named sizes (see :mod:`audiossl.registry`)."""
    from audiossl.registry import list_models as families

    return families()
