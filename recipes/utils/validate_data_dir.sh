#!/usr/bin/env bash
# Usage: utils/validate_data_dir.sh [--no-feats] [--no-text] [--no-wav] [--no-decode] <data-dir>
# Checks a Kaldi data dir: sorted unique keys, every utterance in every table, non-empty
# transcripts, audio that exists and decodes, segments inside their recordings, readable
# features. Prints each problem as file:line: message; exits 1 if there is any.
exec python3 -m audiossl.bin.data_dir validate "$@"
