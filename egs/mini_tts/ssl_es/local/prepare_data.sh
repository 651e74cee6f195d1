#!/usr/bin/env bash
# Usage: local/prepare_data.sh [options of ../ssl/local/prepare_data.sh] <data-dir>
# mini_tts with its Spanish sets (train_unlab_es ... test_unseen_es) beside the English ones, and the
# two languages' unlabelled and dev sets combined (train_unlab_en_es, dev_en_es; utt2lang says which).
set -euo pipefail
../ssl/local/prepare_data.sh --languages en,es "$@"
data=${*: -1}
utils/combine_data.sh $data/train_unlab_en_es $data/train_unlab $data/train_unlab_es
utils/combine_data.sh $data/dev_en_es $data/dev $data/dev_es
