"""Kaldi-compatible filterbank and MFCC features.

Options are Kaldi's (``compute-fbank-feats`` / ``compute-mfcc-feats``), read from Kaldi
config files (``--num-mel-bins=80`` one per line) and passed to
``torchaudio.compliance.kaldi`` under its names. Waveforms are scaled to the int16 range,
as Kaldi reads them. Options a config leaves out take torchaudio's defaults, which are Kaldi's
binaries' but for three: ``dither`` is 0 (deterministic features; Kaldi's 1); MFCC's ``use_energy``
is false (the first coefficient is the zeroth cepstrum; Kaldi's is the log energy); and
``energy_floor`` is 1 (Kaldi's 0), which floors that log energy, where a config asks for it, in
frames of near digital silence only.

Features equal ``torchaudio.compliance.kaldi``'s up to float rounding (tested to 1e-3) but are
computed faster: the window, mel banks and DCT are made once per extractor rather than per
utterance, frames are a strided view, and the power spectrum is summed from the FFT's real and
imaginary parts instead of a magnitude squared (``bench/fbank.py`` measures it against
torchaudio and fairseq2's native pipeline).

torch and torchaudio are imported where features are computed, not with this module, so
that the commands that only read configs, merge tables or sum CMVN statistics start in a
second instead of the three torch takes to import.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from audiossl.errors import UserError

if TYPE_CHECKING:
    import torch

INT16_SCALE = 32768.0

# Kaldi option name -> (torchaudio keyword, type), shared by fbank and MFCC.
_COMMON_OPTIONS = {
    "sample-frequency": ("sample_frequency", float),
    "frame-length": ("frame_length", float),
    "frame-shift": ("frame_shift", float),
    "dither": ("dither", float),
    "preemphasis-coefficient": ("preemphasis_coefficient", float),
    "remove-dc-offset": ("remove_dc_offset", "bool"),
    "window-type": ("window_type", str),
    "round-to-power-of-two": ("round_to_power_of_two", "bool"),
    "snip-edges": ("snip_edges", "bool"),
    "blackman-coeff": ("blackman_coeff", float),
    "energy-floor": ("energy_floor", float),
    "raw-energy": ("raw_energy", "bool"),
    "num-mel-bins": ("num_mel_bins", int),
    "low-freq": ("low_freq", float),
    "high-freq": ("high_freq", float),
    "vtln-low": ("vtln_low", float),
    "vtln-high": ("vtln_high", float),
    "vtln-warp": ("vtln_warp", float),
    "use-energy": ("use_energy", "bool"),
    "htk-compat": ("htk_compat", "bool"),
}
KALDI_OPTIONS = {
    "fbank": {**_COMMON_OPTIONS, "use-log-fbank": ("use_log_fbank", "bool"), "use-power": ("use_power", "bool")},
    "mfcc": {**_COMMON_OPTIONS, "num-ceps": ("num_ceps", int), "cepstral-lifter": ("cepstral_lifter", float)},
}
_DEFAULTS = {"fbank": {"num_mel_bins": 23, "dither": 0.0}, "mfcc": {"dither": 0.0}}


class FeatureConfigError(UserError, ValueError):
    """A bad Kaldi feature option; the message names the file and line."""


def _convert(value: str, kind, where: str):
    if kind == "bool":
        if value.lower() in ("true", "1"):
            return True
        if value.lower() in ("false", "0"):
            return False
        raise FeatureConfigError(f"{where}: expected true or false, got '{value}'")
    try:
        return kind(value)
    except ValueError:
        raise FeatureConfigError(f"{where}: bad value '{value}'") from None


@dataclass
class FeatureConfig:
    """Which features and with which options (torchaudio keyword names)."""

    kind: str
    options: dict = field(default_factory=dict)

    @classmethod
    def from_kaldi_args(cls, kind: str, lines, source: str = "<options>") -> "FeatureConfig":
        """Parse ``--name=value`` strings (a Kaldi config's lines; ``#`` starts a comment)."""
        if kind not in KALDI_OPTIONS:
            raise FeatureConfigError(f"unknown feature kind '{kind}' (fbank or mfcc)")
        options = dict(_DEFAULTS[kind])
        for number, raw in enumerate(lines, 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            where = f"{source}:{number}"
            name, sep, value = line.partition("=")
            if not name.startswith("--") or not sep:
                raise FeatureConfigError(f"{where}: expected --option=value, got '{line}'")
            name = name[2:].replace("_", "-")
            if name not in KALDI_OPTIONS[kind]:
                raise FeatureConfigError(f"{where}: unknown {kind} option '--{name}'")
            key, typ = KALDI_OPTIONS[kind][name]
            options[key] = _convert(value, typ, where)
        return cls(kind, options)

    @classmethod
    def from_file(cls, kind: str, path: str | os.PathLike | None) -> "FeatureConfig":
        """Read a Kaldi config file (UTF-8, a byte order mark skipped); None gives the defaults."""
        if path is None:
            return cls(kind, dict(_DEFAULTS[kind]))
        try:
            with open(path, encoding="utf-8-sig") as f:
                lines = f.readlines()
        except UnicodeDecodeError as err:
            raise FeatureConfigError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}): a Kaldi config "
                                     f"holds lines of --option=value") from None
        return cls.from_kaldi_args(kind, lines, str(path))

    @property
    def sample_rate(self) -> int:
        return int(self.options.get("sample_frequency", 16000))



