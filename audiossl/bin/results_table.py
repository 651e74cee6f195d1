"""Results table of a CTC experiment grid (pretrained vs scratch × budgets × test sets) as Markdown.

    python -m audiossl.bin.results_table --exp exp --budgets "train_10min train_1h" \\
        --test-sets "test test_unseen" --pretrained <ckpt> --command "<how it was run>" \\
        --section "Demo setting" [--scratch-exp exp] [--lm-dir data/local/lm --dev-set dev] RESULTS.md

Reads <dir>/ctc_<init>_<budget>/decode_<set>/scores.json and each model's best and last
checkpoints, where <dir> is --exp for the pretrained models and --scratch-exp (default: --exp)
for the scratch control. With --lm-dir the table also has the decodes with the word LM
(decode_<set>_<LM dir name>/, their LM weight and word score chosen on decode_<dev-set>_<LM dir name>/). The table goes into the section ``## <section>`` of the output file:
a section of that title is replaced, any other section is kept, so one RESULTS.md holds
several settings.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from audiossl.checkpoint import CheckpointError, load_checkpoint
from audiossl.errors import UserError

CAVEAT = ("The corpus is synthesized by Debian's speech engines (flat prosody, few genuinely different voices): "
          "figures on it are optimistic and do not transfer to real speech. They compare methods on this "
          "corpus only.")


class ResultsError(UserError, ValueError):
    """A file the table is made from that is not JSON or lacks a key; the message names it."""


def parse_record(text: str, where: str, keys: tuple[str, ...] = ()) -> dict:
    """The JSON object in ``text`` (from ``where``: a file, or file:line); ResultsError unless it has ``keys``."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        raise ResultsError(f"{where}: not JSON ({err})") from None
    if not isinstance(record, dict):
        raise ResultsError(f"{where}: not a JSON object")
    missing = [key for key in keys if key not in record]
    if missing:
        raise ResultsError(f"{where}: missing {', '.join(missing)}")
    return record


def read_json(path: Path, *keys: str) -> dict:
    """The JSON object in the file ``path``; ResultsError naming it unless it has ``keys``."""
    return parse_record(path.read_text(), str(path), keys)


def train_state(checkpoint: dict, path: str | Path) -> dict:
    """The training state of a checkpoint read from ``path``; CheckpointError when it has none."""
    state = checkpoint.get("train_state")
    if not isinstance(state, dict) or "update" not in state:
        raise CheckpointError(f"{path}: no train_state (not a training checkpoint)")
    return state


def training_facts(model_dir: Path) -> dict:
    """Updates trained, update of the chosen (best dev CER) checkpoint and its dev figures."""
    best_pt, last_pt = model_dir / "checkpoints" / "best.pt", model_dir / "checkpoints" / "last.pt"
    best, last = train_state(load_checkpoint(best_pt), best_pt), train_state(load_checkpoint(last_pt), last_pt)
    dev = {}
    valid_log = model_dir / "valid.jsonl"
    if valid_log.exists():
        records = [parse_record(line, f"{valid_log}:{number}", ("update",))
                   for number, line in enumerate(valid_log.read_text().splitlines(), 1)]
        dev = next((r for r in records if r["update"] == best["update"]), {})
    return {"updates": last["update"], "best_update": best["update"], "dev_cer": dev.get("cer"),
            "dev_wer": dev.get("wer"), "train_seconds": last.get("train_seconds"), "precision": last.get("precision")}


def lm_description(lm_dir: Path, dev_decodes: dict[tuple[str, str], Path]) -> str:
    """A sentence on the LM (order, text, lexicon, test-set OOV rates) and the weights each model chose."""
    info = read_json(lm_dir / "info.json", "oov_rate", "held_out", "order", "sentences", "lexicon_words")
    oov = ", ".join(f"{Path(name).name} {100 * rate:.2f} %" for name, rate in info["oov_rate"].items())
    held_out = ", ".join(Path(name).name for name in info["held_out"])
    chosen, beams = [], set()
    for (budget, init), decode_dir in dev_decodes.items():
        scores = read_json(decode_dir / "scores.json")
        if not {"lm_weight", "word_score", "beam_size", "token_beam"} <= scores.keys():
            raise ResultsError(f"{decode_dir / 'scores.json'}: not the scores of a decode with an LM")
        chosen.append(f"{init} on {budget} {scores['lm_weight']:g} / {scores['word_score']:g}")
        beams.add(f"beam {scores['beam_size']}, {scores['token_beam']} tokens tried per frame")
    return (f"\"With LM\": a lexicon search ({'; '.join(sorted(beams))}; flashlight-text) scored "
            f"by a word {info['order']}-gram LM (`{lm_dir}`, interpolated Kneser-Ney on {info['sentences']} "
            f"sentences of the corpus's texts without those of {held_out}; {info['lexicon_words']} lexicon words, "
            f"words not in it: {oov}). LM weight / word score, chosen on dev for each model: "
            + ", ".join(chosen) + ".")


