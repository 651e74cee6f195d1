"""Self-training: pseudo-label confidences, the kept ones, and the combined training data dir."""
from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from audiossl.bin import pseudo_label
from audiossl.checkpoint import save_checkpoint
from audiossl.data.kaldi_dir import DataDir, DataDirError, Segment
from audiossl.errors import ConfigError
from audiossl.models.ctc.factory import ctc_over_encoder
from audiossl.models.wav2vec2 import Wav2Vec2Config, build_wav2vec2
from audiossl.tasks.self_training import (PseudoLabel, keep_confident, pseudo_labels, with_pseudo_labels,
                                          write_self_training_set)
from audiossl.text.ngram import train_arpa, write_lexicon
from audiossl.text.tokenizer import build_tokenizer


def test_confidence_is_the_ctc_log_probability_per_frame_of_the_decoded_text():
    torch.manual_seed(0)
    model = ctc_over_encoder(build_wav2vec2(Wav2Vec2Config.tiny()).encoder_only(),
                             build_tokenizer("char", ["AB BA"], None), {}, copy_weights=True)
    vocab = model.tokenizer.vocab_size
    log_probs = torch.randn(2, 6, vocab).log_softmax(-1)
    frames = torch.tensor([6, 4])
    texts = {"u1": "AB", "u2": "ABABABAB"}   # u2: more tokens than frames, no alignment
    labels = pseudo_labels(model, [(["u1", "u2"], log_probs, frames)], lambda lp, fr: [texts["u1"], texts["u2"]])
    ids = torch.tensor(model.tokenizer.encode("AB"))
    nll = torch.nn.functional.ctc_loss(log_probs[0, :, None], ids[None], frames[:1], torch.tensor([2]), reduction="sum")
    assert labels["u1"] == PseudoLabel("AB", pytest.approx(-float(nll) / 6))
    assert labels["u2"].confidence == -math.inf
    empty = pseudo_labels(model, [(["u3"], log_probs[:1], frames[:1])], lambda lp, fr: [""])
    assert empty["u3"].confidence == -math.inf


def test_keep_confident_by_threshold_or_fraction():
    labels = {f"u{i}": PseudoLabel("A", -0.1 * i) for i in range(1, 6)}
    labels["u0"] = PseudoLabel(" ", 0.0)            # empty text: never kept
    labels["u9"] = PseudoLabel("A", -math.inf)
    assert sorted(keep_confident(labels, min_confidence=-0.25)) == ["u1", "u2"]
    assert sorted(keep_confident(labels, keep_fraction=0.5)) == ["u1", "u2", "u3", "u4"]   # half of all 7, rounded
    with pytest.raises(ConfigError, match="one of the two"):
        keep_confident(labels)
    with pytest.raises(ConfigError, match=r"in \(0, 1\]"):
        keep_confident(labels, keep_fraction=1.5)
    with pytest.raises(ConfigError, match="a log-probability per frame, at most 0 .* 0.5 would keep no pseudo-label"):
        keep_confident(labels, min_confidence=0.5)   # kept nothing, said only by the count


def test_with_pseudo_labels_adds_the_kept_utterances_with_their_texts():
    labelled = DataDir({"utt2spk": {"a1": "s1"}, "feats.scp": {"a1": "f.ark:1"}, "text": {"a1": "AB"},
                        "cmvn.scp": {"s1": "c.ark:1"}})
    unlabelled = DataDir({"utt2spk": {"b1": "s1", "b2": "s2"}, "feats.scp": {"b1": "g.ark:1", "b2": "g.ark:9"},
                          "text": {"b1": "TRUE", "b2": "TRUE"}, "cmvn.scp": {"s1": "d.ark:1", "s2": "d.ark:5"}})
    combined = with_pseudo_labels(labelled, unlabelled, {"b2": PseudoLabel("BA", -0.25)}, "out")
    assert combined["text"] == {"a1": "AB", "b2": "BA"} and combined["feats.scp"] == {"a1": "f.ark:1", "b2": "g.ark:9"}
    assert combined["utt2confidence"] == {"a1": "0", "b2": "-0.2500"} and "cmvn.scp" not in combined
    with pytest.raises(DataDirError, match="'a1' is labelled already"):
        with_pseudo_labels(labelled, labelled, {"a1": PseudoLabel("X", 0.0)}, "out")
    with pytest.raises(DataDirError, match="'c1', which the unlabelled set does not have"):
        with_pseudo_labels(labelled, unlabelled, {"c1": PseudoLabel("X", 0.0)}, "out")


