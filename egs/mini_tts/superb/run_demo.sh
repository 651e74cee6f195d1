#!/usr/bin/env bash
# The demo's last step (tools/demo.sh): the ssl recipe's HuBERT, frozen, against fbank on phoneme
# recognition and keyword spotting, with the budgets and heads of run.sh (conf/superb.yaml).
# Results in exp_demo/, results_demo.csv and their own RESULTS.md section; hidden states cached in exp/cache.
#   ./run_demo.sh             after ../ssl/run.sh
# Options (passed to both runs): ../../../recipes/superb.sh --help
cd "$(dirname "$0")"
set -euo pipefail
. utils/stages.sh   # run_recipe: a signal to this script ends the run it waits for too
demo=(--tasks "pr ks" --exp exp_demo --cache exp/cache --results-csv results_demo.csv
      --results-section "Demo: the demo's HuBERT against fbank"
      --results-command "superb/run_demo.sh${*:+$(printf " %q" "$@")}")
run_recipe ./run.sh "${demo[@]}" --name hubert --stop-stage 2 "$@"
run_recipe ./run.sh "${demo[@]}" --upstream fbank "$@"
