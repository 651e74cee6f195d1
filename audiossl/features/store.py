"""Feature extraction over data dirs into Kaldi ark/scp, and CMVN statistics.

Files written here are read by any Kaldi-speaking tool (kaldiio, Kaldi binaries).
"""
from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import kaldiio
import numpy as np
from tqdm import tqdm

from audiossl.atomic import replace_synced
from audiossl.audio import AudioError, load_entry, region_bounds, resample
from audiossl.data.kaldi_dir import DataDir, read_table, write_table
from audiossl.errors import UserError
from audiossl.features.kaldi import FeatureExtractor, add_deltas

logger = logging.getLogger(__name__)


class FeatureError(UserError, RuntimeError):
    """Features that cannot be computed; the message names the utterance."""


def compute_features(data: DataDir, extractor: FeatureExtractor, ark_path: str | os.PathLike,
                     progress: bool = False) -> dict[str, int]:
    """Compute features of every utterance into ``ark_path``, its ``.scp`` and its ``.utt2num_frames``
    (the frame counts) beside it.

    Each recording is decoded once, however many ``segments`` it holds. A dither's noise is seeded with
    the utterance's id: the features are the same from run to run, whatever the jobs. The files are written
    beside their places and moved there only when every utterance is done, so a failure leaves the
    previous ones as they were, and an scp is only ever beside the ark and counts it lists.

    Returns:
        ``{utterance: num_frames}``.
    """
    ark_path = Path(ark_path).absolute()
    with ark_pair_in_place(ark_path, ".utt2num_frames") as (tmp_ark, tmp_scp, tmp_counts):
        num_frames = _write_features(data, extractor, tmp_ark, tmp_scp,
                                     f"{extractor.config.kind} {ark_path.name}" if progress else None)
        write_table(tmp_counts, {utt: str(frames) for utt, frames in num_frames.items()})
        return num_frames


@contextmanager
def ark_pair_in_place(ark_path: Path, *companions: str) -> Iterator[tuple[Path, ...]]:
    """Temporary paths of ``ark_path``, its ``.scp`` and its files of each ``companions`` suffix (e.g.
    ``.utt2num_frames``), synced and moved onto them when the block ends without an error (the scp's entries
    pointed at ``ark_path``); on an error all are removed and the previous files are left as they were."""
    ark_path.parent.mkdir(parents=True, exist_ok=True)
    scp_path = ark_path.with_suffix(".scp")
    others = [ark_path, *(ark_path.with_suffix(suffix) for suffix in companions)]
    temporary = {path: path.with_name(f".{path.name}.tmp") for path in (*others, scp_path)}
    try:
        yield tuple(temporary[path] for path in (ark_path, scp_path, *others[1:]))
        tmp_scp = temporary[scp_path]
        lines = tmp_scp.read_text(encoding="utf-8").splitlines()
        tmp_scp.write_text("".join(f"{key} {ark_path}:{entry.rpartition(':')[2]}\n"
                                   for key, entry in (line.split(" ", 1) for line in lines)), encoding="utf-8")
        # No scp while the others are swapped: a job killed in between leaves none rather than a mismatch.
        scp_path.unlink(missing_ok=True)
        for path in others:
            replace_synced(temporary[path], path)
        replace_synced(tmp_scp, scp_path)
    finally:
        for path in temporary.values():
            path.unlink(missing_ok=True)