def minutes(seconds: float) -> str:
    """``m:ss``."""
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def with_section(document: str, title: str, body: list[str]) -> str:
    """``document`` with the section ``## title`` set to ``body``: replaced where it stands, else appended.

    Sections start at lines beginning ``## ``; what precedes the first is the page head. A new
    document starts with the page title and the corpus caveat.
    """
    title = title.strip()
    if not document.strip():
        document = "\n".join(["# CTC ASR: pretrained encoder vs the same model from scratch", "", CAVEAT, ""])
    head: list[str] = []
    sections: list[list[str]] = []
    for line in document.splitlines():
        if line.startswith("## "):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
        else:
            head.append(line)
    new = [f"## {title}", "", *body]
    titles = [section[0][3:].strip() for section in sections]
    if title in titles:  # replace the first section of that title, drop any repeat
        first = titles.index(title)
        sections = [new if i == first else section for i, section in enumerate(sections)
                    if i == first or titles[i] != title]
    else:
        sections.append(new)
    blocks = ["\n".join(head).strip("\n")] + ["\n".join(section).strip("\n") for section in sections]
    return "\n\n".join(block for block in blocks if block) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="audiossl.bin.results_table", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", default="exp", help="experiment dir of the pretrained models")
    parser.add_argument("--scratch-exp", help="experiment dir of the scratch control (default: --exp)")
    parser.add_argument("--budgets", required=True)
    parser.add_argument("--test-sets", required=True)
    parser.add_argument("--pretrained", required=True)
    parser.add_argument("--command", required=True, help="the command that produced the results")
    parser.add_argument("--section", required=True, help="title of the section the table goes in")
    parser.add_argument("--lm-dir", help="the LM dir of the decodes with an LM (adds their columns)")
    parser.add_argument("--dev-set", default="dev", help="the set the LM weights were chosen on (default dev)")
    parser.add_argument("output")
    args = parser.parse_args(argv)
    exp_of = {"pretrained": Path(args.exp), "scratch": Path(args.scratch_exp or args.exp)}
    try:
        pretrained = load_checkpoint(args.pretrained)
        pretrained_update = train_state(pretrained, args.pretrained)["update"]
        lm_columns = ("", "")
        if args.lm_dir:
            lm_columns = (" CER % with LM | WER % with LM |", "---:|---:|")
        lines = [
            f"Produced by `{args.command}`.", "",
            f"Pretrained encoder: `{args.pretrained}` ({pretrained['family']}, update "
            f"{pretrained_update} of its pretraining run).",
            "Each model is fine-tuned for the same number of updates; the checkpoint with the lowest dev CER "
            "is decoded (CTC prefix beam search, no language model)."
            + ("" if exp_of["scratch"] == exp_of["pretrained"] else
               f" The scratch control is the one in `{exp_of['scratch']}` (it does not depend on the encoder)."),
        ]
        budgets, inits = args.budgets.split(), ("pretrained", "scratch")
        model_dir = {(budget, init): exp_of[init] / f"ctc_{init}_{budget}" for budget in budgets for init in inits}
        facts = {key: training_facts(path) for key, path in model_dir.items()}
        if args.lm_dir:
            lm_name = Path(args.lm_dir).name
            lines.append(lm_description(Path(args.lm_dir), {key: model_dir[key] / f"decode_{args.dev_set}_{lm_name}"
                                                             for key in model_dir}))
        lines += [
            "",
            f"| labelled data | test set | encoder | CER % | WER % |{lm_columns[0]} updates | chosen update | dev CER % |",
            f"|---|---|---|---:|---:|{lm_columns[1]}---:|---:|---:|",
        ]
        for budget in budgets:
            for test_set in args.test_sets.split():
                for init in inits:
                    decode_dir = model_dir[budget, init] / f"decode_{test_set}"
                    scores = read_json(decode_dir / "scores.json", "cer", "wer")
                    run = facts[budget, init]
                    dev_cer = "" if run["dev_cer"] is None else f"{run['dev_cer']:.2f}"
                    with_lm = ""
                    if args.lm_dir:
                        lm_decode = decode_dir.with_name(f"{decode_dir.name}_{lm_name}")
                        lm_scores = read_json(lm_decode / "scores.json", "cer", "wer")
                        with_lm = f" {100 * lm_scores['cer']:.2f} | {100 * lm_scores['wer']:.2f} |"
                    lines.append(f"| {budget} | {test_set} | {init} | {100 * scores['cer']:.2f} | "
                                 f"{100 * scores['wer']:.2f} |{with_lm} {run['updates']} | {run['best_update']} | "
                                 f"{dev_cer} |")
        times = [f"{init} on {budget} {minutes(run['train_seconds'])}"
                 + (f" ({run['precision']})" if run["precision"] else "")
                 for (budget, init), run in facts.items() if run["train_seconds"] is not None]
        if times:
            lines += ["", "Fine-tuning wall time (m:ss, validation and checkpointing included): "
                      + ", ".join(times) + "."]
        output = Path(args.output)
        document = output.read_text() if output.exists() else ""
        output.write_text(with_section(document, args.section, lines))
        print("\n".join(lines))
    except (UserError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
