"""Phoneme transcripts of the mini TTS corpus, made from a real tiny corpus, and PER scoring."""
from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import jiwer
import numpy as np
import pytest
import torchaudio

from audiossl.bin import prepare_tasks
from audiossl.corpora import mini_tts
from audiossl.corpora.mini_tts import ENGLISH_SPLITS, load_sentences, prepare_mini_tts
from audiossl.corpora.phonemes import (ESPEAK_TO_ARPABET, INVENTORY, PhonemeError, arpabet, phoneme_transcripts,
                                       prepare_phoneme_dirs)
from audiossl.data.kaldi_dir import DataDir, write_table
from audiossl.data.validate import validate_data_dir
from audiossl.text.scoring import error_rates

TOOLS = ("sox", "flite", "espeak-ng", "mbrola", "diatheke")
pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in TOOLS) or not (mini_tts.WORDNET_DIR / "data.noun").is_file(),
    reason=f"needs {', '.join(TOOLS)} and wordnet-base")

COPIED = ("wav.scp", "utt2spk", "spk2utt", "utt2dur", "utt2lang")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    """``(corpus_dir, data_dir)`` of a tiny English corpus; its text: WordNet and the Bible from Ruth to 1 Samuel.

    Reading the whole Bible takes 15 s, so diatheke is asked for those books only; Spanish is left out.
    """
    root = tmp_path_factory.mktemp("tiny")
    corpus = root / "corpus"
    run = subprocess.run

    def some_books(argv, **kwargs):
        return run(["Ruth-1 Samuel" if arg == "Gen-Rev" else arg for arg in argv], **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mini_tts.subprocess, "run", some_books)
        load_sentences(corpus, "en")
    (corpus / "text" / "sentences_es.tsv").write_text("")
    prepare_mini_tts(corpus, root / "data", size="tiny", seed=0, progress=False)
    return corpus, root / "data"


@pytest.fixture(scope="module")
def phoneme_dirs(tiny, tmp_path_factory) -> Path:
    corpus, data = tiny
    out = tmp_path_factory.mktemp("phonemes")
    prepare_phoneme_dirs(corpus, data, out)
    return out


def spoken_by_utt(corpus: Path, data: DataDir) -> dict[str, str]:
    sentences = {s.id: s.spoken for s in load_sentences(corpus, "en")}
    return {utt: sentences[utt.split("-", 1)[1]] for utt in data.utterances}


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ phonemes

def test_known_words_give_their_cmudict_phonemes():
    expected = {"yes": "y eh s", "church": "ch er ch", "thing": "th ih ng", "measure": "m eh zh er",
                "boy": "b oy", "house": "hh aw s", "judge": "jh ah jh", "father": "f aa dh er",
                "water": "w ao t er", "about": "ah b aw t", "button": "b ah t ah n", "cycle": "s ay k ah l",
                "victory": "v ih k t er iy", "fire": "f ay er", "look": "l uh k", "go": "g ow", "shoe": "sh uw"}
    got = phoneme_transcripts(list(expected))
    assert {word: " ".join(p) for word, p in zip(expected, got)} == expected


def test_the_table_maps_onto_exactly_the_inventory():
    assert len(INVENTORY) == 39 == len(set(INVENTORY))
    assert {p for phonemes in ESPEAK_TO_ARPABET.values() for p in phonemes} == set(INVENTORY)


def test_inventory_covers_real_sentences_of_both_sources(tiny):
    corpus, _ = tiny
    sentences = load_sentences(corpus, "en")
    rng = random.Random(0)
    chosen = [s for prefix in ("wn", "web") for s in rng.sample([s for s in sentences if s.id.startswith(prefix)], 300)]
    transcripts = phoneme_transcripts([s.spoken for s in chosen], [s.id for s in chosen])
    used = {p for phonemes in transcripts for p in phonemes}
    assert used == set(INVENTORY)                       # every symbol occurs, none outside it
    words = [len(s.transcript.split()) for s in chosen]
    per_word = np.array([len(p) for p in transcripts]) / np.array(words)
    assert 2.0 < per_word.min() and per_word.max() < 8.0, (per_word.min(), per_word.max())


def test_the_library_gives_the_phonemes_of_the_espeak_ng_program(tiny):
    """The in-process call is espeak-ng's own ``-x`` output (which splits lines at clauses)."""
    corpus, _ = tiny
    sentences = [s.spoken for s in random.Random(1).sample(load_sentences(corpus, "en"), 8)]
    sentences.append("What is it for, he asked; the button!")
    for sentence, phonemes in zip(sentences, phoneme_transcripts(sentences)):
        out = subprocess.run(["espeak-ng", "-q", "-v", "en-us", "-x", "--sep=|", sentence],
                             capture_output=True, text=True, check=True).stdout
        assert arpabet([word.split("|") for word in out.split()], sentence) == phonemes


def test_a_sentence_does_not_depend_on_the_one_before(tiny):
    corpus, _ = tiny
    sentences = [s.spoken for s in random.Random(2).sample(load_sentences(corpus, "en"), 60)]
    assert phoneme_transcripts(sentences) == phoneme_transcripts(sentences[::-1])[::-1]


def test_a_phoneme_outside_the_inventory_names_the_sentence():
    with pytest.raises(PhonemeError, match=r"utt-b .*'E:'"):
        phoneme_transcripts(["yes", "Привет мир"], ["utt-a", "utt-b"])
    with pytest.raises(PhonemeError, match="sentence 1: .*no phoneme"):
        phoneme_transcripts(["yes", "  "])


# ------------------------------------------------------------------ data dirs

