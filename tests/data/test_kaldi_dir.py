"""Kaldi data dirs: reading, writing, validation of each broken case, fix, subset, combine, split."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from audiossl.audio import AudioError, load_entry
from audiossl.data.kaldi_dir import (DataDir, DataDirError, combine_data_dirs, fix_data_dir, read_table,
                                     split_data_dir, subset_utterances, write_table)
from audiossl.data.validate import validate_data_dir


def messages(problems) -> str:
    return "\n".join(str(p) for p in problems)


def test_round_trip_sorted(tmp_path):
    write_table(tmp_path / "t", {"b": "2", "a": "1 x", "c": ""})
    assert (tmp_path / "t").read_text() == "a 1 x\nb 2\nc\n"
    assert read_table(tmp_path / "t") == {"a": "1 x", "b": "2", "c": ""}


def test_valid_dir(data_dir):
    assert validate_data_dir(data_dir) == []
    data = DataDir.read(data_dir)
    assert data.utterances == ["spkA-u1", "spkA-u2", "spkB-u3", "spkB-u4"]
    assert data["spk2utt"] == {"spkA": "spkA-u1 spkA-u2", "spkB": "spkB-u3 spkB-u4"}


def test_segments_valid(segments_dir):
    assert validate_data_dir(segments_dir) == []


def test_unsorted_named(data_dir):
    lines = (data_dir / "text").read_text().splitlines()
    (data_dir / "text").write_text("\n".join([lines[1], lines[0]] + lines[2:]) + "\n")
    out = messages(validate_data_dir(data_dir))
    assert f"{data_dir / 'text'}:2: key 'spkA-u1' is out of order" in out


def test_duplicate_named(data_dir):
    with open(data_dir / "utt2spk", "a") as f:
        f.write("spkB-u4 spkB\n")
    out = messages(validate_data_dir(data_dir))
    assert f"{data_dir / 'utt2spk'}:5: duplicate key 'spkB-u4'" in out


def test_missing_and_extra_utterance_named(data_dir):
    text = read_table(data_dir / "text")
    del text["spkA-u2"]
    text["spkC-u9"] = "EXTRA"
    write_table(data_dir / "text", text)
    out = messages(validate_data_dir(data_dir))
    assert f"{data_dir / 'text'}: utterance 'spkA-u2' is in utt2spk but not here" in out
    assert f"{data_dir / 'text'}:4: utterance 'spkC-u9' is not in utt2spk" in out


def test_empty_transcript_named(data_dir):
    text = read_table(data_dir / "text")
    text["spkB-u3"] = ""
    write_table(data_dir / "text", text)
    assert f"{data_dir / 'text'}:3: utterance 'spkB-u3' has an empty transcript" in messages(validate_data_dir(data_dir))


def test_malformed_values_named(data_dir):
    (data_dir / "utt2spk").write_text("spkA-u1 spkA\nspkA-u2\nspkB-u3 spkB\nspkB-u4 spkB\n")
    write_table(data_dir / "utt2num_frames", {"spkA-u1": "130", "spkA-u2": "abc", "spkB-u3": "-4", "spkB-u4": "90"})
    write_table(data_dir / "utt2dur", {"spkA-u1": "1.3", "spkA-u2": "2.0", "spkB-u3": "0.9", "spkB-u4": "nan"})
    out = messages(validate_data_dir(data_dir))
    assert f"{data_dir / 'utt2spk'}:2: 'spkA-u2': expected one speaker id, got ''" in out
    assert f"{data_dir / 'utt2num_frames'}:2: 'spkA-u2': expected a positive integer, got 'abc'" in out
    assert f"{data_dir / 'utt2num_frames'}:3: 'spkB-u3': expected a positive integer, got '-4'" in out
    assert f"{data_dir / 'utt2dur'}:4: 'spkB-u4': expected a positive number of seconds, got 'nan'" in out


def test_missing_audio_named(data_dir, audio_dir):
    (audio_dir / "rec2.wav").unlink()
    out = messages(validate_data_dir(data_dir))
    assert f"{data_dir / 'wav.scp'}:3: recording 'spkB-u3'" in out and "rec2.wav" in out


def test_corrupt_audio_named(data_dir, audio_dir):
    (audio_dir / "rec0.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    assert f"{data_dir / 'wav.scp'}:1: recording 'spkA-u1': cannot decode" in messages(validate_data_dir(data_dir))


def test_failing_pipe_named(data_dir):
    wav = read_table(data_dir / "wav.scp")
    wav["spkA-u2"] = "sox /nonexistent.wav -t wav - |"
    write_table(data_dir / "wav.scp", wav)
    out = messages(validate_data_dir(data_dir))
    assert f"{data_dir / 'wav.scp'}:2: recording 'spkA-u2': command 'sox /nonexistent.wav -t wav -' failed (exit 2)" in out


def test_segment_past_end_named(segments_dir):
    seg = read_table(segments_dir / "segments")
    seg["spk1-s2"] = "recA 0.75 2.50"  # recA lasts 2.0 s
    write_table(segments_dir / "segments", seg)
    out = messages(validate_data_dir(segments_dir))
    assert f"{segments_dir / 'segments'}:2: utterance 'spk1-s2' ends at 2.500 s, past the end of recording 'recA'" in out


def test_segment_unknown_recording_named(segments_dir):
    seg = read_table(segments_dir / "segments")
    seg["spk2-s3"] = "recZ 0.1 0.5"
    write_table(segments_dir / "segments", seg)
    assert "utterance 'spk2-s3': recording 'recZ' is not in wav.scp" in messages(validate_data_dir(segments_dir))


def test_a_segment_of_four_fields_or_no_finite_region_is_named(segments_dir):
    """Validation let them through; the data path then failed with a ValueError (unpacking, int(nan))."""
    seg = read_table(segments_dir / "segments")
    seg["spk1-s1"], seg["spk1-s2"] = "recA 0.00 0.80 1", "recA nan 2.00"
    write_table(segments_dir / "segments", seg)
    found = messages(validate_data_dir(segments_dir, decode_audio=False))
    assert "segments:1: utterance 'spk1-s1': expected '<recording> <start> <end>', got 'recA 0.00 0.80 1'" in found
    assert "segments:2: utterance 'spk1-s2': expected '<recording> <start> <end>', got 'recA nan 2.00'" in found
    with pytest.raises(DataDirError, match="utterance 'spk1-s2': expected '<recording> <start> <end>', got 'recA nan"):
        DataDir.read(segments_dir).audio_entry("spk1-s2")


def test_spk2utt_mismatch_named(data_dir):
    write_table(data_dir / "spk2utt", {"spkA": "spkA-u1", "spkB": "spkB-u3 spkB-u4"})
    assert "spk2utt: does not match utt2spk" in messages(validate_data_dir(data_dir))


def test_read_raises_with_file_and_line(data_dir):
    with open(data_dir / "text", "a") as f:
        f.write("spkA-u1 AGAIN\n")
    with pytest.raises(DataDirError, match=r"text:5: duplicate key 'spkA-u1'"):
        DataDir.read(data_dir)


def test_fix_drops_orphans_keeps_backup(data_dir):
    text = read_table(data_dir / "text")
    del text["spkA-u2"]
    text["spkB-u3"] = ""
    write_table(data_dir / "text", text)
    with open(data_dir / "utt2spk", "a") as f:  # unsorted duplicate too
        f.write("spkA-u1 spkA\n")
    problems = fix_data_dir(data_dir)
    assert {"spkA-u2", "spkB-u3"} <= {p.message.split("'")[1] for p in problems if "dropped" in p.message}
    assert validate_data_dir(data_dir) == []
    assert DataDir.read(data_dir).utterances == ["spkA-u1", "spkB-u4"]
    assert "spkA-u2" in (data_dir / ".backup" / "utt2spk").read_text()


def test_a_fix_that_would_drop_every_utterance_is_refused_and_changes_nothing(data_dir):
    write_table(data_dir / "text", {utt: "" for utt in read_table(data_dir / "text")})
    before = {p.name: p.read_text() for p in data_dir.iterdir()}
    with pytest.raises(DataDirError, match=r"(?s)would drop every one of its 4 utterances; left as it is.*"
                                           r"utterance 'spkA-u1' dropped"):
        fix_data_dir(data_dir)
    assert {p.name: p.read_text() for p in data_dir.iterdir()} == before
    (data_dir / "utt2spk").write_text("")
    assert "utt2spk: no utterances" in messages(validate_data_dir(data_dir, decode_audio=False))
    with pytest.raises(DataDirError, match="data/nowhere: not a directory"):
        fix_data_dir(data_dir / "nowhere")
    (data_dir / "empty").mkdir()
    with pytest.raises(DataDirError, match="empty: no utterances"):
        fix_data_dir(data_dir / "empty")
    assert not (data_dir / "empty" / ".backup").exists()


def test_an_utterance_without_a_segment_is_named_by_feature_extraction_and_the_data_path(segments_dir, tmp_path):
    """A segments line removed by hand, its utterance left in utt2spk: both failed with a KeyError, training
    when it first read the utterance (its length taken from utt2dur)."""
    from audiossl.data.dataset import UtteranceDataset
    from audiossl.features.kaldi import FeatureConfig, FeatureExtractor
    from audiossl.features.store import compute_features

    segments = read_table(segments_dir / "segments")
    del segments["spk1-s2"]
    write_table(segments_dir / "segments", segments)
    write_table(segments_dir / "utt2dur", {"spk1-s1": "0.8", "spk1-s2": "1.25", "spk2-s3": "1.1"})
    message = "segments: no region for utterance 'spk1-s2'"
    with pytest.raises(DataDirError, match=message):
        compute_features(DataDir.read(segments_dir), FeatureExtractor(FeatureConfig("fbank")), tmp_path / "f.ark")
    with pytest.raises(DataDirError, match=message):
        UtteranceDataset(segments_dir, "waveform")[1]


def test_fix_drops_an_utterance_whose_segment_is_malformed(segments_dir):
    segments = read_table(segments_dir / "segments")
    segments["spk1-s1"] = ""
    segments["spk1-s2"] = "recA 0.75"
    write_table(segments_dir / "segments", segments)
    problems = fix_data_dir(segments_dir)
    assert "utterance 'spk1-s2' dropped" in messages(problems)
    assert DataDir.read(segments_dir).utterances == ["spk2-s3"]


def test_subset_keeps_cmvn_stats_per_speaker_or_per_utterance():
    utt2spk = {"spkA-u1": "spkA", "spkA-u2": "spkA", "spkB-u3": "spkB"}
    per_speaker = DataDir({"utt2spk": utt2spk, "cmvn.scp": {"spkA": "a.ark:1", "spkB": "a.ark:2"}})
    assert per_speaker.subset(["spkA-u2"]).tables["cmvn.scp"] == {"spkA": "a.ark:1"}
    per_utt = DataDir({"utt2spk": utt2spk, "cmvn.scp": {u: f"b.ark:{i}" for i, u in enumerate(utt2spk)}})
    assert per_utt.subset(["spkA-u2", "spkB-u3"]).tables["cmvn.scp"] == {"spkA-u2": "b.ark:1", "spkB-u3": "b.ark:2"}


def test_subset_follows_recordings(segments_dir):
    data = DataDir.read(segments_dir)
    sub = subset_utterances(data, utt_list=["spk2-s3"])
    assert sub.utterances == ["spk2-s3"] and list(sub["wav.scp"]) == ["recB"]
    rand1 = subset_utterances(data, num=2, seed=3).utterances
    assert rand1 == subset_utterances(data, num=2, seed=3).utterances and len(rand1) == 2
    assert subset_utterances(data, num=2, first=True).utterances == ["spk1-s1", "spk1-s2"]
    with pytest.raises(DataDirError, match="asked for 5 utterances"):
        subset_utterances(data, num=5)


def test_combine_and_conflict(tmp_path, data_dir, segments_dir):
    data = DataDir.read(data_dir)
    subset_utterances(data, utt_list=["spkA-u1"]).write(tmp_path / "a")
    subset_utterances(data, utt_list=["spkB-u3", "spkB-u4"]).write(tmp_path / "b")
    combined = combine_data_dirs([tmp_path / "a", tmp_path / "b"])
    assert combined.utterances == ["spkA-u1", "spkB-u3", "spkB-u4"]
    subset_utterances(data, utt_list=["spkB-u3"]).write(tmp_path / "b3")   # one speaker in two sources
    subset_utterances(data, utt_list=["spkB-u4"]).write(tmp_path / "b4")
    combine_data_dirs([tmp_path / "b3", tmp_path / "b4"]).write(tmp_path / "b34")
    assert DataDir.read(tmp_path / "b34")["spk2utt"] == {"spkB": "spkB-u3 spkB-u4"}
    shutil.copytree(tmp_path / "b", tmp_path / "c")
    write_table(tmp_path / "c" / "text", {"spkB-u3": "OTHER", "spkB-u4": "EIGHT K"})
    with pytest.raises(DataDirError, match="key 'spkB-u3' also in"):
        combine_data_dirs([tmp_path / "b", tmp_path / "c"])


def test_combine_gives_a_dir_without_segments_whole_recording_regions(tmp_path, data_dir, segments_dir, caplog):
    (segments_dir / "utt2lang").write_text("spk1-s1 en\nspk1-s2 en\nspk2-s3 en\n")
    combined = combine_data_dirs([data_dir, segments_dir])
    assert combined["segments"]["spkA-u1"] == "spkA-u1 0 -1" and combined["segments"]["spk1-s1"] == "recA 0.00 0.80"
    assert "combine: utt2lang left out, as " + str(data_dir) + " lacks it" in caplog.text
    combined.write(tmp_path / "all")
    assert validate_data_dir(tmp_path / "all") == []  # the audio of each region decoded


def test_combine_leaves_out_cmvn_stats_of_a_speaker_in_two_sources(tmp_path, data_dir, caplog):
    """Each source's stats of spkB are of its utterances alone: combine refused the two values, or kept one."""
    data = DataDir.read(data_dir)
    for name, utt, stats in (("b3", "spkB-u3", "a.ark:8"), ("b4", "spkB-u4", "b.ark:8")):
        part = subset_utterances(data, utt_list=[utt])
        part.tables["cmvn.scp"] = {"spkB": stats}
        part.write(tmp_path / name)
    combined = combine_data_dirs([tmp_path / "b3", tmp_path / "b4"])
    assert "cmvn.scp" not in combined and combined.utterances == ["spkB-u3", "spkB-u4"]
    assert "combine: cmvn.scp left out" in caplog.text


