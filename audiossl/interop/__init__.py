"""Checkpoints in and out of other toolkits' formats: :mod:`~audiossl.interop.huggingface`.

The pure weight and config converters live beside each family (``models/<family>/interop.py``);
the modules here read and write the other toolkits' files.
"""
