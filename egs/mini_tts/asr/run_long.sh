#!/usr/bin/env bash
# The long setting of run.sh: 1,500 CTC updates per model instead of 300, in exp_long/; its
# table goes into its own section of RESULTS.md (with its time on this machine).
#   ./run_long.sh             after ../ssl/run.sh
# Options: ../../../recipes/asr.sh --help
cd "$(dirname "$0")"
exec ./run.sh --finetune-config conf/finetune_long.yaml --finetune-jobs 1 --decode-jobs 1 --exp exp_long \
  --results-section "Long setting (conf/finetune_long.yaml)" \
  --results-command "ssl/run.sh && asr/run_long.sh${*:+$(printf " %q" "$@")}" "$@"
