"""Utterance and noise mixing (WavLM denoising, UniSpeech-SAT speaker-aware): ranges, bounds, determinism, noise dirs."""
from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile
import torch

from audiossl.data.dataset import Batch, collate
from audiossl.data.kaldi_dir import DataDirError
from audiossl.data.mixing import NoiseBank, UtteranceMixing
from audiossl.data.transforms import Compose, FbankFromWaveform
from audiossl.errors import ConfigError, UserError

LENGTHS = (16000, 12000, 9000, 14000)
UTTERANCES = ("a0", "a1", "b0", "b1")


def signal_batch(signals: list[torch.Tensor], utterances=UTTERANCES) -> Batch:
    """Signals (each (S_i,)) padded into a batch with integer targets of 3 + i labels."""
    return collate([(utt, x, torch.arange(3 + i)) for i, (utt, x) in enumerate(zip(utterances, signals))])


def speech_batch(seed: int = 0) -> Batch:
    """Four Gaussian 'utterances' of LENGTHS samples, each at its own level."""
    generator = torch.Generator().manual_seed(seed)
    levels = (0.3, 0.05, 0.1, 0.2)
    return signal_batch([level * torch.randn(n, generator=generator) for n, level in zip(LENGTHS, levels)])


def write_noise_dir(path, clips: list[tuple[np.ndarray, int]]):
    """A Kaldi dir whose wav.scp lists one wav file per ``(samples, rate)``."""
    path.mkdir()
    lines = []
    for i, (samples, rate) in enumerate(clips):
        soundfile.write(path / f"n{i}.wav", samples, rate)
        lines.append(f"n{i} {path / f'n{i}.wav'}\n")
    (path / "wav.scp").write_text("".join(lines))
    return path


@pytest.fixture
def noise_bank(tmp_path) -> NoiseBank:
    """Two noise clips, 0.5 s at 16 kHz and 0.3 s at 8 kHz, and a silent one that is dropped."""
    rng = np.random.default_rng(0)
    return NoiseBank(write_noise_dir(tmp_path / "noise", [
        (0.1 * rng.standard_normal(8000), 16000),
        (np.zeros(4000), 16000),
        (0.05 * rng.standard_normal(2400), 8000),
    ]))


def overlaps_of(batch: Batch, out: Batch) -> list[tuple[int, int] | None]:
    """Per item, the ``(start, end)`` of its changed samples, or None when unchanged."""
    regions = []
    for changed in (out.inputs != batch.inputs):
        where = changed.nonzero().squeeze(1)
        regions.append((int(where[0]), int(where[-1]) + 1) if len(where) else None)
    return regions


def power(signal: torch.Tensor) -> float:
    return signal.double().square().mean().item()


def ratio_db(batch: Batch, out: Batch, item: int, region: tuple[int, int], window: torch.Tensor,
             secondary: torch.Tensor) -> float:
    """Primary:added energy ratio of ``item``: the whole primary's power against the whole ``secondary``'s
    times the gain that the ``region``'s added samples apply to ``window`` (the secondary's overlapping part)."""
    added = (out.inputs - batch.inputs)[item, region[0]:region[1]].double()
    window = window.double()
    gain = (added @ window) / (window @ window)
    primary = batch.inputs[item, :LENGTHS[item]]
    return 10 * math.log10(power(primary) / (gain.item() ** 2 * power(secondary)))


def test_the_same_generator_state_gives_the_same_output_and_the_global_rng_is_untouched(noise_bank):
    batch = speech_batch()
    transform = UtteranceMixing(prob=1.0, noise=noise_bank)
    global_state = torch.get_rng_state()
    first = transform(batch, torch.Generator().manual_seed(3))
    again = transform(batch, torch.Generator().manual_seed(3))
    other = transform(batch, torch.Generator().manual_seed(4))
    assert torch.equal(first.inputs, again.inputs) and not torch.equal(first.inputs, other.inputs)
    assert torch.equal(global_state, torch.get_rng_state())


def test_prob_zero_is_the_identity(noise_bank):
    batch = speech_batch()
    out = UtteranceMixing(prob=0.0, noise=noise_bank)(batch, torch.Generator().manual_seed(0))
    assert torch.equal(out.inputs, batch.inputs)