def test_split(data_dir):
    data = DataDir.read(data_dir)
    parts = split_data_dir(data, 2, per_speaker=True)
    assert [p.utterances for p in parts] == [["spkA-u1", "spkA-u2"], ["spkB-u3", "spkB-u4"]]
    parts = split_data_dir(data, 3)
    assert sum((p.utterances for p in parts), []) == data.utterances
    with pytest.raises(DataDirError, match="cannot split 2 speakers into 3"):
        split_data_dir(data, 3, per_speaker=True)


def test_a_split_killed_halfway_leaves_the_earlier_split_whole(data_dir, monkeypatch):
    """split_data.sh takes a split whose last part has utt2spk as done: a part of two data dirs would be used."""
    from audiossl.bin import data_dir as data_dir_main
    from audiossl.data import kaldi_dir

    assert data_dir_main.main(["split", "--per-utt", str(data_dir), "2"]) == 0
    earlier = {p.relative_to(data_dir): p.read_text() for p in (data_dir / "split2utt").rglob("*") if p.is_file()}
    wav_scp = read_table(data_dir / "wav.scp")
    write_table(data_dir / "wav.scp", {utt: entry.replace("rec", "REC") for utt, entry in wav_scp.items()})
    written = kaldi_dir.write_table

    def killed_at_part_2s_wav_scp(path, table):
        if path.parent.name == "2" and "wav.scp" in path.name:   # its temporary name
            raise KeyboardInterrupt
        written(path, table)

    monkeypatch.setattr(kaldi_dir, "write_table", killed_at_part_2s_wav_scp)
    with pytest.raises(KeyboardInterrupt):
        data_dir_main.main(["split", "--per-utt", str(data_dir), "2"])
    assert {p.relative_to(data_dir): p.read_text() for p in (data_dir / "split2utt").rglob("*") if p.is_file()} == earlier


