"""The intent classification set, synthesized for real at tiny size (seconds)."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile

from audiossl.corpora.intents import (INTENTS, PHRASINGS, SLOT_VALUES, SLOTS, IntentsSize, intent_audio,
                                      plan_intents, prepare_intents, wav_path)
from audiossl.corpora.keywords import SPLITS, load_noise_sources, noise_kinds, spoken
from audiossl.corpora.mini_tts import VOICES, VOICES_BY_SPEAKER, CorpusError, MiniTtsSize
from audiossl.corpora.noise import MAX_PEAK
from audiossl.data.kaldi_dir import DataDir, read_table
from audiossl.data.validate import validate_data_dir

TOOLS = ("sox", "flite", "espeak-ng", "mbrola")
pytestmark = pytest.mark.skipif(not all(shutil.which(t) for t in TOOLS), reason=f"needs {', '.join(TOOLS)}")
RATE = 16000
TINY = IntentsSize.tiny()

# Words that name each slot value, written independently of the phrasing templates; a value
# named by no word of a transcript is "none".
CUES = {
    "action": {"activate": {"ON", "PLAY", "START"}, "deactivate": {"OFF", "STOP", "PAUSE"},
               "increase": {"UP", "INCREASE", "LOUDER", "WARMER"}, "decrease": {"DOWN", "DECREASE", "QUIETER", "COOLER"},
               "bring": {"BRING", "GET", "FETCH", "WANT"}, "change_language": {"LANGUAGE", "SPEAK", "USE"}},
    "object": {"lights": {"LIGHTS"}, "lamp": {"LAMP"}, "music": {"MUSIC"}, "volume": {"VOLUME", "LOUDER", "QUIETER"},
               "heat": {"HEAT", "HEATING", "WARMER", "COOLER"}, "newspaper": {"NEWSPAPER", "PAPER"},
               "juice": {"JUICE"}, "socks": {"SOCKS"}, "shoes": {"SHOES"}, "Chinese": {"CHINESE"},
               "Korean": {"KOREAN"}, "English": {"ENGLISH"}, "German": {"GERMAN"}},
    "location": {"kitchen": {"KITCHEN"}, "bedroom": {"BEDROOM"}, "washroom": {"WASHROOM"}},
}


def slots_named_by(text: str) -> tuple[str, str, str]:
    """``(action, object, location)`` that the words of ``text`` name; raises if a slot gets two values."""
    words = set(text.split())
    named = []
    for slot in SLOTS:
        values = [value for value, cues in CUES[slot].items() if cues & words]
        assert len(values) <= 1, (text, slot, values)
        named.append(values[0] if values else "none")
    return tuple(named)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    """``(audio_dir, data_dir)`` of the tiny set with seed 0."""
    root = tmp_path_factory.mktemp("ic")
    prepare_intents(root / "audio", root / "data", size="tiny", seed=0)
    return root / "audio", root / "data"


def tables(data: Path) -> dict[str, str]:
    return {f"{d.name}/{f.name}": f.read_text() for d in sorted(data.iterdir()) for f in sorted(d.iterdir())}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_intent_inventory():
    assert len(INTENTS) == 31 and len({i.label for i in INTENTS}) == 31
    assert [len(SLOT_VALUES[s]) for s in SLOTS] == [6, 14, 4]
    everything = [p for phrasings in PHRASINGS.values() for p in phrasings]
    assert len(everything) == len(set(everything)) == 149
    for intent, phrasings in PHRASINGS.items():
        assert 4 <= len(phrasings) <= 5
        for phrasing in phrasings:
            assert slots_named_by(phrasing.upper()) == (intent.action, intent.object, intent.location), phrasing
    rooms = {i.location for i in INTENTS} - {"none"}
    assert {i.object for i in INTENTS if i.location in rooms} == {"lights", "heat"}


def test_every_split_is_a_valid_data_dir(tiny):
    _, data = tiny
    assert sorted(p.name for p in data.iterdir()) == sorted(SPLITS)
    for split in SPLITS:
        assert validate_data_dir(data / split) == [], split
        assert sorted(p.name for p in (data / split).iterdir()) == \
            ["labels_action", "labels_location", "labels_object", "spk2utt", "text", "utt2dur", "utt2intent",
             "utt2spk", "wav.scp"]
        for slot in SLOTS:
            assert (data / split / f"labels_{slot}").read_text().split() == list(SLOT_VALUES[slot])


def test_every_transcript_says_its_intent(tiny):
    audio, data = tiny
    plan = {u.utt: u for u in plan_intents(TINY, list(VOICES), seed=0)}
    for split in SPLITS:
        d = DataDir.read(data / split)
        utt2intent = read_table(data / split / "utt2intent")
        assert sorted(utt2intent) == d.utterances
        for utt in d.utterances:
            action, thing, location = utt2intent[utt].split()
            assert slots_named_by(d["text"][utt]) == (action, thing, location), (utt, d["text"][utt])
            assert location in SLOT_VALUES["location"] and action in SLOT_VALUES["action"]
            u = plan[utt]
            assert (u.split, u.intent.label, u.voice.speaker) == (split, utt2intent[utt], d["utt2spk"][utt])
            assert d["text"][utt] == u.spoken.upper()
            assert utt == f"{u.voice.speaker}-{action}_{thing}_{location}-{u.phrasing}"
            assert Path(d["wav.scp"][utt]) == audio.absolute() / "wav" / u.voice.speaker / f"{utt}.wav"
    assert sum(len(read_table(data / s / "utt2spk")) for s in SPLITS) == len(plan)


def test_splits_hold_out_voices_and_have_every_intent(tiny):
    _, data = tiny
    speakers = {s: set(read_table(data / s / "utt2spk").values()) for s in SPLITS}
    assert speakers == dict(zip(SPLITS, (set(TINY.train_voices), set(TINY.dev_voices), set(TINY.test_voices))))
    for split in SPLITS:
        labels = list(read_table(data / split / "utt2intent").values())
        assert sorted(labels) == sorted(i.label for i in INTENTS for _ in speakers[split])


def test_audio_is_16k_padded_and_unclipped(tiny):
    _, data = tiny
    for split in SPLITS:
        durations = read_table(data / split / "utt2dur")
        for utt, path in read_table(data / split / "wav.scp").items():
            info = soundfile.info(path)
            assert (info.samplerate, info.channels, info.subtype) == (RATE, 1, "PCM_16"), utt
            assert abs(info.frames / RATE - float(durations[utt])) < 1e-3
            assert 0.6 < info.frames / RATE < 4.0, utt
            samples, _ = soundfile.read(path)
            assert 0 < np.abs(samples).max() <= MAX_PEAK + 1e-4, utt


def test_audio_speaks_its_phrasing(tiny):
    """The clean phrasing, jittered as planned, is in the audio; another phrasing of the same intent is not."""
    _, data = tiny
    wavs = read_table(data / "test" / "wav.scp")
    for utt in sorted(wavs)[::8]:
        voice, name, index = utt.split("-")
        u = next(u for u in plan_intents(TINY, list(VOICES), 0) if u.utt == utt)
        other = PHRASINGS[u.intent][(u.phrasing + 1) % len(PHRASINGS[u.intent])]
        audio, _ = soundfile.read(wavs[utt])
        scores = []
        for text in (u.spoken, other):
            template = spoken(VOICES_BY_SPEAKER[voice], text, 0, utt)
            if len(template) > len(audio):
                scores.append(0.0)
                continue
            numerator = scipy.signal.correlate(audio, template, mode="valid")
            energy = scipy.signal.correlate(audio ** 2, np.ones(len(template)), mode="valid")
            scores.append(float((numerator / (np.linalg.norm(template) * np.sqrt(np.maximum(energy, 1e-12)))).max()))
        assert scores[0] > 0.8 > scores[1], (utt, scores)


def test_rerun_reuses_audio_and_remakes_a_missing_one(tiny, tmp_path):
    audio, data = tiny
    wavs = sorted((audio / "wav").glob("*/*.wav"))
    before = {p: (digest(p), p.stat().st_mtime_ns) for p in wavs}
    victim = wavs[len(wavs) // 2]
    victim.unlink()
    leftover = victim.with_name(f".{victim.name}.tmp")     # what a killed run leaves
    leftover.write_bytes(b"RIFF half written")
    prepare_intents(audio, tmp_path / "data", size="tiny", seed=0)
    assert not leftover.exists()
    assert tables(tmp_path / "data") == tables(data)
    assert digest(victim) == before[victim][0]
    assert all(p.stat().st_mtime_ns == before[p][1] for p in wavs if p != victim)


def test_another_seed_changes_the_phrasings_and_the_audio(tiny):
    audio, _ = tiny
    plans = [plan_intents(TINY, list(VOICES), seed) for seed in (0, 1)]
    assert [u.utt for u in plans[0]] != [u.utt for u in plans[1]]
    assert [u.intent for u in plans[0]] == [u.intent for u in plans[1]]
    u = plans[0][0]
    stored, _ = soundfile.read(wav_path(audio.absolute(), u))
    sources, kinds = load_noise_sources(), noise_kinds()
    assert np.abs(intent_audio(u, 0, sources, kinds) - stored).max() < 1e-4
    other = intent_audio(u, 1, sources, kinds)
    assert len(other) != len(stored) or np.abs(other - stored).max() > 0.01


def test_another_seed_in_the_same_audio_dir_is_refused(tiny, tmp_path):
    audio, _ = tiny
    with pytest.raises(CorpusError, match="seed 0"):
        prepare_intents(audio, tmp_path / "data", size="tiny", seed=1)


def test_full_plan_holds_out_voices():
    size = IntentsSize.full()
    plan = plan_intents(size, list(VOICES), seed=0)
    voices = {s: {u.voice.speaker for u in plan if u.split == s} for s in SPLITS}
    assert voices["test"] == set(MiniTtsSize.full().english.unseen_voices)
    assert [len(voices[s]) for s in SPLITS] == [16, 3, 3]
    assert not (voices["train"] & voices["dev"]) and not (voices["train"] & voices["test"])
    assert voices["train"] | voices["dev"] | voices["test"] == {v.speaker for v in VOICES if v.lang == "en"}
    assert len(plan) == len({u.utt for u in plan}) == 22 * 149
    for split in SPLITS:
        said = {(u.intent, u.phrasing) for u in plan if u.split == split}
        assert len(said) == 149


def test_a_voice_in_two_splits_is_an_error():
    with pytest.raises(ValueError, match="only one split"):
        plan_intents(IntentsSize(("flite_slt",), ("flite_slt",), ("flite_kal",)), list(VOICES), 0)
    with pytest.raises(CorpusError, match="dev voices"):
        plan_intents(IntentsSize(("flite_slt",), ("espeak_m3",), ("flite_kal",)),
                     [VOICES_BY_SPEAKER[n] for n in ("flite_slt", "flite_kal")], 0)
