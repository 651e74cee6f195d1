"""audiossl: speech and audio self-supervised learning with Kaldi-style recipes."""

__version__ = "0.1.0"
