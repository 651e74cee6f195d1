"""Corpus preparation: ``prepare_<corpus>()`` functions that write Kaldi data dirs."""
