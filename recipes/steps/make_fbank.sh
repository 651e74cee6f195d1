#!/usr/bin/env bash
help_message="Usage: steps/make_fbank.sh [options] <data-dir> [<log-dir> [<fbank-dir>]]
Computes Kaldi filterbanks of <data-dir> into <fbank-dir> (default <data-dir>/data) as
ark/scp, writes <data-dir>/feats.scp and utt2num_frames.
Options:
  --nj <n>                 number of parallel jobs (default 4)
  --cmd <launcher>         job launcher (default utils/run_jobs.sh)
  --fbank-config <file>    Kaldi config, e.g. --num-mel-bins=80 (default: Kaldi defaults, dither 0)"
kind=fbank
fbank_config=""
. "$(dirname "$0")/make_feats.sh"
