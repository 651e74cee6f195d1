"""SID and ASV data of pseudo-speakers: plans at full size, audio synthesized for real at tiny size."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile

from audiossl.corpora import mini_tts, speakers
from audiossl.corpora.mini_tts import CorpusError, Sentence, load_sentences
from audiossl.corpora.speakers import (SPEAKERS_PER_VOICE, SpeakersSize, combined, make_trials, plan_speakers,
                                       prepare_speakers, read_tsv, utterance_jitter, voice_speakers, warp_formants)
from audiossl.data.kaldi_dir import read_table
from audiossl.data.validate import validate_data_dir
from audiossl.eval.verification import check_trials, read_trials

TOOLS = ("sox", "flite", "espeak-ng", "mbrola")
needs_engines = pytest.mark.skipif(
    not all(shutil.which(t) for t in TOOLS) or not (mini_tts.WORDNET_DIR / "data.noun").is_file(),
    reason=f"needs {', '.join(TOOLS)} and wordnet-base")
TRAINING = ("sid_train", "sid_dev", "sid_test", "asv_train")
RATE = 16000


def fake_sentences(count: int) -> list[Sentence]:
    """Sentences of 4 to 13 words (some outside the 6-12 words used), for plans without audio."""
    words = "ALPHA BRAVO CHARLIE DELTA ECHO FOXTROT GOLF HOTEL INDIA JULIET KILO LIMA MIKE".split()
    return [Sentence(f"wn{i:05d}", "x", " ".join(words[:4 + i % 10])) for i in range(count)]


def plan(size: SpeakersSize, seed: int = 0):
    return plan_speakers(size, mini_tts.VOICES, fake_sentences(40000), seed)


# ------------------------------------------------------------------ plans

def test_pseudo_speakers_of_a_voice_cover_every_stratum_of_each_axis():
    voice = mini_tts.VOICES_BY_SPEAKER["pico_enus"]
    group = voice_speakers(voice, seed=0)
    assert [s.speaker for s in group] == [f"pico_enus_p{k}" for k in range(SPEAKERS_PER_VOICE)]
    assert [s.role for s in group] == ["sid"] * 4 + ["asv"] * 2
    for axis, (low, high) in (("cents", speakers.SPEAKER_CENTS), ("formant", speakers.SPEAKER_FORMANT),
                              ("tempo", speakers.SPEAKER_TEMPO)):
        values = [getattr(s.shift, axis) for s in group]
        strata = sorted(int((v - low) / (high - low) * SPEAKERS_PER_VOICE) for v in values)
        assert strata == list(range(SPEAKERS_PER_VOICE)), (axis, values)
    assert voice_speakers(voice, seed=0) == group
    assert voice_speakers(voice, seed=1) != group


def test_jitter_is_seeded_and_bounded():
    jitters = [utterance_jitter(seed, f"flite_kal_p0-wn{i:05d}") for seed in (0, 1) for i in range(100)]
    assert len(set(jitters)) == 200
    for j in jitters:
        assert abs(j.shift.cents) <= speakers.UTTERANCE_CENTS
        assert abs(j.shift.formant - 1) <= speakers.UTTERANCE_FORMANT + 1e-9
        assert abs(j.shift.tempo - 1) <= speakers.UTTERANCE_TEMPO + 1e-9
        assert speakers.SNR_DB[0] <= j.snr_db <= speakers.SNR_DB[1] and j.noise in speakers.NOISE_KINDS
    assert {j.noise for j in jitters} == set(speakers.NOISE_KINDS)
    assert utterance_jitter(3, "a-b") == utterance_jitter(3, "a-b")


def test_full_plan_sizes_and_held_out_speakers():
    full = plan(SpeakersSize.full())
    sid = {u.speaker.speaker for u in full["sid_train"]}
    asv = {u.speaker.speaker for u in full["asv_test"]}
    assert len(sid) == 88 and len(asv) == 44 and not sid & asv
    assert {u.speaker.speaker for u in full["sid_dev"] + full["sid_test"]} == sid
    assert {u.speaker.voice for u in full["asv_test"]} == {u.speaker.voice for u in full["sid_train"]}
    utts = [u for split in full.values() for u in split]
    assert len({u.utt for u in utts}) == len({u.sentence.id for u in utts}) == len(utts) == 88 * 28 + 44 * 12
    assert all(6 <= len(u.sentence.transcript.split()) <= 12 for u in utts)
    for u in utts:   # the id names the speaker, and the speaker's shift is the plan's
        assert u.utt.startswith(f"{u.speaker.speaker}-")
        assert u.speaker == voice_speakers(u.speaker.voice, 0)[u.speaker.index]


def test_shifts_do_not_depend_on_the_size():
    tiny, full = plan(SpeakersSize.tiny()), plan(SpeakersSize.full())
    full_speakers = {u.speaker.speaker: u.speaker for split in full.values() for u in split}
    tiny_speakers = {u.speaker.speaker: u.speaker for split in tiny.values() for u in split}
    assert len(tiny_speakers) == 12
    assert all(full_speakers[name] == spk for name, spk in tiny_speakers.items())


def test_full_trials():
    utts = plan(SpeakersSize.full())["asv_test"]
    trials = make_trials(utts, seed=0)
    speaker = {u.utt: u.speaker for u in utts}
    num_targets = sum(t[2] for t in trials)
    assert len(trials) >= 10000 and len(set(trials)) == len(trials)
    assert num_targets == 44 * 12 * 11 // 2
    assert len(trials) - num_targets == 4 * num_targets
    for enroll, test, is_target in trials:
        assert enroll < test
        assert is_target == (speaker[enroll] == speaker[test])
    same_voice = sum(not t and speaker[e].voice == speaker[s].voice for e, s, t in trials)
    assert same_voice == round(0.25 * 4 * num_targets)
    assert make_trials(utts, seed=0) == trials and make_trials(utts, seed=1) != trials


def test_a_voice_not_installed_changes_no_other_voice_s_utterances():
    every = plan(SpeakersSize.full())
    missing = {"flite_kal", "pico_enus"}
    fewer = plan_speakers(SpeakersSize.full(), [v for v in mini_tts.VOICES if v.speaker not in missing],
                          fake_sentences(40000), 0)
    assert fewer == {split: [u for u in utts if u.speaker.voice.speaker not in missing]
                     for split, utts in every.items()}


def test_too_few_voices_or_sentences_are_named():
    with pytest.raises(CorpusError, match="need at least two of the voices"):
        plan_speakers(SpeakersSize.tiny(), [mini_tts.VOICES_BY_SPEAKER["flite_slt"]], fake_sentences(1000), 0)
    with pytest.raises(CorpusError, match="need 52 sentences of 6-12 words, only 35 are available"):
        plan_speakers(SpeakersSize.tiny(), mini_tts.VOICES, fake_sentences(50), 0)


# ------------------------------------------------------------------ audio

def harmonic_vowel(f0: float, formants: tuple[float, ...], seconds: float = 1.0) -> np.ndarray:
    """A steady vowel: harmonics of ``f0`` weighted by resonances at ``formants`` (Hz); (samples,)."""
    t = np.arange(int(seconds * RATE)) / RATE
    harmonics = np.arange(f0, RATE / 2, f0)
    gains = sum(1 / (1 + ((harmonics - f) / 80) ** 2) for f in formants)
    return (gains[:, None] * np.sin(2 * np.pi * harmonics[:, None] * t)).sum(axis=0) / gains.sum()


def harmonic_magnitudes(samples: np.ndarray, f0: float) -> tuple[np.ndarray, float]:
    """``(magnitude at each harmonic of f0, share of the spectrum's energy within 4 Hz of a harmonic)``."""
    magnitude = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), 1 / RATE)
    distance = np.abs(freqs - f0 * np.round(freqs / f0))
    near = (distance <= 4) & (freqs > f0 / 2)
    harmonics = np.round(freqs / f0).astype(int)
    peaks = np.array([magnitude[near & (harmonics == k)].max() for k in range(1, int(RATE / 2 / f0))])
    return peaks, float((magnitude[near] ** 2).sum() / (magnitude ** 2).sum())


