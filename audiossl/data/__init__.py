"""Kaldi data dirs (:mod:`audiossl.data.kaldi_dir`) and their validation (:mod:`audiossl.data.validate`)."""