def test_out_dirs_mirror_the_inputs_utterance_for_utterance(tiny, phoneme_dirs):
    corpus, data = tiny
    assert sorted(p.name for p in phoneme_dirs.iterdir()) == sorted(ENGLISH_SPLITS)
    for split in ENGLISH_SPLITS:
        source, out = DataDir.read(data / split), DataDir.read(phoneme_dirs / split)
        assert out.utterances == source.utterances and out.utterances
        for name in COPIED:
            assert (phoneme_dirs / split / name).read_bytes() == (data / split / name).read_bytes(), (split, name)
        spoken = spoken_by_utt(corpus, source)
        assert out["text"] == {utt: " ".join(p) for utt, p in zip(spoken, phoneme_transcripts(list(spoken.values())))}
        assert (phoneme_dirs / split / "phones.txt").read_text().split("\n") == [*INVENTORY, ""]
        assert validate_data_dir(phoneme_dirs / split) == []        # audio decoded too


def test_phonemes_follow_the_audio(phoneme_dirs):
    """Phoneme counts track utterance durations (8 to 22 a second on the full corpus, r = 0.93)."""
    counts, seconds = [], []
    for split in ("train_unlab", "dev", "test", "test_unseen"):
        out = DataDir.read(phoneme_dirs / split)
        counts += [len(out["text"][utt].split()) for utt in out.utterances]
        seconds += [float(out["utt2dur"][utt]) for utt in out.utterances]
    rates = np.array(counts) / np.array(seconds)
    assert 5.0 < rates.min() and rates.max() < 25.0, (rates.min(), rates.max())
    assert np.corrcoef(counts, seconds)[0, 1] > 0.8


def test_a_rerun_changes_nothing(tiny, phoneme_dirs):
    corpus, data = tiny
    before = files(phoneme_dirs)
    prepare_phoneme_dirs(corpus, data, phoneme_dirs)
    assert files(phoneme_dirs) == before
    assert not any(name.endswith(".tmp") for name in before)


def test_a_data_dir_of_another_corpus_or_language_names_the_utterance(tiny, tmp_path):
    corpus, data = tiny
    shutil.copytree(data / "dev", tmp_path / "data" / "dev")
    dev = DataDir.read(tmp_path / "data" / "dev")
    utt = dev.utterances[1]
    write_table(tmp_path / "data" / "dev" / "text", {**dev["text"], utt: "SOMETHING ELSE ENTIRELY SAID HERE"})
    with pytest.raises(PhonemeError, match=f"utterance '{utt}' has transcript 'SOMETHING ELSE"):
        prepare_phoneme_dirs(corpus, tmp_path / "data", tmp_path / "out", splits=("dev",))
    write_table(tmp_path / "data" / "dev" / "text", dev["text"])
    write_table(tmp_path / "data" / "dev" / "utt2lang", {**dev["utt2lang"], utt: "es"})
    with pytest.raises(PhonemeError, match=f"utterance '{utt}' is in language 'es'"):
        prepare_phoneme_dirs(corpus, tmp_path / "data", tmp_path / "out", splits=("dev",))
    with pytest.raises(PhonemeError, match="sentences_en.tsv: not found"):
        prepare_phoneme_dirs(tmp_path, data, tmp_path / "out")



def test_a_mini_tts_data_dir_without_any_split_is_an_error_not_an_empty_success(tiny, tmp_path, capsys):
    corpus, data = tiny
    args = ["--tasks", "pr", str(corpus), str(tmp_path / "nowhere"), str(tmp_path / "audio"), str(tmp_path / "out")]
    assert prepare_tasks.main(args) == 1
    assert f"error: {tmp_path / 'nowhere'}: holds none of the data dirs train_unlab" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ scoring

def perturbed(phonemes: list[str], rng: random.Random) -> list[str]:
    """Each phoneme substituted, deleted or followed by an insertion with probability 0.1."""
    out = []
    for p in phonemes:
        draw = rng.random()
        if draw < 0.1:
            out.append(rng.choice(INVENTORY))
        elif draw < 0.2:
            continue
        else:
            out.append(p)
        if rng.random() < 0.1:
            out.append(rng.choice(INVENTORY))
    return out


def test_per_is_the_word_error_rate_of_phoneme_transcripts(tiny):
    """``error_rates(...).wer`` on phonemes is jiwer's WER and the phoneme edit distance over the reference length."""
    corpus, _ = tiny
    rng = random.Random(3)
    chosen = rng.sample(load_sentences(corpus, "en"), 40)
    refs = dict(zip((s.id for s in chosen), phoneme_transcripts([s.spoken for s in chosen])))
    hyps = {utt: perturbed(p, rng) for utt, p in refs.items()}
    hyps[chosen[0].id] = []                              # an empty hypothesis: all deletions
    hyps[chosen[1].id] = refs[chosen[2].id]              # another sentence's phonemes
    joined_refs = {utt: " ".join(p) for utt, p in refs.items()}
    joined_hyps = {utt: " ".join(p) for utt, p in hyps.items()}
    rates = error_rates(joined_refs, joined_hyps)
    utts = sorted(refs)
    edits = sum(torchaudio.functional.edit_distance(refs[u], hyps[u]) for u in utts)
    length = sum(len(refs[u]) for u in utts)
    assert rates.wer == pytest.approx(jiwer.wer([joined_refs[u] for u in utts], [joined_hyps[u] for u in utts]))
    assert rates.wer == pytest.approx(edits / length)
    assert rates.num_words == length
    assert rates.substitutions + rates.deletions + rates.insertions == edits
    assert 0.15 < rates.wer < 0.6
