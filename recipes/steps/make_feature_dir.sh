#!/usr/bin/env bash
help_message="Usage: steps/make_feature_dir.sh [options] <kind> <config> <src-data-dir> <dst-data-dir> <log-dir>
Makes <dst-data-dir> (by convention <data>/<set>_<kind>): a copy of <src-data-dir> with its <kind>
(fbank|mfcc) features, computed with the Kaldi <config> ('': Kaldi defaults), and their CMVN stats;
then <dst-data-dir>/.done, which records the kind, the config's checksum and <src-data-dir>'s (of its
files). With a .done of the same settings there it does nothing (of another config, or another
<src-data-dir>, such as one prepared again, it makes the features again): every recipe
makes its feature dirs through this script, so a dir one recipe marked done is whole for any other.
Options:
  --nj <n>                 number of parallel jobs (default 4)
  --cmd <launcher>         job launcher (default utils/run_jobs.sh)"
set -euo pipefail
nj=4
cmd=utils/run_jobs.sh
. utils/parse_options.sh
if [ $# -ne 5 ]; then echo "$help_message" >&2; exit 1; fi
kind=$1 config=$2 src=$3 dst=$4 logdir=$5
case $kind in fbank|mfcc) ;; *) echo "$0: unknown feature kind '$kind' (fbank or mfcc)" >&2; exit 1 ;; esac
. utils/stages.sh
settings="$kind config=$(file_digest "$config") data=$(file_digest "$src")"   # not its path: recipes name it their way
done_with_settings "$dst/.done" "$settings" "features: $kind of $src in $dst" && exit 0
utils/copy_data_dir.sh "$src" "$dst"
steps/make_$kind.sh --nj "$nj" --cmd "$cmd" --$kind-config "$config" "$dst" "$logdir"
steps/compute_cmvn_stats.sh "$dst" "$logdir"
echo "$settings" > "$dst/.done"
