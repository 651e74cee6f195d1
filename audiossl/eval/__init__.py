"""Evaluation and inspection of trained models.

- :mod:`audiossl.eval.attention`: how far each attention head of an encoder looks.
"""
