"""Choosing the lexicon search's LM weight and word score on a grid, and writing decode dirs.

:func:`lm_grid` gives the (LM weight, word score) pairs to try: every combination of the given
values, or the one pair a dev decode chose (read from its scores.json). :func:`decode_with_lm`
decodes the same network outputs at each pair, several pairs at a time in spawned processes
that each load the LM once, and keeps the pair with the lowest WER. :func:`write_decode` writes
a Kaldi-style decode dir and its scores.json.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import json
import math
import multiprocessing
import sys
from pathlib import Path

from torch import Tensor

from audiossl.atomic import write_text_atomic
from audiossl.errors import UserError
from audiossl.text.lexicon_decode import LexiconDecoder
from audiossl.text.ngram import LMError
from audiossl.text.scoring import error_rates, write_decode_dir

GRID_FILE = "lm_grid.tsv"


def read_lm_params(scores_json: str | Path) -> tuple[float, float]:
    """The (LM weight, word score) of a decode with an LM, from its scores.json; LMError naming the file."""
    try:
        chosen = json.loads(Path(scores_json).read_text())
    except json.JSONDecodeError as err:
        raise LMError(f"{scores_json}: not JSON ({err})") from None
    if not isinstance(chosen, dict) or "lm_weight" not in chosen or "word_score" not in chosen:
        raise LMError(f"{scores_json}: not the scores of a decode with an LM")
    params = chosen["lm_weight"], chosen["word_score"]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in params):
        raise LMError(f"{scores_json}: lm_weight {params[0]!r} and word_score {params[1]!r} must be finite numbers")
    return float(params[0]), float(params[1])


def lm_grid(lm_weights: list[float], word_scores: list[float],
            params_from: str | Path | None = None) -> list[tuple[float, float]]:
    """The (LM weight, word score) pairs to try: every combination, or only the pair of the
    scores.json ``params_from`` (see :func:`read_lm_params`) when given."""
    if params_from:
        return [read_lm_params(params_from)]
    return list(itertools.product(lm_weights, word_scores))


_worker: dict = {}  # what each process of the grid search holds: one decoder and the network's outputs


def _start_worker(tokens: list[str], lm_dir: str | Path, beam_size: int, token_beam: int,
                  outputs: list[tuple[list[str], Tensor, Tensor]]) -> None:
    """Load the LM and build the lexicon trie once per process.

    An error in the LM dir is kept for :func:`_search` to raise: one raised here would only break the pool.
    """
    _worker.clear()
    _worker["outputs"] = outputs
    try:
        _worker["decoder"] = LexiconDecoder(tokens, lm_dir, beam_size, token_beam=token_beam)
    except (UserError, OSError) as err:
        _worker["error"] = err


def _search(params: tuple[float, float]) -> dict[str, str]:
    """Hypotheses ``{utt: text}`` of every utterance at one (LM weight, word score) pair, in a started worker."""
    if "error" in _worker:
        raise _worker["error"]
    decoder = _worker["decoder"]
    decoder.set_weights(*params)
    return {u: h for utts, log_probs, frames in _worker["outputs"] for u, h in zip(utts, decoder(log_probs, frames))}


def decode_with_lm(tokens: list[str], outputs: list[tuple[list[str], Tensor, Tensor]], refs: dict[str, str],
                   pairs: list[tuple[float, float]], lm_dir: str, decode_dir: str | Path, beam_size: int = 100,
                   token_beam: int = 10, nj: int = 2) -> tuple[dict[str, str], dict]:
    """The lexicon search at every (LM weight, word score) pair; the pair with the lowest WER wins.

    Prints each pair's WER on stderr. With several pairs, ``decode_dir``/lm_grid.tsv gets each
    pair's WER and CER (columns ``lm_weight word_score wer cer``, rates in %); with one, a stale
    lm_grid.tsv is removed.

    Args:
        tokens: the model's character tokens (:func:`~audiossl.text.lexicon_decode.check_char_tokens`).
        outputs: the network's outputs, batches of (utterances, (B, T, V) log-probabilities,
            (B,) valid frames).
        refs: ``{utt: reference transcript}``.
        pairs: (LM weight, word score) pairs, as :func:`lm_grid` gives them.
        lm_dir: an LM dir (lm.arpa, lexicon.txt).
        decode_dir: where lm_grid.tsv goes.
        beam_size: hypotheses kept per frame.
        token_beam: the likeliest tokens per frame that are tried.
        nj: pairs decoded at once, each in a spawned process that loads the LM.

    Returns:
        The hypotheses ``{utt: text}`` of the best pair, and the settings for scores.json:
        ``beam_size``, ``lm_dir``, ``token_beam``, ``lm_weight``, ``word_score``.
    """
    start = (tokens, lm_dir, beam_size, token_beam, outputs)
    if len(pairs) == 1 or nj == 1:
        _start_worker(*start)
        found = [_search(pair) for pair in pairs]
    else:
        spawn = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(min(nj, len(pairs)), mp_context=spawn, initializer=_start_worker,
                                                    initargs=start) as pool:
            found = list(pool.map(_search, pairs))
    grid = [(error_rates(refs, hyps), pair, hyps) for pair, hyps in zip(pairs, found)]
    for rates, (lm_weight, word_score), _ in grid:
        print(f"  LM weight {lm_weight:g}, word score {word_score:g}: WER {100 * rates.wer:.2f} %", file=sys.stderr)
    _, (lm_weight, word_score), hyps = min(grid, key=lambda g: g[0].wer)
    grid_file = Path(decode_dir) / GRID_FILE
    grid_file.unlink(missing_ok=True)
    if len(grid) > 1:
        rows = [f"{w:g}\t{s:g}\t{100 * r.wer:.2f}\t{100 * r.cer:.2f}\n" for r, (w, s), _ in grid]
        Path(decode_dir).mkdir(parents=True, exist_ok=True)
        write_text_atomic(grid_file, "lm_weight\tword_score\twer\tcer\n" + "".join(rows))
    return hyps, {"beam_size": beam_size, "lm_dir": lm_dir, "token_beam": token_beam,
                  "lm_weight": lm_weight, "word_score": word_score}


def write_decode(decode_dir: str | Path, model: str, data_dir: str, refs: dict[str, str], hyps: dict[str, str],
                 settings: dict, tag: str) -> None:
    """The decode dir (hypotheses, references, rates) and its scores.json; prints the rates.

    scores.json holds ``model``, ``data``, the ``settings`` and the fields of
    :class:`~audiossl.text.scoring.ErrorRates`. An earlier decode's scores.json goes first and the new one
    comes last: a decode stopped in between leaves no figures beside other hypotheses.
    """
    (Path(decode_dir) / "scores.json").unlink(missing_ok=True)
    rates = write_decode_dir(decode_dir, refs, hyps, tag)
    scores = {"model": model, "data": data_dir, **settings, **dataclasses.asdict(rates)}
    write_text_atomic(Path(decode_dir) / "scores.json", json.dumps(scores, indent=1))
    print(f"{data_dir}: WER {rates.wer * 100:.2f} % CER {rates.cer * 100:.2f} % "
          f"({rates.num_utts} utterances) -> {decode_dir}")
