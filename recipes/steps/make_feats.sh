#!/usr/bin/env bash
# Shared body of steps/make_fbank.sh and steps/make_mfcc.sh; not called directly.
# Expects $kind (fbank|mfcc), $help_message and an empty ${kind}_config set by the caller.
set -euo pipefail
nj=4
cmd=utils/run_jobs.sh
compress=true       # accepted for Kaldi compatibility; archives are written uncompressed
write_utt2num_frames=true
. utils/parse_options.sh
config_var=${kind}_config
kind_config=${!config_var}
if [ $# -lt 1 ] || [ $# -gt 3 ]; then echo "$help_message" >&2; exit 1; fi
[ -z "$kind_config" ] || [ -r "$kind_config" ] || { echo "$0: cannot read --$kind-config $kind_config" >&2; exit 1; }
data=$1
logdir=${2:-$data/log}
featdir=${3:-$data/data}
name=$(basename "$data")
mkdir -p "$logdir" "$featdir"
featdir=$(cd "$featdir" && pwd)

utils/validate_data_dir.sh --no-text --no-feats --no-decode "$data"
nutt=$(wc -l < "$data/utt2spk")
[ "$nj" -le "$nutt" ] || nj=$nutt
utils/split_data.sh --per-utt --no-feats "$data" "$nj"
config_opt=()
[ -n "$kind_config" ] && config_opt=(--config "$kind_config")
echo "$0: computing $kind for $data in $nj jobs (logs: $logdir/make_${kind}_$name.*.log)"
$cmd JOB=1:"$nj" "$logdir/make_${kind}_$name.JOB.log" \
  python3 -m audiossl.bin.compute_feats extract --kind "$kind" "${config_opt[@]}" \
    "$data/split${nj}utt/JOB" "$featdir/raw_${kind}_$name.JOB.ark"
scps=()
for ((n = 1; n <= nj; n++)); do scps+=("$featdir/raw_${kind}_$name.$n.scp"); done
python3 -m audiossl.bin.compute_feats merge "$data" "${scps[@]}"
if [ -n "$kind_config" ]; then cp "$kind_config" "$data/conf_$kind"; else rm -f "$data/conf_$kind"; fi
echo "$0: succeeded computing $kind for $data ($nutt utterances)"
