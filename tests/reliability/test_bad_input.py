"""Bad audio and tables: a clear error naming the file, line or utterance, or a logged note; never a
silent wrong result. Each case is read the three ways a recipe reads it: validation, the training
data path (``UtteranceDataset``) and feature extraction. The table is in README.md here."""
from __future__ import annotations

import io
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile

from audiossl.data.dataset import BucketBatchSampler, UtteranceDataset
from audiossl.data.kaldi_dir import DataDir
from audiossl.data.validate import validate_data_dir
from audiossl.errors import UserError
from audiossl.features.kaldi import FeatureConfig, FeatureExtractor
from audiossl.features.store import compute_features
from conftest import synth_speechlike


def data_dir(root: Path, audio: np.ndarray | None = None, raw: bytes | None = None, **write) -> Path:
    """A two-utterance data dir whose first recording is ``audio`` (or the bytes ``raw``), the second fine."""
    root.mkdir(parents=True, exist_ok=True)
    first = root / "first.wav"
    if raw is not None:
        first.write_bytes(raw)
    else:
        soundfile.write(first, audio, 16000, **write)
    soundfile.write(root / "second.wav", synth_speechlike(1.0, seed=1), 16000)
    wav_scp = {"s-u1": str(first), "s-u2": str(root / "second.wav")}
    DataDir({"wav.scp": wav_scp, "text": {u: "HELLO" for u in wav_scp}, "utt2spk": {u: "s" for u in wav_scp}}).write(
        root / "data")
    return root / "data"


def read_every_way(path: Path) -> list[str]:
    """The messages of validation, the training data path and feature extraction (empty where fine)."""
    messages = [str(problem) for problem in validate_data_dir(path)]
    for read in (lambda: [item for item in UtteranceDataset(path, "waveform")],
                 lambda: compute_features(DataDir.read(path), FeatureExtractor(FeatureConfig.from_kaldi_args(
                     "fbank", ["--num-mel-bins=80"])), path / "fbank.ark")):
        try:
            read()
        except UserError as err:
            messages.append(str(err))
    return messages


def truncated() -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, synth_speechlike(1.0, seed=0), 16000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()[:3000]  # a copy cut short: the header still declares a second of audio


NAN = synth_speechlike(1.0, seed=0)
NAN[100:150] = np.nan


@pytest.mark.parametrize("name, first, message, readers", [
    ("truncated", {"raw": truncated()}, "first.wav' is truncated: its header declares 32000 bytes of audio, the file "
                                        "holds 2956", 3),
    ("zero-length file", {"raw": b""}, "cannot decode '.*first.wav': Error opening", 3),
    ("no samples", {"audio": np.zeros(0, np.float32)}, "first.wav': no samples", 3),
    # validation reads headers only: the samples are checked where they are decoded
    ("NaN samples", {"audio": NAN, "subtype": "FLOAT"}, "first.wav': 50 NaN or inf sample\\(s\\)", 2),
])
def test_unreadable_audio_is_named_by_every_reader(tmp_path, name, first, message, readers):
    messages = read_every_way(data_dir(tmp_path, **first))
    assert len(messages) == readers and all(re.search(message, m) for m in messages), messages
    assert "recording 's-u1'" in messages[0] if readers == 3 else "recording" not in messages[0]
    assert "wav.scp:1: utterance 's-u1'" in messages[-2]   # the data path names the line and utterance
    assert "utterance 's-u1'" in messages[-1]   # feature extraction names the utterance too


@pytest.mark.parametrize("name, audio, note", [
    ("all silence", np.zeros(16000, np.float32), "every sample is zero (digital silence)"),
    ("two channels", np.stack([synth_speechlike(1.0, seed=0)] * 2, axis=1), "2 channels: the first is kept"),
])
def test_suspicious_audio_is_read_and_noted_once(tmp_path, caplog, name, audio, note):
    path = data_dir(tmp_path, audio)
    with caplog.at_level(logging.WARNING, logger="audiossl.audio"):
        assert read_every_way(path) == []
        list(UtteranceDataset(path, "waveform"))   # read again: not noted again
    assert [r.getMessage() for r in caplog.records] == [f"'{tmp_path / 'first.wav'}': {note}"]


