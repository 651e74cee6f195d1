#!/usr/bin/env bash
# Usage: utils/combine_data.sh <dest-data-dir> <src-data-dir1> <src-data-dir2> ...
# Concatenates data dirs (the tables present in all of them, a warning naming the others; a
# source without segments gets whole-recording ones where others have them; cmvn.scp is left
# out: compute it for <dest-data-dir>); a key in two sources with different values is an error.
exec python3 -m audiossl.bin.data_dir combine "$@"
