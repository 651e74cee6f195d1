"""Kaldi-compatible features (:mod:`.kaldi`) and ark/scp feature stores (:mod:`.store`)."""
