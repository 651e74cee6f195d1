"""Word n-gram language models: interpolated Kneser-Ney estimated in Python, written as ARPA.

The ARPA file is what KenLM (and so flashlight-text's CTC decoder)
reads. The estimate is Chen & Goodman's interpolated Kneser-Ney with one absolute
discount per order, ``D = n1 / (n1 + 2 n2)`` from that order's count-of-counts:

- the highest order counts n-grams; a lower order counts the distinct words seen before
  an n-gram (its continuation count), except n-grams that start with ``<s>``, which have
  nothing before them and keep their plain counts;
- ``p(w | h) = max(c(h w) - D, 0) / c(h) + bow(h) p(w | h')`` with
  ``bow(h) = D N1+(h .) / c(h)``, ``h'`` being ``h`` without its first word;
- the unigrams are interpolated with the uniform distribution over the vocabulary (the
  discount's mass spread evenly), so that ``<unk>`` and every word have some probability.

In ARPA terms every listed n-gram carries this interpolated probability and every history
its ``bow``: a backoff lookup then gives the same distribution, which sums to one.

An LM dir (:func:`build_lm_dir`) holds ``lm.arpa``, ``lexicon.txt`` and, written last, ``info.json``.
"""
from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

from audiossl.atomic import atomic_path, write_text_atomic
from audiossl.data.kaldi_dir import DataDir, DataDirError
from audiossl.errors import UserError
from audiossl.text.tokenizer import normalize_transcript

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
LM_FILE, LEXICON_FILE, INFO_FILE = "lm.arpa", "lexicon.txt", "info.json"


class LMError(UserError, ValueError):
    """An LM that cannot be trained or used: too little text, a bad order, a malformed LM dir."""


def count_ngrams(sentences: Iterable[str], order: int) -> list[Counter]:
    """Plain counts of every n-gram of ``<s> words </s>``, orders 1 to ``order``.

    Returns:
        ``counts[k - 1]``: Counter of k-gram tuples.
    """
    if order < 1:
        raise LMError(f"order must be at least 1, got {order}")
    counts = [Counter() for _ in range(order)]
    for sentence in sentences:
        words = [BOS, *sentence.split(), EOS]
        for k in range(1, order + 1):
            counts[k - 1].update(zip(*(words[i:] for i in range(k))))
    return counts


def kneser_ney(counts: list[Counter]) -> list[dict[tuple[str, ...], tuple[float, float]]]:
    """Interpolated Kneser-Ney probabilities and backoff weights from :func:`count_ngrams`.

    Returns:
        ``model[k - 1]``: k-gram -> (log10 p(last word | the others), log10 bow of the
        k-gram as a history; 0.0 at the highest order).
    """
    order = len(counts)
    modified = [_continuation_counts(counts[k + 1], counts[k]) for k in range(order - 1)] + [counts[-1]]
    discounts = [_discount(c, k + 1) for k, c in enumerate(modified)]
    vocab = sorted({w for (w,) in counts[0]} - {BOS} | {UNK})
    probs: list[dict[tuple[str, ...], float]] = []
    bows: list[dict[tuple[str, ...], float]] = []
    for k, (table, discount) in enumerate(zip(modified, discounts)):
        totals: dict[tuple[str, ...], float] = defaultdict(float)
        kinds: dict[tuple[str, ...], int] = defaultdict(int)
        for gram, c in table.items():
            if gram[-1] == BOS:
                continue
            totals[gram[:-1]] += c
            kinds[gram[:-1]] += 1
        bow = {h: discount * kinds[h] / totals[h] for h in totals}
        level: dict[tuple[str, ...], float] = {}
        if k == 0:
            uniform = bow[()] / len(vocab)
            level = {(w,): max(table.get((w,), 0) - discount, 0.0) / totals[()] + uniform for w in vocab}
        else:
            for gram, c in table.items():
                if gram[-1] == BOS:
                    continue
                h = gram[:-1]
                # gram[1:] was seen with gram[0] before it, so the order below lists it
                level[gram] = max(c - discount, 0.0) / totals[h] + bow[h] * probs[k - 1][gram[1:]]
        probs.append(level)
        bows.append(bow)
    model = []
    for k in range(order):
        level = {g: (math.log10(p), math.log10(bows[k + 1][g]) if k + 1 < order and g in bows[k + 1] else 0.0)
                 for g, p in probs[k].items()}
        if k == 0:
            level[(BOS,)] = (-99.0, math.log10(bows[1][(BOS,)]) if order > 1 else 0.0)
        model.append(level)
    return model


