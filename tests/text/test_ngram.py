"""The Kneser-Ney ARPA estimate: a proper distribution under ARPA backoff, continuation counts, errors."""
from __future__ import annotations

import math

import pytest

from audiossl.text.ngram import BOS, EOS, UNK, count_ngrams, kneser_ney, train_arpa, write_lexicon

TEXT = ["THE CAT SAT ON THE MAT", "THE DOG SAT ON THE LOG", "A CAT AND A DOG", "THE CAT ATE",
        "SAN FRANCISCO IS A CITY", "SAN FRANCISCO", "I LIVE IN SAN FRANCISCO", "THE DOG ATE THE CAT",
        "A MAT ON A LOG", "I SAT", "THE CITY IS BIG", "A BIG DOG"]


def read_arpa(path) -> list[dict[tuple[str, ...], tuple[float, float]]]:
    """The n-grams of an ARPA file: (log10 p, log10 bow) per order."""
    levels: list[dict] = []
    for line in path.read_text().splitlines():
        if line.startswith("\\") and line.endswith("-grams:"):
            levels.append({})
        elif levels and line and not line.startswith("\\"):
            fields = line.split("\t")
            levels[-1][tuple(fields[1].split())] = (float(fields[0]), float(fields[2]) if len(fields) > 2 else 0.0)
    return levels


def arpa_prob(levels, history: tuple[str, ...], word: str) -> float:
    """p(word | history) by ARPA's backoff rule."""
    history = history[-(len(levels) - 1):] if len(levels) > 1 else ()
    log10 = 0.0
    while True:  # the unigrams hold every word, so the loop ends there at the latest
        gram = history + (word,)
        if gram in levels[len(gram) - 1]:
            return 10 ** (log10 + levels[len(gram) - 1][gram][0])
        if history in levels[len(history) - 1]:  # an unseen history has no backoff weight (log10 1 = 0)
            log10 += levels[len(history) - 1][history][1]
        history = history[1:]


@pytest.mark.parametrize("order", [1, 2, 3])
def test_every_history_gives_a_distribution(tmp_path, order):
    counts = train_arpa(TEXT, order, tmp_path / "lm.arpa")
    levels = read_arpa(tmp_path / "lm.arpa")
    assert [len(level) for level in levels] == [counts[str(k)] for k in range(1, order + 1)]
    vocab = [w for (w,) in levels[0] if w != BOS]
    assert UNK in vocab and EOS in vocab
    for history in [(), (BOS,), ("THE",), ("SAN",), (BOS, "THE"), ("THE", "CAT"), ("ZEBRA",), ("CAT", "ZEBRA")]:
        total = sum(arpa_prob(levels, history, w) for w in vocab)
        assert total == pytest.approx(1.0, abs=1e-4), history


def test_unigrams_count_contexts_not_occurrences():
    """FRANCISCO is as frequent as DOG but only ever follows SAN: Kneser-Ney gives it a lower unigram."""
    counts = count_ngrams(TEXT, 2)
    assert counts[0][("FRANCISCO",)] == 3 and counts[0][("DOG",)] == 4
    unigrams = kneser_ney(counts)[0]
    assert unigrams[("FRANCISCO",)][0] < unigrams[("DOG",)][0] - 0.3
    assert unigrams[(BOS,)][0] == -99.0


def test_seen_bigram_is_likelier_than_its_backoff():
    model = kneser_ney(count_ngrams(TEXT, 2))
    assert model[1][("SAN", "FRANCISCO")][0] > math.log10(0.5)
    assert model[1][("SAN", "FRANCISCO")][0] > model[0][("FRANCISCO",)][0]


def test_too_little_text_is_an_error():
    with pytest.raises(ValueError, match="too little text for a 2-gram"):
        kneser_ney(count_ngrams(["A B C", "D E F"], 2))
    with pytest.raises(ValueError, match="order must be at least 1"):
        count_ngrams(TEXT, 0)


def test_lexicon_spells_words_with_the_word_boundary(tmp_path):
    assert write_lexicon(["IT'S", "A", "A", UNK, BOS], tmp_path / "lexicon.txt") == 2
    assert (tmp_path / "lexicon.txt").read_text() == "A\tA |\nIT'S\tI T ' S |\n"