@pytest.mark.parametrize("factor", [0.88, 1.12])
def test_warp_formants_moves_the_envelope_and_keeps_the_harmonics(factor):
    f0 = 120.0
    vowel = harmonic_vowel(f0, (700.0, 1800.0))
    peaks, share = harmonic_magnitudes(warp_formants(vowel, factor)[2000:-2000], f0)
    assert share > 0.99                                  # still the harmonics of 120 Hz
    for formant in (700.0, 1800.0):   # the strongest harmonic near each formant follows the warp
        numbers = np.arange(1, len(peaks) + 1)
        near = np.abs(numbers * f0 - formant * factor) < 300
        strongest = numbers[near][np.argmax(peaks[near])] * f0
        assert abs(strongest - formant * factor) <= f0 / 2, (formant, strongest)
        assert abs(strongest - formant) >= f0 / 2, (formant, strongest)   # and moved from where it was
    assert np.allclose(warp_formants(vowel, 1.0), vowel)


def f0_median(samples: np.ndarray) -> float:
    f0 = librosa.yin(samples.astype(np.float32), fmin=60, fmax=500, sr=RATE, frame_length=1024)
    return float(np.median(f0))


@needs_engines
def test_speaker_shift_is_heard(tmp_path):
    """The same sentence by the lowest- and highest-pitched pseudo-speakers of one voice: f0 and
    duration differ by the speakers' shifts, within the utterances' jitter."""
    group = sorted(voice_speakers(mini_tts.VOICES_BY_SPEAKER["flite_slt"], seed=0), key=lambda s: s.shift.cents)
    text = "The pilot made contact with the base before the storm."
    audio = {}
    for spk in (group[0], group[-1]):
        utt = f"{spk.speaker}-x1"
        speakers.synthesize_pseudo_utterance(spk, text, tmp_path / f"{utt}.wav", seed=0, utt=utt)
        audio[spk.speaker], rate = soundfile.read(str(tmp_path / f"{utt}.wav"))
        assert rate == RATE
    low, high = (audio[s.speaker] for s in (group[0], group[-1]))
    measured = 1200 * np.log2(f0_median(high) / f0_median(low))
    expected = group[-1].shift.cents - group[0].shift.cents
    assert abs(measured - expected) <= 2 * speakers.UTTERANCE_CENTS + 40, (measured, expected)
    duration_ratio = len(low) / len(high)
    tempo_ratio = group[-1].shift.tempo / group[0].shift.tempo
    assert abs(duration_ratio / tempo_ratio - 1) <= 2 * speakers.UTTERANCE_TEMPO + 0.05


