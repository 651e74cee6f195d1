"""Training objectives shared by the model families.

- :mod:`audiossl.objectives.output`: :class:`~audiossl.objectives.output.ObjectiveOutput`, the loss
  and additive metric sums every objective returns.
- :mod:`audiossl.objectives.masked_prediction`: HuBERT-style masked prediction of
  frame-level discrete targets.

Import from the submodules; this package re-exports nothing.
"""
