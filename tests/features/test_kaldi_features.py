"""Kaldi-compatible features: equal to torchaudio's Kaldi compliance for files, pipes, segments."""
from __future__ import annotations

import os
import subprocess

import kaldiio
import numpy as np
import pytest
import torch
import torchaudio.compliance.kaldi as reference

from audiossl.audio import load_entry
from audiossl.data.kaldi_dir import DataDir, DataDirError, read_table, write_table
from audiossl.features.kaldi import FeatureConfig, FeatureConfigError, FeatureExtractor, add_deltas
from audiossl.features.store import FeatureError, apply_cmvn, cmvn_stats, compute_cmvn, compute_features


def reference_features(kind: str, samples: np.ndarray, **options) -> np.ndarray:
    """torchaudio's Kaldi features on int16-scaled samples: the reference."""
    wav = torch.from_numpy(samples).unsqueeze(0) * 32768
    compute = reference.fbank if kind == "fbank" else reference.mfcc
    return compute(wav, dither=0.0, **options).numpy()


def expected_for(data: DataDir, utt: str) -> np.ndarray:
    entry, seg = data.audio_entry(utt)
    samples, _ = load_entry(entry, *(seg.start, seg.end) if seg else ())
    return samples


@pytest.mark.parametrize("kind,config,options", [
    ("fbank", "--num-mel-bins=80\n", {"num_mel_bins": 80}),
    ("fbank", "--num-mel-bins=40\n--frame-shift=20\n--use-energy=true\n",
     {"num_mel_bins": 40, "frame_shift": 20.0, "use_energy": True}),
    ("mfcc", "# comment\n--num-ceps=13\n--frame-shift=20  # 50 Hz\n", {"num_ceps": 13, "frame_shift": 20.0}),
])
@pytest.mark.parametrize("fixture", ["data_dir", "segments_dir"])
def test_steps_match_torchaudio(request, recipe_dir, tmp_path, kind, config, options, fixture):
    src = request.getfixturevalue(fixture)
    (tmp_path / "feat.conf").write_text(config)
    subprocess.run([f"steps/make_{kind}.sh", "--nj", "2", f"--{kind}-config", str(tmp_path / "feat.conf"),
                    str(src), str(tmp_path / "log"), str(tmp_path / "feats")], cwd=recipe_dir, check=True)
    data = DataDir.read(src)
    assert set(data["feats.scp"]) == set(data.utterances)
    for utt, entry in data["feats.scp"].items():
        ours = kaldiio.load_mat(entry)
        ref = reference_features(kind, expected_for(data, utt), **options)
        assert ours.shape == ref.shape
        assert np.abs(ours - ref).max() <= 1e-3, utt
        assert int(data["utt2num_frames"][utt]) == ours.shape[0]
    subprocess.run(["utils/validate_data_dir.sh", str(src)], cwd=recipe_dir, check=True)
    subprocess.run(["steps/compute_cmvn_stats.sh", str(src), str(tmp_path / "log"), str(tmp_path / "feats")],
                   cwd=recipe_dir, check=True)
    cmvn = read_table(src / "cmvn.scp")
    assert set(cmvn) == set(data["utt2spk"].values())
    for spk, entry in cmvn.items():
        stats = kaldiio.load_mat(entry)
        feats = np.concatenate([kaldiio.load_mat(data["feats.scp"][u]) for u, s in data["utt2spk"].items() if s == spk])
        np.testing.assert_allclose(stats, cmvn_stats(feats), rtol=1e-6)
        assert stats[0, -1] == feats.shape[0]
        normalized = apply_cmvn(feats, stats, norm_vars=True)
        np.testing.assert_allclose(normalized.mean(0), 0, atol=1e-3)
        np.testing.assert_allclose(normalized.std(0), 1, atol=1e-2)


