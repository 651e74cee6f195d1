"""Label tables: round trip, merging job outputs, length and coverage checks, cluster usage."""
from __future__ import annotations

import numpy as np
import pytest

from audiossl.targets.labels import (LabelError, check_coverage, check_label_lengths, describe_counts,
                                     label_counts, merge_label_files, num_codebooks, read_frame_counts,
                                     read_labels, write_labels)


def test_write_read_round_trip(tmp_path):
    labels = {"b-utt": np.array([3, 3, 0, 12]), "a-utt": np.array([5], dtype=np.int32),
              "c-empty": np.array([], dtype=np.int64)}
    path = tmp_path / "labels.txt"
    write_labels(path, labels)
    assert path.read_text() == "a-utt 5\nb-utt 3 3 0 12\nc-empty\n"
    assert [p.name for p in tmp_path.iterdir()] == ["labels.txt"]  # no temporary file left
    back = read_labels(path)
    assert list(back) == ["a-utt", "b-utt", "c-empty"]
    for utt, seq in labels.items():
        assert back[utt].dtype == np.int64
        np.testing.assert_array_equal(back[utt], seq)


def test_write_rejects_non_integer_labels(tmp_path):
    with pytest.raises(LabelError, match="'u1'"):
        write_labels(tmp_path / "x.txt", {"u1": np.array([0.5, 1.0])})
    with pytest.raises(LabelError, match="'u2'"):
        write_labels(tmp_path / "x.txt", {"u2": np.zeros((2, 2, 2), dtype=np.int64)})


def test_codebook_labels_round_trip_and_a_differing_count_names_the_utterance(tmp_path):
    codes = {"u1": np.array([[3, 1], [3, 4], [0, 15]]), "u2": np.zeros((0, 2), dtype=np.int64)}
    path = tmp_path / "codes.txt"
    write_labels(path, codes)
    assert path.read_text() == "u1 3,1 3,4 0,15\nu2\n"
    back = read_labels(path)
    np.testing.assert_array_equal(back["u1"], codes["u1"])
    assert num_codebooks(back) == 2 and num_codebooks({"u": np.array([1, 2])}) == 1
    bad = tmp_path / "bad.txt"
    bad.write_text("u1 3,1 3,4\nu2 1,2,3\n")
    with pytest.raises(LabelError, match=r"bad\.txt: utterance 'u2' has 3 codebook\(s\) per frame, utterance 'u1' 2"):
        read_labels(bad)
    bad.write_text("u1 3,1 3\n")
    with pytest.raises(LabelError, match="'u1'"):
        read_labels(bad)


def test_read_errors_name_file_and_utterance(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("u1 1 2\nu2 3 x 4\n")
    with pytest.raises(LabelError, match=r"bad\.txt.*'u2'"):
        read_labels(bad)
    unsorted = tmp_path / "unsorted.txt"
    unsorted.write_text("u2 1\nu1 2\n")
    with pytest.raises(LabelError, match=r"unsorted\.txt:2"):
        read_labels(unsorted)


def test_merge_label_files(tmp_path):
    write_labels(tmp_path / "1.txt", {"u1": np.array([1, 2]), "u3": np.array([0])})
    write_labels(tmp_path / "2.txt", {"u2": np.array([4])})
    merged = merge_label_files([tmp_path / "1.txt", tmp_path / "2.txt"])
    assert sorted(merged) == ["u1", "u2", "u3"]
    np.testing.assert_array_equal(merged["u1"], [1, 2])
    write_labels(tmp_path / "3.txt", {"u3": np.array([0])})
    with pytest.raises(LabelError, match=r"3\.txt: key 'u3' also in .*1\.txt"):
        merge_label_files([tmp_path / "1.txt", tmp_path / "2.txt", tmp_path / "3.txt"])


def test_check_label_lengths():
    labels = {"u1": np.zeros(10, dtype=np.int64), "u2": np.zeros(7, dtype=np.int64), "extra": np.zeros(1)}
    check_label_lengths(labels, {"u1": 10, "u2": 7}, "km.txt")  # extra utterances are fine
    with pytest.raises(LabelError) as err:
        check_label_lengths(labels, {"u1": 10, "u2": 8}, "exp/km.txt")
    message = str(err.value)
    assert "exp/km.txt" in message and "'u2'" in message and "7" in message and "8" in message
    assert "'u1'" not in message
    with pytest.raises(LabelError, match=r"km\.txt: .*no labels for 1 utterance\(s\): 'u9'"):
        check_label_lengths(labels, {"u1": 10, "u9": 3}, "km.txt")


def test_check_label_lengths_reports_every_problem_kind():
    labels = {f"u{i}": np.zeros(5, dtype=np.int64) for i in range(8)}
    expected = {f"u{i}": 6 for i in range(8)} | {"lost": 2}
    with pytest.raises(LabelError) as err:
        check_label_lengths(labels, expected, "km.txt")
    message = str(err.value)
    assert "8 utterance(s) of the wrong length" in message and "and 3 more" in message
    assert "'lost'" in message


def test_check_coverage():
    labels = {"u1": np.zeros(2, dtype=np.int64)}
    check_coverage(labels, ["u1"], "km.txt")
    with pytest.raises(LabelError, match=r"km\.txt: no labels for 2 utterance\(s\): 'u2', 'u3'"):
        check_coverage(labels, ["u3", "u1", "u2"], "km.txt")


def test_label_counts_and_description():
    labels = {"a": np.array([0, 0, 2]), "b": np.array([2, 2, 2, 0]), "c": np.array([], dtype=np.int64)}
    counts = label_counts(labels, 4)
    np.testing.assert_array_equal(counts, [3, 0, 4, 0])
    line = describe_counts(counts)
    assert line.startswith("2 of 4 clusters used") and "max 4" in line
    uniform = describe_counts(np.full(8, 10))
    assert "perplexity 8.0" in uniform
    with pytest.raises(LabelError, match="'b'.*outside"):
        label_counts({"b": np.array([0, 5])}, 4)


def test_read_frame_counts(tmp_path):
    path = tmp_path / "utt2num_frames"
    path.write_text("u1 12\nu2 7\n")
    assert read_frame_counts(path) == {"u1": 12, "u2": 7}
    path.write_text("u1 12\nu2 seven\n")
    with pytest.raises(LabelError, match="'u2'"):
        read_frame_counts(path)


def test_frame_counts_of_a_data_dir_whose_write_stopped_midway_are_refused(tmp_path):
    """utt2num_frames may be of another write than the dir's other tables."""
    (tmp_path / "utt2num_frames").write_text("u1 12\n")
    (tmp_path / ".incomplete").touch()
    with pytest.raises(LabelError, match=f"{tmp_path}: a write of its tables stopped midway"):
        read_frame_counts(tmp_path / "utt2num_frames")
