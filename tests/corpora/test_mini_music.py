"""The mini music corpus: plans, and the tiny corpus rendered for real with fluidsynth (seconds)."""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile

from audiossl.bin import prepare_mini_music as cli
from audiossl.corpora import mini_music
from audiossl.corpora.noise import MAX_PEAK, TARGET_RMS
from audiossl.corpora.mini_music import (DRUM_KITS, DRUMS_CHANNEL, FAMILIES, KEYS, LABELS, PITCHES, PROGRAMS, SETS,
                                         SPLITS, TAG_INSTRUMENTS, TAGS, MusicError, find_soundfont, plan_mini_music,
                                         prepare_mini_music, render)
from audiossl.data.kaldi_dir import read_table
from audiossl.data.validate import validate_data_dir


def _has_soundfont() -> bool:
    try:
        find_soundfont()
    except MusicError:
        return False
    return True


needs_fluidsynth = pytest.mark.skipif(shutil.which("fluidsynth") is None or not _has_soundfont(),
                                      reason="needs fluidsynth and fluid-soundfont-gm or timgm6mb-soundfont")

RATES = {"16k": 16000, "24k": 24000}
MAJOR, MINOR = {0, 2, 4, 5, 7, 9, 11}, {0, 2, 3, 5, 7, 8, 10}
PITCHED_FAMILIES = {"piano", "chromatic_percussion", "organ", "guitar", "bass", "strings", "ensemble", "brass", "reed",
                    "pipe", "synth_lead", "synth_pad"}
# Krumhansl-Kessler key profiles (C major, C minor)
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path, dict[str, Path]]:
    """``(audio_dir, data_dir, written)`` of the tiny corpus with seed 0."""
    root = tmp_path_factory.mktemp("mini_music")
    written = prepare_mini_music(root / "audio", root / "data", size="tiny", seed=0)
    return root / "audio", root / "data", written


def tables(data: Path) -> dict[str, str]:
    return {str(f.relative_to(data)): f.read_text() for f in sorted(data.glob("*/*/*"))}


def digests(audio: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(audio)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(audio.glob("*/*/*.wav"))}


def tonic_and_scale(key: str) -> tuple[int, set[int]]:
    """The tonic's pitch class and the pitch classes of the key (minor: natural minor and the leading tone)."""
    tonic, mode = key.split()
    return mini_music.TONICS.index(tonic), MAJOR if mode == "major" else MINOR | {11}


# ------------------------------------------------------------------ label sets and plans

