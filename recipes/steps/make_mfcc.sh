#!/usr/bin/env bash
help_message="Usage: steps/make_mfcc.sh [options] <data-dir> [<log-dir> [<mfcc-dir>]]
Computes Kaldi MFCCs of <data-dir> into <mfcc-dir> (default <data-dir>/data) as ark/scp,
writes <data-dir>/feats.scp and utt2num_frames.
Options:
  --nj <n>                 number of parallel jobs (default 4)
  --cmd <launcher>         job launcher (default utils/run_jobs.sh)
  --mfcc-config <file>     Kaldi config, e.g. --num-ceps=13 (default: Kaldi defaults, dither 0)"
kind=mfcc
mfcc_config=""
. "$(dirname "$0")/make_feats.sh"
