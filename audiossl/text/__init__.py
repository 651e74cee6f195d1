"""The text side of CTC ASR.

- :mod:`audiossl.text.tokenizer`: character and SentencePiece tokenizers with the CTC
  blank at id 0, rebuilt from plain dicts stored in checkpoints.
- :mod:`audiossl.text.ctc_decode`: greedy and prefix beam search CTC decoding.
- :mod:`audiossl.text.ngram`: word n-gram LMs (interpolated Kneser-Ney) written as ARPA,
  and their lexicons.
- :mod:`audiossl.text.lexicon_decode`: lexicon-constrained CTC beam search scored by such
  an LM (flashlight-text).
- :mod:`audiossl.text.scoring`: WER/CER and Kaldi-style decode directories.

Import from the submodules; this package re-exports nothing.
"""
