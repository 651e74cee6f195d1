"""Kaldi data directories: read, write, validate, fix, subset, combine, split.

A data dir is a folder of sorted text tables keyed by utterance (or recording,
or speaker) id, one ``key value`` pair per line:

==================  =========  =====================================================
file                key        value
==================  =========  =====================================================
``wav.scp``         recording  audio path, or a shell command ending in ``|``
``segments``        utterance  ``<recording> <start-seconds> <end-seconds>``
``text``            utterance  transcript
``utt2spk``         utterance  speaker
``spk2utt``         speaker    utterances, space separated
``utt2lang``        utterance  language
``utt2dur``         utterance  duration in seconds
``utt2num_samples`` utterance  number of samples
``utt2num_frames``  utterance  number of feature frames
``feats.scp``       utterance  ``ark:offset`` of a feature matrix
``cmvn.scp``        speaker    ``ark:offset`` of CMVN statistics
==================  =========  =====================================================

Without ``segments`` the recording ids are the utterance ids.
Keys are sorted in byte order (Kaldi's ``LC_ALL=C sort``).

A dir is written whole or not at all as its readers see it: ``.incomplete``, naming the tables, is there
while they are renamed in, and stays when the write is stopped midway; reading or validating such a dir is
refused, but by a reader that leaves out every table it names (one about to make them again).
"""
from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import random
import shutil
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from audiossl.atomic import atomic_dir, atomic_path, write_text_atomic
from audiossl.errors import UserError

logger = logging.getLogger(__name__)

UTT_TABLES = ("text", "utt2spk", "utt2lang", "utt2dur", "utt2num_samples", "utt2num_frames", "feats.scp")
FEATURE_TABLES = ("feats.scp", "cmvn.scp", "utt2num_frames")
ALL_TABLES = ("wav.scp", "segments", "spk2utt", "cmvn.scp", "reco2dur") + UTT_TABLES
INCOMPLETE = ".incomplete"   # in a data dir while write_tables renames its tables in


class DataDirError(UserError, ValueError):
    """A data dir problem; the message names the file and line."""


@dataclass
class Problem:
    """One validation finding: ``file:line: message`` (line 0 when it concerns the whole file)."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}"


def _key_problem(key: str, table: dict[str, str], previous: str | None) -> str | None:
    """What is wrong with a table line's ``key`` after the keys read so far, or None."""
    if not key:
        return "empty line"
    if key in table:
        return f"duplicate key '{key}' (first on an earlier line)"
    if previous is not None and key < previous:
        return f"key '{key}' is out of order after '{previous}' (sort with LC_ALL=C)"
    return None


def read_table(path: str | os.PathLike, problems: list[Problem] | None = None) -> dict[str, str]:
    """Read a Kaldi table into an insertion-ordered ``{key: value}`` dict.

    With ``problems`` given, malformed, duplicate and unsorted lines are recorded there
    (first occurrence kept); without it the first problem raises :class:`DataDirError`.
    """
    table: dict[str, str] = {}
    previous = None
    path = Path(path)
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")  # a BOM (Windows editors) is no key
                key, value = (text.split(maxsplit=1) + ["", ""])[:2]  # spaces or tabs between
            except UnicodeDecodeError as err:
                key, value = "", ""
                found = f"not UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1})"
            else:
                found = _key_problem(key, table, previous)
            if found:
                if problems is None:
                    raise DataDirError(f"{path}:{number}: {found}")
                problems.append(Problem(str(path), number, found))
                if not key or key in table:
                    continue
            table[key] = value.strip()
            previous = key if previous is None or key > previous else previous
    return table


def write_table(path: str | os.PathLike, table: dict[str, str]) -> None:
    """Write ``{key: value}`` sorted by key, atomically (a temporary file, then rename)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for key in sorted(table):
            value = table[key]
            f.write(f"{key} {value}\n" if value != "" else f"{key}\n")


def table_digest(table: dict[str, str]) -> str:
    """SHA-256 of a table's lines, in order: tells whether it changed."""
    digest = hashlib.sha256()
    for key, value in table.items():
        digest.update(f"{key} {value}\n".encode("utf-8"))
    return digest.hexdigest()


def merge_tables(paths) -> dict[str, str]:
    """Union of tables (e.g. the outputs of parallel jobs); a key in two of them is an error naming both."""
    merged: dict[str, str] = {}
    origin: dict[str, str] = {}
    for path in paths:
        for key, value in read_table(path).items():
            if key in merged:
                raise DataDirError(f"{path}: key '{key}' also in {origin[key]}")
            merged[key] = value
            origin[key] = str(path)
    return merged


