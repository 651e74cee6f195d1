"""The mini TTS corpus, synthesized for real at tiny size (a few seconds once the text is cached)."""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from audiossl.corpora import mini_tts
from audiossl.corpora.mini_tts import (ENGLISH_SPLITS, LANGUAGES, SPANISH_SPLITS, CorpusError, MiniTtsSize,
                                       SynthesisError, jitter, load_sentences, prepare_mini_tts)
from audiossl.data.kaldi_dir import DataDir
from audiossl.data.validate import validate_data_dir

TOOLS = ("sox", "flite", "espeak-ng", "mbrola", "diatheke")
pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in TOOLS) or not (mini_tts.WORDNET_DIR / "data.noun").is_file(),
    reason=f"needs {', '.join(TOOLS)} and wordnet-base")

SPLITS = ENGLISH_SPLITS + SPANISH_SPLITS
TRANSCRIPT = {"en": re.compile(r"[A-Z']+( [A-Z']+)*"), "es": re.compile(r"[A-ZÁÉÍÓÚÑÜ]+( [A-ZÁÉÍÓÚÑÜ]+)*")}


@pytest.fixture(scope="session")
def text_cache(tmp_path_factory) -> Path:
    """A corpus dir holding only the extracted sentence lists (extraction takes about 15 s)."""
    corpus = tmp_path_factory.mktemp("text_cache")
    for lang in LANGUAGES:
        load_sentences(corpus, lang)
    return corpus / "text"


def new_corpus(tmp_path: Path, text_cache: Path) -> Path:
    corpus = tmp_path / "corpus"
    shutil.copytree(text_cache, corpus / "text")
    return corpus


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, text_cache) -> tuple[Path, Path]:
    """``(corpus_dir, data_dir)`` of a tiny corpus with seed 0."""
    root = tmp_path_factory.mktemp("tiny")
    corpus = new_corpus(root, text_cache)
    prepare_mini_tts(corpus, root / "data", size="tiny", seed=0, progress=False, languages=("en", "es"))
    return corpus, root / "data"


def read(data: Path, split: str) -> DataDir:
    return DataDir.read(data / split)


def tables(data: Path) -> dict[str, str]:
    return {f"{d.name}/{f.name}": f.read_text() for d in sorted(data.iterdir()) for f in sorted(d.iterdir())}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------ text

def test_english_normalization():
    en = LANGUAGES["en"]
    spoken = en.spoken("God’s Spirit said , “Let the self-conscious ‘waters’ rise !”")
    assert spoken == "God's Spirit said, Let the self-conscious waters rise!"
    assert en.transcript(spoken) == "GOD'S SPIRIT SAID LET THE SELF CONSCIOUS WATERS RISE"
    for bad in ("He paid 25 shekels for the field.", "The USA is a very large country.",
                "Mr. Smith went to the market today.", "the statement `he is brave' is false", "a café au lait"):
        assert en.spoken(bad) is None, bad
    assert en.accepts("ONE TWO THREE FOUR FIVE")
    assert not en.accepts("ONE TWO THREE FOUR")
    assert not en.accepts(" ".join(["WORD"] * 21))
    assert not en.accepts("THE LETTER X IS HARD TO SAY")


def test_spanish_normalization():
    es = LANGUAGES["es"]
    spoken = es.spoken("¿ Dónde está el niño que fué á la montaña ?")
    assert spoken == "¿Dónde está el niño que fué á la montaña?"
    assert es.transcript(spoken) == "DÓNDE ESTÁ EL NIÑO QUE FUÉ A LA MONTAÑA"
    assert es.spoken("EN el principio crió Dios los cielos y la tierra.") is None


@pytest.mark.parametrize("lang,sources,minimum", [("en", ("wn", "web"), 40000), ("es", ("rv",), 10000)])
def test_sentence_lists(text_cache, lang, sources, minimum):
    sentences = load_sentences(text_cache.parent, lang)
    assert len(sentences) > minimum
    assert {re.match(r"[a-z]+", s.id).group() for s in sentences} == set(sources)
    assert len({s.id for s in sentences}) == len({s.transcript for s in sentences}) == len(sentences)
    for s in sentences:
        assert TRANSCRIPT[lang].fullmatch(s.transcript), s
        assert 5 <= len(s.transcript.split()) <= 20, s
        assert "\x00" not in s.spoken and not re.search(r"\d", s.spoken), s
    assert not any("Godcreated" in s.spoken or "GODCREATED" in s.transcript for s in sentences)


