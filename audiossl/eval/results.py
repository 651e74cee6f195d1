"""Results of a CTC experiment grid (pretrained vs scratch × budgets × test sets) as a Markdown section.

:func:`ctc_results_lines` reads ``<dir>/ctc_<init>_<budget>/decode_<set>/scores.json`` and each
model's ``checkpoints/best.pt``, ``checkpoints/last.pt`` and ``valid.jsonl``, where ``<dir>`` is the
experiment dir of the pretrained models or of the scratch control; with an LM dir, also its
``info.json`` and the decodes with the word LM (``decode_<set>_<LM dir name>/``, their LM weight
and word score chosen on ``decode_<dev set>_<LM dir name>/``).

:func:`with_section` puts those lines into the section ``## <title>`` of a RESULTS.md, so one
file holds several settings. Hand-written notes in a section go under ``### `` headings after
the generated lines: replacing the section keeps them.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from audiossl.atomic import write_text_atomic
from audiossl.checkpoint import CheckpointError, load_checkpoint
from audiossl.errors import UserError
from audiossl.text.ngram import INFO_FILE

CAVEAT = ("The corpus is synthesized by Debian's speech engines (flat prosody, few genuinely different voices): "
          "figures on it are optimistic and do not transfer to real speech. They compare methods on this "
          "corpus only.")
CTC_PAGE_HEAD = ["# CTC ASR: pretrained encoder vs the same model from scratch", "", CAVEAT, ""]
INITS = ("pretrained", "scratch")


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
    """Updates trained, the update of the chosen checkpoint (best.pt), its dev figures (its ``valid.jsonl``
    record, or empty) and its config, the training time and precision, from ``model_dir``."""
    best_pt, last_pt = model_dir / "checkpoints" / "best.pt", model_dir / "checkpoints" / "last.pt"
    best_checkpoint = load_checkpoint(best_pt)
    best, last = train_state(best_checkpoint, best_pt), train_state(load_checkpoint(last_pt), last_pt)
    dev = {}
    valid_log = model_dir / "valid.jsonl"
    if valid_log.exists():
        records = [parse_record(line, f"{valid_log}:{number}", ("update",))
                   for number, line in enumerate(valid_log.read_text().splitlines(), 1)]
        dev = next((r for r in records if r["update"] == best["update"]), {})
    return {"updates": last["update"], "best_update": best["update"], "dev": dev, "config": best_checkpoint["config"],
            "train_seconds": last.get("train_seconds"), "precision": last.get("precision")}


def lm_description(lm_dir: Path, dev_decodes: dict[tuple[str, str], Path]) -> str:
    """A sentence on the LM (order, text, lexicon, test-set OOV rates) and the weights each model chose.

    Reads ``lm_dir/info.json`` and the scores.json of each (budget, init)'s dev decode dir.
    """
    info = read_json(lm_dir / INFO_FILE, "oov_rate", "held_out", "order", "sentences", "lexicon_words")
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


def check_lm_params(decode_dir: Path, dev_decode_dir: Path) -> None:
    """ResultsError unless the decode with an LM in ``decode_dir`` has the LM weight and word score chosen on
    dev (``dev_decode_dir``), as the table says."""
    keys = ("lm_weight", "word_score")
    used, chosen = (read_json(path / "scores.json", *keys) for path in (decode_dir, dev_decode_dir))
    if [used[key] for key in keys] != [chosen[key] for key in keys]:
        raise ResultsError(f"{decode_dir / 'scores.json'}: LM weight {used['lm_weight']:g} / word score "
                           f"{used['word_score']:g}, not those chosen on dev ({chosen['lm_weight']:g} / "
                           f"{chosen['word_score']:g}, {dev_decode_dir}); decode it again with --lm-params-from "
                           f"{dev_decode_dir / 'scores.json'}")


def minutes(seconds: float) -> str:
    """``m:ss``."""
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def shown(value: float, scale: int) -> str:
    """A figure as a results table shows it: ``value * scale``, percentages (scale 100) with one decimal,
    others with three."""
    return f"{scale * value:.{1 if scale == 100 else 3}f}"


def decoding(decode_dirs) -> str:
    """How the decodes in ``decode_dirs`` searched, from the ``beam_size`` their ``scores.json`` records:
    ``greedy CTC decoding``, ``CTC prefix beam search of width N``, or the widths where they differ."""
    widths = {read_json(Path(path) / "scores.json").get("beam_size") for path in decode_dirs}
    if None in widths:  # decodes written before scores.json recorded their width
        return "CTC decoding"
    if len(widths) > 1:
        return f"CTC decoding with beam widths {', '.join(map(str, sorted(widths)))} (1: greedy)"
    width = widths.pop()
    return "greedy CTC decoding" if width == 1 else f"CTC prefix beam search of width {width}"


def ctc_results_lines(exp: str | Path, scratch_exp: str | Path, budgets: Sequence[str], test_sets: Sequence[str],
                      pretrained: str | Path, command: str, lm_dir: str | Path | None = None,
                      dev_set: str = "dev", chunk_frames: Sequence[int] = ()) -> list[str]:
    """The lines of a results section: how it was made, the table and the fine-tuning times.

    Reads the pretrained encoder's checkpoint ``pretrained``, the models ``ctc_pretrained_<budget>``
    in ``exp`` and ``ctc_scratch_<budget>`` in ``scratch_exp``, their decodes of ``test_sets`` and,
    with ``lm_dir``, their decodes with that LM (weights chosen on ``dev_set``), and with
    ``chunk_frames``, their streaming decodes ``decode_<set>_chunk<N>`` (CER columns). ``command`` is
    the command quoted as the one that produced the results.
    """
    exp_of = {"pretrained": Path(exp), "scratch": Path(scratch_exp)}
    exp_dirs = [exp_of[init] / f"ctc_{init}_{budget}" for budget in budgets for init in INITS]
    checkpoint = load_checkpoint(pretrained)
    lines = [
        f"Produced by `{command}`.", "",
        f"Pretrained encoder: `{pretrained}` ({checkpoint['family']}, update "
        f"{train_state(checkpoint, pretrained)['update']} of its pretraining run).",
        "Each model is fine-tuned for the same number of updates; the checkpoint with the lowest dev CER "
        f"is decoded ({decoding(model_dir / f'decode_{test_set}' for model_dir in exp_dirs for test_set in test_sets)}"
        ", no language model)."
        + ("" if exp_of["scratch"] == exp_of["pretrained"] else
           f" The scratch control is the one in `{exp_of['scratch']}` (it does not depend on the encoder)."),
    ]
    model_dir = {(budget, init): exp_of[init] / f"ctc_{init}_{budget}" for budget in budgets for init in INITS}
    facts = {key: training_facts(path) for key, path in model_dir.items()}
    lm_dir = Path(lm_dir) if lm_dir else None
    lm_columns = ("", "")
    if lm_dir is not None:
        lm_columns = (" CER % with LM | WER % with LM |", "---:|---:|")
        lines.append(lm_description(lm_dir, {key: path / f"decode_{dev_set}_{lm_dir.name}"
                                             for key, path in model_dir.items()}))
    chunk_columns = "".join(f" CER % chunks of {n} |" for n in chunk_frames), "---:|" * len(chunk_frames)
    if chunk_frames:  # the latency each streaming decode states in its scores.json
        first = model_dir[budgets[0], INITS[0]]
        latency = {n: read_json(first / f"decode_{test_sets[0]}_chunk{n}" / "scores.json", "latency_s")["latency_s"]
                   for n in chunk_frames}
        lines.append("Streaming columns: the same network decoded with attention within chunks of N frames (full "
                     "left context, no look-ahead past the chunk): a latency of "
                     + ", ".join(f"{1000 * latency[n]:.0f} ms for {n}" for n in chunk_frames) + ".")
    lines += [
        "",
        f"| labelled data | test set | encoder | CER % | WER % |{lm_columns[0]}{chunk_columns[0]} updates | chosen update "
        "| dev CER % |",
        f"|---|---|---|---:|---:|{lm_columns[1]}{chunk_columns[1]}---:|---:|---:|",
    ]
    for budget in budgets:
        for test_set in test_sets:
            for init in INITS:
                decode_dir = model_dir[budget, init] / f"decode_{test_set}"
                scores = read_json(decode_dir / "scores.json", "cer", "wer")
                run = facts[budget, init]
                dev_cer = "" if run["dev"].get("cer") is None else f"{run['dev']['cer']:.2f}"
                with_lm = ""
                if lm_dir is not None:
                    lm_decode = decode_dir.with_name(f"{decode_dir.name}_{lm_dir.name}")
                    lm_scores = read_json(lm_decode / "scores.json", "cer", "wer")
                    check_lm_params(lm_decode, model_dir[budget, init] / f"decode_{dev_set}_{lm_dir.name}")
                    with_lm = f" {100 * lm_scores['cer']:.2f} | {100 * lm_scores['wer']:.2f} |"
                chunked = "".join(
                    f" {100 * read_json(decode_dir.with_name(f'{decode_dir.name}_chunk{n}') / 'scores.json', 'cer')['cer']:.2f} |"
                    for n in chunk_frames)
                lines.append(f"| {budget} | {test_set} | {init} | {100 * scores['cer']:.2f} | "
                             f"{100 * scores['wer']:.2f} |{with_lm}{chunked} {run['updates']} | {run['best_update']} | "
                             f"{dev_cer} |")
    times = [f"{init} on {budget} {minutes(run['train_seconds'])}"
             + (f" ({run['precision']})" if run["precision"] else "")
             for (budget, init), run in facts.items() if run["train_seconds"] is not None]
    if times:
        lines += ["", "Fine-tuning wall time (m:ss, validation and checkpointing included): "
                  + ", ".join(times) + "."]
    return lines


def grid_results_lines(grid: dict[str, str | Path], budgets: Sequence[str], test_sets: Sequence[str],
                       command: str) -> list[str]:
    """The lines of a results section for a grid of encoders (e.g. pretraining domains): one row per
    encoder and fine-tuning set, the CER of each test set in its column.

    ``grid`` maps a row name to an experiment dir of this recipe's layout; the name ``none`` reads its
    scratch models (``ctc_scratch_<budget>``), any other its pretrained ones (``ctc_pretrained_<budget>``).
    The best figure of each column is bold.
    """
    rows = []
    for name, exp in grid.items():
        init = "scratch" if name == "none" else "pretrained"
        for budget in budgets:
            decodes = [Path(exp) / f"ctc_{init}_{budget}" / f"decode_{test_set}" / "scores.json" for test_set in test_sets]
            rows.append((name, budget, [100 * read_json(path, "cer")["cer"] for path in decodes]))
    best = [min(row[2][column] for row in rows) for column in range(len(test_sets))]
    lines = [f"Produced by `{command}`.", "",
             "| pretraining | fine-tuning set | " + " | ".join(test_sets) + " |",
             "|---|---|" + "---:|" * len(test_sets)]
    for name, budget, cers in rows:
        cells = [f"**{cer:.2f}**" if f"{cer:.2f}" == f"{low:.2f}" and len(rows) > 1 else f"{cer:.2f}"
                 for cer, low in zip(cers, best)]
        lines.append(f"| {name} | {budget} | " + " | ".join(cells) + " |")
    return lines


def hand_written_notes(section: list[str]) -> list[str]:
    """The lines of ``section`` from its first ``### `` heading on, trailing blank lines dropped; [] if none."""
    start = next((i for i, line in enumerate(section) if line.startswith("### ")), len(section))
    notes = section[start:]
    while notes and not notes[-1].strip():
        notes.pop()
    return notes


