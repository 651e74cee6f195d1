"""The thread pool of the corpora: a job that raises something other than a synthesis failure (Ctrl-C, a
full disk) stops the run at once, without running the jobs still queued."""
from __future__ import annotations

import threading
import time

import pytest

from audiossl.corpora import mini_tts
from audiossl.corpora.mini_tts import Sentence, Utterance


def test_an_interrupted_synthesis_runs_no_queued_utterance(tmp_path, monkeypatch):
    voice = mini_tts.VOICES_BY_SPEAKER["flite_slt"]
    utts = [Utterance(f"flite_slt-wn{i:05d}", voice, Sentence(f"wn{i:05d}", "Hi.", "HI")) for i in range(50)]
    calls = []

    def interrupted(*args):
        calls.append(args)
        time.sleep(0.05)    # a job takes time: the first failure is seen while most are still queued
        raise KeyboardInterrupt

    monkeypatch.setattr(mini_tts, "synthesize_utterance", interrupted)
    with pytest.raises(KeyboardInterrupt):
        mini_tts.synthesize_all(utts, tmp_path, seed=0, num_workers=2, progress=False)
    assert len(calls) < 10


def test_a_full_disk_stops_the_clips_at_once():
    started = []
    lock = threading.Lock()

    def full_disk():
        with lock:
            started.append(1)
        time.sleep(0.05)
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        mini_tts.render_all({f"utt{i}": full_disk for i in range(50)}, num_workers=2, progress=False, desc="clips")
    assert len(started) < 10
