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

--chunk-frames N decodes as a streaming model would: the encoder attends within chunks of N frames
(full left context, nothing past the chunk's end; the model was trained with dynamic chunks, or
fine-tuned for them), so a frame's output waits at most N frames: the latency scores.json states
(N / frame rate, the front end's few frames of look-ahead and per-utterance normalisation aside).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from audiossl.bin.arguments import positive_float, positive_int
from audiossl.checkpoint import CheckpointError, load_model
from audiossl.errors import reports_user_errors
from audiossl.models.ctc.model import CtcModel
from audiossl.tasks.asr import ctc_dataset, ctc_outputs
from audiossl.text.lexicon_decode import check_char_tokens, check_lm_dir
from audiossl.text.lm_search import decode_with_lm, lm_grid, write_decode
from audiossl.text.ngram import LMError


def floats(text: str) -> list[float]:
    """``"0.5,1,2"`` -> ``[0.5, 1.0, 2.0]``; finite numbers only."""
    try:
        values = [float(x) for x in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got '{text}'")
    return values


@reports_user_errors
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="audiossl.bin.decode_ctc", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--beam-size", type=positive_int, default=1, help="1: greedy; more: CTC prefix beam search")
    parser.add_argument("--batch-seconds", type=positive_float, default=200.0)
    parser.add_argument("--lm-dir", help="LM dir (lm.arpa, lexicon.txt): also a lexicon search with a word n-gram LM")
    parser.add_argument("--lm-decode-dir", help="with --lm-dir: where the decode with the LM goes")
    parser.add_argument("--lm-beam-size", type=positive_int, default=100, help="with --lm-dir: hypotheses kept per frame (default 100)")
    parser.add_argument("--lm-weight", type=floats, help="LM weight(s), comma-separated (default 2)")
    parser.add_argument("--word-score", type=floats, help="word score(s), comma-separated (default 0)")
    parser.add_argument("--lm-params-from", metavar="SCORES_JSON",
                        help="take the LM weight and word score from another decode's scores.json")
    parser.add_argument("--token-beam", type=positive_int, default=10,
                        help="with --lm-dir: the likeliest tokens per frame that are tried (default 10)")
    parser.add_argument("--nj", type=positive_int, default=2, help="LM weight / word score pairs decoded at once (default 2)")
    parser.add_argument("--chunk-frames", type=positive_int,
                        help="streaming: attend within chunks of this many encoder frames (default: full context)")
    parser.add_argument("model")
    parser.add_argument("data_dir")
    parser.add_argument("decode_dir")
    args = parser.parse_args(argv)
    if args.lm_params_from and not args.lm_dir:
        parser.error("--lm-params-from needs --lm-dir")
    if bool(args.lm_dir) != bool(args.lm_decode_dir):
        parser.error("--lm-dir and --lm-decode-dir go together")
    if (args.lm_weight or args.word_score) and (args.lm_params_from or not args.lm_dir):
        parser.error("--lm-weight and --word-score need --lm-dir, and are not taken with --lm-params-from")
    if args.lm_decode_dir and Path(args.lm_decode_dir).resolve() == Path(args.decode_dir).resolve():
        parser.error("--lm-decode-dir is <decode-dir>: the decode with the LM would overwrite the one without")
    model = load_model(args.model)
    if not isinstance(model, CtcModel):
        raise CheckpointError(f"{args.model}: not a CTC model ({type(model).__name__})")
    if args.lm_dir:  # fail before the network runs over the whole set
        try:
            check_char_tokens(model.tokenizer.tokens)
        except LMError as err:
            raise LMError(f"{args.model}: {err}") from None
        check_lm_dir(args.lm_dir)
        pairs = lm_grid(args.lm_weight or [2.0], args.word_score or [0.0], args.lm_params_from)
    streaming = {}
    if args.chunk_frames is not None:
        model.set_attention_chunk(args.chunk_frames)
        streaming = {"chunk_frames": args.chunk_frames, "latency_s": args.chunk_frames / model.frame_rate}
    data = ctc_dataset(args.data_dir, model)
    refs = data.data.transcripts(args.data_dir)
    outputs = ctc_outputs(model, data, args.batch_seconds, progress=sys.stderr.isatty())
    hyps = {u: h for utts, lp, fr in outputs for u, h in zip(utts, model.decode(lp, fr, args.beam_size))}
    chunk_tag = f" chunks of {args.chunk_frames} frames" if streaming else ""
    write_decode(args.decode_dir, args.model, args.data_dir, refs, hyps, {"beam_size": args.beam_size, **streaming},
                 f"{args.model} beam {args.beam_size}{chunk_tag}")
    if args.lm_dir:
        hyps, settings = decode_with_lm(model.tokenizer.tokens, outputs, refs, pairs, args.lm_dir,
                                        args.lm_decode_dir, beam_size=args.lm_beam_size,
                                        token_beam=args.token_beam, nj=args.nj)
        write_decode(args.lm_decode_dir, args.model, args.data_dir, refs, hyps, {**settings, **streaming},
                     f"{args.model} lexicon beam {args.lm_beam_size} tokens {args.token_beam} lm {args.lm_dir} "
                     f"weight {settings['lm_weight']:g} word {settings['word_score']:g}{chunk_tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
