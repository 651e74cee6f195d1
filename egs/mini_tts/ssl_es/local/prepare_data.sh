#!/usr/bin/env bash
# Usage: local/prepare_data.sh [options of ../ssl/local/prepare_data.sh] <data-dir>
# mini_tts with its Spanish sets (train_unlab_es ... test_unseen_es) beside the English ones.
exec ../ssl/local/prepare_data.sh --languages en,es "$@"
