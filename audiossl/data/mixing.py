"""Utterance and noise mixing of waveform batches: WavLM's denoising augmentation, UniSpeech-SAT's speaker-aware mixing.

Each utterance of a training batch is, with probability ``prob``, overlapped with a region
of a secondary signal: another utterance of the same batch, or (with probability
``noise_prob`` among mixed utterances, given a :class:`NoiseBank`) a noise clip. The targets
stay those of the primary utterance, so the model learns to predict the primary speaker's
units through the interference (WavLM's "denoising masked speech modeling").

Follows Microsoft's released reference, ``mixing_collated_audios`` in ``microsoft/UniSpeech``
``UniSpeech-SAT/fairseq/data/audio/unispeech_sat_dataset.py`` (WavLM's own pretraining code
is not public: ``microsoft/unilm/wavlm`` holds the model only): one secondary per mixed
utterance; an overlap of at most half the primary utterance, at a random position in the
primary and taken from a random position of the secondary; energy ratios drawn uniformly
from −5…5 dB (speech) and −5…20 dB (noise); a silent secondary is not mixed in. Noise, as
in the reference, covers a random part of the primary under the same overlap bound (and at
most the clip's length) rather than all of it: every mixed utterance keeps a clean stretch,
the primary stays the dominant source its unchanged targets describe, and speech and noise
share one code path. Energies are, as the reference's, the mean powers of the whole primary (its valid samples)
and of the whole secondary utterance or noise clip: an overlap that falls on the primary's
silence still adds the interference at its level (measuring over the overlap would scale it
to that silence). It differs from the reference where this pipeline needs it to:

- the overlap is drawn per item from its valid samples (the reference crops a batch to one
  length), the secondary is never the primary itself, and secondaries are taken from the
  batch as it came in (the reference mixes in place, so a secondary may already be mixed);
- all randomness comes from the given generator (the reference uses numpy's global one).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import torch

from audiossl.audio import SAMPLE_RATE, AudioError, load_entry
from audiossl.data.dataset import Batch
from audiossl.data.kaldi_dir import DataDir, DataDirError
from audiossl.data.transforms import BatchTransform
from audiossl.errors import ConfigError
from audiossl.nn.frontends import valid_mask

SILENCE_POWER = 1e-9
"""Mean power (of samples in [-1, 1]) below which a signal counts as silent: −90 dB re full scale."""


class NoiseBank:
    """The noise clips of a Kaldi data dir, decoded once into memory at ``sample_rate`` (the model's, 16 kHz
    by default: clips at other rates are resampled, as the training audio is).

    Every utterance of the dir (``wav.scp``, with ``segments`` if present) is a clip; silent
    clips (mean power under :data:`SILENCE_POWER`) are dropped. A dir that is missing, has no
    recordings, holds undecodable audio or only silent clips raises :class:`DataDirError`
    naming the dir.

    Attributes:
        samples: (total,) float32, all clips end to end.
        offsets, lengths: (num_clips,) int64, where each clip starts in ``samples`` and its length.
        powers: (num_clips,) float64 mean power of each clip.
    """

    def __init__(self, data_dir: str | os.PathLike, sample_rate: int = SAMPLE_RATE):
        self.data_dir = Path(data_dir)
        self.sample_rate = sample_rate
        if not self.data_dir.is_dir():
            raise DataDirError(f"noise dir {self.data_dir}: not a directory")
        data = DataDir.read(self.data_dir)
        if "wav.scp" not in data or not data.utterances:
            raise DataDirError(f"noise dir {self.data_dir}: no recordings (wav.scp missing or empty)")
        clips = [self._load(data, utt) for utt in data.utterances]
        audible = [clip for clip in clips if clip.size and np.mean(np.square(clip, dtype=np.float64)) >= SILENCE_POWER]
        if not audible:
            raise DataDirError(f"noise dir {self.data_dir}: all {len(clips)} clips are silent "
                               f"(mean power under {10 * np.log10(SILENCE_POWER):.0f} dB re full scale)")
        self.lengths = torch.tensor([clip.size for clip in audible], dtype=torch.long)
        self.offsets = torch.cumsum(self.lengths, 0) - self.lengths
        self.samples = torch.from_numpy(np.concatenate(audible))
        self.powers = torch.tensor([np.mean(np.square(clip, dtype=np.float64)) for clip in audible])

    def _load(self, data: DataDir, utt: str) -> np.ndarray:
        try:
            entry, seg = data.audio_entry(utt)
            samples, _ = load_entry(entry, *(seg.start, seg.end) if seg else (), sample_rate=self.sample_rate)
        except KeyError as err:
            raise DataDirError(f"noise dir {self.data_dir}: utterance '{utt}': no wav.scp entry {err}") from err
        except AudioError as err:
            raise DataDirError(f"noise dir {self.data_dir}: utterance '{utt}': {err}") from err
        return samples

    def __len__(self) -> int:
        return len(self.lengths)

    def windows(self, clips: torch.Tensor, starts: torch.Tensor, width: int) -> torch.Tensor:
        """Samples ``starts … starts + width`` of ``clips`` (both (N,)): (N, width), clamped at the bank's end."""
        positions = self.offsets[clips, None] + starts[:, None] + torch.arange(width)
        return self.samples[positions.clamp(max=len(self.samples) - 1)]

    def __repr__(self) -> str:
        return f"NoiseBank('{self.data_dir}', {len(self)} clips, {len(self.samples) / self.sample_rate:.1f} s)"