# ------------------------------------------------------------------ synthesis

def test_jitter_is_seeded_and_bounded():
    values = {jitter(seed, f"spk-utt{i}") for seed in (0, 1) for i in range(50)}
    assert len(values) == 100
    assert all(-200 <= cents <= 200 and 0.9 <= tempo <= 1.1 for cents, tempo in values)
    assert jitter(3, "a-b") == jitter(3, "a-b")


def test_jitter_changes_the_audio(tmp_path):
    voice = mini_tts.VOICES_BY_SPEAKER["flite_slt"]
    text = "The pilot made contact with the base."
    paths = [tmp_path / name for name in ("a.wav", "b.wav", "a2.wav")]
    for path, utt in zip(paths, ("flite_slt-x1", "flite_slt-x2", "flite_slt-x1")):
        mini_tts.synthesize_utterance(voice, text, path, seed=0, utt=utt)
    assert digest(paths[0]) == digest(paths[2])
    assert digest(paths[0]) != digest(paths[1])


def test_mbrola_spanish_has_no_diphone_gaps(tmp_path):
    """es1 lacks espeak-ng's stressed vowels; unpatched, mbrola silences every diphone touching one."""
    voice = mini_tts.VOICES_BY_SPEAKER["mbrola_es1"]
    if voice not in mini_tts.available_voices((voice,)):
        pytest.skip("mbrola es1 not installed")
    text = "Y llamó Dios á la luz Día, y á las tinieblas llamó Noche."
    pho = mini_tts.run_tool(["espeak-ng", "-v", "mb-es1", "-q", "--pho", text])
    assert re.search(r"^[eo]/", pho, re.M)
    proc = subprocess.run(["mbrola", "-e", str(mini_tts.MBROLA_DIR / "es1" / "es1"), "-", str(tmp_path / "raw.wav")],
                          input=mini_tts._MBROLA_PHONEME_FIXES["es1"][0].sub(r"\1", pho), capture_output=True, text=True)
    assert proc.returncode == 0 and "unknown" not in proc.stderr
    mini_tts.synthesize_raw(voice, text, tmp_path / "fixed.wav")
    assert soundfile.info(str(tmp_path / "fixed.wav")).duration > 2.0


# ------------------------------------------------------------------ the tiny corpus

def test_lm_text_is_every_transcript_of_the_language(tiny):
    corpus, data = tiny
    for lang in LANGUAGES:
        sentences = load_sentences(corpus, lang)
        if not sentences:   # this machine lacks the language's text package: no LM text either
            assert not (data / "local" / f"lm_text_{lang}.txt").exists()
            continue
        lines = (data / "local" / f"lm_text_{lang}.txt").read_text(encoding="utf-8").splitlines()
        assert lines == [s.transcript for s in sentences]
        used = {t for split in SPLITS if (lang == "es") == (split in SPANISH_SPLITS)
                for t in read(data, split)["text"].values()}
        assert used <= set(lines)


def test_all_splits_are_valid(tiny):
    corpus, data = tiny
    assert sorted(p.name for p in data.iterdir()) == sorted(SPLITS + ("local", "noise"))
    for split in SPLITS:
        assert validate_data_dir(data / split) == [], split
        d = read(data, split)
        assert sorted(d.tables) == ["spk2utt", "text", "utt2dur", "utt2lang", "utt2spk", "wav.scp"]
        assert d.utterances, split
        lang = "es" if split in SPANISH_SPLITS else "en"
        assert set(d["utt2lang"].values()) == {lang}
        for utt in d.utterances:
            assert utt.startswith(d["utt2spk"][utt] + "-")
            assert TRANSCRIPT[lang].fullmatch(d["text"][utt])
            assert Path(d["wav.scp"][utt]) == corpus.absolute() / "wav" / d["utt2spk"][utt] / f"{utt}.wav"