# ------------------------------------------------------------------ the tiny data

@pytest.fixture(scope="module")
def text_cache(tmp_path_factory) -> Path:
    """An audio dir holding only a sentence list: WordNet's alone (the Bible's take 20 s to extract)."""
    root = tmp_path_factory.mktemp("text_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mini_tts, "bible_sentences", lambda module: [])
        assert len(load_sentences(root, "en")) > 10000
    return root / "text"


def new_audio_dir(root: Path, text_cache: Path) -> Path:
    audio = root / "audio"
    shutil.copytree(text_cache, audio / "text")
    return audio


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, text_cache) -> tuple[Path, Path]:
    """``(audio_dir, data_dir)`` of tiny data with seed 0."""
    root = tmp_path_factory.mktemp("tiny")
    audio = new_audio_dir(root, text_cache)
    prepare_speakers(audio, root / "data", size="tiny", seed=0)
    return audio, root / "data"


def tables(data: Path) -> dict[str, str]:
    return {f"{d.name}/{f.name}": f.read_text() for d in sorted(data.iterdir()) for f in sorted(d.iterdir())}


def speakers_of(data: Path, split: str) -> set[str]:
    return set(read_table(data / split / "utt2spk").values())


@needs_engines
def test_data_dirs_are_valid(tiny):
    _, data = tiny
    for split in speakers.SPLITS:
        assert validate_data_dir(data / split) == [], split
        durations = read_table(data / split / "utt2dur")
        for utt, path in read_table(data / split / "wav.scp").items():
            info = soundfile.info(path)
            assert info.samplerate == RATE and info.channels == 1 and info.subtype == "PCM_16"
            assert abs(info.frames / RATE - float(durations[utt])) < 1e-3
            assert info.frames >= mini_tts.MIN_SECONDS * RATE


