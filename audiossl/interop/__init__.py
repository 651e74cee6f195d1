"""Checkpoints and models in and out of other toolkits: :mod:`~audiossl.interop.huggingface`
(HuBERT, wav2vec 2.0 and WavLM model directories), :mod:`~audiossl.interop.fairseq` (fairseq's
wav2vec 2.0 and HuBERT ``.pt`` files and unilm's WavLM ones, read with a restricted unpickler),
:mod:`~audiossl.interop.fairseq2` (fairseq2's wav2vec 2.0 checkpoint dirs),
:mod:`~audiossl.interop.torchaudio` (``torchaudio.models.Wav2Vec2Model`` and its bundles' state dicts),
:mod:`~audiossl.interop.s3prl` (s3prl upstream interface, SUPERB; the files of s3prl's upstreams). ``hubconf.py`` at the repository root
serves ``torch.hub.load(<checkout>, "<family>", path=..., source="local")``.

The pure weight and config converters live beside each family (``models/<family>/interop.py``);
the modules here read and write the other toolkits' files and objects (fairseq's converters live in
its module).
"""
