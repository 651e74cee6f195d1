#!/usr/bin/env bash
help_message="Usage: steps/compute_cmvn_stats.sh [--per-utt true] <data-dir> [<log-dir> [<cmvn-dir>]]
Kaldi CMVN statistics of <data-dir>/feats.scp per speaker (or per utterance) into
<cmvn-dir> (default <data-dir>/data); writes <data-dir>/cmvn.scp."
set -euo pipefail
per_utt=false
. utils/parse_options.sh
if [ $# -lt 1 ] || [ $# -gt 3 ]; then echo "$help_message" >&2; exit 1; fi
data=$1
logdir=${2:-$data/log}
cmvndir=${3:-$data/data}
name=$(basename "$data")
mkdir -p "$logdir" "$cmvndir"
opt=()
$per_utt && opt=(--per-utt)
python3 -m audiossl.bin.compute_feats cmvn "${opt[@]}" "$data" "$(cd "$cmvndir" && pwd)/cmvn_$name.ark" \
  2> "$logdir/cmvn_$name.log" || { cat "$logdir/cmvn_$name.log" >&2; exit 1; }
echo "$0: wrote $data/cmvn.scp"