class FeatureExtractor:
    """Waveform (num_samples,) float in [-1, 1] → Kaldi fbank or MFCC (num_frames, dim) float32.

    Options not set in the config take ``torchaudio.compliance.kaldi``'s defaults. Everything that
    does not depend on the waveform (window, mel banks, DCT, lifter) is computed here, once.
    """

    def __init__(self, config: FeatureConfig):
        import inspect

        import torch
        import torchaudio.compliance.kaldi as kaldi_compliance
        import torchaudio.functional

        self.config = config
        reference = kaldi_compliance.fbank if config.kind == "fbank" else kaldi_compliance.mfcc
        o = {name: p.default for name, p in inspect.signature(reference).parameters.items()
             if p.default is not inspect.Parameter.empty}
        o.update(config.options)
        self.options = o
        rate = o["sample_frequency"]
        self.shift = int(rate * o["frame_shift"] / 1000)
        self.window_size = int(rate * o["frame_length"] / 1000)
        self.fft_size = (1 << (self.window_size - 1).bit_length()) if o["round_to_power_of_two"] else self.window_size
        if self.shift < 1 or self.window_size < 2 or self.fft_size % 2:
            raise FeatureConfigError(f"frame length {o['frame_length']} ms and shift {o['frame_shift']} ms at "
                                     f"{rate} Hz give no usable window (an even FFT size is needed)")
        self.window = _window(o["window_type"], self.window_size, o["blackman_coeff"])
        try:
            banks, _ = kaldi_compliance.get_mel_banks(o["num_mel_bins"], self.fft_size, rate, o["low_freq"],
                                                      o["high_freq"], o["vtln_low"], o["vtln_high"], o["vtln_warp"])
        except AssertionError as err:
            raise FeatureConfigError(f"mel banks: {err}") from None
        empty = int((banks.abs().sum(1) == 0).sum())
        if empty:  # Kaldi refuses such banks; torchaudio (and this) give constant columns
            warnings.warn(f"{empty} of {o['num_mel_bins']} mel bins hold no FFT bin at {rate:g} Hz with a "
                          f"{self.fft_size}-point FFT: their columns are constant (log of the floor); fewer "
                          "--num-mel-bins or a longer --frame-length fill them", stacklevel=2)
        self.mel_blocks = _banded_blocks(torch.nn.functional.pad(banks, (0, 1)).T)
        self.epsilon = torch.finfo(torch.float32).eps
        # Kaldi floors the log energy where the floor is above 0 and leaves it be otherwise
        self.log_energy_floor = math.log(o["energy_floor"]) if o["energy_floor"] > 0.0 else None
        self.dct = self.lifter = None
        if config.kind == "mfcc":
            if not 1 <= o["num_ceps"] <= o["num_mel_bins"]:
                raise FeatureConfigError(f"--num-ceps={o['num_ceps']}: from 1 to --num-mel-bins={o['num_mel_bins']} "
                                         f"cepstra are computed")
            dct = torchaudio.functional.create_dct(o["num_mel_bins"], o["num_mel_bins"], "ortho")
            dct[:, 0] = math.sqrt(1 / o["num_mel_bins"])  # Kaldi's C0: a plain scaled sum
            self.dct = dct[:, :o["num_ceps"]].contiguous()
            i = torch.arange(o["num_ceps"])
            self.lifter = 1.0 + 0.5 * o["cepstral_lifter"] * torch.sin(math.pi * i / o["cepstral_lifter"]) \
                if o["cepstral_lifter"] != 0.0 else None
        self._buffers: dict[str, torch.Tensor] = {}

    def __call__(self, samples: np.ndarray, seed: int = 0) -> np.ndarray:
        """``seed``: of the dither's noise (give each utterance its own, e.g. from its id)."""
        import torch

        if len(samples) < self.window_size:
            raise ValueError(f"{len(samples)} samples is shorter than one {self.window_size}-sample window")
        samples = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
        return self.compute(torch.mul(samples, INT16_SCALE, out=self._scratch("wav", samples.shape, samples)),
                            seed).numpy()

    def compute(self, wav: torch.Tensor, seed: int | None = None) -> torch.Tensor:
        """(num_samples,) float32 at the int16 scale → (num_frames, dim) features (a new tensor; the
        arrays between live in buffers kept from call to call). The dither's noise is drawn from a generator
        seeded with ``seed``, or from torch's global one (None)."""
        import torch

        o = self.options
        if self.window.device != wav.device:
            self._move_to(wav.device)
        frames = self._frames(wav)
        count = len(frames)
        if o["dither"] != 0.0:
            generator = None if seed is None else torch.Generator(wav.device).manual_seed(seed)
            frames = frames + torch.randn(frames.shape, generator=generator, dtype=frames.dtype,
                                          device=frames.device) * o["dither"]
        if o["remove_dc_offset"]:
            frames = torch.sub(frames, frames.mean(1, keepdim=True), out=self._scratch("centred", frames.shape, wav))
        want_energy = o["use_energy"]
        if want_energy and o["raw_energy"]:
            log_energy = self._log_energy(frames)
        padded = self._scratch("padded", (count, self.fft_size), wav)   # the FFT's input: past the window, zeros
        body = padded[:, :self.window_size]
        coefficient = o["preemphasis_coefficient"]
        if coefficient != 0.0:   # x[j] - c x[j-1] (x[-1] = x[0]), rounded as torchaudio rounds it
            torch.mul(frames[:, :-1], coefficient, out=body[:, 1:])
            torch.sub(frames[:, 1:], body[:, 1:], out=body[:, 1:])
            torch.sub(frames[:, 0], frames[:, 0] * coefficient, out=body[:, 0])
        else:
            body.copy_(frames)
        body.mul_(self.window)
        if want_energy and not o["raw_energy"]:
            log_energy = self._log_energy(body)
        bins = (count, self.fft_size // 2 + 1)
        spectrum = _power(torch.fft.rfft(padded, out=self._scratch("spectrum", bins, wav, torch.complex64)),
                          self._scratch("power", bins, wav), self._scratch("power_part", bins, wav))
        mfcc = self.config.kind == "mfcc"
        if not (mfcc or o["use_power"]):
            spectrum = spectrum.sqrt()
        feats = spectrum.new_empty(count, o["num_mel_bins"])
        for first, last, columns, block in self.mel_blocks:
            torch.mm(spectrum[:, first:last], block, out=feats[:, columns])
        if mfcc or o["use_log_fbank"]:
            feats = feats.clamp_min_(self.epsilon).log_()
        if mfcc:
            return self._cepstra(feats, log_energy if want_energy else None)
        if want_energy:
            parts = (feats, log_energy[:, None]) if o["htk_compat"] else (log_energy[:, None], feats)
            feats = torch.cat(parts, 1)
        return feats

    def _scratch(self, name: str, shape: tuple[int, ...], like: torch.Tensor, dtype: torch.dtype | None = None
                 ) -> torch.Tensor:
        """A ``shape`` view of the buffer ``name``, kept between calls on ``like``'s device and grown (with
        zeros) when too small: fresh arrays of every utterance's size would cost page faults of about
        the time of the arithmetic. Values last written stay, so a buffer's never-written part stays zero.
        Buffers are normal tensors even when made under ``torch.inference_mode``, so later calls outside
        it may still write them."""
        import torch

        dtype = dtype or like.dtype
        size = math.prod(shape)
        buffer = self._buffers.get(name)
        if buffer is None or buffer.numel() < size or buffer.device != like.device or buffer.dtype != dtype:
            with torch.inference_mode(False):
                buffer = self._buffers[name] = torch.zeros(size, dtype=dtype, device=like.device)
        return buffer[:size].view(shape)

    def _move_to(self, device: torch.device) -> None:
        """The precomputed tensors on ``device`` (the waveforms' device), once."""
        for name in ("window", "dct", "lifter"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.to(device))
        self.mel_blocks = [(first, last, columns, block.to(device)) for first, last, columns, block in self.mel_blocks]

    def _frames(self, wav: torch.Tensor) -> torch.Tensor:
        """(num_samples,) → (num_frames, window_size): a strided view with snip-edges, else reflected ends."""
        import torch

        size, shift = self.window_size, self.shift
        if self.options["snip_edges"]:
            count = 1 + (len(wav) - size) // shift
        else:
            count = (len(wav) + shift // 2) // shift
            pad = size // 2 - shift // 2
            reversed_wav = wav.flip(0)
            wav = torch.cat((reversed_wav[-pad:], wav, reversed_wav)) if pad > 0 else \
                torch.cat((wav[-pad:], reversed_wav))
        return wav.as_strided((count, size), (shift, 1))

    def _log_energy(self, frames: torch.Tensor) -> torch.Tensor:
        energy = frames.square().sum(1).clamp_min(self.epsilon).log()
        return energy if self.log_energy_floor is None else energy.clamp_min(self.log_energy_floor)

    def _cepstra(self, log_mel: torch.Tensor, log_energy: torch.Tensor | None) -> torch.Tensor:
        """Kaldi MFCC from log mel energies: DCT, lifter, C0 replaced by the energy where asked."""
        import torch

        o = self.options
        feats = log_mel @ self.dct
        if self.lifter is not None:
            feats = feats * self.lifter
        if o["use_energy"]:
            feats[:, 0] = log_energy
        if o["htk_compat"]:
            c0 = feats[:, :1] if o["use_energy"] else feats[:, :1] * math.sqrt(2)
            feats = torch.cat((feats[:, 1:], c0), 1)
        return feats


def _banded_blocks(banks: torch.Tensor, width: int = 16) -> list[tuple[int, int, slice, torch.Tensor]]:
    """(fft bins, mel bins) triangular filters as blocks of about ``width`` consecutive mel bins, each
    with the FFT bins where any of them is non-zero: ``[(first, last, mel bins, (last - first, bins))]``.
    The blocks' products give the full product's values (the zeros left out add nothing) in a fraction
    of its multiplications, as mel filters are narrow at low frequencies; 16 columns a block (one
    AVX-512 register) was the fastest split measured for 40 to 128 bins on an AVX-512 EPYC."""
    import torch

    blocks = []
    for columns in torch.arange(banks.shape[1]).tensor_split(max(1, banks.shape[1] // width)):
        nonzero = torch.nonzero(banks[:, columns].abs().sum(1)).flatten()
        first, last = (int(nonzero[0]), int(nonzero[-1]) + 1) if len(nonzero) else (0, 1)
        blocks.append((first, last, slice(int(columns[0]), int(columns[-1]) + 1),
                       banks[first:last, columns].contiguous()))
    return blocks


def _power(spectrum: torch.Tensor, out: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """``|X|^2`` of a complex spectrum into ``out`` (float32, its shape; ``scratch`` the same). On the
    CPU through NumPy, whose complex element-wise operations are several times faster than torch's
    here (see bench/fbank.py)."""
    import torch

    if spectrum.is_cpu:
        values, power, imaginary = spectrum.numpy(), out.numpy(), scratch.numpy()
        np.square(values.real, out=power)
        power += np.square(values.imag, out=imaginary)
        return out
    return torch.sum(torch.view_as_real(spectrum).square(), -1, out=out)


def _window(kind: str, size: int, blackman_coeff: float) -> torch.Tensor:
    """Kaldi's analysis windows (size,), as ``torchaudio.compliance.kaldi`` makes them."""
    import torch

    if kind == "hanning":
        return torch.hann_window(size, periodic=False)
    if kind == "hamming":
        return torch.hamming_window(size, periodic=False, alpha=0.54, beta=0.46)
    if kind == "povey":
        return torch.hann_window(size, periodic=False).pow(0.85)
    if kind == "rectangular":
        return torch.ones(size)
    if kind == "blackman":
        a = 2 * math.pi / (size - 1)
        n = torch.arange(size, dtype=torch.float32)
        return blackman_coeff - 0.5 * torch.cos(a * n) + (0.5 - blackman_coeff) * torch.cos(2 * a * n)
    raise FeatureConfigError(f"unknown window type '{kind}' (hamming, hanning, povey, rectangular or blackman)")


def add_deltas(features: np.ndarray, order: int = 2, window: int = 2) -> np.ndarray:
    """Kaldi ``add-deltas``: append deltas up to ``order``; (frames, dim) → (frames, dim * (order + 1)).

    Uses Kaldi's regression window of ``2 * window + 1`` frames, edge frames replicated.
    """
    import torch
    import torchaudio.functional

    feats = torch.from_numpy(np.array(features, dtype=np.float32)).T.unsqueeze(0)  # (1, dim, frames)
    out = [feats]
    for _ in range(order):
        out.append(torchaudio.functional.compute_deltas(out[-1], win_length=2 * window + 1, mode="replicate"))
    return torch.cat(out, dim=1)[0].T.contiguous().numpy()