def with_section(document: str, title: str, body: list[str], page_head: Sequence[str]) -> str:
    """``document`` with the section ``## title`` set to ``body``: replaced where it stands, else appended.

    Sections start at lines beginning ``## ``; what precedes the first is the page head. A
    replaced section keeps its hand-written notes (from its first ``### `` heading on) after
    ``body``, which therefore has no ``### `` headings. An empty document starts with the lines of
    ``page_head`` (the page title and its caveat, e.g. :data:`CTC_PAGE_HEAD`).
    """
    title = title.strip()
    if not document.strip():
        document = "\n".join(page_head)
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
    if title in titles:  # replace the first section of that title, drop any repeat, keep the notes of each
        for notes in filter(None, (hand_written_notes(s) for s, t in zip(sections, titles) if t == title)):
            new += ["", *notes]
        first = titles.index(title)
        sections = [new if i == first else section for i, section in enumerate(sections)
                    if i == first or titles[i] != title]
    else:
        sections.append(new)
    blocks = ["\n".join(head).strip("\n")] + ["\n".join(section).strip("\n") for section in sections]
    return "\n\n".join(block for block in blocks if block) + "\n"


def write_section(path: str | Path, title: str, lines: list[str], page_head: Sequence[str]) -> None:
    """Set the section ``## title`` of the Markdown file ``path`` (created with ``page_head`` if missing) to
    ``lines`` (:func:`with_section`); written atomically, so a full disk leaves the file with its other
    sections as it was."""
    path = Path(path)
    write_text_atomic(path, with_section(path.read_text() if path.exists() else "", title, lines, page_head))
