"""Word and character error rates (with jiwer) and Kaldi-style decode directories.

References and hypotheses are scored as :func:`~audiossl.text.tokenizer.normalize_transcript`
gives them: whitespace runs count as one space, ends are stripped and accents are composed
(NFC). The CER counts the spaces between words as characters (jiwer's and Hugging Face's
convention for letter-based ASR).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import jiwer

from audiossl.data.kaldi_dir import write_table
from audiossl.text.tokenizer import normalize_transcript


@dataclass
class ErrorRates:
    """Error rates of a test set; rates are fractions (0.1234), not percent.

    ``substitutions``, ``deletions`` and ``insertions`` count words; the ``char_`` ones
    count characters. ``missing`` lists (sorted) the reference utterances without a
    hypothesis, scored as empty hypotheses.
    """

    wer: float
    cer: float
    num_words: int
    num_chars: int
    substitutions: int
    deletions: int
    insertions: int
    char_substitutions: int
    char_deletions: int
    char_insertions: int
    num_utts: int
    missing: list[str] = field(default_factory=list)

    @property
    def word_errors(self) -> int:
        """Substituted, deleted and inserted words: ``wer * num_words`` where there are reference words."""
        return self.substitutions + self.deletions + self.insertions

    @property
    def char_errors(self) -> int:
        """Substituted, deleted and inserted characters."""
        return self.char_substitutions + self.char_deletions + self.char_insertions


@dataclass
class _UttScore:
    """One utterance's word alignment: ``(ref, hyp, op)`` columns, ``***`` for a gap."""

    utt: str
    columns: list[tuple[str, str, str]]

    def count(self, op: str) -> int:
        return sum(1 for column in self.columns if column[2] == op)

    @property
    def errors(self) -> int:
        return sum(1 for column in self.columns if column[2] != "C")


def error_rates(refs: dict[str, str], hyps: dict[str, str]) -> ErrorRates:
    """Score ``hyps`` against ``refs`` (both ``{utt: transcript}``).

    Utterances of ``refs`` missing from ``hyps`` count as empty hypotheses; an utterance
    of ``hyps`` not in ``refs`` is an error.
    """
    return _score(refs, hyps)[0]


def write_decode_dir(decode_dir: str | os.PathLike, refs: dict[str, str], hyps: dict[str, str],
                     tag: str = "") -> ErrorRates:
    """Score as :func:`error_rates` and write Kaldi-style results into ``decode_dir``.

    Files:
        ``ref.txt``, ``hyp.txt``: Kaldi text tables ``utt WORDS...`` (a missing hypothesis
            as an empty one).
        ``wer``, ``cer``: ``%WER 12.34 [ 56 / 454, 7 ins, 8 del, 41 sub ]`` (then ``tag``
            when given, as ``utils/best_wer.sh`` prints it), then ``Scored N sentences, M
            not present in hyp.``, as Kaldi's ``compute-wer``; ``cer`` keeps the ``%WER``
            label, as Kaldi's character-level ``cer_*`` files, so ``grep WER`` finds both.
        ``per_utt``: for each utterance, worst first, Kaldi's ``wer_per_utt_details.pl``
            rows ``utt ref ...``, ``utt hyp ...``, ``utt op ...`` (columns aligned, ``***``
            for a gap, ops ``C S D I``) and ``utt #csid C S D I``.
    """
    rates, utt_scores = _score(refs, hyps)
    decode_dir = Path(decode_dir)
    decode_dir.mkdir(parents=True, exist_ok=True)
    write_table(decode_dir / "ref.txt", {utt: normalize_transcript(text) for utt, text in refs.items()})
    write_table(decode_dir / "hyp.txt", {utt: normalize_transcript(hyps.get(utt, "")) for utt in refs})
    scored = f"Scored {rates.num_utts} sentences, {len(rates.missing)} not present in hyp.\n"
    (decode_dir / "wer").write_text(
        _kaldi_line(rates.wer, rates.num_words, rates.insertions, rates.deletions, rates.substitutions, tag) + scored,
        encoding="utf-8")
    (decode_dir / "cer").write_text(
        _kaldi_line(rates.cer, rates.num_chars, rates.char_insertions, rates.char_deletions,
                    rates.char_substitutions, tag) + scored,
        encoding="utf-8")
    with open(decode_dir / "per_utt", "w", encoding="utf-8") as f:
        for score in sorted(utt_scores, key=lambda s: (-s.errors, s.utt)):
            widths = [max(len(ref), len(hyp), len(op)) for ref, hyp, op in score.columns]
            for row, name in enumerate(("ref", "hyp", "op ")):
                cells = " ".join(column[row].ljust(width) for column, width in zip(score.columns, widths))
                f.write(f"{score.utt} {name} {cells}".rstrip() + "\n")
            counts = " ".join(str(score.count(op)) for op in "CSDI")
            f.write(f"{score.utt} #csid {counts}\n")
    return rates


def _score(refs: dict[str, str], hyps: dict[str, str]) -> tuple[ErrorRates, list[_UttScore]]:
    if not refs:
        raise ValueError("no reference utterances to score")
    extra = sorted(set(hyps) - set(refs))
    if extra:
        shown = ", ".join(extra[:10]) + (f" and {len(extra) - 10} more" if len(extra) > 10 else "")
        raise ValueError(f"{len(extra)} hypotheses have no reference: {shown}")
    utts = sorted(refs)
    ref_texts = [normalize_transcript(refs[u]) for u in utts]
    hyp_texts = [normalize_transcript(hyps.get(u, "")) for u in utts]
    words = jiwer.process_words(ref_texts, hyp_texts)
    chars = jiwer.process_characters(ref_texts, hyp_texts)
    utt_scores = [_UttScore(utt, _columns(ref, hyp, chunks))
                  for utt, ref, hyp, chunks in zip(utts, words.references, words.hypotheses, words.alignments)]
    rates = ErrorRates(
        wer=float(words.wer), cer=float(chars.cer),
        num_words=sum(len(r) for r in words.references), num_chars=sum(len(r) for r in ref_texts),
        substitutions=words.substitutions, deletions=words.deletions, insertions=words.insertions,
        char_substitutions=chars.substitutions, char_deletions=chars.deletions, char_insertions=chars.insertions,
        num_utts=len(utts), missing=sorted(set(refs) - set(hyps)),
    )
    return rates, utt_scores


def _columns(ref: list[str], hyp: list[str], chunks: list) -> list[tuple[str, str, str]]:
    """Expand jiwer alignment chunks into ``(ref word, hyp word, op)`` columns."""
    columns: list[tuple[str, str, str]] = []
    for chunk in chunks:
        r, h = ref[chunk.ref_start_idx:chunk.ref_end_idx], hyp[chunk.hyp_start_idx:chunk.hyp_end_idx]
        if chunk.type == "equal":
            columns += [(a, b, "C") for a, b in zip(r, h)]
        elif chunk.type == "substitute":
            columns += [(a, b, "S") for a, b in zip(r, h)]
        elif chunk.type == "delete":
            columns += [(a, "***", "D") for a in r]
        elif chunk.type == "insert":
            columns += [("***", b, "I") for b in h]
        else:
            raise ValueError(f"unknown jiwer alignment type {chunk.type!r}")
    return columns


def _kaldi_line(rate: float, num: int, ins: int, dels: int, subs: int, tag: str) -> str:
    line = f"%WER {100 * rate:.2f} [ {ins + dels + subs} / {num}, {ins} ins, {dels} del, {subs} sub ]"
    return f"{line} {tag}\n" if tag else line + "\n"
