"""The keyword spotting set, synthesized for real at tiny size (a few seconds)."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile

from audiossl.corpora import keywords
from audiossl.corpora.keywords import (COMMANDS, LABELS, SILENCE, SNR_RANGE_DB, SPEECH_LEVEL_DBFS, SPLITS, UNKNOWN,
                                       UNKNOWN_WORDS, KeywordsSize, active_region, plan_keywords, prepare_keywords,
                                       raw_path, rms, spoken)
from audiossl.corpora.mini_tts import VOICES, VOICES_BY_SPEAKER, CorpusError
from audiossl.corpora.noise import MAX_PEAK
from audiossl.data.kaldi_dir import DataDir, read_table
from audiossl.data.validate import validate_data_dir

TOOLS = ("sox", "flite", "espeak-ng", "mbrola")
pytestmark = pytest.mark.skipif(not all(shutil.which(t) for t in TOOLS), reason=f"needs {', '.join(TOOLS)}")
RATE = 16000
TINY = KeywordsSize.tiny()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    """``(audio_dir, data_dir)`` of the tiny set with seed 0."""
    root = tmp_path_factory.mktemp("ks")
    prepare_keywords(root / "audio", root / "data", size="tiny", seed=0)
    return root / "audio", root / "data"


def tables(data: Path) -> dict[str, str]:
    return {f"{d.name}/{f.name}": f.read_text() for d in sorted(data.iterdir()) for f in sorted(d.iterdir())}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def best_match(clip: np.ndarray, template: np.ndarray) -> tuple[float, int]:
    """Highest normalized cross-correlation of ``template`` within ``clip``, and where."""
    numerator = scipy.signal.correlate(clip, template, mode="valid")
    energy = scipy.signal.correlate(clip ** 2, np.ones(len(template)), mode="valid")
    score = numerator / (np.linalg.norm(template) * np.sqrt(np.maximum(energy, 1e-12)))
    return float(score.max()), int(score.argmax())


def test_every_split_is_a_valid_data_dir(tiny):
    _, data = tiny
    assert sorted(p.name for p in data.iterdir()) == sorted(SPLITS)
    for split in SPLITS:
        assert validate_data_dir(data / split, check_text=False) == [], split
        assert sorted(p.name for p in (data / split).iterdir()) == \
            ["labels", "spk2utt", "utt2dur", "utt2label", "utt2spk", "wav.scp"]
        assert (data / split / "labels").read_text().split() == list(LABELS) and len(LABELS) == 12
        assert read_table(data / split / "utt2label").keys() == read_table(data / split / "utt2spk").keys()


def test_labels_follow_the_plan(tiny):
    audio, data = tiny
    plan = {u.utt: u for u in plan_keywords(TINY, list(VOICES), keywords.noise_kinds(), seed=0)}
    seen = set()
    for split in SPLITS:
        d = DataDir.read(data / split)
        labels = read_table(data / split / "utt2label")
        for utt in d.utterances:
            u = plan[utt]
            seen.add(utt)
            assert u.split == split
            assert utt.startswith(d["utt2spk"][utt] + "-")
            if u.voice is None:
                assert labels[utt] == SILENCE and d["utt2spk"][utt] == "silence" and u.noise_kind in utt
            else:
                assert d["utt2spk"][utt] == u.voice.speaker and utt.startswith(f"{u.voice.speaker}-{u.word}-")
                assert labels[utt] == (u.word if u.word in COMMANDS else UNKNOWN)
                assert u.word in COMMANDS or u.word in UNKNOWN_WORDS
            assert Path(d["wav.scp"][utt]) == audio.absolute() / "wav" / d["utt2spk"][utt] / f"{utt}.wav"
    assert seen == set(plan)


def test_every_class_and_voice_in_every_split(tiny):
    _, data = tiny
    for split, index in zip(SPLITS, range(3)):
        labels = list(read_table(data / split / "utt2label").values())
        speakers = read_table(data / split / "utt2spk")
        for word in COMMANDS:
            assert labels.count(word) == len(TINY.voices) * TINY.command_reps[index], (split, word)
        assert labels.count(UNKNOWN) == len(TINY.voices) * TINY.unknown_per_voice[index]
        assert labels.count(SILENCE) == TINY.silence[index]
        assert set(speakers.values()) == set(TINY.voices) | {"silence"}
        kinds = {u.split("-")[1] for u, label in read_table(data / split / "utt2label").items() if label == SILENCE}
        assert kinds == set(keywords.noise_kinds())


def test_clips_are_one_second_16k_and_unclipped(tiny):
    _, data = tiny
    for split in SPLITS:
        durations = read_table(data / split / "utt2dur")
        for utt, path in read_table(data / split / "wav.scp").items():
            info = soundfile.info(path)
            assert (info.samplerate, info.channels, info.subtype, info.frames) == (RATE, 1, "PCM_16", RATE), utt
            assert durations[utt] == "1.0000"
            samples, _ = soundfile.read(path)
            assert 0 < np.abs(samples).max() <= MAX_PEAK + 1e-4, utt


def test_each_clip_speaks_its_word_above_the_noise(tiny):
    """The clean word of the label, jittered as planned, is in each test clip at 5–30 dB SNR; for one
    voice it matches its clips better than any other command word does."""
    audio, data = tiny
    labels = read_table(data / "test" / "utt2label")
    speakers = read_table(data / "test" / "utt2spk")
    checked = 0
    for utt, path in read_table(data / "test" / "wav.scp").items():
        if labels[utt] == SILENCE:
            continue
        voice = VOICES_BY_SPEAKER[speakers[utt]]
        word = utt.split("-")[1]
        clip, _ = soundfile.read(path)
        template = spoken(voice, word, 0, utt, raw_path(audio.absolute(), voice, word))
        score, at = best_match(clip, template)
        if voice.speaker == TINY.voices[0]:
            others = [best_match(clip, spoken(voice, w, 0, utt, raw_path(audio.absolute(), voice, w)))[0]
                      for w in COMMANDS if w != word]
            assert max(others) < score, (utt, score, others)
        segment = clip[at:at + len(template)]
        speech = template * (segment @ template) / (template @ template)
        snr = 10 * np.log10(np.sum(speech ** 2) / np.sum((segment - speech) ** 2))
        assert SNR_RANGE_DB[0] - 2 < snr < SNR_RANGE_DB[1] + 2, (utt, snr)
        checked += 1
    assert checked == len(TINY.voices) * (len(COMMANDS) + TINY.unknown_per_voice[2])


def test_silence_is_noise_below_the_speech_level(tiny):
    _, data = tiny
    for split in SPLITS:
        for utt, label in read_table(data / split / "utt2label").items():
            if label == SILENCE:
                samples, _ = soundfile.read(read_table(data / split / "wav.scp")[utt])
                level = 20 * np.log10(rms(samples))
                assert SPEECH_LEVEL_DBFS - SNR_RANGE_DB[1] - 0.5 < level < SPEECH_LEVEL_DBFS - SNR_RANGE_DB[0] + 0.5


def test_rerun_reuses_clips_and_remakes_a_missing_one(tiny, tmp_path):
    audio, data = tiny
    wavs = sorted((audio / "wav").glob("*/*.wav"))
    before = {p: (digest(p), p.stat().st_mtime_ns) for p in wavs}
    victims = [next(p for p in wavs if p.parent.name == "flite_slt"), next(p for p in wavs if "silence" in p.name)]
    for victim in victims:
        victim.unlink()
    raw = audio / "raw" / "flite_slt" / f"{victims[0].stem.split('-')[1]}.wav"
    raw.unlink()
    leftover = victims[0].with_name(f".{victims[0].name}.tmp")     # what a killed run leaves
    leftover.write_bytes(b"RIFF half written")
    prepare_keywords(audio, tmp_path / "data", size="tiny", seed=0)
    assert not leftover.exists() and raw.is_file()
    assert tables(tmp_path / "data") == tables(data)
    assert all(digest(v) == before[v][0] for v in victims)
    assert all(p.stat().st_mtime_ns == before[p][1] for p in wavs if p not in victims)


def test_another_seed_changes_the_plan_and_the_audio(tiny):
    audio, _ = tiny
    kinds = keywords.noise_kinds()
    plans = [plan_keywords(TINY, list(VOICES), kinds, seed) for seed in (0, 1)]
    assert [u.utt for u in plans[0] if u.label == UNKNOWN] != [u.utt for u in plans[1] if u.label == UNKNOWN]
    assert [u.utt for u in plans[0] if u.label != UNKNOWN] == [u.utt for u in plans[1] if u.label != UNKNOWN]
    sources = keywords.load_noise_sources()
    for u in [u for u in plans[0] if u.word == "yes"][:1] + [u for u in plans[0] if u.label == SILENCE][:1]:
        stored, _ = soundfile.read(keywords.clip_path(audio.absolute(), u))
        again = keywords.keyword_clip(u, audio.absolute(), 0, sources, kinds)
        other = keywords.keyword_clip(u, audio.absolute(), 1, sources, kinds)
        assert np.abs(again - stored).max() < 1e-4
        assert np.abs(other - stored).max() > 0.01


def test_another_seed_in_the_same_audio_dir_is_refused(tiny, tmp_path):
    audio, _ = tiny
    with pytest.raises(CorpusError, match="seed 0"):
        prepare_keywords(audio, tmp_path / "data", size="tiny", seed=1)


def test_full_plan():
    size = KeywordsSize.full()
    plan = plan_keywords(size, list(VOICES), keywords.NOISE_KINDS, seed=0)
    assert len(size.voices) == 22 and len({u.utt for u in plan}) == len(plan)
    for split, index in zip(SPLITS, range(3)):
        labels = [u.label for u in plan if u.split == split]
        assert all(labels.count(w) == 22 * size.command_reps[index] for w in COMMANDS)
        assert labels.count(UNKNOWN) == 22 * size.unknown_per_voice[index]
        assert labels.count(SILENCE) == size.silence[index]
    for speaker in size.voices:
        unknown = [u.word for u in plan if u.label == UNKNOWN and u.voice.speaker == speaker]
        assert len(unknown) == len(set(unknown)) == sum(size.unknown_per_voice)
    assert {u.voice.speaker for u in plan if u.voice} == {v.speaker for v in VOICES if v.lang == "en"}


def test_active_region_keeps_a_final_plosive():
    """A vowel, 60 ms of silence and a 20 ms burst 20 dB down: all of it kept, the silence around cut."""
    t = np.arange(int(0.15 * RATE)) / RATE
    word = np.concatenate([np.sin(2 * np.pi * 200 * t), np.zeros(int(0.06 * RATE)),
                           0.1 * np.random.default_rng(0).standard_normal(int(0.02 * RATE))])
    samples = np.concatenate([np.zeros(RATE // 2), word, np.zeros(RATE // 2)])
    region = active_region(samples)
    assert RATE // 2 - 160 <= region.start <= RATE // 2
    assert RATE // 2 + len(word) <= region.stop <= RATE // 2 + len(word) + 320


def test_an_unknown_voice_is_an_error():
    with pytest.raises(ValueError, match="unknown voice 'nobody'"):
        plan_keywords(KeywordsSize(("nobody",), (1, 1, 1), (1, 1, 1), (1, 1, 1)), list(VOICES), ("white",), 0)