def test_prob_one_mixes_every_item_inside_its_valid_samples_only():
    batch = speech_batch()
    before = batch.inputs.clone()
    for seed in range(10):
        out = UtteranceMixing(prob=1.0)(batch, torch.Generator().manual_seed(seed))
        assert all(region is not None for region in overlaps_of(batch, out))
        for item, length in enumerate(LENGTHS):
            assert not out.inputs[item, length:].any()  # padding stays zero
        assert out.utterances == batch.utterances and torch.equal(out.lengths, batch.lengths)
        assert torch.equal(out.targets, batch.targets) and torch.equal(out.target_lengths, batch.target_lengths)
    assert torch.equal(batch.inputs, before)  # the input batch is never modified


def test_speech_overlaps_are_at_most_half_the_primary_at_a_ratio_within_range():
    batch = speech_batch()
    ratios = []
    for seed in range(20):
        transform = UtteranceMixing(prob=1.0)
        out = transform(batch, torch.Generator().manual_seed(seed))
        plan = transform.draw(batch.utterances, batch.lengths, torch.Generator().manual_seed(seed))
        for item, region in enumerate(overlaps_of(batch, out)):
            n = plan.rows.tolist().index(item)
            start, overlap = int(plan.primary_starts[n]), int(plan.overlaps[n])
            assert region == (start, start + overlap)
            partner, partner_start = int(plan.partners[n]), int(plan.secondary_starts[n])
            assert 1 <= overlap <= LENGTHS[item] // 2 and overlap <= LENGTHS[partner]
            window = batch.inputs[partner, partner_start:partner_start + overlap]
            ratios.append(ratio_db(batch, out, item, region, window, batch.inputs[partner, :LENGTHS[partner]]))
            assert ratios[-1] == pytest.approx(float(plan.ratios_db[n]), abs=1e-3)
    assert -5 - 1e-3 <= min(ratios) < -3 and 3 < max(ratios) <= 5 + 1e-3