def test_a_write_killed_between_its_renames_is_refused_until_written_again(data_dir, monkeypatch, capsys):
    """A subset killed once some tables are renamed in (utt2spk of 2 utterances, text still of 4)."""
    from audiossl import atomic
    from audiossl.bin import data_dir as data_dir_main

    dest = data_dir.parent / "subset"
    assert data_dir_main.main(["copy", str(data_dir), str(dest)]) == 0
    replace = os.replace

    def killed_at_text(src, dst):
        if Path(dst) == dest / "text":
            raise KeyboardInterrupt
        replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", killed_at_text)
    with pytest.raises(KeyboardInterrupt):
        data_dir_main.main(["subset", "--first", "2", str(data_dir), str(dest)])
    monkeypatch.undo()
    assert (len(read_table(dest / "utt2spk")), len(read_table(dest / "text"))) == (2, 4)
    with pytest.raises(DataDirError, match=f"{dest}: a write of its tables stopped midway .*run the step that "
                                           "wrote it again"):
        DataDir.read(dest)
    [problem] = validate_data_dir(dest)
    assert problem.file == str(dest) and "stopped midway" in problem.message
    for command in (["validate", str(dest)], ["fix", str(dest)], ["copy", str(dest), str(data_dir.parent / "c")]):
        assert data_dir_main.main(command) == 1
        assert f"{dest}: a write of its tables stopped midway" in capsys.readouterr().err
    assert data_dir_main.main(["subset", "--first", "2", str(data_dir), str(dest)]) == 0
    assert validate_data_dir(dest) == [] and not (dest / ".incomplete").exists()
    data = DataDir.read(dest)
    assert len(data.utterances) == 2 and data.utterances == sorted(data["text"]) == sorted(data["wav.scp"])