@pytest.mark.parametrize("segmented", ["labelled", "unlabelled"])
def test_a_set_of_segments_keeps_its_regions_beside_a_set_without(segmented):
    """Only the tables of both sets were kept: ``segments`` of one was dropped, and its utterances had no audio
    (its wav.scp lists recordings)."""
    regions = DataDir({"wav.scp": {"recA": "a.wav"}, "segments": {"r1": "recA 0 1.5", "r2": "recA 1.5 3"},
                       "utt2spk": {"r1": "s1", "r2": "s1"}, "text": {"r1": "AB", "r2": "BA"}})
    whole = DataDir({"wav.scp": {"w1": "w1.wav", "w2": "w2.wav"}, "utt2spk": {"w1": "s2", "w2": "s2"},
                     "text": {"w1": "AB", "w2": "AB"}})
    labelled, unlabelled, kept = (regions, whole, "w2") if segmented == "labelled" else (whole, regions, "r2")
    combined = with_pseudo_labels(labelled, unlabelled, {kept: PseudoLabel("BA", -0.25)}, "out")
    assert combined.utterances == sorted([*labelled.utterances, kept])
    expected = {"r1": ("a.wav", Segment("recA", 0.0, 1.5)), "r2": ("a.wav", Segment("recA", 1.5, 3.0)),
                "w1": ("w1.wav", Segment("w1", 0.0, -1.0)), "w2": ("w2.wav", Segment("w2", 0.0, -1.0))}
    assert {utt: combined.audio_entry(utt) for utt in combined.utterances} == \
        {utt: expected[utt] for utt in combined.utterances}


@pytest.mark.parametrize("args, message", [
    (["--keep-fraction", "1.5", "m.pt", "unlabelled", "labelled", "out"], r"must be in \(0, 1\], got 1.5"),
    (["--keep-fraction", "0.5", "m.pt", "unlabelled", "labelled", "./labelled/"],
     "labelled: the data dir written is the source labelled"),
    (["--min-confidence", "-1", "m.pt", "unlabelled", "labelled", "link"],
     "link: the data dir written is the source unlabelled"),
])
def test_options_that_cannot_give_a_self_training_set_are_refused_before_decoding(args, message, tmp_path, capsys,
                                                                                  monkeypatch):
    for name in ("labelled", "unlabelled"):
        DataDir({"wav.scp": {name: "a.wav"}, "utt2spk": {name: "s1"}}).write(tmp_path / name)
    (tmp_path / "link").symlink_to("unlabelled")
    monkeypatch.chdir(tmp_path)
    assert pseudo_label.main(["--lm-dir", "lm", "--lm-params-from", "scores.json", *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.splitlines()) == 1
    assert re.search(message, err) and "m.pt" not in err   # refused before the model is read


def test_an_unlabelled_set_within_the_labelled_one_is_refused_before_decoding(tmp_path, capsys):
    for name in ("labelled", "unlabelled"):
        DataDir({"wav.scp": {"a1": "a1.wav"}, "utt2spk": {"a1": "s1"}, "text": {"a1": "AB"}}).write(tmp_path / name)
    assert pseudo_label.main(["--lm-dir", "lm", "--lm-params-from", "scores.json", "--keep-fraction", "0.5",
                              str(tmp_path / "m.pt"), str(tmp_path / "unlabelled"), str(tmp_path / "labelled"),
                              str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err == (f"error: {tmp_path}/unlabelled: every utterance is one of {tmp_path}/labelled: "
                                       "nothing to pseudo-label\n")


def test_a_self_training_set_replaces_an_earlier_one_whole(data_dir, tmp_path, monkeypatch):
    """No table of an earlier set (of other inputs) stays beside the new one; a failed write keeps the earlier set."""
    torch.manual_seed(0)
    model = ctc_over_encoder(build_wav2vec2(Wav2Vec2Config.tiny()).encoder_only(),
                             build_tokenizer("char", ["AB BA"], None), {}, copy_weights=True)
    save_checkpoint(tmp_path / "m.pt", "ctc", model.config.to_dict(), model.state_dict())
    (tmp_path / "lm").mkdir()
    train_arpa(["AB BA", "BA AB", "AB AB BA", "A B", "B AB", "ABB A", "BA BA AB B"], 2, tmp_path / "lm/lm.arpa")
    write_lexicon(["A", "B", "AB", "BA", "ABB"], tmp_path / "lm/lexicon.txt")
    (tmp_path / "scores.json").write_text('{"lm_weight": 1.0, "word_score": 0.0}')
    DataDir.read(data_dir).subset(["spkA-u1"]).write(tmp_path / "labelled")
    out = tmp_path / "st"
    DataDir({"utt2spk": {"old-u1": "old"}, "utt2num_frames": {"old-u1": "12"}}).write(out)
    args = (str(tmp_path / "m.pt"), str(data_dir), str(tmp_path / "labelled"), str(out), str(tmp_path / "lm"),
            str(tmp_path / "scores.json"))
    report = write_self_training_set(*args, keep_fraction=1.0, beam_size=4)
    assert report["pseudo_labelled"] == 3
    assert sorted(p.name for p in out.iterdir()) == ["pseudo_labels.json", "spk2utt", "text", "utt2confidence",
                                                      "utt2spk", "wav.scp"]
    before = {p.name: p.read_text() for p in out.iterdir()}

    def disk_full(self, path):
        (Path(path) / "text").write_text("half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(DataDir, "write", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_self_training_set(*args, min_confidence=-1.0, beam_size=4)
    assert {p.name: p.read_text() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