def test_a_missing_feature_config_is_named_before_any_job_runs(recipe_dir, data_dir):
    """Each job failed on it, after validation and the split, the logs to read for why."""
    out = subprocess.run(["steps/make_fbank.sh", "--fbank-config", "conf/fbank.cnf", str(data_dir)], cwd=recipe_dir,
                         capture_output=True, text=True)
    assert out.returncode == 1 and "cannot read --fbank-config conf/fbank.cnf" in out.stderr
    assert not (data_dir / "split4utt").exists() and not (data_dir / "log").exists()


@pytest.mark.parametrize("kind,args", [
    ("fbank", []),
    ("fbank", ["--num-mel-bins=80"]),
    ("fbank", ["--use-energy=true", "--htk-compat=true", "--raw-energy=false", "--snip-edges=false"]),
    ("fbank", ["--window-type=blackman", "--round-to-power-of-two=false", "--frame-length=20",
               "--preemphasis-coefficient=0", "--remove-dc-offset=false", "--num-mel-bins=40"]),
    ("fbank", ["--window-type=hamming", "--vtln-warp=0.9", "--low-freq=60", "--high-freq=-400"]),
    ("fbank", ["--use-log-fbank=false", "--use-power=false", "--window-type=hanning"]),
    ("mfcc", []),
    ("mfcc", ["--use-energy=true", "--frame-shift=20"]),
    ("mfcc", ["--use-energy=true", "--htk-compat=true", "--window-type=rectangular"]),
    ("mfcc", ["--htk-compat=true", "--cepstral-lifter=0", "--snip-edges=false", "--energy-floor=0"]),
])
def test_extractor_matches_torchaudio_for_every_option(kind, args):
    """The extractor's own framing, spectrum and banks give torchaudio's features, up to float rounding,
    for utterances of any length in turn (its buffers kept between calls leak nothing)."""
    rng = np.random.default_rng(0)
    config = FeatureConfig.from_kaldi_args(kind, args)
    extractor = FeatureExtractor(config)
    done = []
    for num_samples in (16000 * 2 + 123, 5000, 16000 * 3):
        samples = (0.05 * rng.standard_normal(num_samples)).astype(np.float32)
        samples[:4000] *= 1e-3   # quiet frames: low mel energies, where rounding shows first
        ours = extractor(samples)
        ref = reference_features(kind, samples, **{k: v for k, v in config.options.items() if k != "dither"})
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-3)
        done.append((ours, ours.copy()))
    for returned, copy in done:   # nothing returned is a buffer written by a later call
        np.testing.assert_array_equal(returned, copy)


def test_dithered_features_are_the_same_from_run_to_run_whatever_the_jobs(plain_data_dir, tmp_path):
    """The dither's noise came from torch's global generator, seeded at random: every extraction gave other
    features (Kaldi's are the same from run to run), and k-means labels of them changed with it."""
    data = DataDir.read(plain_data_dir)
    dithered = FeatureExtractor(FeatureConfig.from_kaldi_args("fbank", ["--dither=1"]))
    whole = compute_features(data, dithered, tmp_path / "whole.ark")
    compute_features(data.subset(["spkB-u3", "spkB-u4"]), dithered, tmp_path / "job.ark")   # another split
    compute_features(data, FeatureExtractor(FeatureConfig("fbank")), tmp_path / "plain.ark")
    first, job, plain = (read_table(tmp_path / f"{name}.scp") for name in ("whole", "job", "plain"))
    for utt in ("spkB-u3", "spkB-u4"):
        np.testing.assert_array_equal(kaldiio.load_mat(first[utt]), kaldiio.load_mat(job[utt]))
        noise = kaldiio.load_mat(first[utt]) - kaldiio.load_mat(plain[utt])
        assert noise.shape == (whole[utt], 23) and np.abs(noise).max() > 0   # dithered all the same


