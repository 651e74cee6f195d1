"""Decode a data dir with a CTC model and score it (Kaldi-style decode dir).

    python -m audiossl.bin.decode_ctc [--beam-size 8] <model.pt> <data-dir> <decode-dir>
    python -m audiossl.bin.decode_ctc [--beam-size 8] --lm-dir <lm-dir> --lm-decode-dir <dir> \\
        [--lm-beam-size 100] [--lm-weight 0.5,1,2 --word-score 0,1 | --lm-params-from <dev-lm-decode-dir>/scores.json] \\
        <model.pt> <data-dir> <decode-dir>

Reads the model's inputs from the data dir (feats.scp for fbank models, wav.scp otherwise)
and the references from its text; writes <decode-dir>/hyp.txt, ref.txt, wer, cer, per_utt
and scores.json, and prints the WER and CER.

<decode-dir> gets greedy (beam 1) or CTC prefix beam search over characters or pieces.
With --lm-dir (an LM dir of audiossl.bin.train_lm; character models only), the same network
outputs are also decoded by a lexicon search scored by the word n-gram LM, into
--lm-decode-dir. Given several LM weights and word scores, every pair is tried (--nj pairs at
a time), <lm-decode-dir>/lm_grid.tsv lists each pair's WER and CER, and the dir holds the pair
with the lowest WER: run this on the dev set, then decode the test sets with --lm-params-from
the dev LM decode's scores.json.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import itertools
import multiprocessing
import json
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from audiossl.atomic import write_text_atomic
from audiossl.checkpoint import CheckpointError, load_model
from audiossl.data.dataset import BucketBatchSampler, UtteranceDataset, collate, input_rate
from audiossl.data.kaldi_dir import DataDirError
from audiossl.text.lexicon_decode import LexiconDecoder, check_char_tokens, check_lm_dir
from audiossl.text.scoring import error_rates, write_decode_dir


def floats(text: str) -> list[float]:
    """``"0.5,1,2"`` -> ``[0.5, 1.0, 2.0]``."""
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got '{text}'") from None


def lm_grid(args) -> list[tuple[float, float]]:
    """The (LM weight, word score) pairs to try."""
    if args.lm_params_from:
        chosen = json.loads(Path(args.lm_params_from).read_text())
        if "lm_weight" not in chosen or "word_score" not in chosen:
            raise ValueError(f"{args.lm_params_from}: not the scores of a decode with an LM")
        return [(chosen["lm_weight"], chosen["word_score"])]
    return list(itertools.product(args.lm_weight, args.word_score))


_worker: dict = {}  # what each process of the grid search holds: one decoder and the network's outputs


def _start_worker(tokens: list[str], lm_dir: str, beam_size: int, token_beam: int, outputs: list) -> None:
    """Load the LM and build the lexicon trie once per process; ``outputs``: (utterances, log-probs, frames) batches."""
    _worker["decoder"] = LexiconDecoder(tokens, lm_dir, beam_size, token_beam=token_beam)
    _worker["outputs"] = outputs


def _search(params: tuple[float, float]) -> dict[str, str]:
    """Hypotheses of every utterance at one (LM weight, word score) pair, in a started worker."""
    decoder = _worker["decoder"]
    decoder.set_weights(*params)
    return {u: h for utts, log_probs, frames in _worker["outputs"] for u, h in zip(utts, decoder(log_probs, frames))}


def decode_with_lm(args, pairs: list[tuple[float, float]], tokens: list[str], outputs: list,
                   refs: dict[str, str]) -> tuple[dict[str, str], dict]:
    """The lexicon search at every (LM weight, word score) pair (``--nj`` at a time); the hypotheses
    of the pair with the lowest WER and the settings, every pair's rates written to lm_grid.tsv
    when there are several."""
    start = (tokens, args.lm_dir, args.lm_beam_size, args.token_beam, outputs)
    if len(pairs) == 1 or args.nj == 1:
        _start_worker(*start)
        found = [_search(pair) for pair in pairs]
    else:
        with concurrent.futures.ProcessPoolExecutor(min(args.nj, len(pairs)), mp_context=multiprocessing.get_context("spawn"),
                                                    initializer=_start_worker, initargs=start) as pool:
            found = list(pool.map(_search, pairs))
    grid = [(error_rates(refs, hyps), pair, hyps) for pair, hyps in zip(pairs, found)]
    for rates, (lm_weight, word_score), _ in grid:
        print(f"  LM weight {lm_weight:g}, word score {word_score:g}: WER {100 * rates.wer:.2f} %", file=sys.stderr)
    _, (lm_weight, word_score), hyps = min(grid, key=lambda g: g[0].wer)
    grid_file = Path(args.lm_decode_dir) / "lm_grid.tsv"
    grid_file.unlink(missing_ok=True)
    if len(grid) > 1:
        rows = [f"{w:g}\t{s:g}\t{100 * r.wer:.2f}\t{100 * r.cer:.2f}\n" for r, (w, s), _ in grid]
        Path(args.lm_decode_dir).mkdir(parents=True, exist_ok=True)
        write_text_atomic(grid_file, "lm_weight\tword_score\twer\tcer\n" + "".join(rows))
    return hyps, {"beam_size": args.lm_beam_size, "lm_dir": args.lm_dir, "token_beam": args.token_beam,
                  "lm_weight": lm_weight, "word_score": word_score}


def write_decode(decode_dir: str, model: str, data_dir: str, refs: dict[str, str], hyps: dict[str, str],
                 settings: dict, tag: str) -> None:
    """The decode dir (hypotheses, references, rates) and its scores.json; prints the rates."""
    rates = write_decode_dir(decode_dir, refs, hyps, tag)
    scores = {"model": model, "data": data_dir, **settings, **dataclasses.asdict(rates)}
    write_text_atomic(Path(decode_dir) / "scores.json", json.dumps(scores, indent=1))
    print(f"{data_dir}: WER {rates.wer * 100:.2f} % CER {rates.cer * 100:.2f} % "
          f"({rates.num_utts} utterances) -> {decode_dir}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="audiossl.bin.decode_ctc", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--beam-size", type=int, default=1, help="1: greedy; more: CTC prefix beam search")
    parser.add_argument("--batch-seconds", type=float, default=200.0)
    parser.add_argument("--lm-dir", help="LM dir (lm.arpa, lexicon.txt): also a lexicon search with a word n-gram LM")
    parser.add_argument("--lm-decode-dir", help="with --lm-dir: where the decode with the LM goes")
    parser.add_argument("--lm-beam-size", type=int, default=100, help="with --lm-dir: hypotheses kept per frame (default 100)")
    parser.add_argument("--lm-weight", type=floats, default=[2.0], help="LM weight(s), comma-separated (default 2)")
    parser.add_argument("--word-score", type=floats, default=[0.0], help="word score(s), comma-separated (default 0)")
    parser.add_argument("--lm-params-from", metavar="SCORES_JSON",
                        help="take the LM weight and word score from another decode's scores.json")
    parser.add_argument("--token-beam", type=int, default=10,
                        help="with --lm-dir: the likeliest tokens per frame that are tried (default 10)")
    parser.add_argument("--nj", type=int, default=2, help="LM weight / word score pairs decoded at once (default 2)")
    parser.add_argument("model")
    parser.add_argument("data_dir")
    parser.add_argument("decode_dir")
    args = parser.parse_args(argv)
    if args.lm_params_from and not args.lm_dir:
        parser.error("--lm-params-from needs --lm-dir")
    if bool(args.lm_dir) != bool(args.lm_decode_dir):
        parser.error("--lm-dir and --lm-decode-dir go together")
    try:
        model = load_model(args.model)
        if args.lm_dir:  # fail before the network runs over the whole set
            try:
                check_char_tokens(model.tokenizer.tokens)
            except ValueError as err:
                raise ValueError(f"{args.model}: {err}") from None
            check_lm_dir(args.lm_dir)
            pairs = lm_grid(args)
        data = UtteranceDataset(args.data_dir, model.input_kind)
        sampler = BucketBatchSampler(data.lengths, int(args.batch_seconds * input_rate(data.input_kind)), shuffle=False)
        loader = torch.utils.data.DataLoader(data, batch_sampler=sampler.epoch_batches(0), collate_fn=collate)
        outputs = []
        with torch.no_grad():
            for batch in tqdm(loader, desc=f"decode {args.data_dir}", disable=not sys.stderr.isatty()):
                log_probs, frames = model(batch.inputs, batch.lengths)
                outputs.append((batch.utterances, log_probs, frames))
        refs = data.data["text"]
        hyps = {u: h for utts, lp, fr in outputs for u, h in zip(utts, model.decode(lp, fr, args.beam_size))}
        write_decode(args.decode_dir, args.model, args.data_dir, refs, hyps, {"beam_size": args.beam_size},
                     f"{args.model} beam {args.beam_size}")
        if args.lm_dir:
            hyps, settings = decode_with_lm(args, pairs, model.tokenizer.tokens, outputs, refs)
            write_decode(args.lm_decode_dir, args.model, args.data_dir, refs, hyps, settings,
                         f"{args.model} lexicon beam {args.lm_beam_size} tokens {args.token_beam} lm {args.lm_dir} "
                         f"weight {settings['lm_weight']:g} word {settings['word_score']:g}")
    except (CheckpointError, DataDirError, OSError, ValueError, RuntimeError) as err:  # RuntimeError: KenLM
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