def test_tables_not_in_utf8_are_named_by_file_and_line(tmp_path):
    path = data_dir(tmp_path, synth_speechlike(1.0, seed=0))
    (path / "text").write_bytes("s-u1 HELLO\ns-u2 CAF\xc9\n".encode("latin-1"))
    assert f"{path / 'text'}:2: not UTF-8 (byte 0xc9 at column 9)" in read_every_way(path)[0]
    with pytest.raises(UserError, match="text:2: not UTF-8"):
        DataDir.read(path)


def test_crlf_line_ends_read_as_lf(tmp_path):
    path = data_dir(tmp_path, synth_speechlike(1.0, seed=0))
    for name in ("wav.scp", "text", "utt2spk"):
        (path / name).write_bytes((path / name).read_bytes().replace(b"\n", b"\r\n"))
    assert read_every_way(path) == [] and DataDir.read(path)["text"] == {"s-u1": "HELLO", "s-u2": "HELLO"}


def test_a_utf8_byte_order_mark_is_not_read_as_part_of_the_first_key(tmp_path):
    """Windows editors may start a UTF-8 file with one: the first utterance was 'out of place', then dropped."""
    path = data_dir(tmp_path, synth_speechlike(1.0, seed=0))
    for name in ("text", "utt2spk"):
        (path / name).write_bytes(b"\xef\xbb\xbf" + (path / name).read_bytes())
    assert read_every_way(path) == [] and list(DataDir.read(path)["text"]) == ["s-u1", "s-u2"]


def test_tabs_between_key_and_value_read_as_spaces(tmp_path):
    """Kaldi splits a table line at its first spaces or tabs; a tab would make it all the key."""
    path = data_dir(tmp_path, synth_speechlike(1.0, seed=0))
    (path / "text").write_text("s-u1\tHELLO THERE\ns-u2 \t HELLO\tAGAIN \n")
    (path / "utt2spk").write_text("s-u1\ts\ns-u2\ts\n")
    assert read_every_way(path) == []
    assert DataDir.read(path)["text"] == {"s-u1": "HELLO THERE", "s-u2": "HELLO\tAGAIN"}


def test_an_utterance_longer_than_the_batch_bound_is_a_batch_alone():
    batches = BucketBatchSampler([100, 120, 5000, 90], max_frames=1000, shuffle=False).epoch_batches(0)
    assert [2] in batches and sorted(i for batch in batches for i in batch) == [0, 1, 2, 3]


def fbank_dir(root: Path) -> Path:
    """A data dir of two utterances with feats.scp (5 and 7 frames of 4 bins) and utt2num_frames."""
    import kaldiio

    root.mkdir(parents=True, exist_ok=True)
    feats = {"s-u1": np.zeros((5, 4), np.float32), "s-u2": np.ones((7, 4), np.float32)}
    kaldiio.save_ark(str(root / "feats.ark"), feats, scp=str(root / "feats.scp"))
    DataDir({"feats.scp": DataDir.read(root).tables["feats.scp"], "utt2spk": {u: "s" for u in feats},
             "utt2num_frames": {"s-u1": "5", "s-u2": "7"}}).write(root / "data")
    return root / "data"


def rewrite(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new))


@pytest.mark.parametrize("name, table, old, new, message", [
    ("offset past the end", "feats.scp", "feats.ark:", "feats.ark:9999", "feats.scp:1: utterance 's-u1': cannot read "
                                                                        "features '.*feats.ark:9999.*': AssertionError"),
    ("garbage offset", "feats.scp", "feats.ark:", "feats.ark:x", "feats.scp:1: utterance 's-u1': cannot read features"),
    ("frame count not a number", "utt2num_frames", "s-u2 7", "s-u2 abc", "utt2num_frames:2: utterance 's-u2': "
                                                                         "expected a positive integer, got 'abc'"),
    ("frame count missing", "utt2num_frames", "s-u2 7\n", "", "utt2num_frames: no entry for utterance 's-u2'"),
])
def test_bad_feature_tables_are_named_by_line_utterance_and_value(tmp_path, name, table, old, new, message):
    path = fbank_dir(tmp_path)
    rewrite(path / table, old, new)
    if table == "feats.scp":   # frames are then counted from feats.scp, which reads every entry
        (path / "utt2num_frames").unlink()
    with pytest.raises(UserError, match=message):
        UtteranceDataset(path, "fbank")