def test_audio_upsampled_to_the_config_s_rate_is_noted(data_dir, tmp_path, caplog):
    """8 kHz audio under a 16 kHz config (Kaldi refuses it) gave features whose upper half holds no energy,
    without a word."""
    compute_features(DataDir.read(data_dir), FeatureExtractor(FeatureConfig("fbank")), tmp_path / "f.ark")
    assert "1 recording(s) at 8000 Hz, e.g. 'spkB-u4', upsampled to the config's 16000 Hz: their features above " \
           "4000 Hz hold no energy" in caplog.text


def test_extractor_made_under_inference_mode_still_works_outside_it():
    """Buffers first made under ``torch.inference_mode`` (a frozen upstream's features) stay writable later."""
    extractor = FeatureExtractor(FeatureConfig.from_kaldi_args("fbank", []))
    wav = torch.randn(16000) * 1000
    with torch.inference_mode():
        inside = extractor.compute(wav)
    torch.testing.assert_close(extractor.compute(wav), inside, rtol=0, atol=0)


def test_config_errors_name_line(tmp_path):
    path = tmp_path / "bad.conf"
    path.write_text("--num-mel-bins=80\n--no-such-option=1\n")
    with pytest.raises(FeatureConfigError, match=r"bad.conf:2: unknown fbank option '--no-such-option'"):
        FeatureConfig.from_file("fbank", path)
    with pytest.raises(FeatureConfigError, match=r":1: expected true or false"):
        FeatureConfig.from_kaldi_args("fbank", ["--snip-edges=maybe"])
    with pytest.raises(FeatureConfigError, match=r":1: expected --option=value"):
        FeatureConfig.from_kaldi_args("mfcc", ["num-ceps 13"])


def test_a_config_saved_with_a_byte_order_mark_or_not_in_utf8_is_read_or_named(tmp_path):
    """A byte order mark (a Windows editor's) was read into the first option, refused as no --option=value with
    the mark unseen in the message; a file of another encoding was a UnicodeDecodeError traceback."""
    path = tmp_path / "fbank.conf"
    path.write_bytes("\ufeff--num-mel-bins=80\n--frame-shift=20\n".encode("utf-8"))
    assert FeatureConfig.from_file("fbank", path).options == {"num_mel_bins": 80, "frame_shift": 20.0, "dither": 0.0}
    path.write_bytes("# réglages\n--num-mel-bins=80\n".encode("latin-1"))
    with pytest.raises(FeatureConfigError, match=f"{path}: not UTF-8 text"):
        FeatureConfig.from_file("fbank", path)


@pytest.mark.parametrize("option", ["--num-ceps=0", "--num-ceps=-1", "--num-ceps=24"])
def test_a_count_of_cepstra_out_of_range_is_named(option):
    """0 wrote features of no dimension without a word, -1 was a RuntimeError traceback of torch.arange."""
    with pytest.raises(FeatureConfigError, match=f"{option}: from 1 to --num-mel-bins=23 cepstra are computed"):
        FeatureExtractor(FeatureConfig.from_kaldi_args("mfcc", [option]))


def test_an_energy_floor_of_0_or_below_floors_nothing_as_in_kaldi():
    """A negative floor failed with a ValueError of math.log ("math domain error"); Kaldi floors only where
    the floor is above 0."""
    samples = (0.05 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32)
    samples[:2000] = 0.0   # frames of no energy: the floor would show there
    features = [FeatureExtractor(FeatureConfig.from_kaldi_args("mfcc", ["--use-energy=true", f"--energy-floor={floor}"]))(
        samples) for floor in (-1, 0)]
    np.testing.assert_array_equal(features[0], features[1])


def test_deltas_match_kaldi_formula():
    feats = np.random.default_rng(0).standard_normal((20, 3)).astype(np.float32)
    out = add_deltas(feats)
    assert out.shape == (20, 9)
    padded = np.concatenate([feats[:1], feats[:1], feats, feats[-1:], feats[-1:]])
    delta = sum(n * (padded[2 + n:22 + n] - padded[2 - n:22 - n]) for n in (1, 2)) / 10
    np.testing.assert_allclose(out[:, 3:6], delta, atol=1e-5)