def write_arpa(model: list[dict[tuple[str, ...], tuple[float, float]]], path: str | Path) -> None:
    """Write :func:`kneser_ney`'s model as an ARPA file, atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("\\data\\\n")
        for k, level in enumerate(model, 1):
            f.write(f"ngram {k}={len(level)}\n")
        for k, level in enumerate(model, 1):
            f.write(f"\n\\{k}-grams:\n")
            for gram in sorted(level):
                logp, logbow = level[gram]
                tail = f"\t{logbow:.6f}" if k < len(model) else ""
                f.write(f"{logp:.6f}\t{' '.join(gram)}{tail}\n")
        f.write("\n\\end\\\n")


def train_arpa(sentences: Iterable[str], order: int, path: str | Path) -> dict[str, int]:
    """Estimate a Kneser-Ney model of ``order`` on ``sentences`` and write it to ``path``.

    Returns:
        The number of n-grams of each order, as ``{"1": n1, "2": n2, ...}``.

    Raises:
        LMError: ``order`` below 1, or too little text for its discounts.
    """
    model = kneser_ney(count_ngrams(sentences, order))
    write_arpa(model, path)
    return {str(k): len(level) for k, level in enumerate(model, 1)}


def write_lexicon(words: Iterable[str], path: str | Path) -> int:
    """A flashlight lexicon: each word spelled in characters and ended by the ``|`` boundary.

    Returns:
        The number of words written.
    """
    words = sorted(set(words) - {BOS, EOS, UNK})
    write_text_atomic(path, "".join(f"{w}\t{' '.join(w)} |\n" for w in words))
    return len(words)


def held_out_text(data_dir: str | Path) -> dict[str, str]:
    """The ``text`` table of a data dir whose sentences an LM must not see."""
    data = DataDir.read(data_dir)
    if "text" not in data:
        raise DataDirError(f"{data_dir}: no text file, so its sentences cannot be held out of the LM")
    return data["text"]


def build_lm_dir(text: str | Path, lm_dir: str | Path, order: int, held_out_dirs: Iterable[str] = ()) -> dict:
    """Train an LM dir on the sentences of the file ``text`` (one a line, read in Unicode NFC as transcripts
    are tokenized) but those that are a transcript of a ``held_out_dirs`` data dir: ``lm.arpa``
    (:func:`train_arpa`), ``lexicon.txt`` (every word of the kept text) and, last, ``info.json``, which
    it returns: the settings, counts and each held-out dir's share of words the lexicon lacks."""
    held_out = {str(name): [normalize_transcript(t) for t in held_out_text(name).values()] for name in held_out_dirs}
    excluded = {t for texts in held_out.values() for t in texts}
    try:
        with open(text, encoding="utf-8") as f:
            sentences = [line for line in map(normalize_transcript, f) if line]
    except UnicodeDecodeError as err:
        raise LMError(f"{text}: not UTF-8 text ({err})") from None
    kept = [line for line in sentences if line not in excluded]
    if not kept:
        raise LMError(f"{text}: no sentence left to train on")
    lm_dir = Path(lm_dir)
    lm_dir.mkdir(parents=True, exist_ok=True)
    try:
        ngrams = train_arpa(kept, order, lm_dir / LM_FILE)
    except LMError as err:
        raise LMError(f"{text}: {err}") from None
    (lm_dir / INFO_FILE).unlink(missing_ok=True)  # written last: until then the dir is incomplete, not described
    vocab = {w for line in kept for w in line.split()}
    num_words = write_lexicon(vocab, lm_dir / LEXICON_FILE)
    oov = {}
    for name, texts in held_out.items():
        words = [w for t in texts for w in t.split()]
        oov[name] = sum(w not in vocab for w in words) / max(len(words), 1)
    info = {"text": str(text), "order": order, "sentences": len(kept), "held_out": list(held_out),
            "dropped_as_held_out": len(sentences) - len(kept), "lexicon_words": num_words,
            "ngrams": ngrams, "oov_rate": oov}
    write_text_atomic(lm_dir / INFO_FILE, json.dumps(info, indent=1) + "\n")
    return info


def _continuation_counts(higher: Counter, plain: Counter) -> Counter:
    """Distinct left contexts of each (k-1)-gram in the k-grams; plain counts after ``<s>``."""
    out = Counter()
    for gram in higher:
        out[gram[1:]] += 1
    for gram, c in plain.items():
        if gram[0] == BOS:
            out[gram] = c
    return out


def _discount(table: Counter, k: int) -> float:
    n1 = sum(1 for c in table.values() if c == 1)
    n2 = sum(1 for c in table.values() if c == 2)
    if n1 == 0 or n2 == 0:
        raise LMError(f"too little text for a {k}-gram Kneser-Ney estimate: "
                      f"{n1} {k}-grams seen once, {n2} seen twice")
    return n1 / (n1 + 2 * n2)

