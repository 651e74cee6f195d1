"""Training examples from Kaldi data dirs, length-bucketed dynamic batches and collation.

Model inputs are either Kaldi features from ``feats.scp`` (kind ``"fbank"``: (frames, dim))
or waveforms from ``wav.scp`` (kind ``"waveform"``: (samples,) at the model's rate, 16 kHz by
default). Targets are optional per-utterance integer sequences (cluster labels, token ids), or
``(frames, K)`` arrays for K codebooks.
"""
from __future__ import annotations

import functools
import logging
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from audiossl.audio import SAMPLE_RATE, AudioError, entry_info, load_entry
from audiossl.data.kaldi_dir import DataDir, DataDirError, Segment, table_digest
from audiossl.data.validate import VALUE_RULES
from audiossl.features.store import FeatureError, ark_stamps, read_matrix
from audiossl.nn.frontends import fbank_num_frames, waveform_to_fbank

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100


class UtteranceDataset(torch.utils.data.Dataset):
    """Utterances of a data dir as ``(utt, inputs, targets)``.

    Args:
        data_dir: a Kaldi data dir with ``feats.scp`` (fbank) or ``wav.scp`` (waveform).
        input_kind: ``"fbank"`` or ``"waveform"``.
        num_mel_bins: the fbank bins the model takes: where ``feats.scp`` holds others (or is
            missing), Kaldi fbank of that size is computed from the audio as items are read.
        targets: ``{utt: sequence of ints}``; utterances without targets are an error.
        target_length: expected target length for an input length (e.g. the model's frame
            count for frame-level labels); a mismatch is an error naming the utterance.
        targets_name: where the targets came from, for error messages.
        sample_rate: waveforms are read at this rate. Audio at another rate (checked on the first
            utterance) is resampled with a logged note, or is an error with ``resample=False``.
    """

    def __init__(self, data_dir, input_kind: str, targets: dict[str, np.ndarray] | None = None,
                 target_length: Callable[[int], int] | None = None, targets_name: str = "targets",
                 num_mel_bins: int | None = None, sample_rate: int = SAMPLE_RATE, resample: bool = True):
        self.data = DataDir.read(data_dir)
        self.data_dir = Path(data_dir)
        self.input_kind = input_kind
        self.sample_rate = sample_rate
        self.utterances = self.data.utterances
        if not self.utterances:
            raise DataDirError(f"{data_dir}: no utterances")
        if input_kind == "waveform":
            if "wav.scp" not in self.data:
                raise DataDirError(f"{data_dir}: no wav.scp, which the waveforms of its utterances are read from")
            self._check_rate(resample)
        self.fbank_bins = None  # set when fbank is computed from the audio
        if input_kind == "fbank" and num_mel_bins is not None and self._stored_bins != num_mel_bins:
            if "wav.scp" not in self.data:
                raise DataDirError(f"{data_dir}: the model takes {num_mel_bins}-bin fbank, feats.scp holds "
                                   f"{self._stored_bins} and there is no wav.scp to compute them from")
            logger.info("%s: feats.scp holds %s bins, the model takes %d: fbank is computed from wav.scp",
                        data_dir, self._stored_bins, num_mel_bins)
            self.fbank_bins = num_mel_bins
        self.lengths = self._input_lengths()
        self.targets = targets
        if targets is not None:
            missing = [u for u in self.utterances if u not in targets]
            if missing:
                raise DataDirError(f"{targets_name}: no targets for {len(missing)} utterance(s) of {data_dir}, "
                                   f"e.g. '{missing[0]}'")
            if target_length is not None:
                for utt, length in zip(self.utterances, self.lengths):
                    expected = target_length(length)
                    if len(targets[utt]) != expected:
                        raise DataDirError(f"{targets_name}: utterance '{utt}' has {len(targets[utt])} labels, "
                                           f"the model gives {expected} frames for its {length} input frames")

    @property
    def identity(self) -> dict:
        """What the items are made of: input kind and rate, and the input tables' digests with the size and
        time of the arks that feats.scp points into (audio files are known by their wav.scp entries)."""
        tables = {name: table_digest(self.data[name]) for name in ("wav.scp", "segments", "feats.scp")
                  if name in self.data}
        arks = ark_stamps(self.data["feats.scp"]) if "feats.scp" in self.data else {}
        return dict(input_kind=self.input_kind, sample_rate=self.sample_rate, fbank_bins=self.fbank_bins,
                    tables=tables, arks=arks)

    def languages(self) -> list[str]:
        """Each utterance's language, from ``utt2lang``; a missing table, a missing utterance or a language
        with no utterance in the data dir is an error naming the file."""
        where = self.data_dir / "utt2lang"
        if "utt2lang" not in self.data:
            raise DataDirError(f"{where}: missing; sampling by language needs each utterance's language")
        table = self.data["utt2lang"]
        missing = [u for u in self.utterances if u not in table]
        if missing:
            raise DataDirError(f"{where}: no language for {len(missing)} utterance(s), e.g. '{missing[0]}'")
        languages = [table[u] for u in self.utterances]
        silent = sorted(set(table.values()) - set(languages))
        if silent:
            raise DataDirError(f"{where}: no audio of language(s) {', '.join(silent)} in {self.data_dir} (none of "
                               "their utterances has inputs)")
        return languages

    def _where(self, name: str, key: str) -> str:
        """``<data dir>/<name>:<line>`` of ``key`` (a table read whole holds one key a line, in order)."""
        return f"{self.data_dir / name}:{list(self.data[name]).index(key) + 1}"

    def _entry(self, name: str, key: str, what: str) -> str:
        """``key``'s value in table ``name``; a DataDirError naming the file and ``what`` has none."""
        if key not in self.data[name]:
            raise DataDirError(f"{self.data_dir / name}: no entry for {what}")
        return self.data[name][key]

    def _features(self, utt: str) -> np.ndarray:
        """``utt``'s ``feats.scp`` matrix; a DataDirError naming the line, utterance and entry when unreadable."""
        entry = self._entry("feats.scp", utt, f"utterance '{utt}'")
        try:
            return read_matrix(entry)
        except FeatureError as err:
            raise DataDirError(f"{self._where('feats.scp', utt)}: utterance '{utt}': {err}") from err

    def _audio_entry(self, utt: str) -> tuple[str, Segment | None]:
        """``utt``'s ``wav.scp`` entry and its segment; a DataDirError naming the line when the entry is empty."""
        seg = self.data.segment(utt)
        entry = self._entry("wav.scp", seg.recording if seg else utt, self._named(utt, seg))
        if not entry:
            raise DataDirError(f"{self._audio_where(utt)}: no audio path or command")
        return entry, seg

    def _audio_where(self, utt: str) -> str:
        """Where ``utt``'s audio entry is, for errors: file, line, utterance (and recording)."""
        seg = self.data.segment(utt)
        return f"{self._where('wav.scp', seg.recording if seg else utt)}: {self._named(utt, seg)}"

    @staticmethod
    def _named(utt: str, seg: Segment | None) -> str:
        return f"utterance '{utt}'" + (f" (recording '{seg.recording}')" if seg else "")

    def _counts(self, name: str, parse: Callable[[str], int | float]) -> list:
        """Each utterance's number in table ``name`` (a count or a duration), checked by the rule validation
        uses and parsed; a DataDirError naming the line, utterance and value of a bad one, or the utterance
        without one."""
        accepts, expected = VALUE_RULES[name]
        values = []
        for utt in self.utterances:
            text = self._entry(name, utt, f"utterance '{utt}'")
            if not accepts(text):
                raise DataDirError(f"{self._where(name, utt)}: utterance '{utt}': expected {expected}, got '{text}'")
            values.append(parse(text))
        return values

    @functools.cached_property
    def _audio_rate(self) -> int:
        """The sample rate of the first utterance's audio (a data dir's audio is taken to share one)."""
        utt = self.utterances[0]
        entry, _ = self._audio_entry(utt)
        try:
            return entry_info(entry)[1]
        except AudioError as err:
            raise AudioError(f"{self._audio_where(utt)}: {err}") from err

    def _check_rate(self, resample: bool) -> None:
        rate, utt = self._audio_rate, self.utterances[0]
        if rate == self.sample_rate:
            return
        message = f"{self.data_dir}: audio at {rate} Hz (utterance '{utt}'), the model takes {self.sample_rate} Hz"
        if not resample:
            raise DataDirError(message + ": give a data dir at the model's rate, or allow resampling")
        logger.info("%s: resampled as it is read", message)

    @functools.cached_property
    def _stored_bins(self) -> int | None:
        """Bins of the first ``feats.scp`` entry (None without feats.scp); every entry must have as many."""
        if "feats.scp" not in self.data:
            return None
        return int(self._features(self.utterances[0]).shape[1])

    def _input_lengths(self) -> list[int]:
        if self.fbank_bins is not None:
            return fbank_num_frames(torch.tensor(self._audio_lengths())).tolist()
        if self.input_kind == "fbank":
            if "feats.scp" not in self.data:
                raise DataDirError(f"{self.data_dir}: no feats.scp (run steps/make_fbank.sh)")
            if "utt2num_frames" in self.data:
                return self._counts("utt2num_frames", int)
            return [self._features(u).shape[0] for u in self.utterances]
        return self._audio_lengths()

    def _audio_lengths(self) -> list[int]:
        if "utt2num_samples" in self.data:  # counts at the audio's rate, as it is read at the model's
            scale = self.sample_rate / self._audio_rate
            return [int(round(count * scale)) for count in self._counts("utt2num_samples", int)]
        if "utt2dur" in self.data:
            durations = self._counts("utt2dur", float)
            return [int(round(seconds * self.sample_rate)) for seconds in durations]
        lengths = []
        for utt in self.utterances:
            entry, seg = self._audio_entry(utt)
            try:
                frames, rate = entry_info(entry)
            except AudioError as err:
                raise AudioError(f"{self._audio_where(utt)}: {err}") from err
            seconds = (seg.end if seg and seg.end > 0 else frames / rate) - (seg.start if seg else 0.0)
            lengths.append(int(round(seconds * self.sample_rate)))
        return lengths

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, index: int) -> tuple[str, torch.Tensor, torch.Tensor | None]:
        utt = self.utterances[index]
        if self.input_kind == "fbank" and self.fbank_bins is None:
            inputs = torch.from_numpy(np.array(self._features(utt), dtype=np.float32))
            if inputs.shape[1] != self._stored_bins:   # a dir combined from feature dirs of other configs
                raise DataDirError(f"{self._where('feats.scp', utt)}: utterance '{utt}' has {inputs.shape[1]}-dim "
                                   f"features, the first utterance ('{self.utterances[0]}') {self._stored_bins}: "
                                   f"make the features of the whole dir with one config")
        else:
            entry, seg = self._audio_entry(utt)
            try:
                samples, _ = load_entry(entry, *(seg.start, seg.end) if seg else (0.0, -1.0),
                                        sample_rate=self.sample_rate)
            except AudioError as err:
                raise AudioError(f"{self._audio_where(utt)}: {err}") from err
            inputs = torch.from_numpy(samples)
            if self.fbank_bins is not None:
                inputs = waveform_to_fbank(inputs[None], torch.tensor([len(inputs)]), self.fbank_bins)[0][0]
        targets = None if self.targets is None else torch.as_tensor(np.asarray(self.targets[utt]), dtype=torch.long)
        return utt, inputs, targets


