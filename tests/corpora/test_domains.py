"""Domain-shifted copies of a data dir: radio band and clipping, noise, determinism, renamed utterances."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile

from audiossl.corpora.domains import RADIO_BAND_HZ, shift_domain
from audiossl.corpora.mini_tts import CorpusError
from audiossl.data.kaldi_dir import DataDir, DataDirError


def tone_dir(tmp_path):
    """Two utterances of a 16 kHz chirp from 100 Hz to 7 kHz: energy in and out of the radio band."""
    t = np.arange(16000) / 16000
    chirp = (0.5 * np.sin(2 * np.pi * (100 * t + 3450 * t ** 2))).astype(np.float32)
    for utt in ("spk1-a", "spk1-b"):
        soundfile.write(tmp_path / f"{utt}.wav", chirp, 16000)
    DataDir({"wav.scp": {u: str(tmp_path / f"{u}.wav") for u in ("spk1-a", "spk1-b")},
             "utt2spk": {"spk1-a": "spk1", "spk1-b": "spk1"}, "text": {"spk1-a": "ONE", "spk1-b": "TWO"},
             "utt2lang": {"spk1-a": "en", "spk1-b": "en"}}).write(tmp_path / "src")
    return chirp


def band_energy(samples, low, high):
    spectrum = np.abs(np.fft.rfft(samples)) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / 16000)
    return spectrum[(freqs >= low) & (freqs < high)].sum()


def test_radio_copy_is_band_limited_clipped_and_deterministic(tmp_path):
    chirp = tone_dir(tmp_path)
    out = shift_domain(tmp_path / "src", tmp_path / "radio", tmp_path / "audio", "radio")
    assert out.utterances == ["spk1-a-radio", "spk1-b-radio"]
    assert out["text"] == {"spk1-a-radio": "ONE", "spk1-b-radio": "TWO"} and DataDir.read(tmp_path / "radio")["utt2lang"]
    radio, rate = soundfile.read(out["wav.scp"]["spk1-a-radio"], dtype="float32")
    assert rate == 16000 and len(radio) == len(chirp)
    inside, above = RADIO_BAND_HZ, (4500, 8000)
    ratio_in = band_energy(radio, *inside) / band_energy(chirp, *inside)
    ratio_above = band_energy(radio, *above) / band_energy(chirp, *above)
    assert ratio_above < 1e-3 * ratio_in   # nothing above the 8 kHz channel's band survives
    again = shift_domain(tmp_path / "src", tmp_path / "radio2", tmp_path / "audio2", "radio")
    np.testing.assert_array_equal(radio, soundfile.read(again["wav.scp"]["spk1-a-radio"], dtype="float32")[0])


def test_noisy_copy_adds_noise_and_keeps_finished_files(tmp_path, caplog):
    chirp = tone_dir(tmp_path)
    out = shift_domain(tmp_path / "src", tmp_path / "noisy", tmp_path / "audio", "noisy")
    noisy = soundfile.read(out["wav.scp"]["spk1-a-noisy"], dtype="float32")[0]
    assert len(noisy) == len(chirp) and np.abs(noisy).max() <= 1.0
    correlation = np.corrcoef(noisy, chirp)[0, 1]
    assert 0.5 < correlation < 0.9999   # the chirp, 0 to 20 dB above a noise
    with caplog.at_level("INFO"):
        shift_domain(tmp_path / "src", tmp_path / "noisy", tmp_path / "audio", "noisy")
    assert "2 utterances, 0 to make" in caplog.text
    with pytest.raises(DataDirError, match="unknown domain 'underwater'"):
        shift_domain(tmp_path / "src", tmp_path / "x", tmp_path / "audio", "underwater")


def test_another_seed_in_the_same_audio_dir_is_refused_not_given_the_earlier_files(tmp_path):
    tone_dir(tmp_path)
    first = shift_domain(tmp_path / "src", tmp_path / "radio", tmp_path / "audio", "radio", seed=0)
    before = soundfile.read(first["wav.scp"]["spk1-a-radio"])[0]
    with pytest.raises(CorpusError, match=r"audio/radio holds audio made with seed 0, not 1"):
        shift_domain(tmp_path / "src", tmp_path / "radio1", tmp_path / "audio", "radio", seed=1)
    assert not (tmp_path / "radio1").exists()
    np.testing.assert_array_equal(soundfile.read(first["wav.scp"]["spk1-a-radio"])[0], before)
    other = shift_domain(tmp_path / "src", tmp_path / "radio1", tmp_path / "audio1", "radio", seed=1)
    assert not np.array_equal(soundfile.read(other["wav.scp"]["spk1-a-radio"])[0], before)