def test_audio_is_16k_mono_trimmed_and_normalized(tiny):
    _, data = tiny
    for split in SPLITS:
        d = read(data, split)
        for utt in d.utterances:
            info = soundfile.info(d["wav.scp"][utt])
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert abs(info.frames / 16000 - float(d["utt2dur"][utt])) < 1e-3
            samples, _ = soundfile.read(d["wav.scp"][utt])
            assert 0.3 < len(samples) / 16000 < 20
            assert 0.69 < np.abs(samples).max() < 0.71, utt           # norm -3 dBFS: 0.708
            edge = 800                                                  # 50 ms
            assert np.abs(samples[:edge]).max() > 0.002 and np.abs(samples[-edge:]).max() > 0.002, utt


@pytest.mark.parametrize("lang", ["en", "es"])
def test_split_relations(tiny, lang):
    _, data = tiny
    suffix = mini_tts.SPLIT_SUFFIX[lang]
    d = {split: read(data, split + suffix) for split in ENGLISH_SPLITS}
    utts = {split: set(d[split].utterances) for split in ENGLISH_SPLITS}
    assert utts["train_10min"] <= utts["train_1h"] <= utts["train_unlab"]
    assert utts["train_10min"] < utts["train_1h"]
    size = MiniTtsSize.tiny().languages()[lang]
    for split, seconds in (("train_1h", size.train_1h_seconds), ("train_10min", size.train_10min_seconds)):
        durations = [float(v) for v in d[split]["utt2dur"].values()]
        assert sum(durations) >= seconds
    speakers = {split: set(d[split]["utt2spk"].values()) for split in ENGLISH_SPLITS}
    assert speakers["train_10min"] == speakers["train_unlab"] == set(size.train_voices)
    assert speakers["dev"] == speakers["test"] == speakers["train_unlab"]
    assert speakers["test_unseen"] == set(size.unseen_voices)
    sentence = {split: {u.split("-", 1)[1] for u in utts[split]} for split in ENGLISH_SPLITS}
    for a, b in (("train_unlab", "dev"), ("train_unlab", "test"), ("train_unlab", "test_unseen"), ("dev", "test"),
                 ("dev", "test_unseen"), ("test", "test_unseen")):
        assert not sentence[a] & sentence[b], (a, b)
        assert not set(d[a]["text"].values()) & set(d[b]["text"].values()), (a, b)


def test_spanish_changes_no_english_split(tiny, tmp_path):
    corpus, data = tiny
    english = prepare_mini_tts(corpus, tmp_path / "en", size="tiny", seed=0, progress=False)
    assert sorted(english) == sorted(ENGLISH_SPLITS + ("noise",))
    assert tables(tmp_path / "en") == {k: v for k, v in tables(data).items() if k.split("/")[0] not in SPANISH_SPLITS
                                       and k != "local/lm_text_es.txt"}


def test_rerun_reuses_audio_and_redoes_a_killed_one(tiny, tmp_path):
    corpus, data = tiny
    wavs = sorted((corpus / "wav").glob("*/*.wav"))
    before = {p: (digest(p), p.stat().st_mtime_ns) for p in wavs}
    victim = wavs[0]
    victim.unlink()
    leftover = victim.with_name(f".{victim.name}.tmp")   # the temporary file of audiossl.atomic, left by a killed run
    leftover.write_bytes(b"RIFF half written")
    prepare_mini_tts(corpus, tmp_path / "data", size="tiny", seed=0, progress=False, languages=("en", "es"))
    assert not leftover.exists()
    assert tables(tmp_path / "data") == tables(data)
    assert digest(victim) == before[victim][0]
    assert all(p.stat().st_mtime_ns == before[p][1] for p in wavs[1:])


def test_fresh_run_is_identical_and_seed_matters(tiny, tmp_path, text_cache):
    corpus, data = tiny
    again = new_corpus(tmp_path / "same", text_cache)
    prepare_mini_tts(again, tmp_path / "same" / "data", size="tiny", seed=0, progress=False, languages=("en", "es"))
    assert tables(tmp_path / "same" / "data") == {k: v.replace(str(corpus), str(again)) for k, v in tables(data).items()}
    assert {p.relative_to(corpus): digest(p) for p in (corpus / "wav").glob("*/*.wav")} \
        == {p.relative_to(again): digest(p) for p in (again / "wav").glob("*/*.wav")}
    other = new_corpus(tmp_path / "other", text_cache)
    prepare_mini_tts(other, tmp_path / "other" / "data", size="tiny", seed=1, progress=False)
    assert read(tmp_path / "other" / "data", "train_unlab")["text"] != read(data, "train_unlab")["text"]