def test_label_sets():
    assert len(set(PROGRAMS)) == 128 and len(set(FAMILIES)) == 16 and len(set(TAGS)) == 16
    assert (PROGRAMS[0], PROGRAMS[40], PROGRAMS[73], PROGRAMS[127]) == ("acoustic_grand_piano", "violin", "flute",
                                                                         "gunshot")
    assert (FAMILIES[40 // 8], FAMILIES[73 // 8]) == ("strings", "pipe")
    assert len(set(KEYS)) == 24 and all(re.fullmatch(r"[A-G]b? (major|minor)", k) for k in KEYS)
    assert LABELS["notes"]["pitch"] == tuple(str(p) for p in range(21, 109))
    assert LABELS["tagging"]["tags"] == TAGS and LABELS["key"]["key"] == KEYS
    for tag, instrument in TAG_INSTRUMENTS.items():
        assert instrument.low < instrument.high and all(0 <= p < 128 for p in instrument.programs), tag


def test_plans_are_seeded():
    plan = plan_mini_music("tiny", seed=0)
    assert plan == plan_mini_music("tiny", seed=0)
    other = plan_mini_music("tiny", seed=1)
    for name in SETS:
        for split, count in zip(SPLITS, mini_music.SIZES["tiny"][name]):
            assert len(plan[name][split]) == len(other[name][split]) == count
            assert [c.notes for c in plan[name][split]] != [c.notes for c in other[name][split]], (name, split)
    ids = [c.utt for name in SETS for split in SPLITS for c in plan[name][split]]
    assert len(set(ids)) == len(ids)
    assert mini_music.tagging_clip("tagging-train-00003", 0) == plan["tagging"]["train"][3]


def test_note_labels_are_the_notes_played():
    for clips in plan_mini_music("tiny", seed=0)["notes"].values():
        for clip in clips:
            (channel, program), = clip.programs
            note, = clip.notes
            assert clip.label("program") == PROGRAMS[program] and clip.label("family") == FAMILIES[program // 8]
            assert (clip.label("pitch"), clip.label("velocity")) == (str(note.pitch), str(note.velocity))
            assert note.pitch in PITCHES and note.channel == channel
            assert clip.utt == f"{PROGRAMS[program]}-{note.pitch:03d}-{note.velocity:03d}"


def test_tags_are_the_instruments_played():
    for clips in plan_mini_music("tiny", seed=0)["tagging"].values():
        for clip in clips:
            tags = clip.label("tags").split()
            assert 2 <= len(tags) <= 4 and tags == sorted(set(tags), key=TAGS.index)
            melodic = [t for t in tags if t != "drums"]
            programs = dict(clip.programs)
            assert sorted(programs) == list(range(len(melodic))) + ([DRUMS_CHANNEL] if "drums" in tags else [])
            for channel, tag in enumerate(melodic):
                instrument = TAG_INSTRUMENTS[tag]
                assert programs[channel] in instrument.programs, (clip.utt, tag)
                played = [n for n in clip.notes if n.channel == channel]
                assert all(instrument.low <= n.pitch <= instrument.high for n in played), (clip.utt, tag)
                sounding = {n.start: n.end - n.start for n in played}
                assert sum(sounding.values()) >= 1.0, (clip.utt, tag)
            if "drums" in tags:
                assert programs[DRUMS_CHANNEL] in DRUM_KITS
                assert sum(n.channel == DRUMS_CHANNEL for n in clip.notes) >= 8
            assert all(0 <= n.start < n.end <= clip.seconds for n in clip.notes)


def test_key_clips_play_their_key_and_cadence_to_its_tonic():
    plan = plan_mini_music("full", seed=0)["key"]
    for split, clips in plan.items():
        counts = [sum(c.label("key") == k for c in clips) for k in KEYS]
        assert max(counts) - min(counts) <= 1, split
        for clip in clips:
            tonic, scale = tonic_and_scale(clip.label("key"))
            relative = [(n.pitch - tonic) % 12 for n in clip.notes]
            assert set(relative) <= scale, clip.utt
            triad = {0, 4, 7} if clip.label("key").endswith("major") else {0, 3, 7}
            bass_onsets = sorted({n.start for n in clip.notes if n.pitch < 48})    # one bass note a chord
            first = {(n.pitch - tonic) % 12 for n in clip.notes if n.start < bass_onsets[1]}
            last = {(n.pitch - tonic) % 12 for n in clip.notes if n.start >= bass_onsets[-1]}
            assert first == last == triad, clip.utt
            if clip.label("key").endswith("minor"):
                assert 11 in relative, clip.utt     # the major V of the harmonic minor


# ------------------------------------------------------------------ the tiny corpus

@needs_fluidsynth
def test_every_split_is_a_valid_data_dir_at_both_rates(tiny):
    audio, data, written = tiny
    assert set(written) == {f"{r}/{name}_{split}" for r in RATES for name in SETS for split in SPLITS}
    plan = plan_mini_music("tiny", seed=0)
    silent = set((audio / "silent_clips").read_text().split()) if (audio / "silent_clips").is_file() else set()
    for name in SETS:
        for split in SPLITS:
            utts = {}
            for r in RATES:
                path = written[f"{r}/{name}_{split}"]
                assert path == data / r / f"{name}_{split}"
                assert validate_data_dir(path, check_text=False) == [], path
                for label, classes in LABELS[name].items():
                    assert (path / f"labels.{label}").read_text().splitlines() == list(classes)
                    values = read_table(path / f"utt2{label}").values()
                    assert all(set(v.split()) <= set(classes) if label == "tags" else v in classes for v in values)
                wav_scp = read_table(path / "wav.scp")
                assert read_table(path / "utt2spk") == {u: u for u in wav_scp}
                assert all(Path(p) == audio.absolute() / r / name / f"{u}.wav" for u, p in wav_scp.items())
                utts[r] = set(wav_scp)
            assert utts["16k"] == utts["24k"] == {c.utt for c in plan[name][split]} - silent
    assert silent <= {c.utt for s in SPLITS for c in plan["notes"][s]}


@needs_fluidsynth
def test_clips_are_mono_16_bit_at_their_rate_and_level_normalized(tiny):
    _, _, written = tiny
    for key, path in written.items():
        rate = RATES[key.split("/")[0]]
        durations = read_table(path / "utt2dur")
        for utt, wav in read_table(path / "wav.scp").items():
            info = soundfile.info(wav)
            assert (info.samplerate, info.channels, info.subtype) == (rate, 1, "PCM_16"), wav
            assert info.frames == round(float(durations[utt]) * rate)
            samples, _ = soundfile.read(wav)
            rms, peak = np.sqrt(np.mean(samples ** 2)), np.abs(samples).max()
            assert peak <= MAX_PEAK + 1e-3, wav
            if peak < MAX_PEAK - 1e-3:                       # else the peak limit set the level
                assert abs(20 * np.log10(rms / TARGET_RMS)) < 0.1, wav
            assert np.abs(samples[-rate // 1000:]).max() <= 0.1 * peak, wav    # faded out


@needs_fluidsynth
def test_the_16k_clips_are_the_24k_clips_resampled(tiny):
    _, _, written = tiny
    for name in SETS:
        for utt, wav in read_table(written[f"16k/{name}_test"] / "wav.scp").items():
            low, _ = soundfile.read(wav)
            high, _ = soundfile.read(read_table(written[f"24k/{name}_test"] / "wav.scp")[utt])
            assert np.corrcoef(low, scipy.signal.resample_poly(high, 2, 3))[0, 1] > 0.99, utt


@needs_fluidsynth
def test_notes_sound_at_their_labelled_pitch(tiny):
    import librosa

    _, _, written = tiny
    errors = []
    for split in SPLITS:
        path = written[f"16k/notes_{split}"]
        pitch, family = read_table(path / "utt2pitch"), read_table(path / "utt2family")
        for utt, wav in read_table(path / "wav.scp").items():
            if family[utt] in PITCHED_FAMILIES and 36 <= int(pitch[utt]) <= 96:
                samples, rate = soundfile.read(wav)
                f0 = np.median(librosa.yin(samples[:rate], fmin=50, fmax=2500, sr=rate, frame_length=2048))
                errors.append(12 * np.log2(f0 / librosa.midi_to_hz(int(pitch[utt]))))
    errors = np.array(errors)
    folded = (errors + 6) % 12 - 6                          # the pitch class; yin may pick another octave
    assert len(errors) >= 10
    assert np.mean(np.abs(folded) < 1) >= 0.9, errors
    assert np.mean(np.abs(errors) < 1) >= 0.75, errors
    assert np.mean(np.abs((errors + 6 + 6) % 12 - 6) < 1) < 0.2   # labels a tritone off would not pass


@needs_fluidsynth
def test_key_clips_chroma_points_to_their_key(tiny):
    import librosa

    _, _, written = tiny
    profiles = np.array([np.roll(MAJOR_PROFILE, k) for k in range(12)] + [np.roll(MINOR_PROFILE, k) for k in range(12)])
    found = []
    for split in SPLITS:
        path = written[f"16k/key_{split}"]
        keys = read_table(path / "utt2key")
        for utt, wav in read_table(path / "wav.scp").items():
            samples, rate = soundfile.read(wav)
            chroma = librosa.feature.chroma_cqt(y=samples, sr=rate, hop_length=2048, fmin=librosa.note_to_hz("C2"),
                                                n_octaves=5).sum(axis=1)
            found.append(KEYS[int(np.argmax([np.corrcoef(chroma, p)[0, 1] for p in profiles]))] == keys[utt])
    assert np.mean(found) >= 0.8, found


@needs_fluidsynth
def test_rerun_reuses_files_and_remakes_a_missing_one_identically(tiny, tmp_path):
    audio, data, _ = tiny
    before = digests(audio)
    victim = sorted(audio.glob("16k/notes/*.wav"))[1]
    victim.unlink()
    prepare_mini_music(audio, tmp_path / "data", size="tiny", seed=0)
    assert tables(tmp_path / "data") == tables(data)
    after = digests(audio)
    assert {k: d for k, (d, _) in after.items()} == {k: d for k, (d, _) in before.items()}
    assert all(after[k][1] == before[k][1] for k in before if k != str(victim.relative_to(audio)))


@needs_fluidsynth
def test_another_seed_or_soundfont_in_the_same_audio_dir_is_refused(tiny, tmp_path):
    audio, _, _ = tiny
    with pytest.raises(MusicError, match="seed 0, not 1"):
        prepare_mini_music(audio, tmp_path / "data", size="tiny", seed=1)
    fake = tmp_path / "Other.sf2"
    fake.write_bytes(b"")
    with pytest.raises(MusicError, match="soundfont .*, not Other.sf2"):
        prepare_mini_music(audio, tmp_path / "data", size="tiny", seed=0, soundfont=fake)


def test_an_audio_dir_stopped_before_its_first_clip_takes_another_seed_or_soundfont(tmp_path):
    font, other = tmp_path / "Font.sf2", tmp_path / "Other.sf2"
    font.write_bytes(b"a font")
    other.write_bytes(b"another font")
    mini_music._check_provenance(tmp_path / "audio", 1, font)     # a run with a mistyped seed, stopped at once
    mini_music._check_provenance(tmp_path / "audio", 0, other)
    assert (tmp_path / "audio" / "seed").read_text() == "0\n"
    assert (tmp_path / "audio" / "soundfont").read_text().startswith("Other.sf2 (12 bytes, sha256 ")
    (tmp_path / "audio" / "16k" / "notes").mkdir(parents=True)
    (tmp_path / "audio" / "16k" / "notes" / "x.wav").write_bytes(b"")
    with pytest.raises(MusicError, match="seed 0, not 1"):
        mini_music._check_provenance(tmp_path / "audio", 1, other)


def test_a_soundfont_changed_at_the_same_path_is_refused_as_another_one(tmp_path):
    font, audio = tmp_path / "FluidR3_GM.sf2", tmp_path / "audio"
    font.write_bytes(b"version 1")
    mini_music._check_provenance(audio, 0, font)
    (audio / "24k" / "notes").mkdir(parents=True)
    (audio / "24k" / "notes" / "x.wav").write_bytes(b"")
    mini_music._check_provenance(audio, 0, font)      # the same file: its clips are reused
    font.write_bytes(b"version 2")                     # another package version, same name and size
    with pytest.raises(MusicError, match=r"made with soundfont FluidR3_GM.sf2 \(9 bytes, sha256 [0-9a-f]{64}\), "
                                         r"not FluidR3_GM.sf2 \(9 bytes, sha256 [0-9a-f]{64}\); use another"):
        mini_music._check_provenance(audio, 0, font)


@needs_fluidsynth
def test_silent_clips_are_dropped_and_logged(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(mini_music.SIZES, "tiny", {"notes": (2, 1, 1), "tagging": (1, 1, 1), "key": (1, 1, 1)})
    real_plan = mini_music.plan_mini_music

    def with_a_silent_note(size, seed):
        plan = real_plan(size, seed)
        silent = dataclasses.replace(plan["notes"]["train"][0], utt="silent-060-100", notes=())
        plan["notes"]["train"].append(silent)
        return plan

    monkeypatch.setattr(mini_music, "plan_mini_music", with_a_silent_note)
    with caplog.at_level(logging.WARNING, logger=mini_music.__name__):
        written = prepare_mini_music(tmp_path / "audio", tmp_path / "data", size="tiny", sample_rates=(16000,))
    assert (tmp_path / "audio" / "silent_clips").read_text().split() == ["silent-060-100"]
    assert "silent-060-100" not in read_table(written["16k/notes_train"] / "wav.scp")
    assert not list((tmp_path / "audio").glob("*/*/silent-*"))
    assert any("1 of 3 clips rendered silent" in r.getMessage() for r in caplog.records)
    assert set(written) == {f"16k/{name}_{split}" for name in SETS for split in SPLITS}


def test_missing_fluidsynth_or_soundfont_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(mini_music, "SOUNDFONT_DIR", tmp_path)
    with pytest.raises(MusicError, match="fluid-soundfont-gm or timgm6mb-soundfont"):
        find_soundfont()
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MusicError, match="Debian package fluidsynth"):
        prepare_mini_music(tmp_path / "audio", tmp_path / "data", size="tiny")


def fake_fluidsynth(folder: Path, script: str, monkeypatch) -> None:
    """Put a ``fluidsynth`` running ``script`` (sh) first on PATH."""
    folder.mkdir()
    (folder / "fluidsynth").write_text(f"#!/bin/sh\n{script}\n")
    (folder / "fluidsynth").chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")


def test_a_render_that_never_ends_is_cut_or_killed(tmp_path, monkeypatch):
    fake_fluidsynth(tmp_path / "endless", "exec cat /dev/zero", monkeypatch)
    samples = render(tmp_path / "x.mid", tmp_path / "x.sf2", 2.0)
    assert samples.shape == (48000,) and not samples.any()
    fake_fluidsynth(tmp_path / "stuck", "exec sleep 60", monkeypatch)
    monkeypatch.setattr(mini_music, "RENDER_TIMEOUT_SECONDS", 0.5)
    with pytest.raises(MusicError, match="still rendering after"):
        render(tmp_path / "x.mid", tmp_path / "x.sf2", 2.0)


def test_a_failing_render_names_the_command_and_its_message(tmp_path, monkeypatch):
    fake_fluidsynth(tmp_path / "failing", "echo 'fluidsynth: error: broken.mid: not a MIDI file' >&2; exit 1",
                    monkeypatch)
    with pytest.raises(MusicError, match="fluidsynth .*broken.mid: not a MIDI file"):
        render(tmp_path / "broken.mid", tmp_path / "x.sf2", 2.0)


@needs_fluidsynth
def test_cli(tiny, tmp_path, capsys):
    audio, data, _ = tiny
    assert cli.main(["--size", "tiny", "--no-progress", str(audio), str(tmp_path / "data")]) == 0
    assert tables(tmp_path / "data") == tables(data)
    assert cli.main(["--size", "tiny", "--seed", "3", str(audio), str(tmp_path / "data")]) == 1
    assert "error:" in capsys.readouterr().err


def test_cli_sample_rates_are_one_argument_before_the_dirs(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(cli, "prepare_mini_music", lambda audio, data, **kw: calls.append((audio, data, kw)))
    assert cli.main(["--sample-rates", "16000 24000", "audio", "data"]) == 0
    assert cli.main(["--sample-rates", "16000", "audio", "data"]) == 0
    assert [(a, d, kw["sample_rates"]) for a, d, kw in calls] == [("audio", "data", [16000, 24000]),
                                                                  ("audio", "data", [16000])]
    for rates in ("", "16000 0"):
        with pytest.raises(SystemExit):
            cli.main(["--sample-rates", rates, "audio", "data"])
        assert "--sample-rates" in capsys.readouterr().err


def test_a_soundfont_recorded_by_name_alone_is_recorded_again_in_full(tmp_path):
    font, audio = tmp_path / "FluidR3_GM.sf2", tmp_path / "audio"
    font.write_bytes(b"version 1")
    (audio / "24k" / "notes").mkdir(parents=True)
    (audio / "24k" / "notes" / "x.wav").write_bytes(b"")
    (audio / "seed").write_text("0\n")
    (audio / "soundfont").write_text("FluidR3_GM.sf2\n")   # an audio dir of an older audiossl
    mini_music._check_provenance(audio, 0, font)
    assert (audio / "soundfont").read_text().startswith("FluidR3_GM.sf2 (9 bytes, sha256 ")
    font.write_bytes(b"version 2")
    with pytest.raises(MusicError, match="use another"):
        mini_music._check_provenance(audio, 0, font)
