#!/usr/bin/env bash
# Usage: utils/fix_data_dir.sh <data-dir>
# Sorts the tables, drops duplicate keys and utterances missing from any table or with an
# empty transcript, regenerates spk2utt. The originals are kept in <data-dir>/.backup/.
exec python3 -m audiossl.bin.data_dir fix "$@"
