"""Noise clips: seeded numpy noise, babble of the given speech, sonic-pi-samples ambience (seconds to make)."""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile

from audiossl.corpora import mini_tts, noise
from audiossl.corpora.noise import (KINDS, MAX_PEAK, TARGET_RMS, NoiseError, babble, mains_hum, power_law_noise,
                                    prepare_noise)
from audiossl.data.kaldi_dir import read_table
from audiossl.data.validate import validate_data_dir

RATE = 16000
HAS_AMBIENCE = bool(noise.ambience_paths())
PRESENT_KINDS = set(KINDS) if HAS_AMBIENCE else set(KINDS) - {"ambience"}


def tone(freq: float, seconds: float = 1.0) -> np.ndarray:
    """A sine of ``freq`` Hz faded in and out (no clicks where utterances meet); shape (seconds * 16000,)."""
    t = np.arange(int(seconds * RATE)) / RATE
    return 0.5 * np.sin(2 * np.pi * freq * t) * np.hanning(len(t))


def write_tones(folder: Path, freqs: dict[str, float]) -> dict[Path, float]:
    """One 16 kHz wav per ``{name: frequency}``; returns ``{path: frequency}``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {folder / f"{name}.wav": freq for name, freq in freqs.items()}
    for path, freq in paths.items():
        soundfile.write(str(path), tone(freq), RATE, subtype="PCM_16")
    return paths


def band_power(samples: np.ndarray, freqs) -> dict[float, float]:
    """Peak power of the Hann-windowed spectrum within 3 Hz of each frequency."""
    power = np.abs(np.fft.rfft(samples * np.hanning(len(samples)))) ** 2
    bins = np.fft.rfftfreq(len(samples), 1 / RATE)
    return {f: float(power[np.abs(bins - f) <= 3].max()) for f in freqs}


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> list[Path]:
    """Six one-second tone "utterances" of training speakers."""
    folder = tmp_path_factory.mktemp("speech")
    return sorted(write_tones(folder, {f"train{i}": 300 + 100 * i for i in range(6)}))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, speech) -> tuple[Path, Path]:
    """``(audio_dir, data_dir)`` of a tiny noise dir with seed 0."""
    root = tmp_path_factory.mktemp("noise")
    prepare_noise(root / "audio", root / "data", speech, size="tiny", seed=0)
    return root / "audio", root / "data"


def tables(data: Path) -> dict[str, str]:
    return {f.name: f.read_text() for f in sorted(data.iterdir())}


def digests(audio: Path) -> dict[Path, str]:
    return {p.relative_to(audio): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(audio.glob("*/*.wav"))}


def test_every_kind_is_present_in_a_valid_data_dir(tiny):
    audio, data = tiny
    assert sorted(p.name for p in data.iterdir()) == ["spk2utt", "utt2dur", "utt2kind", "utt2spk", "wav.scp"]
    assert validate_data_dir(data, check_text=False) == []
    kinds = read_table(data / "utt2kind")
    assert set(kinds.values()) == PRESENT_KINDS and len(kinds) == len(PRESENT_KINDS)
    assert read_table(data / "utt2spk") == kinds
    for clip, path in read_table(data / "wav.scp").items():
        assert clip.startswith(kinds[clip] + "-")
        assert Path(path) == audio.absolute() / kinds[clip] / f"{clip}.wav"


def test_clips_are_16k_non_silent_unclipped_and_level_normalized(tiny):
    _, data = tiny
    durations = read_table(data / "utt2dur")
    for clip, path in read_table(data / "wav.scp").items():
        info = soundfile.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (RATE, 1, "PCM_16"), clip
        assert abs(info.frames / RATE - float(durations[clip])) < 1e-3
        assert 2.0 <= info.frames / RATE <= 8.0, clip
        samples, _ = soundfile.read(path)
        rms, peak = np.sqrt(np.mean(samples ** 2)), np.abs(samples).max()
        assert peak <= MAX_PEAK + 1e-4, clip
        if peak < MAX_PEAK - 1e-3:                           # else the peak limit set the level
            assert abs(20 * np.log10(rms / TARGET_RMS)) < 0.05, clip
        assert rms > 0.1 * TARGET_RMS, clip


def test_same_seed_gives_identical_files_and_another_seed_other_audio(tiny, speech, tmp_path):
    audio, data = tiny
    prepare_noise(tmp_path / "same", tmp_path / "same_data", speech, size="tiny", seed=0)
    assert tables(tmp_path / "same_data") == {
        k: v.replace(str(audio.absolute()), str(tmp_path / "same")) for k, v in tables(data).items()}
    assert digests(tmp_path / "same") == digests(audio)
    prepare_noise(tmp_path / "other", tmp_path / "other_data", speech, size="tiny", seed=1)
    other = digests(tmp_path / "other")
    assert other.keys() == digests(audio).keys()
    assert all(other[clip] != digest for clip, digest in digests(audio).items())


def test_rerun_reuses_clips_and_remakes_a_missing_one(tiny, speech, tmp_path):
    audio, data = tiny
    before = digests(audio)
    times = {p: p.stat().st_mtime_ns for p in audio.glob("*/*.wav")}
    victim = audio / "pink" / "pink-0000.wav"
    victim.unlink()
    prepare_noise(audio, tmp_path / "data", speech, size="tiny", seed=0)
    assert digests(audio) == before
    assert tables(tmp_path / "data") == tables(data)
    assert all(p.stat().st_mtime_ns == t for p, t in times.items() if p != victim)


def test_another_seed_in_the_same_audio_dir_is_refused(tiny, speech, tmp_path):
    audio, _ = tiny
    with pytest.raises(NoiseError, match="seed 0, not 1"):
        prepare_noise(audio, tmp_path / "data", speech, size="tiny", seed=1)


def test_a_full_disk_while_writing_a_clip_names_it_and_leaves_no_part_of_it(speech, tmp_path, monkeypatch):
    real = soundfile.write

    def full_disk(path, *args, **kwargs):
        if "brown" in str(path):                      # the third kind: two clips are written before
            Path(path).write_bytes(b"RIFF part")
            raise soundfile.LibsndfileError(2)         # what libsndfile raises when the disk is full
        return real(path, *args, **kwargs)

    monkeypatch.setattr(soundfile, "write", full_disk)
    with pytest.raises(OSError, match=r"brown-0000\.wav: cannot write the wav \(System error\.\); is the disk full"):
        prepare_noise(tmp_path / "audio", tmp_path / "data", speech, size="tiny", seed=0)
    assert sorted(p.name for p in (tmp_path / "audio").rglob("*") if p.is_file()) \
        == ["pink-0000.wav", "seed", "white-0000.wav"]
    assert not (tmp_path / "data").exists()


def test_a_noise_dir_stopped_before_its_first_clip_takes_another_seed(tiny, speech, tmp_path):
    noise._check_seed(tmp_path / "audio", 1)                        # a run with a mistyped seed, stopped at once
    prepare_noise(tmp_path / "audio", tmp_path / "data", speech, size="tiny", seed=0)
    assert digests(tmp_path / "audio") == digests(tiny[0])
    with pytest.raises(NoiseError, match="seed 0, not 1"):
        prepare_noise(tmp_path / "audio", tmp_path / "data", speech, size="tiny", seed=1)


def test_tiny_clips_are_the_first_clips_of_a_full_dir(tiny, speech, tmp_path, monkeypatch):
    audio, _ = tiny
    monkeypatch.setitem(noise.CLIPS_PER_KIND, "full", 2)
    prepare_noise(tmp_path / "full", tmp_path / "data", speech, size="full", seed=0)
    full = digests(tmp_path / "full")
    assert len(full) == 2 * len(PRESENT_KINDS)
    assert digests(audio).items() <= full.items()


def test_without_sonic_pi_samples_ambience_is_skipped_with_a_warning(speech, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger=noise.__name__):
        prepare_noise(tmp_path / "audio", tmp_path / "data", speech, size="tiny", samples_dir=tmp_path / "none")
    assert any("sonic-pi-samples" in r.getMessage() for r in caplog.records)
    assert set(read_table(tmp_path / "data" / "utt2kind").values()) == set(KINDS) - {"ambience"}


def test_no_speech_is_an_error(tmp_path):
    with pytest.raises(NoiseError, match="no speech"):
        prepare_noise(tmp_path / "audio", tmp_path / "data", [], size="tiny")


def test_babble_is_made_of_the_given_speech_only(tmp_path):
    paths = write_tones(tmp_path, {f"u{i}": 200 + 50 * i for i in range(12)})
    given = sorted(p for p in paths if int(p.stem[1:]) % 2 == 0)
    mix = babble(np.random.default_rng(0), given, 5 * RATE)
    power = band_power(mix, set(paths.values()))
    used = max(power[paths[p]] for p in given)
    assert max(power[f] for p, f in paths.items() if p not in given) < 1e-4 * used


@pytest.mark.parametrize("kind", ["white", "pink", "brown", "blue"])
def test_power_law_noise_has_its_slope(kind):
    exponent = noise.POWER_LAW_EXPONENTS[kind]
    freqs, power = scipy.signal.welch(power_law_noise(np.random.default_rng(0), 8 * RATE, exponent), RATE,
                                      nperseg=2048)
    band = (freqs > 100) & (freqs < 6000)
    slope = np.polyfit(np.log10(freqs[band]), np.log10(power[band]), 1)[0]
    assert abs(slope - exponent) < 0.1


def test_hum_is_at_the_mains_frequency():
    for seed in range(4):
        power = band_power(mains_hum(np.random.default_rng(seed), 2 * RATE), [50, 60, 100, 120, 1000])
        assert max(power[50], power[60]) > 1e4 * power[1000]
        assert (power[50] > 1e3 * power[60]) != (power[60] > 1e3 * power[50])


def test_mini_tts_makes_babble_of_train_unlab_only(tmp_path, monkeypatch):
    """prepare_mini_tts with stand-in sentences and tone "speech" (no TTS): every utterance has its own
    frequency, and the babble holds only those of train_unlab."""
    sentences = {lang: [mini_tts.Sentence(f"s{i:03d}", "x", f"WORD {lang.upper()} {i}") for i in range(60)]
                 for lang in mini_tts.LANGUAGES}
    freqs: dict[str, float] = {}

    def fake_synthesis(utts, corpus_dir, seed, num_workers, progress):
        for u in sorted(utts, key=lambda u: u.utt):
            freqs[u.utt] = 200 + 25 * len(freqs)
            write_tones(mini_tts.wav_path(corpus_dir, u).parent, {u.utt: freqs[u.utt]})
        return {}

    monkeypatch.setattr(mini_tts, "load_sentences", lambda corpus_dir, lang: sentences[lang])
    monkeypatch.setattr(mini_tts, "available_voices", lambda: list(mini_tts.VOICES))
    monkeypatch.setattr(mini_tts, "synthesize_all", fake_synthesis)
    written = mini_tts.prepare_mini_tts(tmp_path / "corpus", tmp_path / "data", size="tiny", progress=False)
    assert written["noise"] == tmp_path / "data" / "noise"
    assert set(read_table(written["noise"] / "utt2kind").values()) == PRESENT_KINDS
    train = set(read_table(written["train_unlab"] / "utt2spk"))
    assert train and len(train) < len(freqs)
    mix, _ = soundfile.read(read_table(written["noise"] / "wav.scp")["babble-0000"])
    power = band_power(mix, freqs.values())
    assert max(power[freqs[u]] for u in freqs if u not in train) < 1e-4 * max(power[freqs[u]] for u in train)
