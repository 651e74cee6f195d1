#!/usr/bin/env bash
# Install what the demo needs (idempotent), then run the mini_tts demo end to end: HuBERT
# pretraining (egs/mini_tts/ssl), CTC ASR on 10 minutes of labels against scratch
# (egs/mini_tts/asr; its run.sh alone adds 1 hour of labels), and the frozen HuBERT against
# fbank on phoneme recognition and keyword spotting (egs/mini_tts/superb/run_demo.sh).
# Re-running skips finished stages and resumes interrupted training.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/tools/install.sh"
"$root/egs/mini_tts/ssl/run.sh" "$@"
"$root/egs/mini_tts/asr/run.sh" --budgets train_10min
"$root/egs/mini_tts/superb/run_demo.sh"
echo "demo finished: $root/egs/mini_tts/asr/RESULTS.md, $root/egs/mini_tts/superb/RESULTS.md"
