"""Building blocks shared by the model families.

- :mod:`audiossl.nn.frontends`: waveform CNN encoder, fbank subsampler, feature projection.
- :mod:`audiossl.nn.transformer`: positional convolution, attention, feed-forward,
  encoder layer and encoder stack.
- :mod:`audiossl.nn.mamba`: the selective scan (chunked, sequential reference, mamba-ssm on CUDA),
  bidirectional Mamba-2 blocks and encoder stack.
- :mod:`audiossl.nn.masking`: span masking with an explicit ``torch.Generator``.

Import from the submodules; this package re-exports nothing.
"""