def write_tables(path: str | os.PathLike, tables: dict[str, dict[str, str]], stale=()) -> None:
    """Write ``tables`` (``{name: table}``) into the data dir ``path`` and remove its ``stale`` tables, as one
    write that readers see whole or refuse.

    Each table is written under a temporary name first; then ``path/.incomplete``, naming the tables
    written and removed, is written, the tables renamed in, the stale ones removed, and ``.incomplete``
    removed last. Stopped before the renames, the write leaves the dir as it was; during them, a dir that
    readers refuse until the write is made again.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    names = sorted(set(tables) | set(stale))
    with ExitStack() as renames:   # each atomic_path renames its table in as the block ends
        for name, table in tables.items():
            write_table(renames.enter_context(atomic_path(path / name)), table)
        write_text_atomic(path / INCOMPLETE, "tables being renamed in: they disagree until this file is gone\n"
                                             + "".join(f"{name}\n" for name in names))
    for name in stale:
        (path / name).unlink(missing_ok=True)
    (path / INCOMPLETE).unlink()


def unfinished_write(path: Path, without=()) -> str | None:
    """Why the data dir at ``path`` must not be read: a write of its tables stopped midway, so they may
    disagree (:func:`write_tables`); None when it has no such write, or one of only tables of ``without``,
    which the reader leaves out (a marker naming no table is of any table)."""
    marker = path / INCOMPLETE
    if not marker.exists():
        return None
    names = marker.read_text(encoding="utf-8").splitlines()[1:]
    if names and set(names) <= set(without):
        return None
    return (f"a write of its tables stopped midway ({INCOMPLETE} is there), so they may disagree: "
            "run the step that wrote it again")


def check_complete(path: str | os.PathLike, without=()) -> None:
    """A DataDirError naming the data dir ``path`` when a write of its tables (other than those of
    ``without``, which the reader leaves out) stopped midway: called before any of its tables is read."""
    if why := unfinished_write(Path(path), without):
        raise DataDirError(f"{path}: {why}")


def spk2utt_from_utt2spk(utt2spk: dict[str, str]) -> dict[str, str]:
    """Invert ``utt2spk`` into ``spk2utt`` (utterances in sorted order)."""
    grouped: dict[str, list[str]] = {}
    for utt in sorted(utt2spk):
        grouped.setdefault(utt2spk[utt], []).append(utt)
    return {spk: " ".join(grouped[spk]) for spk in sorted(grouped)}


@dataclass
class Segment:
    """An utterance as a region of a recording; ``end`` of -1 means the recording's end."""

    recording: str
    start: float
    end: float