def test_noise_is_a_scaled_window_of_a_clip_at_a_ratio_within_range(noise_bank):
    assert noise_bank.lengths.tolist() == [8000, 4800]  # the silent clip dropped, 8 kHz resampled to 16 kHz
    batch = speech_batch()
    ratios = []
    for seed in range(20):
        transform = UtteranceMixing(prob=1.0, noise=noise_bank, noise_prob=1.0, noise_ratio_db=(-5.0, 20.0))
        out = transform(batch, torch.Generator().manual_seed(seed))
        plan = transform.draw(batch.utterances, batch.lengths, torch.Generator().manual_seed(seed))
        assert plan.use_noise.all() and plan.rows.tolist() == [0, 1, 2, 3]
        for n, item in enumerate(plan.rows.tolist()):
            start, overlap = int(plan.primary_starts[n]), int(plan.overlaps[n])
            clip, clip_start = int(plan.clips[n]), int(plan.secondary_starts[n])
            assert overlap <= min(LENGTHS[item] // 2, int(noise_bank.lengths[clip]))
            offset = int(noise_bank.offsets[clip]) + clip_start
            window = noise_bank.samples[offset:offset + overlap]
            added = (out.inputs - batch.inputs)[item, start:start + overlap]
            gain = (added @ window) / (window @ window)
            torch.testing.assert_close(added, gain * window, rtol=1e-4, atol=1e-6)
            clip_samples = noise_bank.samples[noise_bank.offsets[clip]:noise_bank.offsets[clip] + noise_bank.lengths[clip]]
            ratios.append(ratio_db(batch, out, item, (start, start + overlap), window, clip_samples))
            assert ratios[-1] == pytest.approx(float(plan.ratios_db[n]), abs=1e-3)
    assert -5 - 1e-3 <= min(ratios) < 0 and 15 < max(ratios) <= 20 + 1e-3


def test_an_overlap_on_the_primary_s_silence_gets_the_interference_at_its_level():
    """Powers are those of the whole signals (the reference's), so silence in the overlap does not mute it."""
    speech = 0.1 * torch.randn(16000, generator=torch.Generator().manual_seed(0))
    speech[:8000] = 0.0  # the first half is silent
    other = 0.1 * torch.randn(16000, generator=torch.Generator().manual_seed(1))
    batch = signal_batch([speech, other], utterances=["quiet", "loud"])
    for seed in range(5):
        out = UtteranceMixing(prob=1.0, max_overlap=0.25)(batch, torch.Generator().manual_seed(seed))
        added = (out.inputs - batch.inputs)[0]
        assert power(added[added != 0]) > power(speech) * 10 ** (-5.5 / 10)  # at most 5 dB above the speech


def test_noise_prob_is_the_fraction_of_mixed_items_that_get_noise(noise_bank):
    transform = UtteranceMixing(prob=0.5, noise=noise_bank, noise_prob=0.25)
    generator = torch.Generator().manual_seed(0)
    lengths = torch.full((16,), 16000)
    plans = [transform.draw([f"u{i}" for i in range(16)], lengths, generator) for _ in range(200)]
    mixed = sum(len(plan.rows) for plan in plans)
    assert mixed / (200 * 16) == pytest.approx(0.5, abs=0.03)
    assert sum(int(plan.use_noise.sum()) for plan in plans) / mixed == pytest.approx(0.25, abs=0.03)
    assert not UtteranceMixing(prob=1.0).draw(["u0", "u1"], lengths[:2], generator).use_noise.any()


def test_speaker_aware_mixing_never_mixes_a_speaker_with_itself():
    # speaker a's utterances are positive, speaker b's negative: what is added to an a-utterance must be negative
    generator = torch.Generator().manual_seed(0)
    signals = [sign * (0.1 + 0.1 * torch.rand(n, generator=generator)) for n, sign in zip(LENGTHS, (1, 1, -1, -1))]
    batch = signal_batch(signals)
    speakers = {"a0": "a", "a1": "a", "b0": "b", "b1": "b"}
    same_speaker_without = 0
    for seed in range(20):
        for transform in (UtteranceMixing(prob=1.0, speakers=speakers), UtteranceMixing(prob=1.0)):
            out = transform(batch, torch.Generator().manual_seed(seed))
            for item, (start, end) in enumerate(overlaps_of(batch, out)):
                added_sign = torch.sign(out.inputs - batch.inputs)[item, start:end]
                if transform.speakers is not None:
                    assert (added_sign == -torch.sign(batch.inputs[item, start:end])).all()
                else:
                    same_speaker_without += int((added_sign == torch.sign(batch.inputs[item, start:end])).all())
    assert same_speaker_without > 0  # without speakers, same-speaker pairs do occur


def test_items_without_a_partner_are_not_mixed_with_speech():
    batch = speech_batch()
    one_speaker = UtteranceMixing(prob=1.0, speakers={utt: "a" for utt in UTTERANCES})
    assert torch.equal(one_speaker(batch, torch.Generator().manual_seed(0)).inputs, batch.inputs)
    alone = signal_batch([batch.inputs[0, :LENGTHS[0]]], utterances=["a0"])
    assert torch.equal(UtteranceMixing(prob=1.0)(alone, torch.Generator().manual_seed(0)).inputs, alone.inputs)
    with pytest.raises(DataDirError, match="no speaker for 1 utterance.*'b1'"):
        UtteranceMixing(prob=1.0, speakers={"a0": "a", "a1": "a", "b0": "b"})(batch, torch.Generator())


def test_silent_items_give_no_nan_and_are_neither_mixed_nor_mixed_in():
    batch = signal_batch([torch.zeros(8000), 0.1 * torch.randn(8000, generator=torch.Generator().manual_seed(0))],
                         utterances=["silent", "speech"])
    for seed in range(5):
        out = UtteranceMixing(prob=1.0)(batch, torch.Generator().manual_seed(seed))
        assert torch.isfinite(out.inputs).all() and torch.equal(out.inputs, batch.inputs)


def test_only_waveforms_are_accepted():
    batch = speech_batch()
    features = signal_batch([torch.zeros(10, 80), torch.zeros(12, 80)], utterances=["a0", "a1"])
    with pytest.raises(ValueError, match=r"waveforms \(B, S\).*\(2, 12, 80\)"):
        UtteranceMixing()(features, torch.Generator())
    with pytest.raises(ValueError, match="torch.int16"):
        UtteranceMixing()(signal_batch([(x * 1000).short() for x in batch.inputs]), torch.Generator())


def test_mixing_runs_before_fbank_in_training_only():
    batch = speech_batch()
    transform = Compose([UtteranceMixing(prob=1.0), FbankFromWaveform()])
    assert transform.active(training=False).transforms == [transform.transforms[1]]
    out = transform(batch, torch.Generator().manual_seed(0))
    assert out.inputs.shape == (4, 98, 80) and torch.isfinite(out.inputs).all()


@pytest.mark.parametrize("make", ["missing", "no wav.scp", "empty wav.scp", "all silent"])
def test_a_noise_dir_without_usable_audio_is_an_error_naming_it(tmp_path, make):
    path = tmp_path / "noise"
    if make == "all silent":
        write_noise_dir(path, [(np.zeros(1600), 16000), (np.full(1600, 1e-6), 16000)])
    elif make != "missing":
        path.mkdir()
        if make == "empty wav.scp":
            (path / "wav.scp").write_text("")
    with pytest.raises(DataDirError, match=f"noise dir {path}: ") as error:
        NoiseBank(path)
    assert isinstance(error.value, UserError)


def test_an_undecodable_noise_file_is_an_error_naming_the_dir_and_utterance(tmp_path):
    path = tmp_path / "noise"
    path.mkdir()
    (path / "broken.wav").write_bytes(b"not audio")
    (path / "wav.scp").write_text(f"n0 {path / 'broken.wav'}\n")
    with pytest.raises(DataDirError, match=f"noise dir {path}: utterance 'n0': cannot decode"):
        NoiseBank(path)


def test_noise_is_read_at_the_rate_of_the_model_it_is_mixed_for(tmp_path):
    """An 8 kHz HuBERT's noise clips are at 8 kHz: they were read at 16 kHz and mixed in at half speed."""
    from audiossl.checkpoint import build_model
    from audiossl.models.hubert import HubertConfig
    from audiossl.tasks.pretrain import pretraining_inputs

    rng = np.random.default_rng(0)
    noise = write_noise_dir(tmp_path / "noise", [(0.1 * rng.standard_normal(16000), 16000),
                                                 (0.1 * rng.standard_normal(4000), 8000)])
    config = HubertConfig.tiny().to_dict()
    config["frontend"]["sample_rate"] = 8000
    inputs = pretraining_inputs(build_model("hubert", config), {"prob": 1.0, "noise_prob": 1.0}, str(noise), str(noise))
    bank = inputs.transform.transforms[0].noise
    assert bank.lengths.tolist() == [8000, 4000] and repr(bank).endswith("2 clips, 1.5 s)")


@pytest.mark.parametrize("options", [{"prob": 1.5}, {"noise_prob": -0.1}, {"max_overlap": 0.0},
                                     {"speech_ratio_db": (5.0, -5.0)}])
def test_bad_options_are_config_errors(options):
    with pytest.raises(ConfigError, match=next(iter(options))):
        UtteranceMixing(**options)


def test_repr_names_every_setting(noise_bank):
    assert repr(UtteranceMixing()) == "UtteranceMixing(prob=0.2, speech_ratio_db=(-5.0, 5.0), max_overlap=0.5)"
    speakers = {"a0": "a", "a1": "a", "b0": "b"}
    text = repr(UtteranceMixing(prob=0.1, noise=noise_bank, noise_prob=0.3, speakers=speakers))
    assert text == (f"UtteranceMixing(prob=0.1, speech_ratio_db=(-5.0, 5.0), max_overlap=0.5, "
                    f"noise=NoiseBank('{noise_bank.data_dir}', 2 clips, 0.8 s), noise_prob=0.3, "
                    f"noise_ratio_db=(-5.0, 20.0), speakers=2 speakers of 3 utterances)")
    assert UtteranceMixing.training_only