def test_too_short_utterance_named(segments_dir):
    write_table(segments_dir / "segments", {"spk1-s1": "recA 0.00 0.01", "spk1-s2": "recA 0.75 2.00",
                                            "spk2-s3": "recB 0.10 1.20"})
    extractor = FeatureExtractor(FeatureConfig.from_kaldi_args("fbank", []))
    with pytest.raises(FeatureError, match="utterance 'spk1-s1' \\(recording 'recA'\\): 160 samples is shorter than "
                                           "one 400-sample window"):
        compute_features(DataDir.read(segments_dir), extractor, segments_dir / "x.ark")


@pytest.mark.parametrize("region,message", [
    ("-0.10 2.00", "is no region"),    # its samples were taken from the recording's last 0.1 s
    ("1.20 0.90", "is no region"),
    ("2.50 -1", "past the end"),
])
def test_a_segment_that_is_no_region_of_its_recording_is_named(segments_dir, tmp_path, region, message):
    """Feature extraction cut the samples by Python slicing: a negative start counted from the end."""
    segments = read_table(segments_dir / "segments")
    segments["spk1-s2"] = f"recA {region}"   # recA lasts 2.0 s
    write_table(segments_dir / "segments", segments)
    with pytest.raises(FeatureError, match=f"utterance 'spk1-s2' \\(recording 'recA'\\): region .* {message}"):
        compute_features(DataDir.read(segments_dir), FeatureExtractor(FeatureConfig("fbank")), tmp_path / "f.ark")


def test_a_segment_ending_just_past_its_recording_is_read_to_its_end_by_features_and_data_path(segments_dir,
                                                                                                 tmp_path):
    """Validation and feature extraction take a segment up to 10 ms past its recording (rounded times); the
    waveform data path refused it, mid-training."""
    from audiossl.data.dataset import UtteranceDataset
    from audiossl.data.validate import validate_data_dir

    segments = read_table(segments_dir / "segments")
    segments["spk1-s2"] = "recA 0.75 2.005"   # recA lasts 2.0 s
    write_table(segments_dir / "segments", segments)
    assert not validate_data_dir(segments_dir)
    frames = compute_features(DataDir.read(segments_dir), FeatureExtractor(FeatureConfig("fbank")), tmp_path / "f.ark")
    waveforms = UtteranceDataset(segments_dir, "waveform")
    samples = waveforms[waveforms.utterances.index("spk1-s2")][1]
    assert len(samples) == 20000   # 0.75 s to the end
    assert frames["spk1-s2"] == 1 + (20000 - 400) // 160


def test_a_segment_of_a_recording_not_in_wav_scp_is_named(segments_dir, tmp_path):
    """compute_feats extract, run on a dir not validated first, failed with a KeyError."""
    segments = read_table(segments_dir / "segments")
    segments["spk2-s3"] = "recZ 0.10 1.20"
    write_table(segments_dir / "segments", segments)
    with pytest.raises(FeatureError, match="utterance 'spk2-s3': recording 'recZ' is not in wav.scp"):
        compute_features(DataDir.read(segments_dir), FeatureExtractor(FeatureConfig("fbank")), tmp_path / "f.ark")