@dataclass
class DataDir:
    """An in-memory Kaldi data dir: one ``{key: value}`` dict per table present."""

    tables: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def read(cls, path: str | os.PathLike, needs: tuple[str, ...] = (), without: tuple[str, ...] = ()) -> "DataDir":
        """Read every known table present in ``path`` but those of ``without``; raises on the first malformed
        line, or naming a table of ``needs`` that is not there."""
        path = Path(path)
        if not path.is_dir():
            raise DataDirError(f"{path}: not a directory")
        check_complete(path, without)
        for name in needs:
            if not (path / name).is_file():
                raise DataDirError(f"{path / name}: missing")
        return cls({name: read_table(path / name) for name in ALL_TABLES
                    if name not in without and (path / name).is_file()})

    def write(self, path: str | os.PathLike) -> None:
        """Write every table (``spk2utt`` regenerated from ``utt2spk``) into ``path`` (:func:`write_tables`),
        and remove the known tables it lacks there: left from a dir written there before, they would not match."""
        tables = dict(self.tables)
        if "utt2spk" in tables:
            tables["spk2utt"] = spk2utt_from_utt2spk(tables["utt2spk"])
        write_tables(path, tables, stale=sorted(set(ALL_TABLES) - set(tables)))

    def __contains__(self, name: str) -> bool:
        return name in self.tables

    def __getitem__(self, name: str) -> dict[str, str]:
        return self.tables[name]

    @property
    def utterances(self) -> list[str]:
        """Sorted utterance ids (from ``utt2spk``, else ``segments``, ``wav.scp`` or ``feats.scp``)."""
        for name in ("utt2spk", "segments", "wav.scp", "feats.scp"):
            if name in self.tables:
                return sorted(self.tables[name])
        return []

    def transcripts(self, name: str | os.PathLike) -> dict[str, str]:
        """``{utt: text}`` of every utterance; a missing ``text`` file or line is a DataDirError naming ``name``."""
        if "text" not in self.tables:
            raise DataDirError(f"{name}: no text file")
        missing = [utt for utt in self.utterances if utt not in self.tables["text"]]
        if missing:
            raise DataDirError(f"{name}/text: no transcript for {len(missing)} utterance(s), e.g. '{missing[0]}'")
        return {utt: self.tables["text"][utt] for utt in self.utterances}

    def segment(self, utt: str) -> Segment | None:
        """The region of its recording that ``utt`` covers, or None without ``segments``."""
        if "segments" not in self.tables:
            return None
        if utt not in self.tables["segments"]:
            raise DataDirError(f"segments: no region for utterance '{utt}', which the dir's other tables list "
                               f"(utils/fix_data_dir.sh drops the utterances without one)")
        value = self.tables["segments"][utt]
        try:
            recording, start, end = value.split()
            segment = Segment(recording, float(start), float(end))
        except ValueError:
            segment = None
        if segment is None or not (math.isfinite(segment.start) and math.isfinite(segment.end)):
            raise DataDirError(f"segments: utterance '{utt}': expected '<recording> <start> <end>', got '{value}'")
        return segment

    def audio_entry(self, utt: str) -> tuple[str, Segment | None]:
        """The ``wav.scp`` value for ``utt`` and its segment (None: the whole recording)."""
        seg = self.segment(utt)
        return self.tables["wav.scp"][seg.recording if seg else utt], seg

    def with_segments(self) -> "DataDir":
        """This dir with ``segments``: where it has none, one region per recording, the whole of it
        (``<recording> <recording> 0 -1``, as Kaldi's ``combine_data.sh`` makes them), to combine it with a
        dir of segments."""
        if "segments" in self.tables or "wav.scp" not in self.tables:
            return self
        return DataDir({**self.tables, "segments": {reco: f"{reco} 0 -1" for reco in self.tables["wav.scp"]}})

    def subset(self, utterances) -> "DataDir":
        """A new data dir restricted to ``utterances`` (recordings and speakers follow)."""
        keep = set(utterances)
        out: dict[str, dict[str, str]] = {}
        for name, table in self.tables.items():
            if name in UTT_TABLES or name == "segments":
                out[name] = {k: v for k, v in table.items() if k in keep}
        if "segments" in out:
            recordings = {v.split()[0] for v in out["segments"].values()}
        else:
            recordings = keep
        for name in ("wav.scp", "reco2dur"):
            if name in self.tables:
                out[name] = {k: v for k, v in self.tables[name].items() if k in recordings}
        if "cmvn.scp" in self.tables:  # per speaker, or per utterance (compute_cmvn_stats.sh --per-utt true)
            kept = set(out.get("utt2spk", {}).values()) | keep
            out["cmvn.scp"] = {k: v for k, v in self.tables["cmvn.scp"].items() if k in kept}
        return DataDir(out)

    def fixed(self) -> "DataDir":
        """Keep only utterances present in every utterance table, with audio (a well-formed segment of a
        recording in ``wav.scp``) and a non-empty text.

        Like Kaldi's ``fix_data_dir.sh``: sorts, drops duplicates and orphans on both sides.
        """
        utts = set(self.utterances)
        for name in UTT_TABLES + ("segments",):
            if name in self.tables:
                utts &= set(self.tables[name])
        if "text" in self.tables:
            utts = {u for u in utts if self.tables["text"][u].strip()}
        if "segments" in self.tables:  # '<recording> <start> <end>', of a recording in wav.scp if there is one
            recordings = self.tables.get("wav.scp")
            regions = {u: self.tables["segments"][u].split() for u in utts}
            utts = {u for u in utts if len(regions[u]) == 3 and (recordings is None or regions[u][0] in recordings)}
        elif "wav.scp" in self.tables:
            utts &= set(self.tables["wav.scp"])
        return self.subset(utts)


def read_utterance_labels(data_dir: str | os.PathLike, table: str) -> dict[str, str]:
    """``{utt: value}`` of a per-utterance label ``table`` of ``data_dir`` (``utt2spk``, ``utt2label``, ...),
    for every utterance of the dir. Lines of utterances not in the dir are left out with a warning (their
    labels are of no audio here); an utterance without a line, or a dir whose write stopped midway, is a
    DataDirError."""
    path = Path(data_dir) / table
    check_complete(data_dir)   # the table may be of another write than the dir's others
    if not path.is_file():
        raise DataDirError(f"{path}: no such table (the labels of {data_dir})")
    utterances = DataDir.read(data_dir).utterances
    values, known = read_table(path), set(utterances)
    extra = [utt for utt in values if utt not in known]
    if extra:
        logger.warning("%s: %d line(s) of utterances not in %s left out, e.g. '%s'", path, len(extra), data_dir,
                       extra[0])
    missing = [utt for utt in utterances if utt not in values]
    if missing:
        raise DataDirError(f"{path}: no label for {len(missing)} utterance(s) of {data_dir}, e.g. '{missing[0]}'")
    return {utt: values[utt] for utt in utterances}