@dataclass
class Batch:
    """A padded batch. inputs: (B, T) waveforms or (B, T, D) features; targets: (B, L) or (B, L, K), pad -100."""

    utterances: list[str]
    inputs: torch.Tensor
    lengths: torch.Tensor
    targets: torch.Tensor | None = None
    target_lengths: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return len(self.utterances)


def collate(items) -> Batch:
    """Pad a list of ``(utt, inputs, targets)`` into a :class:`Batch` (inputs padded with zeros)."""
    utts, inputs, targets = zip(*items)
    lengths = torch.tensor([x.shape[0] for x in inputs], dtype=torch.long)
    padded = torch.nn.utils.rnn.pad_sequence(list(inputs), batch_first=True)
    if targets[0] is None:
        return Batch(list(utts), padded, lengths)
    target_lengths = torch.tensor([len(t) for t in targets], dtype=torch.long)
    padded_targets = torch.nn.utils.rnn.pad_sequence(list(targets), batch_first=True, padding_value=IGNORE_INDEX)
    return Batch(list(utts), padded, lengths, padded_targets, target_lengths)


class BucketBatchSampler:
    """Dynamic batches of similar-length utterances, bounded by padded size, reproducible per epoch.

    Each epoch: utterances are sorted by length (ties broken at random), cut into batches whose
    ``count × longest`` stays within ``max_frames``, and the batch order is shuffled, all from
    a generator seeded with ``(seed, epoch)``. With ``world_size`` > 1 each rank takes every
    ``world_size``-th batch (the list is cut to a multiple of ``world_size``).

    Args:
        lengths: input length (frames or samples) of each item.
        max_frames: padded size bound of a batch, in the same unit; a longer item is a batch alone.
        max_batch_size: optional bound on the number of items.
    """

    def __init__(self, lengths, max_frames: int, seed: int = 0, shuffle: bool = True,
                 rank: int = 0, world_size: int = 1, max_batch_size: int | None = None):
        self.lengths = list(lengths)
        self.max_frames = max_frames
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.max_batch_size = max_batch_size or len(self.lengths)

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches of ``epoch`` (lists of item indices), in order."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        lengths = torch.tensor(self.lengths, dtype=torch.float64)
        if self.shuffle:
            lengths = lengths + torch.rand(len(self.lengths), generator=generator, dtype=torch.float64) * 0.5
        order = torch.argsort(lengths).tolist()
        batches, current, longest = [], [], 0
        for index in order:
            longest_if_added = max(longest, self.lengths[index])
            if current and (longest_if_added * (len(current) + 1) > self.max_frames
                            or len(current) >= self.max_batch_size):
                batches.append(current)
                current, longest_if_added = [], self.lengths[index]
            current.append(index)
            longest = longest_if_added
        if current:
            batches.append(current)
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        return rank_share(batches, self.rank, self.world_size)