@dataclasses.dataclass
class MixPlan:
    """The mixing drawn for a batch: one entry per mixed item, each (N,) on the CPU.

    Item ``rows[n]`` gets, at samples ``primary_starts[n] … + overlaps[n]``, the samples
    ``secondary_starts[n] … + overlaps[n]`` of noise clip ``clips[n]`` (where ``use_noise[n]``)
    or else of batch item ``partners[n]``, scaled to ``ratios_db[n]`` (primary:secondary).
    """

    rows: torch.Tensor
    partners: torch.Tensor
    clips: torch.Tensor
    use_noise: torch.Tensor
    overlaps: torch.Tensor
    primary_starts: torch.Tensor
    secondary_starts: torch.Tensor
    ratios_db: torch.Tensor


class UtteranceMixing(BatchTransform):
    """Mixes utterances of a waveform batch with other utterances of the batch or with noise; training only.

    Inputs are waveforms ``(B, S)`` at the noise bank's rate with ``batch.lengths`` valid samples (place
    :class:`~audiossl.data.transforms.FbankFromWaveform` after this transform for fbank
    models). Only valid samples change: padding, lengths and targets stay as they are.

    Args:
        prob: probability that an utterance is mixed (reference ``mixing_prob``, 0.2).
        noise: noise clips; without them every mixed utterance gets speech.
        noise_prob: fraction of mixed utterances that get noise rather than speech, given
            ``noise`` (reference ``mixing_noise_prob``, off unless set; here 0.5).
        speech_ratio_db: range of the primary:secondary energy ratio for speech, drawn
            uniformly (the reference's hard-coded −5…5 dB).
        noise_ratio_db: the same for noise (the reference's hard-coded −5…20 dB).
        max_overlap: longest overlap as a fraction of the primary's valid length (reference
            ``mixing_max_len``: the overlap is at most ``T // mixing_max_len``, ``T // 2`` by default).
        speakers: ``{utt: speaker}`` for UniSpeech-SAT's speaker-aware mixing: the secondary
            utterance is of another speaker. Every batch utterance must have a speaker.

    An utterance drawn for speech mixing with no partner in its batch (a batch of one, or no
    other speaker) stays as it is, rather than getting noise, so that ``noise_prob`` stays the
    fraction of noise among the mixing draws.
    """

    training_only = True

    def __init__(self, prob: float = 0.2, noise: NoiseBank | None = None, noise_prob: float = 0.5,
                 speech_ratio_db: tuple[float, float] = (-5.0, 5.0), noise_ratio_db: tuple[float, float] = (-5.0, 20.0),
                 max_overlap: float = 0.5, speakers: dict[str, str] | None = None):
        for name, value in (("prob", prob), ("noise_prob", noise_prob)):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"UtteranceMixing: {name} must be in [0, 1], got {value}")
        if not 0.0 < max_overlap <= 1.0:
            raise ConfigError(f"UtteranceMixing: max_overlap must be in (0, 1], got {max_overlap}")
        for name, (low, high) in (("speech_ratio_db", speech_ratio_db), ("noise_ratio_db", noise_ratio_db)):
            if low > high:
                raise ConfigError(f"UtteranceMixing: {name} must be (low, high) with low <= high, got ({low}, {high})")
        self.prob = prob
        self.noise = noise
        self.noise_prob = noise_prob
        self.speech_ratio_db = (float(speech_ratio_db[0]), float(speech_ratio_db[1]))
        self.noise_ratio_db = (float(noise_ratio_db[0]), float(noise_ratio_db[1]))
        self.max_overlap = max_overlap
        self.speakers = speakers

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        inputs = batch.inputs
        if inputs.ndim != 2 or not inputs.is_floating_point():
            raise ValueError(f"UtteranceMixing expects float waveforms (B, S), "
                             f"got shape {tuple(inputs.shape)} of {inputs.dtype}")
        plan = self.draw(batch.utterances, batch.lengths.cpu(), generator)
        if not len(plan.rows):
            return batch
        device = inputs.device
        rows, partners, use_noise = plan.rows.to(device), plan.partners.to(device), plan.use_noise.to(device)
        offsets = torch.arange(int(plan.overlaps.max()))
        in_overlap = (offsets < plan.overlaps[:, None]).to(device)
        primary_positions = (plan.primary_starts[:, None] + offsets).clamp(max=inputs.shape[1] - 1).to(device)
        secondary_positions = (plan.secondary_starts[:, None] + offsets).clamp(max=inputs.shape[1] - 1).to(device)
        primary = inputs[rows[:, None], primary_positions]
        secondary = inputs[partners[:, None], secondary_positions]
        powers = signal_powers(inputs, batch.lengths.to(device))  # (B,) of every utterance, valid samples only
        secondary_powers = powers[partners]
        if plan.use_noise.any():
            clips = plan.clips[plan.use_noise]
            noise = self.noise.windows(clips, plan.secondary_starts[plan.use_noise], len(offsets))
            secondary[use_noise] = noise.to(device, inputs.dtype)
            secondary_powers[use_noise] = self.noise.powers[clips].to(device, secondary_powers.dtype)
        scale = mixing_scale(powers[rows], secondary_powers, plan.ratios_db.to(device))
        mixed = inputs.clone()
        overlap_index = (rows[:, None].expand_as(in_overlap)[in_overlap], primary_positions[in_overlap])
        mixed[overlap_index] = (primary + scale[:, None].to(inputs.dtype) * secondary)[in_overlap]
        return dataclasses.replace(batch, inputs=mixed)

    def draw(self, utterances: list[str], lengths: torch.Tensor, generator: torch.Generator) -> MixPlan:
        """The mixing of a batch of ``utterances`` with ``lengths`` (B,) valid samples, drawn from ``generator``.

        Seven uniforms per item are drawn whatever is used, so the generator advances alike every call.
        """
        size = len(utterances)
        mix_u, noise_u, secondary_u, overlap_u, primary_u, start_u, ratio_u = torch.rand(
            (7, size), generator=generator, dtype=torch.float64)
        candidates = self._partner_candidates(utterances, lengths)
        counts = candidates.sum(1)
        picks = (secondary_u * counts).long()
        partners = (candidates.cumsum(1) > picks[:, None]).long().argmax(1)  # the picks-th candidate of each row
        secondary_lengths = lengths[partners]
        use_noise = torch.zeros(size, dtype=torch.bool)
        clips = torch.zeros(size, dtype=torch.long)
        if self.noise is not None:
            use_noise = noise_u < self.noise_prob
            clips = (secondary_u * len(self.noise)).long()
            secondary_lengths = torch.where(use_noise, self.noise.lengths[clips], secondary_lengths)

        longest = torch.minimum((lengths * self.max_overlap).floor().long(), secondary_lengths)
        rows = ((mix_u < self.prob) & (use_noise | (counts > 0)) & (longest >= 1)).nonzero().squeeze(1)
        overlaps = 1 + (overlap_u[rows] * longest[rows]).long()
        ranges = torch.tensor([self.speech_ratio_db, self.noise_ratio_db], dtype=torch.float64)[use_noise[rows].long()]
        return MixPlan(
            rows=rows, partners=partners[rows], clips=clips[rows], use_noise=use_noise[rows], overlaps=overlaps,
            primary_starts=(primary_u[rows] * (lengths[rows] - overlaps + 1)).long(),
            secondary_starts=(start_u[rows] * (secondary_lengths[rows] - overlaps + 1)).long(),
            ratios_db=ranges[:, 0] + ratio_u[rows] * (ranges[:, 1] - ranges[:, 0]))

    def _partner_candidates(self, utterances: list[str], lengths: torch.Tensor) -> torch.Tensor:
        """(B, B) bool: whether item j may be the speech secondary of item i (another, non-empty, of another speaker)."""
        candidates = ~torch.eye(len(utterances), dtype=torch.bool) & (lengths > 0)[None, :]
        if self.speakers is None:
            return candidates
        missing = [utt for utt in utterances if utt not in self.speakers]
        if missing:
            raise DataDirError(f"speaker-aware mixing: no speaker for {len(missing)} utterance(s) of the batch, "
                               f"e.g. '{missing[0]}'")
        codes: dict[str, int] = {}
        speaker_ids = torch.tensor([codes.setdefault(self.speakers[utt], len(codes)) for utt in utterances])
        return candidates & (speaker_ids[:, None] != speaker_ids[None, :])

    def __repr__(self) -> str:
        parts = [f"prob={self.prob}", f"speech_ratio_db={self.speech_ratio_db}", f"max_overlap={self.max_overlap}"]
        if self.noise is not None:
            parts += [f"noise={self.noise!r}", f"noise_prob={self.noise_prob}", f"noise_ratio_db={self.noise_ratio_db}"]
        if self.speakers is not None:
            parts.append(f"speakers={len(set(self.speakers.values()))} speakers of {len(self.speakers)} utterances")
        return f"UtteranceMixing({', '.join(parts)})"


def signal_powers(inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B,) float64 mean power of each item of ``inputs`` (B, S) over its ``lengths`` (B,) valid samples."""
    return (inputs.double().square() * valid_mask(lengths, inputs.shape[1])).sum(1) / lengths.clamp(min=1)


def mixing_scale(primary_power: torch.Tensor, secondary_power: torch.Tensor, ratios_db: torch.Tensor) -> torch.Tensor:
    """Gains (N,) that put a secondary of mean power ``secondary_power`` (N,) ``ratios_db`` (N,) below a
    primary of ``primary_power`` (N,): 10·log10(P_primary / (gain² P_secondary)) = ratio. A silent
    secondary (under :data:`SILENCE_POWER`) gets gain 0, never inf or NaN.
    """
    gain = torch.sqrt(primary_power / (secondary_power.clamp(min=SILENCE_POWER) * 10.0 ** (ratios_db / 10.0)))
    return torch.where(secondary_power >= SILENCE_POWER, gain, torch.zeros_like(gain))