def line_of(path: Path, key: str) -> int:
    """1-based line of ``key`` in a table file (0 when absent); the file is read once however many keys are asked."""
    stat = path.stat()
    return _line_numbers(str(path), stat.st_mtime_ns, stat.st_size).get(key, 0)


@functools.lru_cache(maxsize=8)
def _line_numbers(path: str, mtime_ns: int, size: int) -> dict[str, int]:
    """``{key: first line}`` of a table file as it is at ``mtime_ns`` and ``size`` (a rewritten file is read again)."""
    numbers: dict[str, int] = {}
    with open(path, encoding="utf-8-sig") as f:
        for number, line in enumerate(f, 1):
            key = line.split(maxsplit=1)[:1]
            if key:
                numbers.setdefault(key[0], number)
    return numbers


def table_line(path: str | os.PathLike, key: str) -> str:
    """``path:N``, where line ``N`` of the Kaldi table ``path`` holds ``key``: for messages about that line."""
    return f"{path}:{line_of(Path(path), key)}"


def read_fixing(path: str | os.PathLike) -> tuple[DataDir, list[Problem]]:
    """Read a data dir tolerating malformed lines; returns it and what was wrong."""
    path = Path(path)
    if not path.is_dir():
        raise DataDirError(f"{path}: not a directory")
    check_complete(path)
    problems: list[Problem] = []
    tables = {n: read_table(path / n, problems) for n in ALL_TABLES if (path / n).is_file()}
    return DataDir(tables), problems


def fix_data_dir(path: str | os.PathLike) -> list[Problem]:
    """Fix ``path`` in place (originals kept in ``path/.backup``); returns what was dropped.

    A fix that would drop every utterance is a DataDirError, the dir left as it is: the tables
    (of a whole corpus, often) are more likely misnamed or mismatched than all unusable.
    """
    path = Path(path)
    data, problems = read_fixing(path)
    before = set(data.utterances)
    if not before:
        raise DataDirError(f"{path}: no utterances (no utt2spk, segments, wav.scp or feats.scp, or all empty)")
    fixed = data.fixed()
    for utt in sorted(before - set(fixed.utterances)):
        problems.append(Problem(str(path), 0, f"utterance '{utt}' dropped (missing from a table, empty text "
                                              "or no region of a recording in wav.scp)"))
    if not fixed.utterances:
        found = "\n".join(str(p) for p in problems[:10])
        raise DataDirError(f"{path}: fixing would drop every one of its {len(before)} utterances; left as it is. "
                           f"First problems:\n{found}")
    backup = path / ".backup"
    backup.mkdir(exist_ok=True)
    for name in data.tables:
        shutil.copy2(path / name, backup / name)
    fixed.write(path)
    return problems


def check_not_a_source(dest: str | os.PathLike, sources) -> None:
    """A DataDirError when ``dest`` is one of ``sources``, however spelt: writing it would change an input
    (copy would remove its features, subset its other utterances)."""
    dest = Path(dest)
    for src in sources:
        if dest.exists() and Path(src).exists() and dest.samefile(src):
            raise DataDirError(f"{dest}: the data dir written is the source {src}; write another dir")


def combine_data_dirs(sources) -> DataDir:
    """Concatenate data dirs; a key present in two sources with two values is an error naming both
    (``spk2utt`` is not compared: it is made anew from ``utt2spk``, so a speaker may be in several).

    Only the tables of every source are combined; a warning names the others. But ``segments``:
    where some sources have it, a source without it gets one region per recording, the whole of it
    (``<recording> <recording> 0 -1``), as Kaldi's ``combine_data.sh`` makes them; and ``cmvn.scp`` is
    never combined: a speaker's statistics in a source are of that source's utterances alone.
    """
    out: dict[str, dict[str, str]] = {}
    origin: dict[tuple[str, str], str] = {}
    parts = [(str(src), DataDir.read(src)) for src in sources]
    if any("segments" in data for _, data in parts):
        parts = [(src, data.with_segments()) for src, data in parts]
    if any("cmvn.scp" in data for _, data in parts):
        logger.warning("combine: cmvn.scp left out (statistics of each source's speakers): compute them for "
                       "the combined dir, steps/compute_cmvn_stats.sh")
    not_combined = {"spk2utt", "cmvn.scp"}
    common = set.intersection(*(set(d.tables) for _, d in parts)) - not_combined if parts else set()
    for name in sorted(set().union(*(d.tables for _, d in parts)) - common - not_combined):
        lacking = [src for src, data in parts if name not in data]
        verb = "lacks" if len(lacking) == 1 else "lack"
        logger.warning(f"combine: {name} left out, as {', '.join(lacking)} {verb} it")
    for src, data in parts:
        for name in common:
            table = out.setdefault(name, {})
            for key, value in data.tables[name].items():
                if key in table and table[key] != value:
                    raise DataDirError(f"{src}/{name}: key '{key}' also in {origin[name, key]}/{name} with another value")
                table[key] = value
                origin.setdefault((name, key), src)
    return DataDir(out)


