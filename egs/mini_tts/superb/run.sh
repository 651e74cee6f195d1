#!/usr/bin/env bash
# SUPERB-style evaluation on the offline sets: a frozen upstream, a learned weighted sum of its
# layers and a light head per task (PR, ASR, KS, IC, SID, ASV; instrument, pitch, tagging, key).
# Each run adds one upstream to exp/ and rewrites the table in RESULTS.md and results.csv.
#   ./run.sh                            the demo's HuBERT (after ../ssl/run.sh)
#   ./run.sh --upstream fbank           s3prl's baselines: fbank, mfcc, ...
#   ./run.sh --upstream ../ssl/exp_wavlm/wavlm_iter2/checkpoints/best.pt --name wavlm
#   ./run.sh --upstream DIR --tasks "pr ks"   a Hugging Face model dir, two tasks
# Options: ../../../recipes/superb.sh --help
cd "$(dirname "$0")"
exec ../../../recipes/superb.sh --upstream ../ssl/exp/hubert_iter2/checkpoints/best.pt \
  --results-command "superb/run.sh${*:+$(printf " %q" "$@")}" "$@"