def test_another_seed_in_the_same_corpus_dir_is_refused(tiny, tmp_path):
    corpus, _ = tiny
    with pytest.raises(ValueError, match="seed 0"):
        prepare_mini_tts(corpus, tmp_path / "data", size="tiny", seed=1, progress=False)


def test_a_corpus_dir_stopped_before_its_first_wav_takes_another_seed(tiny, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(tiny[0] / "text", corpus / "text")
    mini_tts.check_seed(corpus / "wav" / "seed", 1)                 # a run with a mistyped seed, stopped at once
    prepare_mini_tts(corpus, tmp_path / "data", size="tiny", seed=0, progress=False)
    assert (corpus / "wav" / "seed").read_text() == "0\n"
    assert tables(tmp_path / "data") == {k: v.replace(str(tiny[0]), str(corpus)) for k, v in tables(tiny[1]).items()
                                         if k.split("/")[0] not in SPANISH_SPLITS and k != "local/lm_text_es.txt"}
    with pytest.raises(CorpusError, match="seed 0, not 1"):
        mini_tts.check_seed(corpus / "wav" / "seed", 1)


def test_two_runs_side_by_side_on_one_corpus_dir_take_turns(tiny, tmp_path, text_cache):
    corpus = new_corpus(tmp_path, text_cache)       # two recipes preparing the shared corpus at once
    runs = [subprocess.Popen([sys.executable, "-m", "audiossl.bin.prepare_mini_tts", "--size", "tiny", "--no-progress",
                              str(corpus), str(tmp_path / f"data{i}")], stderr=subprocess.PIPE, text=True)
            for i in range(2)]
    errors = [run.communicate()[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], errors
    assert any("another run is making audio there; waiting for it to end" in e for e in errors)
    assert any("34 utterances planned, 34 already synthesized, 0 to synthesize" in e for e in errors)
    assert {p.relative_to(corpus): digest(p) for p in (corpus / "wav").glob("*/*.wav")} \
        == {p.relative_to(tiny[0]): digest(p) for p in (tiny[0] / "wav").glob("*/*.wav")
            if p.parent.name in {"flite_slt", "mbrola_us1", "espeak_m3", "flite_kal"}}


def test_another_sentence_list_beside_the_audio_is_refused_not_misaligned(tiny, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(tiny[0], corpus)
    cache = corpus / "text" / "sentences_en.tsv"
    rows = [line.split("\t", 1) for line in cache.read_text().splitlines(keepends=True)]
    ids = [row[0] for row in rows]        # extracted again from other text packages: an id names another sentence
    cache.write_text("".join(f"{i}\t{row[1]}" for i, row in zip(ids[1:] + ids[:1], rows)))
    with pytest.raises(CorpusError, match="sentences_en.tsv is not the sentence list the audio of .*/wav was made"):
        prepare_mini_tts(corpus, tmp_path / "data", size="tiny", seed=0, progress=False)
    assert not (tmp_path / "data").exists()


def test_a_wav_cut_short_or_empty_is_made_again_not_reused(tiny, tmp_path, caplog):
    corpus, data = tiny
    copy = tmp_path / "corpus"                          # a copy of the corpus that was interrupted
    shutil.copytree(corpus, copy)
    wavs = sorted((copy / "wav").glob("*/*.wav"))
    cut, empty = wavs[0], wavs[-1]
    cut.write_bytes(cut.read_bytes()[:cut.stat().st_size // 2])
    empty.write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="audiossl.audio"):
        prepare_mini_tts(copy, tmp_path / "data", size="tiny", seed=0, progress=False, languages=("en", "es"))
    assert f"'{cut}' is truncated" in caplog.text and f"cannot decode '{empty}'" in caplog.text
    assert {p.relative_to(copy): digest(p) for p in wavs} == {p.relative_to(copy): digest(corpus / p.relative_to(copy))
                                                              for p in wavs}
    assert tables(tmp_path / "data") == {k: v.replace(str(corpus), str(copy)) for k, v in tables(data).items()}


def failing_for(monkeypatch, should_fail) -> None:
    """Make ``synthesize_raw`` run a failing command for the texts ``should_fail`` picks."""
    real = mini_tts.synthesize_raw

    def fake(voice, text, out):
        if should_fail(voice, text):
            mini_tts.run_tool(["false"])
        return real(voice, text, out)

    monkeypatch.setattr(mini_tts, "synthesize_raw", fake)


def test_a_failed_utterance_is_logged_and_skipped(tiny, tmp_path, monkeypatch, caplog):
    corpus = tmp_path / "corpus"
    shutil.copytree(tiny[0], corpus)
    utt = next(u for u in read(tiny[1], "train_unlab").utterances if u.startswith("flite_slt-"))
    (corpus / "wav" / "flite_slt" / f"{utt}.wav").unlink()
    failing_for(monkeypatch, lambda voice, text: voice.speaker == "flite_slt")
    with caplog.at_level(logging.WARNING, logger=mini_tts.__name__):
        prepare_mini_tts(corpus, tmp_path / "data", size="tiny", seed=0, progress=False)
    assert any(utt in r.getMessage() and "false failed (exit 1)" in r.getMessage() for r in caplog.records)
    for split in ENGLISH_SPLITS:
        assert utt not in read(tmp_path / "data", split).utterances
        assert validate_data_dir(tmp_path / "data" / split) == []
    assert len(read(tmp_path / "data", "train_unlab").utterances) == len(read(tiny[1], "train_unlab").utterances) - 1


def test_too_many_failures_are_fatal(tiny, tmp_path, monkeypatch):
    corpus = tmp_path / "corpus"
    shutil.copytree(tiny[0], corpus)
    shutil.rmtree(corpus / "wav" / "mbrola_us1")
    failing_for(monkeypatch, lambda voice, text: voice.speaker == "mbrola_us1")
    with pytest.raises(RuntimeError, match="failed to synthesize"):
        prepare_mini_tts(corpus, tmp_path / "data", size="tiny", seed=0, progress=False)


def test_synthesis_error_names_the_command(tmp_path):
    voice = mini_tts.Voice("espeak_nope", "espeak", "nonexistent")
    with pytest.raises(SynthesisError, match="espeak-ng -v nonexistent .* failed"):
        mini_tts.synthesize_utterance(voice, "Hello there my good friend.", tmp_path / "x.wav", 0, "espeak_nope-x")
    assert not list(tmp_path.iterdir())


def test_cli(tiny, tmp_path):
    corpus, data = tiny
    proc = subprocess.run([sys.executable, "-m", "audiossl.bin.prepare_mini_tts", "--size", "tiny", "--seed", "0",
                           "--languages", "en,es", "--no-progress", str(corpus), str(tmp_path / "data")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "train_unlab: 18 utterances, 3 speakers" in proc.stderr
    assert tables(tmp_path / "data") == tables(data)


def test_sizes():
    full, tiny = MiniTtsSize.full(), MiniTtsSize.tiny()
    for size in (full, tiny):
        size.validate()
    assert 18 <= len(full.english.train_voices) <= 22 and len(full.spanish.train_voices) == 6
    for language in (full.english, full.spanish):
        engines = [mini_tts.VOICES_BY_SPEAKER[s].engine for s in language.unseen_voices]
        assert len(set(engines)) == len(engines)
    assert len(tiny.english.train_voices) + len(tiny.english.unseen_voices) == 4
    with pytest.raises(ValueError, match="unknown voice"):
        dataclasses.replace(tiny, english=dataclasses.replace(tiny.english, train_voices=("nobody",))).validate()
    with pytest.raises(ValueError, match="voice 'flite_slt' does not speak 'es'"):
        dataclasses.replace(tiny, spanish=dataclasses.replace(tiny.spanish, train_voices=("flite_slt",))).validate()


def test_large_adds_unlabelled_audio_only(text_cache):
    voices = list(mini_tts.VOICES)
    sentences = {lang: load_sentences(text_cache.parent, lang) for lang in LANGUAGES}
    full = mini_tts.plan_corpus(MiniTtsSize.full(), voices, sentences, seed=0)
    large = mini_tts.plan_corpus(MiniTtsSize.large(), voices, sentences, seed=0)
    assert {k: v for k, v in large.items() if k != "train_unlab"} == {k: v for k, v in full.items() if k != "train_unlab"}
    extra = large["train_unlab"][len(full["train_unlab"]):]
    assert large["train_unlab"][:len(full["train_unlab"])] == full["train_unlab"]
    assert len(extra) == 450 * len(MiniTtsSize.full().english.train_voices) and all(u.unlabelled_only for u in extra)
    assert not any(u.unlabelled_only for u in full["train_unlab"])
    used = [u.sentence.id for utts in large.values() for u in utts]
    assert len(used) == len(set(used))


def test_a_voice_not_installed_changes_no_other_voice_s_utterances(text_cache):
    sentences = {lang: load_sentences(text_cache.parent, lang) for lang in LANGUAGES}
    size = dataclasses.replace(MiniTtsSize.large(), unlabelled_only_per_voice=5)
    every = mini_tts.plan_corpus(size, list(mini_tts.VOICES), sentences, seed=0, languages=("en", "es"))
    missing = {"flite_kal", "pico_enus", "pico_eses"}       # e.g. a machine without the non-free pico
    fewer = mini_tts.plan_corpus(size, [v for v in mini_tts.VOICES if v.speaker not in missing], sentences, seed=0,
                                 languages=("en", "es"))
    assert fewer == {split: [u for u in utts if u.voice.speaker not in missing] for split, utts in every.items()}
    assert all(fewer[split] for split in every)


def test_unlabelled_only_audio_stays_out_of_the_labelled_subsets(tmp_path, text_cache, monkeypatch):
    more = dataclasses.replace(MiniTtsSize.tiny(), unlabelled_only_per_voice=2)
    corpus = new_corpus(tmp_path, text_cache)
    monkeypatch.setattr(MiniTtsSize, "tiny", classmethod(lambda cls: more))
    prepare_mini_tts(corpus, tmp_path / "data", size="tiny", seed=0, progress=False)
    assert len(read(tmp_path / "data", "train_unlab").utterances) == \
        (more.english.train_per_voice + 2) * len(more.english.train_voices)
    monkeypatch.undo()
    prepare_mini_tts(corpus, tmp_path / "base", size="tiny", seed=0, progress=False)
    base = tables(tmp_path / "base")
    assert {k: v for k, v in tables(tmp_path / "data").items() if not k.startswith("train_unlab/")} == \
        {k: v for k, v in base.items() if not k.startswith("train_unlab/")}


def test_no_unseen_voice_installed_is_an_error_not_an_empty_test_unseen(text_cache):
    sentences = {"en": load_sentences(text_cache.parent, "en")}
    without_flite = [v for v in mini_tts.VOICES if v.engine != "flite"]
    with pytest.raises(CorpusError, match="none of the en unseen voices flite_kal is installed: test_unseen would be "
                                          "empty"):
        mini_tts.plan_corpus(MiniTtsSize.tiny(), without_flite, sentences, seed=0)


def test_no_sox_is_an_error_before_any_engine_runs(tiny, tmp_path, monkeypatch):
    which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "sox" else which(name))
    monkeypatch.setattr(mini_tts, "synthesize_raw", lambda *args: pytest.fail("an engine ran"))
    corpus = tmp_path / "corpus"
    shutil.copytree(tiny[0] / "text", corpus / "text")
    with pytest.raises(CorpusError, match="sox not found: install the Debian package sox"):
        prepare_mini_tts(corpus, tmp_path / "data", size="tiny", seed=0, progress=False)
    assert not list(corpus.rglob("*.wav")) and not (tmp_path / "data").exists()


def test_a_language_without_text_names_the_packages_to_install():
    with pytest.raises(CorpusError, match="no es sentence found: install the Debian packages diatheke and "
                                          "sword-text-sparv"):
        mini_tts.plan_corpus(MiniTtsSize.tiny(), list(mini_tts.VOICES),
                             {"en": [mini_tts.Sentence(f"wn{i:05d}", "x", "X") for i in range(100)],
                              "es": []},                  # what load_sentences gives without diatheke
                             seed=0, languages=("en", "es"))
