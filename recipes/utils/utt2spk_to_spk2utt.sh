#!/usr/bin/env bash
# Usage: utils/utt2spk_to_spk2utt.sh [<utt2spk>] > spk2utt   (Kaldi's utt2spk_to_spk2utt.pl)
if [ $# -gt 0 ]; then exec python3 -m audiossl.bin.data_dir spk2utt < "$1"; fi
exec python3 -m audiossl.bin.data_dir spk2utt