def test_a_failed_rerun_keeps_the_earlier_ark_and_scp(data_dir, tmp_path):
    extractor = FeatureExtractor(FeatureConfig.from_kaldi_args("fbank", []))
    ark = tmp_path / "feats" / "raw.ark"
    frames = compute_features(DataDir.read(data_dir), extractor, ark)
    scp = read_table(ark.with_suffix(".scp"))
    assert set(scp) == set(frames) and all(entry.startswith(f"{ark}:") for entry in scp.values())
    assert kaldiio.load_mat(scp["spkA-u1"]).shape == (frames["spkA-u1"], 23)
    assert read_table(ark.with_suffix(".utt2num_frames")) == {utt: str(n) for utt, n in frames.items()}
    before = [path.read_bytes() for path in (ark, ark.with_suffix(".scp"), ark.with_suffix(".utt2num_frames"))]

    wav_scp = read_table(data_dir / "wav.scp")
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    write_table(data_dir / "wav.scp", {**wav_scp, "spkB-u3": str(tmp_path / "bad.wav")})
    with pytest.raises(FeatureError, match="utterance 'spkB-u3'"):
        compute_features(DataDir.read(data_dir), extractor, ark)
    assert [path.read_bytes() for path in (ark, ark.with_suffix(".scp"), ark.with_suffix(".utt2num_frames"))] == before
    assert sorted(p.name for p in ark.parent.iterdir()) == ["raw.ark", "raw.scp", "raw.utt2num_frames"]  # no temporaries


def test_a_kill_while_features_are_moved_in_leaves_no_scp_beside_other_counts(data_dir, tmp_path, monkeypatch):
    """The scp moves last, after the ark and the frame counts: a job killed in between leaves no scp (so no
    merge of it), never an scp beside the frame counts of another extraction."""
    ark = tmp_path / "raw.ark"
    compute_features(DataDir.read(data_dir), FeatureExtractor(FeatureConfig.from_kaldi_args("fbank", [])), ark)
    replace = os.replace

    def killed_before_the_scp(src, dst):
        if str(dst).endswith(".scp"):
            raise KeyboardInterrupt
        replace(src, dst)

    monkeypatch.setattr("audiossl.features.store.os.replace", killed_before_the_scp)
    extractor = FeatureExtractor(FeatureConfig.from_kaldi_args("fbank", ["--frame-shift=20"]))
    with pytest.raises(KeyboardInterrupt):
        compute_features(DataDir.read(data_dir), extractor, ark)
    assert not ark.with_suffix(".scp").exists()
    counts = read_table(ark.with_suffix(".utt2num_frames"))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".raw")) == []
    assert counts["spkA-u1"] == str(kaldiio.load_ark(str(ark)).__next__()[1].shape[0])


def test_features_and_cmvn_are_synced_to_disk_whole_before_they_take_their_names(data_dir, tmp_path, monkeypatch):
    """As every atomic write: a power loss after the renames cannot leave an empty ark, scp or counts."""
    synced, fsync = set(), os.fsync

    def recording(fd):
        fsync(fd)
        synced.add((os.fstat(fd).st_ino, os.fstat(fd).st_size))

    monkeypatch.setattr(os, "fsync", recording)
    ark, cmvn = tmp_path / "raw.ark", tmp_path / "cmvn.ark"
    compute_features(DataDir.read(data_dir), FeatureExtractor(FeatureConfig.from_kaldi_args("fbank", [])), ark)
    write_table(data_dir / "feats.scp", read_table(ark.with_suffix(".scp")))
    compute_cmvn(DataDir.read(data_dir), cmvn)
    for path in (ark, ark.with_suffix(".scp"), ark.with_suffix(".utt2num_frames"), cmvn, cmvn.with_suffix(".scp")):
        assert (path.stat().st_ino, path.stat().st_size) in synced, path.name


def test_cmvn_of_an_utterance_without_features_is_named(data_dir, tmp_path):
    """An utterance of utt2spk not in feats.scp was a KeyError."""
    write_table(data_dir / "feats.scp", {"spkA-u1": "a.ark:8"})
    with pytest.raises(FeatureError, match="no features in feats.scp for 3 utterance.s., e.g. 'spkA-u2'"):
        compute_cmvn(DataDir.read(data_dir), tmp_path / "cmvn.ark")
    assert not (tmp_path / "cmvn.ark").exists()


