"""Validation of Kaldi data dirs (Kaldi ``utils/validate_data_dir.sh``), naming file and line."""
from __future__ import annotations

import math
from pathlib import Path

from tqdm import tqdm

from audiossl.audio import SEGMENT_OVERSHOOT, AudioError, entry_info
from audiossl.data.kaldi_dir import (ALL_TABLES, UTT_TABLES, Problem, line_of, read_table, spk2utt_from_utt2spk,
                                     unfinished_write)


def validate_data_dir(path, check_text: bool = True, check_wav: bool = True, check_feats: bool = False,
                      decode_audio: bool = True, progress: bool = False, without=()) -> list[Problem]:
    """Every problem found in the data dir at ``path``; an empty list means valid.

    Args:
        check_text: require a ``text`` file with no empty transcript.
        check_wav: require ``wav.scp``; with ``decode_audio`` also open every recording
            (reading only headers of plain files, running pipe commands) and check that each
            ``segments`` region lies within its recording.
        check_feats: require ``feats.scp`` whose matrices can be read.
        without: tables left out (``FEATURE_TABLES`` where features are about to be made): not checked,
            and a write of only those stopped midway is no problem.
    """
    path = Path(path)
    problems: list[Problem] = []
    if not path.is_dir():
        return [Problem(str(path), 0, "not a directory")]
    if why := unfinished_write(path, without):
        return [Problem(str(path), 0, why)]
    required = ["utt2spk"] + (["text"] if check_text else []) + (["wav.scp"] if check_wav else []) \
        + (["feats.scp"] if check_feats else [])
    for name in required:
        if not (path / name).is_file():
            problems.append(Problem(str(path / name), 0, "missing"))
    tables = {n: read_table(path / n, problems) for n in ALL_TABLES if n not in without and (path / n).is_file()}
    if "utt2spk" not in tables:
        return problems
    utts = set(tables["utt2spk"])
    if not utts:
        problems.append(Problem(str(path / "utt2spk"), 0, "no utterances"))

    def compare(name: str, keys: set[str], reference: str) -> None:
        for key in sorted(keys - set(tables[name])):
            problems.append(Problem(str(path / name), 0, f"utterance '{key}' is in {reference} but not here"))
        for key in sorted(set(tables[name]) - keys):
            problems.append(Problem(str(path / name), line_of(path / name, key),
                                    f"utterance '{key}' is not in {reference}"))

    for name in UTT_TABLES + ("segments",):
        if name in tables and name != "utt2spk":
            compare(name, utts, "utt2spk")
    if "wav.scp" in tables and "segments" not in tables:
        compare("wav.scp", utts, "utt2spk")
    if "spk2utt" in tables and tables["spk2utt"] != spk2utt_from_utt2spk(tables["utt2spk"]):
        problems.append(Problem(str(path / "spk2utt"), 0, "does not match utt2spk (regenerate it: utils/fix_data_dir.sh)"))
    if "text" in tables:
        for utt, words in tables["text"].items():
            if not words.strip():
                problems.append(Problem(str(path / "text"), line_of(path / "text", utt), f"utterance '{utt}' has an empty transcript"))
    problems += _check_values(path, tables)
    if "segments" in tables:
        problems += _check_segments(path, tables)
    if check_wav and decode_audio and "wav.scp" in tables:
        problems += _check_audio(path, tables, progress)
    if check_feats and "feats.scp" in tables:
        problems += _check_feats(path, tables["feats.scp"])
    return problems


def _is_count(value: str) -> bool:
    return value.isascii() and value.isdigit() and int(value) > 0


def _is_duration(value: str) -> bool:
    try:
        return 0 < float(value) < float("inf")
    except ValueError:
        return False


