"""Model families, one sub-package each with the same shape: ``config.py`` (nested dataclass
config with named sizes), ``factory.py`` (the only code that reads the config) and
``model.py`` (the module built from parts).

- :mod:`audiossl.models.hubert`: HuBERT (masked prediction of k-means targets).

Import from the sub-packages; this package re-exports nothing.
"""
