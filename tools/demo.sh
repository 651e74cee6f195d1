#!/usr/bin/env bash
# Install what the demo needs (idempotent), then run the mini_tts demo end to end: HuBERT
# pretraining (egs/mini_tts/ssl), CTC ASR on 10 minutes of labels against scratch
# (egs/mini_tts/asr; its run.sh alone adds 1 hour of labels), and the frozen HuBERT against
# fbank on phoneme recognition and keyword spotting (egs/mini_tts/superb/run_demo.sh).
# Re-running skips finished stages and resumes interrupted training.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/tools/install.sh"
. "$root/recipes/utils/stages.sh"   # run_recipe: a signal to the demo ends the recipe it runs too
run_recipe "$root/egs/mini_tts/ssl/run.sh" "$@"
run_recipe "$root/egs/mini_tts/asr/run.sh" --budgets train_10min
run_recipe "$root/egs/mini_tts/superb/run_demo.sh"
echo "demo finished: $root/egs/mini_tts/asr/RESULTS.md, $root/egs/mini_tts/superb/RESULTS.md"