def test_features_of_two_dimensions_in_one_dir_are_named(data_dir, tmp_path):
    """A dir combined from feature dirs of other configs (80 and 23 mel bins): CMVN per speaker failed with
    numpy's broadcasting ValueError, per utterance it wrote stats of both sizes, and training failed in
    the batch's padding, naming no utterance; validation passed it."""
    from audiossl.data.dataset import UtteranceDataset, sorted_batches
    from audiossl.data.validate import validate_data_dir

    data = DataDir.read(data_dir)
    for bins, utts in ((80, ["spkA-u1", "spkB-u3"]), (23, ["spkA-u2", "spkB-u4"])):
        extractor = FeatureExtractor(FeatureConfig.from_kaldi_args("fbank", [f"--num-mel-bins={bins}"]))
        compute_features(data.subset(utts), extractor, tmp_path / f"fbank{bins}.ark")
    write_table(data_dir / "feats.scp",
                {**read_table(tmp_path / "fbank80.scp"), **read_table(tmp_path / "fbank23.scp")})
    message = "utterance 'spkA-u2' has 23-dim features, utterance 'spkA-u1' 80"
    for per_speaker in (True, False):
        with pytest.raises(FeatureError, match=message):
            compute_cmvn(DataDir.read(data_dir), tmp_path / "cmvn.ark", per_speaker=per_speaker)
    assert not (tmp_path / "cmvn.ark").exists()
    problems = [str(problem) for problem in validate_data_dir(data_dir, check_text=False, check_feats=True)]
    assert problems == [f"{data_dir / 'feats.scp'}:{line}: utterance '{utt}': 23-dim features, utterance 'spkA-u1' "
                        f"has 80" for line, utt in ((2, "spkA-u2"), (4, "spkB-u4"))]
    with pytest.raises(DataDirError, match="feats.scp:[24]: utterance 'spk.-u[24]' has 23-dim features, the first "
                                           "utterance \\('spkA-u1'\\) 80"):
        list(sorted_batches(UtteranceDataset(data_dir, "fbank"), 100.0))


def test_a_feats_scp_entry_of_a_vector_is_named(data_dir, tmp_path):
    """An entry pointing into an x-vector ark (a vector, not frames): CMVN and the fbank data path failed
    with an IndexError."""
    from audiossl.data.dataset import UtteranceDataset

    data = DataDir.read(data_dir)
    compute_features(data, FeatureExtractor(FeatureConfig("fbank")), tmp_path / "fbank.ark")
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path / 'xvector.ark'},{tmp_path / 'xvector.scp'}") as writer:
        writer("spkA-u2", np.zeros(512))
    write_table(data_dir / "feats.scp", {**read_table(tmp_path / "fbank.scp"), **read_table(tmp_path / "xvector.scp")})
    message = "xvector.ark:.*' holds an array of shape \\(512,\\), not a matrix \\(frames, dim\\)"
    with pytest.raises(FeatureError, match=message):
        compute_cmvn(DataDir.read(data_dir), tmp_path / "cmvn.ark")
    with pytest.raises(DataDirError, match=f"feats.scp:2: utterance 'spkA-u2': '.*{message}"):
        UtteranceDataset(data_dir, "fbank")[1]


def test_a_failed_cmvn_rerun_keeps_the_earlier_statistics(data_dir, tmp_path):
    extractor = FeatureExtractor(FeatureConfig.from_kaldi_args("fbank", []))
    ark = tmp_path / "feats" / "raw.ark"
    compute_features(DataDir.read(data_dir), extractor, ark)
    feats_scp = read_table(ark.with_suffix(".scp"))
    write_table(data_dir / "feats.scp", feats_scp)
    cmvn = tmp_path / "feats" / "cmvn.ark"
    assert set(compute_cmvn(DataDir.read(data_dir), cmvn)) == set(read_table(data_dir / "utt2spk").values())
    before = cmvn.read_bytes(), cmvn.with_suffix(".scp").read_bytes()

    write_table(data_dir / "feats.scp", {**feats_scp, "spkB-u3": f"{ark}:999999999"})
    with pytest.raises(FeatureError, match=f"cannot read features '{ark}:999999999'"):
        compute_cmvn(DataDir.read(data_dir), cmvn)
    assert (cmvn.read_bytes(), cmvn.with_suffix(".scp").read_bytes()) == before
    assert sorted(p.name for p in cmvn.parent.iterdir()) == ["cmvn.ark", "cmvn.scp", "raw.ark", "raw.scp",
                                                              "raw.utt2num_frames"]