def test_validate_of_a_dir_whose_write_stopped_midway_does_not_point_to_fix(tmp_path, capsys):
    """fix refuses that dir too: the step that wrote it is the way out."""
    from audiossl.bin import data_dir as data_dir_main

    write_table(tmp_path / "utt2spk", {"a": "a"})
    (tmp_path / ".incomplete").touch()
    assert data_dir_main.main(["validate", "--no-text", "--no-wav", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "run the step that wrote it again" in err and "fix_data_dir" not in err


def test_load_entry_pipe_segment_resample(data_dir, audio_dir):
    data = DataDir.read(data_dir)
    plain, _ = load_entry(str(audio_dir / "rec1.wav"))
    piped, rate = load_entry(data["wav.scp"]["spkA-u2"])
    assert rate == 16000 and np.array_equal(plain, piped)
    region, _ = load_entry(str(audio_dir / "rec1.wav"), 0.5, 1.0)
    assert np.array_equal(region, plain[8000:16000])
    resampled, rate = load_entry(data["wav.scp"]["spkB-u4"])
    assert rate == 16000 and abs(len(resampled) - 1.1 * 16000) <= 1
    with pytest.raises(AudioError, match="past the end"):
        load_entry(str(audio_dir / "rec1.wav"), 0.5, 3.0)


def test_load_entry_of_a_region_before_the_start_or_a_rate_below_1_hz_is_named(audio_dir):
    """A negative start failed as "cannot decode ...: Internal psf_fseek() failed", as if the file were damaged,
    and a rate of 0 with torchaudio's ValueError; neither read the file."""
    path = str(audio_dir / "rec1.wav")
    with pytest.raises(AudioError, match=r"rec1.wav': region -0.500-1.000 s at 16000 Hz: a region starts at 0 s"):
        load_entry(path, -0.5, 1.0)
    with pytest.raises(AudioError, match=r"at 0 Hz: .*a sample rate is 1 Hz or more"):
        load_entry(path, sample_rate=0)