def test_an_empty_audio_entry_is_named_by_line_and_utterance(tmp_path):
    path = data_dir(tmp_path, synth_speechlike(1.0, seed=0))
    (path / "wav.scp").write_text(f"s-u1 {tmp_path / 'first.wav'}\ns-u2\n")
    with pytest.raises(UserError, match=f"{path / 'wav.scp'}:2: utterance 's-u2': no audio path or command"):
        UtteranceDataset(path, "waveform")
    assert f"{path / 'wav.scp'}:2: 's-u2': expected an audio path" in "\n".join(map(str, validate_data_dir(path)))


def test_an_empty_transcript_is_trained_on_and_noted_once(tmp_path, caplog):
    from audiossl.tasks.asr import token_targets
    from audiossl.text.tokenizer import build_tokenizer

    path = data_dir(tmp_path, synth_speechlike(1.0, seed=0))
    (path / "text").write_text("s-u1\ns-u2 HELLO\n")
    with caplog.at_level(logging.WARNING, logger="audiossl.tasks.asr"):
        targets = token_targets(path, build_tokenizer("char", ["HELLO"], None))
    assert targets["s-u1"] == [] and len(targets["s-u2"]) == 5
    assert [r.getMessage() for r in caplog.records] == [f"{path}/text: 1 empty transcript(s), trained on as all "
                                                        "blank: s-u1"]


def test_a_training_transcript_that_cannot_make_a_tokenizer_is_named_with_its_file(tmp_path):
    """A '|' in a char tokenizer's training text was a ValueError traceback naming no file."""
    from audiossl.tasks.asr import FineTuningOptions, run_tokenizer

    path = data_dir(tmp_path, synth_speechlike(1.0, seed=0))
    (path / "text").write_text("s-u1 HELLO | WORLD\ns-u2 HELLO\n")
    with pytest.raises(UserError, match=re.escape(f"{path}/text: a transcript holds '|', the word boundary token, "
                                                  "which transcripts may not: 'HELLO | WORLD'")):
        run_tokenizer(FineTuningOptions(), str(path), tmp_path / "exp")
    (path / "text").write_text("s-u1\ns-u2  \n")
    with pytest.raises(UserError, match=re.escape(f"{path}/text: no non-empty transcripts to train a tokenizer on")):
        run_tokenizer(FineTuningOptions(tokenizer="bpe", vocab_size=10), str(path), tmp_path / "exp")


@pytest.mark.parametrize("kind, vocab_size", [("char", None), ("bpe", 12)])
def test_transcripts_with_characters_the_tokenizer_lacks_are_noted_once(tmp_path, caplog, kind, vocab_size):
    """A dev set's letters unseen in training encode as <unk>: logged with the letters and the utterances."""
    from audiossl.tasks.asr import token_targets
    from audiossl.text.tokenizer import UNK_ID, build_tokenizer

    path = data_dir(tmp_path, synth_speechlike(1.0, seed=0))
    (path / "text").write_text("s-u1 HOLA ÑANDÚ\ns-u2 HELLO\n")
    with caplog.at_level(logging.WARNING, logger="audiossl.tasks.asr"):
        targets = token_targets(path, build_tokenizer(kind, ["HELLO HOLA", "AND DO"] * 3, vocab_size))
    assert UNK_ID in targets["s-u1"] and UNK_ID not in targets["s-u2"]
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}/text: 1 transcript(s) with characters the tokenizer lacks (Ñ Ú), encoded as <unk>: s-u1"]