def _write_features(data: DataDir, extractor: FeatureExtractor, ark_path: Path, scp_path: Path,
                    progress: str | None) -> dict[str, int]:
    """The work of :func:`compute_features`, into ``ark_path`` and ``scp_path`` as named; ``progress``:
    the progress bar's title, or None for no bar."""
    by_recording: dict[str, list[str]] = {}
    for utt in data.utterances:
        seg = data.segment(utt)
        by_recording.setdefault(seg.recording if seg else utt, []).append(utt)
    rate = extractor.config.sample_rate
    num_frames: dict[str, int] = {}
    upsampled: dict[int, list[str]] = {}   # the recordings of each rate below the config's
    with kaldiio.WriteHelper(f"ark,scp:{ark_path},{scp_path}") as writer, \
            tqdm(total=len(data.utterances), disable=progress is None, unit="utt", desc=progress) as bar:
        for recording, utts in by_recording.items():
            if recording not in data["wav.scp"]:
                raise FeatureError(f"utterance '{utts[0]}': recording '{recording}' is not in wav.scp")
            entry = data["wav.scp"][recording]
            try:
                samples, audio_rate = load_entry(entry, sample_rate=None)
            except AudioError as err:
                raise FeatureError(f"utterance '{utts[0]}' (recording '{recording}'): {err}") from err
            if audio_rate != rate:
                if audio_rate < rate:
                    upsampled.setdefault(audio_rate, []).append(recording)
                samples = resample(samples, audio_rate, rate)
            for utt in utts:
                seg = data.segment(utt)
                try:
                    first, last = (0, len(samples)) if seg is None else \
                        region_bounds(seg.start, seg.end, rate, len(samples), entry)
                    feats = extractor(samples[first:last], seed=zlib.crc32(utt.encode("utf-8")))
                except (AudioError, ValueError) as err:
                    raise FeatureError(f"utterance '{utt}'" + (f" (recording '{recording}')" if seg else "")
                                       + f": {err}") from err
                if not np.isfinite(feats).all():
                    raise FeatureError(f"utterance '{utt}': features contain NaN or inf")
                writer(utt, feats)
                num_frames[utt] = feats.shape[0]
                bar.update()
    for audio_rate, recordings in sorted(upsampled.items()):
        logger.warning("%d recording(s) at %d Hz, e.g. '%s', upsampled to the config's %d Hz: their features "
                       "above %d Hz hold no energy", len(recordings), audio_rate, recordings[0], rate, audio_rate // 2)
    return num_frames


def read_matrix(entry: str) -> np.ndarray:
    """The matrix of one ``feats.scp`` (or ``cmvn.scp``) entry; a FeatureError naming the entry when a
    path, offset or ark is bad, or it holds no matrix (a vector: an x-vector ark's)."""
    try:
        matrix = kaldiio.load_mat(entry)
    except Exception as err:  # kaldiio raises many types for a bad ark; past its end, a bare AssertionError
        raise FeatureError(f"cannot read features '{entry}': {str(err).strip() or type(err).__name__}") from err
    if matrix.ndim != 2:
        raise FeatureError(f"'{entry}' holds an array of shape {matrix.shape}, not a matrix (frames, dim)")
    return matrix


def ark_stamps(feats_scp: dict[str, str]) -> dict[str, list[int]]:
    """Size and modification time (ns) of each ark file that a ``feats.scp`` table points into: tells
    whether its features were written again."""
    stamps = {}
    for ark in sorted({entry.rpartition(":")[0] for entry in feats_scp.values()}):
        if os.path.isfile(ark):
            stat = os.stat(ark)
            stamps[ark] = [stat.st_size, stat.st_mtime_ns]
    return stamps


def load_features(entry: str, deltas: int = 0, utt_cmvn: bool = False) -> np.ndarray:
    """Read one ``feats.scp`` entry (frames, dim).

    With ``utt_cmvn`` each dimension is normalised to zero mean and unit variance over the
    utterance (Kaldi ``apply-cmvn --norm-vars=true`` with per-utterance statistics); then
    Kaldi deltas up to ``deltas`` are appended.
    """
    feats = read_matrix(entry)
    if utt_cmvn:
        feats = apply_cmvn(feats, cmvn_stats(feats), norm_vars=True)
    return add_deltas(feats, order=deltas) if deltas else feats


def cmvn_stats(feats: np.ndarray) -> np.ndarray:
    """Kaldi CMVN statistics of (frames, dim) features: (2, dim + 1) float64.

    Row 0 holds the sums and the frame count in its last column; row 1 the sums of squares.
    """
    feats = feats.astype(np.float64)
    stats = np.zeros((2, feats.shape[1] + 1), dtype=np.float64)
    stats[0, :-1] = feats.sum(0)
    stats[0, -1] = feats.shape[0]
    stats[1, :-1] = (feats ** 2).sum(0)
    return stats


def apply_cmvn(feats: np.ndarray, stats: np.ndarray, norm_vars: bool = False) -> np.ndarray:
    """Normalize (frames, dim) features with Kaldi CMVN statistics (``apply-cmvn``)."""
    count = stats[0, -1]
    mean = stats[0, :-1] / count
    out = feats - mean
    if norm_vars:
        var = np.maximum(stats[1, :-1] / count - mean ** 2, 1e-10)
        out = out / np.sqrt(var)
    return out.astype(np.float32)


def compute_cmvn(data: DataDir, ark_path: str | os.PathLike, per_speaker: bool = True) -> dict[str, str]:
    """Per-speaker (or per-utterance) CMVN statistics of ``feats.scp`` into ``ark_path``/``.scp``
    (the previous pair kept if it fails).

    Returns the ``cmvn.scp`` table ``{speaker: ark:offset}``.
    """
    ark_path = Path(ark_path).absolute()
    scp_path = ark_path.with_suffix(".scp")
    groups: dict[str, list[str]] = {}
    for utt in data.utterances:
        groups.setdefault(data["utt2spk"][utt] if per_speaker else utt, []).append(utt)
    missing = [utt for utt in data.utterances if utt not in data["feats.scp"]]
    if missing:  # the stats of their speakers would leave them out
        raise FeatureError(f"no features in feats.scp for {len(missing)} utterance(s), e.g. '{missing[0]}'")
    first = None   # the utterance read first, and its features' dimension, which every other's must be
    with ark_pair_in_place(ark_path) as (tmp_ark, tmp_scp), \
            kaldiio.WriteHelper(f"ark,scp:{tmp_ark},{tmp_scp}") as writer:
        for key in sorted(groups):
            stats = []
            for utt in groups[key]:
                feats = read_matrix(data["feats.scp"][utt])
                first = first or (utt, feats.shape[1])
                if feats.shape[1] != first[1]:   # a dir combined from feature dirs of other configs
                    raise FeatureError(f"feats.scp: utterance '{utt}' has {feats.shape[1]}-dim features, utterance "
                                       f"'{first[0]}' {first[1]}: make the features of the whole dir with one config")
                stats.append(cmvn_stats(feats))
            writer(key, sum(stats))
    return read_table(scp_path)
