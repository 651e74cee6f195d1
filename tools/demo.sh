#!/usr/bin/env bash
# Install what the demo needs (idempotent), then run the mini_tts demo end to end:
# HuBERT pretraining (egs/mini_tts/ssl) and CTC ASR against scratch (egs/mini_tts/asr).
# Re-running skips finished stages and resumes interrupted training.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/tools/install.sh"
"$root/egs/mini_tts/ssl/run.sh" "$@"
"$root/egs/mini_tts/asr/run.sh"
echo "demo finished: $root/egs/mini_tts/asr/RESULTS.md"
