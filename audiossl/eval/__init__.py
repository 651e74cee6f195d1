"""Evaluation and inspection of trained models.

- :mod:`audiossl.eval.attention`: how far each attention head of an encoder looks.
- :mod:`audiossl.eval.results`: the Markdown results section of a CTC experiment grid (pretrained vs scratch).
- :mod:`audiossl.eval.utterance`: scores of fine-tuned utterance models, and their pretrained-vs-scratch sections.
- :mod:`audiossl.eval.verification`: trial lists, score files, EER and minDCF of speaker verification.
"""