# What a value of each table must be: a test and how to say it (segments are checked on their own).
VALUE_RULES = {
    "utt2spk": (lambda value: len(value.split()) == 1, "one speaker id"),
    "utt2lang": (lambda value: len(value.split()) == 1, "one language id"),
    "utt2num_frames": (_is_count, "a positive integer"),
    "utt2num_samples": (_is_count, "a positive integer"),
    "utt2dur": (_is_duration, "a positive number of seconds"),
    "reco2dur": (_is_duration, "a positive number of seconds"),
    "wav.scp": (bool, "an audio path or a command ending in '|'"),
    "feats.scp": (bool, "an 'ark:offset' entry"),
    "cmvn.scp": (bool, "an 'ark:offset' entry"),
}


def _check_values(path: Path, tables) -> list[Problem]:
    """A problem for each value that its table's rule refuses, naming file, line, key and value."""
    problems = []
    for name, (accepts, expected) in VALUE_RULES.items():
        for key, value in tables.get(name, {}).items():
            if not accepts(value):
                problems.append(Problem(str(path / name), line_of(path / name, key),
                                        f"'{key}': expected {expected}, got '{value}'"))
    return problems


def _check_segments(path: Path, tables) -> list[Problem]:
    problems = []
    for number, (utt, value) in enumerate(tables["segments"].items(), 1):
        fields = value.split()
        where = Problem(str(path / "segments"), line_of(path / "segments", utt), "")
        try:
            recording, start, end = fields[0], float(fields[1]), float(fields[2])
            if len(fields) != 3 or not math.isfinite(start) or not math.isfinite(end):
                raise ValueError
        except (IndexError, ValueError):
            where.message = f"utterance '{utt}': expected '<recording> <start> <end>', got '{value}'"
            problems.append(where)
            continue
        if "wav.scp" in tables and recording not in tables["wav.scp"]:
            where.message = f"utterance '{utt}': recording '{recording}' is not in wav.scp"
            problems.append(where)
        elif start < 0 or (end != -1 and end <= start):
            where.message = f"utterance '{utt}': bad region {start}-{end}"
            problems.append(where)
    return problems


def _check_audio(path: Path, tables, progress: bool) -> list[Problem]:
    problems = []
    lengths: dict[str, float] = {}
    wav_scp = tables["wav.scp"]
    for recording, entry in tqdm(wav_scp.items(), desc=f"checking audio in {path}", disable=not progress, unit="rec"):
        try:
            frames, rate = entry_info(entry)
            if frames == 0:
                raise AudioError(f"'{entry}': no samples")
            lengths[recording] = frames / rate
        except AudioError as err:
            problems.append(Problem(str(path / "wav.scp"), line_of(path / "wav.scp", recording),
                                    f"recording '{recording}': {err}"))
    for utt, value in tables.get("segments", {}).items():
        fields = value.split()
        if len(fields) != 3 or fields[0] not in lengths:
            continue
        end = float(fields[2])
        if end > lengths[fields[0]] + SEGMENT_OVERSHOOT:
            problems.append(Problem(str(path / "segments"), line_of(path / "segments", utt),
                                    f"utterance '{utt}' ends at {end:.3f} s, past the end of recording "
                                    f"'{fields[0]}' ({lengths[fields[0]]:.3f} s)"))
    return problems


def _check_feats(path: Path, feats_scp) -> list[Problem]:
    from audiossl.features.store import FeatureError, read_matrix

    problems = []
    first = None   # the first utterance and its features' dimension, which every other's must be
    for utt, entry in feats_scp.items():
        try:
            matrix = read_matrix(entry)
            if matrix.shape[0] == 0:
                raise FeatureError(f"features '{entry}' have shape {matrix.shape}")
            first = first or (utt, matrix.shape[1])
            if matrix.shape[1] != first[1]:
                raise FeatureError(f"{matrix.shape[1]}-dim features, utterance '{first[0]}' has {first[1]}")
        except FeatureError as err:
            problems.append(Problem(str(path / "feats.scp"), line_of(path / "feats.scp", utt),
                                    f"utterance '{utt}': {err}"))
    return problems
