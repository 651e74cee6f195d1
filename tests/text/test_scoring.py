"""WER/CER on hand-computed examples and the Kaldi-style decode dir files."""
from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from audiossl.data.kaldi_dir import read_table
from audiossl.text.scoring import error_rates, write_decode_dir

REFS = {"u1": "THE CAT SAT", "u2": "A DOG", "u3": "HELLO  WORLD", "u4": "GOOD MORNING"}
HYPS = {"u1": "THE BAT SAT DOWN", "u2": "A DOG", "u3": "HELLO"}  # u4 missing


def test_error_rates_hand_computed() -> None:
    rates = error_rates(REFS, HYPS)
    # u1: CAT->BAT sub, DOWN ins; u3: WORLD del; u4: GOOD MORNING both deleted.
    assert (rates.substitutions, rates.deletions, rates.insertions) == (1, 3, 1)
    assert rates.num_words == 3 + 2 + 2 + 2
    assert rates.wer == pytest.approx(5 / 9)
    # Characters (spaces count): u1 "THE CAT SAT" (11) vs "THE BAT SAT DOWN": 1 sub, 5 ins;
    # u3 "HELLO WORLD" (11) vs "HELLO": 6 del; u4 "GOOD MORNING" (12): 12 del.
    assert rates.num_chars == 11 + 5 + 11 + 12
    assert (rates.char_substitutions, rates.char_deletions, rates.char_insertions) == (1, 18, 5)
    assert rates.cer == pytest.approx(24 / 39)
    assert rates.num_utts == 4 and rates.missing == ["u4"]


def test_error_rates_perfect_and_errors() -> None:
    perfect = error_rates(REFS, REFS)
    assert perfect.wer == 0 and perfect.cer == 0 and perfect.missing == []
    with pytest.raises(ValueError, match="u9"):
        error_rates(REFS, {**HYPS, "u9": "EXTRA"})
    with pytest.raises(ValueError):
        error_rates({}, {})


def test_decode_dir_files(tmp_path: Path) -> None:
    decode = tmp_path / "decode_test"
    rates = write_decode_dir(decode, REFS, HYPS, "test_greedy")
    assert rates == error_rates(REFS, HYPS)
    assert read_table(decode / "ref.txt") == {"u1": "THE CAT SAT", "u2": "A DOG", "u3": "HELLO WORLD",
                                              "u4": "GOOD MORNING"}
    assert read_table(decode / "hyp.txt") == {"u1": "THE BAT SAT DOWN", "u2": "A DOG", "u3": "HELLO", "u4": ""}
    assert (decode / "wer").read_text().splitlines() == [
        "%WER 55.56 [ 5 / 9, 1 ins, 3 del, 1 sub ] test_greedy",
        "Scored 4 sentences, 1 not present in hyp.",
    ]
    assert (decode / "cer").read_text().splitlines()[0] == "%WER 61.54 [ 24 / 39, 5 ins, 18 del, 1 sub ] test_greedy"
    lines = (decode / "per_utt").read_text().splitlines()
    # Worst first: u1 (2 errors, before u4 by id), u4 (2), u3 (1), u2 (0).
    assert [line.split()[0] for line in lines[::4]] == ["u1", "u4", "u3", "u2"]
    assert lines[:4] == [
        "u1 ref THE CAT SAT ***",
        "u1 hyp THE BAT SAT DOWN",
        "u1 op  C   S   C   I",
        "u1 #csid 2 1 0 1",
    ]
    assert lines[4:8] == [
        "u4 ref GOOD MORNING",
        "u4 hyp ***  ***",
        "u4 op  D    D",
        "u4 #csid 0 0 2 0",
    ]
    assert lines[-1] == "u2 #csid 2 0 0 0"


def test_decode_dir_without_tag(tmp_path: Path) -> None:
    write_decode_dir(tmp_path, {"a": "X Y"}, {"a": "X Y"})
    assert (tmp_path / "wer").read_text().splitlines()[0] == "%WER 0.00 [ 0 / 2, 0 ins, 0 del, 0 sub ]"


def test_accents_composed_or_not_score_as_the_same_letters() -> None:
    """A reference in NFD (E and a combining accent) against a hypothesis in NFC scored a wrong word."""
    composed = unicodedata.normalize("NFC", "CAFÉ CON LECHE")
    rates = error_rates({"u1": unicodedata.normalize("NFD", composed)}, {"u1": composed})
    assert (rates.wer, rates.cer, rates.num_chars) == (0.0, 0.0, len(composed))