@needs_engines
def test_asv_speakers_are_held_out_of_all_training(tiny):
    _, data = tiny
    asv = speakers_of(data, "asv_test")
    assert len(asv) == 4
    for split in TRAINING:
        assert speakers_of(data, split), split
        assert not asv & speakers_of(data, split), split
    assert read_table(data / "asv_train" / "utt2spk") == read_table(data / "sid_train" / "utt2spk")
    roles = {row["speaker"]: row["role"] for row in read_tsv(data / "local" / "speakers.tsv")}
    assert {s for s, role in roles.items() if role == "asv"} == asv


@needs_engines
def test_trials_use_only_asv_test_with_both_labels(tiny):
    _, data = tiny
    trials = read_trials(data / "asv_test" / "trials")
    utt2spk = read_table(data / "asv_test" / "utt2spk")
    check_trials(trials, utt2spk, data / "asv_test" / "trials")
    assert {t[2] for t in trials} == {True, False}
    assert len(set(trials)) == len(trials)
    for enroll, test, is_target in trials:
        assert is_target == (utt2spk[enroll] == utt2spk[test])
    num_targets = sum(t[2] for t in trials)
    assert num_targets == 4 * 3 and len(trials) - num_targets == 4 * num_targets


@needs_engines
def test_labels_are_the_sid_training_speakers(tiny):
    _, data = tiny
    labels = (data / "sid_train" / "labels").read_text()
    classes = dict(line.split() for line in labels.splitlines())
    assert sorted(classes) == sorted(speakers_of(data, "sid_train")) and len(classes) == 8
    assert sorted(map(int, classes.values())) == list(range(8))
    for split in ("sid_dev", "sid_test"):
        assert (data / split / "labels").read_text() == labels
        assert speakers_of(data, split) == set(classes)


@needs_engines
def test_each_speaker_keeps_one_shift(tiny):
    """The recorded shift of every utterance is its speaker's, from the plan, plus its own jitter."""
    _, data = tiny
    shifts = {row["speaker"]: row for row in read_tsv(data / "local" / "speakers.tsv")}
    rows = read_tsv(data / "local" / "utterances.tsv")
    all_utts = {utt for split in speakers.SPLITS for utt in read_table(data / split / "utt2spk")}
    assert sorted(r["utt"] for r in rows) == sorted(all_utts)
    for row in rows:
        spk = shifts[row["speaker"]]
        voice = mini_tts.VOICES_BY_SPEAKER[spk["voice"]]
        planned = voice_speakers(voice, 0)[int(row["speaker"].rsplit("_p", 1)[1])]
        assert (planned.shift.cents, planned.shift.formant, planned.shift.tempo) == \
            (float(spk["cents"]), float(spk["formant"]), float(spk["tempo"]))
        expected = combined(planned.shift, utterance_jitter(0, row["utt"]).shift)
        assert (float(row["cents"]), float(row["formant"]), float(row["tempo"])) == \
            (expected.cents, expected.formant, expected.tempo)
        assert abs(float(row["cents"]) - planned.shift.cents) <= speakers.UTTERANCE_CENTS


def digests(audio: Path) -> dict[str, str]:
    return {str(p.relative_to(audio)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((audio / "wav").rglob("*.wav"))}


@needs_engines
def test_rerun_reuses_audio_and_a_fresh_run_is_identical(tiny, tmp_path, text_cache):
    audio, data = tiny
    before = tables(data)
    stamps = {p: p.stat().st_mtime_ns for p in (audio / "wav").rglob("*.wav")}
    prepare_speakers(audio, data, size="tiny", seed=0)
    assert {p: p.stat().st_mtime_ns for p in (audio / "wav").rglob("*.wav")} == stamps
    assert tables(data) == before

    fresh_audio = new_audio_dir(tmp_path, text_cache)
    prepare_speakers(fresh_audio, tmp_path / "data", size="tiny", seed=0)
    assert digests(fresh_audio) == digests(audio)
    assert tables(tmp_path / "data") == {k: v.replace(str(audio), str(fresh_audio)) for k, v in before.items()}

    with pytest.raises(CorpusError, match="seed 0, not 1"):
        prepare_speakers(audio, data, size="tiny", seed=1)
