"""Checkpoints and models in and out of other toolkits: :mod:`~audiossl.interop.huggingface`
(HuBERT, wav2vec 2.0 and WavLM model directories), :mod:`~audiossl.interop.s3prl` (s3prl upstream interface, SUPERB).

The pure weight and config converters live beside each family (``models/<family>/interop.py``);
the modules here read and write the other toolkits' files and objects.
"""