class LanguageBatchSampler:
    """Single-language batches, the language of each drawn with ``p_l ∝ n_l^alpha`` (XLS-R, WavLabLM).

    ``n_l`` is language ``l``'s share of the input (summed lengths): ``alpha`` 1 samples by amount of
    data, 0 uniformly over languages, in between upsamples the low-resource ones. Each epoch, every
    language's utterances are cut into batches as :class:`BucketBatchSampler` cuts them; the epoch then
    holds as many batches as all languages together, each drawing its language from ``p_l`` and taking
    that language's next batch (a language whose batches run out starts a new, reshuffled pass). All of
    it comes from generators seeded with ``(seed, epoch)``, so the trainer's (epoch, batch) position
    resumes it exactly. Unshuffled (validation), every language's batches come once, language by language.

    Args:
        lengths, max_frames, seed, shuffle, rank, world_size, max_batch_size: as :class:`BucketBatchSampler`.
        languages: the language of each item.
        alpha: the sampling temperature's exponent.
        weights: optional factor per language on ``n_l^alpha`` (the data mix; 0 leaves a language out,
            an unnamed language keeps 1).
    """

    def __init__(self, lengths, languages: Sequence[str], max_frames: int, alpha: float, seed: int = 0,
                 shuffle: bool = True, rank: int = 0, world_size: int = 1, max_batch_size: int | None = None,
                 weights: dict[str, float] | None = None):
        self.max_frames = max_frames
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.items = {lang: [i for i, item_lang in enumerate(languages) if item_lang == lang]
                      for lang in sorted(set(languages))}
        lengths = list(lengths)
        self.buckets = {lang: BucketBatchSampler([lengths[i] for i in items], max_frames, seed * 1_009 + k, shuffle,
                                                 max_batch_size=max_batch_size)
                        for k, (lang, items) in enumerate(self.items.items())}
        amounts = torch.tensor([float(sum(lengths[i] for i in items)) for items in self.items.values()],
                               dtype=torch.float64)
        unknown = sorted(set(weights or {}) - set(self.items))
        if unknown:
            raise ValueError(f"language weights name {unknown}, which the data does not have ({sorted(self.items)})")
        mix = amounts ** alpha * torch.tensor([float((weights or {}).get(lang, 1.0)) for lang in self.items],
                                              dtype=torch.float64)
        if not mix.sum() > 0:
            raise ValueError(f"language weights {weights} leave no language to draw from")
        self.probabilities = dict(zip(self.items, (mix / mix.sum()).tolist()))

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches of ``epoch`` (lists of item indices), in order."""
        def language_pass(lang: str, n: int) -> list[list[int]]:  # pass n of the language's batches this epoch
            items = self.items[lang]
            return [[items[i] for i in batch] for batch in self.buckets[lang].epoch_batches(epoch * 1_000 + n)]

        if not self.shuffle:
            return rank_share([batch for lang in self.items for batch in language_pass(lang, 0)], self.rank,
                              self.world_size)
        queues = {lang: deque(language_pass(lang, 0)) for lang in self.items}
        passes = dict.fromkeys(self.items, 1)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        drawn = torch.multinomial(torch.tensor(list(self.probabilities.values()), dtype=torch.float64),
                                  sum(len(queue) for queue in queues.values()), replacement=True, generator=generator)
        batches = []
        for lang in (list(self.items)[i] for i in drawn.tolist()):
            if not queues[lang]:
                queues[lang].extend(language_pass(lang, passes[lang]))
                passes[lang] += 1
            batches.append(queues[lang].popleft())
        return rank_share(batches, self.rank, self.world_size)


def rank_share(batches: list[list[int]], rank: int, world_size: int) -> list[list[int]]:
    """Rank ``rank``'s every ``world_size``-th batch, the list first cut to a multiple of ``world_size``."""
    if world_size == 1:
        return batches
    usable = len(batches) // world_size * world_size
    if usable == 0:
        raise ValueError(f"{len(batches)} batches cannot feed {world_size} ranks")
    return batches[rank:usable:world_size]


def sorted_batches(data: UtteranceDataset, batch_seconds: float) -> torch.utils.data.DataLoader:
    """Every utterance of ``data`` once, in length-sorted batches of at most ``batch_seconds`` of padded input."""
    sampler = BucketBatchSampler(data.lengths, int(batch_seconds * input_rate(data)), shuffle=False)
    return torch.utils.data.DataLoader(data, batch_sampler=sampler.epoch_batches(0), collate_fn=collate)


def input_rate(data: UtteranceDataset) -> int:
    """Input units per second of ``data``: 100 for 10 ms fbank frames, else its sample rate."""
    return 100 if data.input_kind == "fbank" else data.sample_rate
