#!/usr/bin/env bash
# Usage: utils/copy_data_dir.sh <src-data-dir> <dest-data-dir>
# Copies a data dir without its features (feats.scp, cmvn.scp, utt2num_frames), e.g. to
# compute another kind of features for the same utterances.
exec python3 -m audiossl.bin.data_dir copy "$@"