def test_a_feature_write_killed_between_its_renames_is_refused_until_made_again(recipe_dir, data_dir, tmp_path,
                                                                                 monkeypatch, capsys):
    """merge renames feats.scp and utt2num_frames in, cmvn its cmvn.scp, as every data dir write: a kill
    in between leaves .incomplete, which readers refuse; making the features (or stats) again repairs it."""
    from audiossl.bin import compute_feats, data_dir as data_dir_main

    def make(*command):
        subprocess.run(list(command) + [str(data_dir), str(tmp_path / "log"), str(tmp_path / "feats")],
                       cwd=recipe_dir, check=True, capture_output=True)

    make("steps/make_fbank.sh", "--nj", "2")
    make("steps/compute_cmvn_stats.sh")
    (tmp_path / "fast.conf").write_text("--frame-shift=20\n")
    ark = tmp_path / "fast.ark"
    assert compute_feats.main(["extract", "--kind", "fbank", "--config", str(tmp_path / "fast.conf"),
                               str(data_dir), str(ark)]) == 0
    replace, renamed = os.replace, []

    def killed_after_one_table(src, dst):
        if os.path.dirname(dst) == str(data_dir) and not os.path.basename(dst).startswith("."):   # a table
            if renamed:
                raise KeyboardInterrupt
            renamed.append(dst)
        replace(src, dst)

    monkeypatch.setattr("audiossl.atomic.os.replace", killed_after_one_table)
    with pytest.raises(KeyboardInterrupt):
        compute_feats.main(["merge", str(data_dir), str(ark.with_suffix(".scp"))])
    monkeypatch.undo()
    assert (data_dir / ".incomplete").exists() and len(renamed) == 1
    with pytest.raises(DataDirError, match=f"{data_dir}: a write of its tables stopped midway"):
        DataDir.read(data_dir)
    assert compute_feats.main(["cmvn", str(data_dir), str(tmp_path / "cmvn.ark")]) == 1
    assert data_dir_main.main(["validate", str(data_dir)]) == 1
    assert f"{data_dir}: a write of its tables stopped midway" in capsys.readouterr().err

    make("steps/make_fbank.sh", "--nj", "2", "--fbank-config", str(tmp_path / "fast.conf"))
    data = DataDir.read(data_dir)
    assert not (data_dir / ".incomplete").exists() and "cmvn.scp" in data
    for utt, entry in data["feats.scp"].items():
        assert kaldiio.load_mat(entry).shape[0] == int(data["utt2num_frames"][utt])

    monkeypatch.setattr("audiossl.atomic.os.replace", killed_after_one_table)   # renamed: the next table fails
    with pytest.raises(KeyboardInterrupt):
        compute_feats.main(["cmvn", str(data_dir), str(tmp_path / "cmvn.ark")])
    monkeypatch.undo()
    with pytest.raises(DataDirError, match="stopped midway"):
        DataDir.read(data_dir)
    make("steps/compute_cmvn_stats.sh")
    assert set(DataDir.read(data_dir)["cmvn.scp"]) == set(data["utt2spk"].values())


def test_mel_bins_without_an_fft_bin_are_named():
    """Too many mel bins for the FFT (128 at 8 kHz) leave columns of the floor, which Kaldi refuses: a warning
    names how many, where they were constant without a word."""
    with pytest.warns(UserWarning, match="4 of 128 mel bins hold no FFT bin at 8000 Hz with a 256-point FFT"):
        FeatureExtractor(FeatureConfig("fbank", {"num_mel_bins": 128, "sample_frequency": 8000.0}))
