"""SUPERB-style evaluation of a frozen upstream: check the inputs, run a task, write the table.

    python -m audiossl.bin.superb check --upstream U [--tasks pr,ks,...] [--allow-empty-classes] <data-dir>
    python -m audiossl.bin.superb task --upstream U [--name NAME] --config conf/superb.yaml --cache DIR
        [--seed N] [--allow-empty-classes] [--no-progress] <task> <data-dir> <out-dir>
    python -m audiossl.bin.superb name <upstream>
    python -m audiossl.bin.superb table --section TITLE --command CMD <exp-dir> <RESULTS.md> <results.csv>

U is an audiossl checkpoint (any family; a fine-tuned model's encoder), a local Hugging Face
model directory, or an s3prl baseline (fbank, fbank_no_cmvn, mfcc, mel, linear, spectrogram).
Tasks: pr, asr, ks, ic, sid, asv, instrument, pitch, tagging, key (sets and heads:
audiossl.eval.superb.tasks). ``check`` reads the upstream, every task's labels and the ASV
trials, and fails on the first problem, naming the file and line. ``task`` trains the task's probe
on the upstream's hidden states (cached under --cache, keyed by upstream and audio) and writes
results.json, layer_weights.png and the task's plots and scores to <out-dir>. ``table`` gathers
<exp-dir>/<upstream>/<task>/results.json into results.csv and a section of RESULTS.md, and prints
that section; ``name`` prints the name an upstream gets by default.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from audiossl.errors import reports_user_errors
from audiossl.eval.superb.runner import check_inputs, read_settings, run_task
from audiossl.eval.superb.table import write_table
from audiossl.eval.superb.upstreams import default_name, open_upstream
from audiossl.eval.utterance import cpu_name

TASKS = "pr,asr,ks,ic,sid,asv,instrument,pitch,tagging,key"


@reports_user_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="audiossl.bin.superb", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="read the upstream, the labels and trials of every task")
    check.add_argument("--upstream", required=True, help="checkpoint, Hugging Face directory or s3prl baseline")
    check.add_argument("--tasks", default=TASKS, help=f"comma-separated tasks (default {TASKS})")
    check.add_argument("--allow-empty-classes", action="store_true",
                       help="accept classes of labels.<name> without a training utterance (tiny sets)")
    check.add_argument("data_dir", help="the task sets' root (pr/, asr/, ks/, ic/, speakers/, 16k/)")
    task = commands.add_parser("task", help="train and score one task's probe")
    task.add_argument("--upstream", required=True, help="checkpoint, Hugging Face directory or s3prl baseline")
    task.add_argument("--name", help="the upstream's name in results and tables (default: from the path)")
    task.add_argument("--config", required=True, help="YAML with a 'tasks' section: each task's budget and head")
    task.add_argument("--cache", required=True, help="hidden-state cache root (shared by tasks and runs)")
    task.add_argument("--seed", type=int, default=0, help="seed of the probe's initialisation and batches")
    task.add_argument("--allow-empty-classes", action="store_true", help="as for check")
    task.add_argument("--no-progress", action="store_true", help="no progress bars")
    task.add_argument("task", choices=TASKS.split(","))
    task.add_argument("data_dir")
    task.add_argument("out_dir")
    name = commands.add_parser("name", help="print the upstream's default name (from its path)")
    name.add_argument("upstream")
    table = commands.add_parser("table", help="results.csv and a RESULTS.md section over upstreams and tasks")
    table.add_argument("--section", required=True, help="the RESULTS.md section written (others are kept)")
    table.add_argument("--command", required=True, help="the command the section names")
    table.add_argument("exp_dir")
    table.add_argument("results_md")
    table.add_argument("results_csv")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    if args.command == "check":
        check_inputs(args.upstream, args.tasks.split(","), Path(args.data_dir), args.allow_empty_classes)
    elif args.command == "task":
        settings = read_settings(args.config)[args.task]
        upstream = open_upstream(args.upstream)
        run_task(args.task, settings, upstream, args.name or default_name(args.upstream), args.data_dir, args.cache,
                 args.out_dir, args.seed, args.allow_empty_classes,
                 progress=not args.no_progress and sys.stderr.isatty())
    elif args.command == "name":
        print(default_name(args.upstream))
    else:
        print(f"## {args.section}\n")
        print("\n".join(write_table(args.exp_dir, args.results_md, args.results_csv, args.section, args.command,
                                     cpu_name())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