def split_data_dir(data: DataDir, num_jobs: int, per_speaker: bool = False) -> list[DataDir]:
    """Split into ``num_jobs`` contiguous parts of near-equal utterance count.

    With ``per_speaker`` no speaker is split across parts (Kaldi ``split_data.sh --per-utt`` off).
    """
    utts = data.utterances
    if per_speaker:
        groups: dict[str, list[str]] = {}
        for utt in utts:
            groups.setdefault(data.tables["utt2spk"][utt], []).append(utt)
        units = [groups[s] for s in sorted(groups)]
    else:
        units = [[u] for u in utts]
    if num_jobs > len(units):
        raise DataDirError(f"cannot split {len(units)} {'speakers' if per_speaker else 'utterances'} into {num_jobs} parts")
    parts: list[list[str]] = []
    start = 0
    for job in range(num_jobs):
        end = round(len(units) * (job + 1) / num_jobs)
        parts.append([u for unit in units[start:end] for u in unit])
        start = end
    return [data.subset(p) for p in parts]


def write_split(path: str | os.PathLike, num_jobs: int, per_speaker: bool = False, without=()) -> Path:
    """Split the data dir at ``path`` (:func:`split_data_dir`), its tables but those of ``without``
    (:meth:`DataDir.read`), into ``path/split<N>[utt]/{1..N}``, its root.

    The root records the checksum of the tables it was split from (``.source``): a split of the same
    tables is kept as it is, one of others made again, whatever the files' times (a dir restored
    with ``cp -p`` is older than its split). It is replaced whole (:func:`~audiossl.atomic.atomic_dir`):
    a split killed halfway leaves the earlier one, never parts of two data dirs.
    """
    path = Path(path)
    data = DataDir.read(path, needs=("utt2spk",) if per_speaker else (), without=without)
    root = path / f"split{num_jobs}{'' if per_speaker else 'utt'}"
    source = hashlib.sha256("".join(f"{name} {table_digest(table)}\n"
                                    for name, table in sorted(data.tables.items())).encode()).hexdigest()
    if (root / ".source").is_file() and (root / ".source").read_text().strip() == source:
        return root
    with atomic_dir(root) as tmp:
        for index, part in enumerate(split_data_dir(data, num_jobs, per_speaker), 1):
            part.write(tmp / str(index))
        (tmp / ".source").write_text(source + "\n")
    return root


def subset_utterances(data: DataDir, num: int | None = None, utt_list=None, speakers=None,
                      first: bool = False, seed: int = 0) -> DataDir:
    """Pick utterances: an explicit list, a speaker list, the first ``num``, or ``num`` at random.

    A list of which no utterance or speaker is in ``data`` is a DataDirError (of other ids, likely).
    """
    utts = data.utterances
    if utt_list is not None:
        wanted = set(utt_list)
        utts = [u for u in utts if u in wanted]
        if not utts:
            raise DataDirError(f"none of the {len(wanted)} utterances listed is in the data dir{_first(utt_list)}")
    if speakers is not None:
        wanted = set(speakers)
        utts = [u for u in utts if data.tables["utt2spk"][u] in wanted]
        if not utts:
            raise DataDirError(f"none of the {len(wanted)} speakers listed is in the data dir{_first(speakers)}")
    if num is not None:
        if num > len(utts):
            raise DataDirError(f"asked for {num} utterances, the data dir has {len(utts)}")
        utts = utts[:num] if first else sorted(random.Random(seed).sample(utts, num))
    return data.subset(utts)


def _first(listed) -> str:
    """``(the first: 'x')`` of a list of ids, to tell them from the data dir's; nothing for an empty list."""
    return f" (the first: '{listed[0]}')" if listed else ""
