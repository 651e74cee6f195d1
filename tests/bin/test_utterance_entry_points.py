"""finetune_utterance and eval_utterance: a user's error is one line and exit 1, a bug keeps its traceback;
bad labels, classes, checkpoints and arguments are named before anything trains."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile

from audiossl.bin import eval_utterance, finetune_utterance
from audiossl.checkpoint import build_model, save_checkpoint
from audiossl.data.kaldi_dir import DataDirError, write_table
from audiossl.errors import ConfigError
from audiossl.eval import utterance as eval_utterance_module
from audiossl.models.hubert import HubertConfig
from audiossl.tasks.utterance import utterance_audio

MAINS = {  # (module, a function its main calls, the main's arguments under a tmp dir)
    "finetune": (finetune_utterance, "load_run_config",
                 lambda tmp: ["--pretrained", str(tmp / "m.pt"), "--label-table", "utt2spk", "--train-data", str(tmp),
                              str(tmp / "exp")]),
    "classify": (eval_utterance, "utterance_model",
                 lambda tmp: ["classify", "--label-table", "utt2spk", str(tmp / "m.pt"), str(tmp), str(tmp / "out")]),
    "verify": (eval_utterance, "utterance_model", lambda tmp: ["verify", str(tmp / "m.pt"), str(tmp), str(tmp / "o")]),
    "results": (eval_utterance, "results_lines",
                lambda tmp: ["results", "--pretrained-dir", str(tmp / "p"), "--scratch-dir", str(tmp / "s"),
                             "--eval-name", "eval_test", "--pretrained", "m.pt", "--command", "run.sh",
                             "--section", "S", str(tmp / "RESULTS.md")]),
}


def raising(error: Exception):
    def fail(*args, **kwargs):
        raise error
    return fail


@pytest.mark.parametrize("name", MAINS)
@pytest.mark.parametrize("error", [ConfigError("bad.yaml: bad value"), FileNotFoundError("bad.yaml: missing")])
def test_a_user_error_is_one_line(name, error, tmp_path, monkeypatch, capsys):
    module, function, argv = MAINS[name]
    monkeypatch.setattr(module, function, raising(error))
    assert module.main(argv(tmp_path)) == 1
    assert capsys.readouterr().err == f"error: {error}\n"


@pytest.mark.parametrize("name", MAINS)
@pytest.mark.parametrize("error", [RuntimeError("bug"), KeyError("bug"), ValueError("bug")])
def test_a_bug_keeps_its_traceback(name, error, tmp_path, monkeypatch):
    module, function, argv = MAINS[name]
    monkeypatch.setattr(module, function, raising(error))
    with pytest.raises(type(error)) as raised:
        module.main(argv(tmp_path))
    assert raised.value is error


@pytest.fixture
def run_files(data_dir, tmp_path):
    """A tiny fbank HuBERT checkpoint, a run config, and the shared data dir with utt2family and labels.family."""
    config = HubertConfig.tiny(frontend="fbank")
    save_checkpoint(tmp_path / "m.pt", "hubert", config.to_dict(), build_model("hubert", config.to_dict()).state_dict())
    (tmp_path / "run.yaml").write_text("utterance: {freeze_upstream: false}\n"
                                       "trainer: {max_updates: 1, batch_seconds: 3, precision: fp32, num_workers: 0}\n")
    write_table(data_dir / "utt2family", {"spkA-u1": "organ", "spkA-u2": "organ", "spkB-u3": "bass",
                                          "spkB-u4": "kazoo"})
    (data_dir / "labels.family").write_text("organ\nbass\nreed\n")
    return tmp_path


def finetune(tmp, *args):
    return finetune_utterance.main(["--config", str(tmp / "run.yaml"), "--label-table", "utt2family",
                                    "--train-data", str(tmp / "data"), *args, str(tmp / "exp")])


def test_bad_labels_stop_the_run_before_it_trains(run_files, capsys):
    tmp = run_files
    assert finetune(tmp, "--pretrained", str(tmp / "m.pt")) == 1
    err = capsys.readouterr().err
    assert err == (f"error: {tmp}/data/utt2family:4: utterance 'spkB-u4' has label 'kazoo', not one of the 3 "
                   "classes (organ, bass, reed)\n")
    write_table(tmp / "data/utt2family", {"spkA-u1": "organ", "spkA-u2": "organ", "spkB-u3": "bass", "spkB-u4": "bass"})
    assert finetune(tmp, "--pretrained", str(tmp / "m.pt")) == 1
    assert capsys.readouterr().err == (f"error: {tmp}/data/utt2family: no training utterance of 1 of the 3 classes: "
                                       "reed\n")
    assert not (tmp / "exp").exists()
    (tmp / "run.yaml").write_text("utterance: {head: {kind: linear, num_classes: 5}}\n")
    assert finetune(tmp, "--pretrained", str(tmp / "m.pt"), "--allow-empty-classes") == 1
    assert "utterance.head.num_classes is 5, the labels have 3 classes" in capsys.readouterr().err



def test_a_test_set_label_the_model_cannot_have_stops_the_run_before_it_trains(run_files, capsys):
    """--test-data (the set the recipe classifies after training) is checked first: a label outside the training
    classes failed only at evaluation, after both models had trained."""
    tmp = run_files
    write_table(tmp / "data/utt2family", {"spkA-u1": "organ", "spkA-u2": "reed", "spkB-u3": "bass", "spkB-u4": "bass"})
    test = tmp / "test"
    shutil.copytree(tmp / "data", test)
    write_table(test / "utt2family", {"spkA-u1": "organ", "spkA-u2": "harp", "spkB-u3": "bass", "spkB-u4": "bass"})
    assert finetune(tmp, "--pretrained", str(tmp / "m.pt"), "--test-data", str(test)) == 1
    assert capsys.readouterr().err.startswith(f"error: {test}/utt2family:2: utterance 'spkA-u2' has label 'harp'")
    assert not (tmp / "exp").exists()

def test_init_is_one_of_pretrained_and_scratch_like(run_files, capsys):
    tmp = run_files
    for args in ([], ["--pretrained", str(tmp / "m.pt"), "--scratch-like", str(tmp / "m.pt")]):
        with pytest.raises(SystemExit) as exited:
            finetune(tmp, *args)
        assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_evaluating_a_checkpoint_that_is_not_an_utterance_model(run_files, capsys):
    tmp = run_files
    assert eval_utterance.main(["classify", "--label-table", "utt2family", str(tmp / "m.pt"), str(tmp / "data"),
                                str(tmp / "out")]) == 1
    assert capsys.readouterr().err == (f"error: {tmp}/m.pt: a hubert model, not an utterance model (made by "
                                       "audiossl.bin.finetune_utterance)\n")


def test_a_class_list_that_does_not_fit_the_model(run_files, capsys):
    tmp = run_files
    write_table(tmp / "data/utt2family", {"spkA-u1": "organ", "spkA-u2": "organ", "spkB-u3": "bass", "spkB-u4": "bass"})
    assert finetune(tmp, "--scratch-like", str(tmp / "m.pt"), "--allow-empty-classes") == 0
    checkpoint = tmp / "exp/checkpoints/best.pt"
    assert (tmp / "exp/checkpoints/classes.txt").read_text() == "organ 0\nbass 1\nreed 2\n"
    (tmp / "two").write_text("organ\nbass\n")
    assert eval_utterance.main(["classify", "--label-table", "utt2family", "--classes", str(tmp / "two"),
                                str(checkpoint), str(tmp / "data"), str(tmp / "out")]) == 1
    assert capsys.readouterr().err.endswith(f"error: {tmp}/two: 2 classes, the model of {checkpoint} has 3\n")
    (tmp / "reordered").write_text("bass\norgan\nreed\n")
    assert eval_utterance.main(["classify", "--label-table", "utt2family", "--classes", str(tmp / "reordered"),
                                str(checkpoint), str(tmp / "data"), str(tmp / "out")]) == 1
    assert capsys.readouterr().err.endswith(f"error: {tmp}/reordered: not the classes of {checkpoint.parent}/classes.txt "
                                            "(the model's) in their order; leave --classes out, or give it that list\n")
    assert not (tmp / "out").exists()
    assert eval_utterance.main(["verify", str(checkpoint), str(tmp / "data"), str(tmp / "out")]) == 1
    assert capsys.readouterr().err.endswith(f"error: [Errno 2] No such file or directory: '{tmp}/data/trials'\n")


@pytest.mark.parametrize("mode", ["classify", "verify"])
def test_an_evaluation_run_again_and_stopped_leaves_no_earlier_results(run_files, mode, monkeypatch):
    """results.json is written last and removed as a rerun starts writing: the earlier figures never stand
    beside the rerun's predictions or scores."""
    tmp = run_files
    write_table(tmp / "data/utt2family", {"spkA-u1": "organ", "spkA-u2": "organ", "spkB-u3": "bass", "spkB-u4": "bass"})
    (tmp / "data/trials").write_text("spkA-u1 spkA-u2 target\nspkA-u1 spkB-u3 nontarget\n")
    assert finetune(tmp, "--scratch-like", str(tmp / "m.pt"), "--allow-empty-classes") == 0
    argv = [mode, *(["--label-table", "utt2family"] if mode == "classify" else []), str(tmp / "exp/checkpoints/best.pt"),
            str(tmp / "data"), str(tmp / "out")]
    assert eval_utterance.main(argv) == 0
    assert (tmp / "out/results.json").is_file()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(eval_utterance, "save_evaluation", killed)
    with pytest.raises(KeyboardInterrupt):
        eval_utterance.main(argv)
    assert (tmp / "out" / ("predictions" if mode == "classify" else "scores")).is_file()
    assert not (tmp / "out/results.json").exists()


@pytest.mark.parametrize("record, message", [
    ({"task": "ks", "value": 0.5}, "task 'ks' is not an utterance evaluation (classify, multilabel, verify)"),
    ({"task": "verify", "data": "d", "eer": 0.1}, "missing min_dcf_0.01, min_dcf_0.05"),
])
def test_results_of_another_evaluation_are_named(record, message, tmp_path, capsys):
    (tmp_path / "p/eval_test").mkdir(parents=True)
    (tmp_path / "p/eval_test/results.json").write_text(json.dumps(record))
    assert eval_utterance.main(MAINS["results"][2](tmp_path)) == 1
    assert capsys.readouterr().err == f"error: {tmp_path}/p/eval_test/results.json: {message}\n"
    assert not (tmp_path / "RESULTS.md").exists()


def test_a_pair_evaluated_on_other_data_is_refused(tmp_path, capsys):
    """The section compares the two models' figures: they must come from the same test set."""
    for init, data in (("p", "data/test"), ("s", "data/test_other")):
        save_checkpoint(tmp_path / init / "checkpoints/best.pt", "utterance", {}, {}, {"update": 2})
        save_checkpoint(tmp_path / init / "checkpoints/last.pt", "utterance", {}, {}, {"update": 2})
        (tmp_path / init / "eval_test").mkdir()
        (tmp_path / init / "eval_test/results.json").write_text(json.dumps(
            {"task": "classify", "data": data, "label_table": "utt2spk", "utterances": 4, "accuracy": 0.5,
             "error": 0.5}))
    assert eval_utterance.main(MAINS["results"][2](tmp_path)) == 1
    assert capsys.readouterr().err == (f"error: {tmp_path}/p/eval_test and {tmp_path}/s/eval_test were evaluated on "
                                       "other inputs: data 'data/test' and 'data/test_other'\n")
    assert not (tmp_path / "RESULTS.md").exists()


def test_an_utterance_too_short_for_one_frame_is_named_before_training_or_evaluation(run_files, capsys):
    """A clip under one frame (25 ms of fbank) failed training or evaluation midway with a ValueError of lengths."""
    tmp = run_files
    write_table(tmp / "data/utt2family", {"spkA-u1": "organ", "spkA-u2": "organ", "spkB-u3": "bass", "spkB-u4": "bass"})
    assert finetune(tmp, "--scratch-like", str(tmp / "m.pt"), "--allow-empty-classes") == 0
    soundfile.write(tmp / "audio/rec2.wav", np.full(320, 0.1, np.float32), 16000)  # spkB-u3: 20 ms
    message = f"error: {tmp}/data: 1 utterance(s) too short for one frame of the model: 'spkB-u3' (0.020 s); "
    assert finetune(tmp, "--scratch-like", str(tmp / "m.pt"), "--allow-empty-classes", "--set",
                    "trainer.max_updates=2") == 1
    assert capsys.readouterr().err.endswith(message + "leave them out of the data dir\n")
    assert not (tmp / "exp/checkpoints/update_2.pt").exists()
    (tmp / "data/trials").write_text("spkA-u1 spkA-u2 target\nspkA-u1 spkB-u4 nontarget\n")
    for mode in (["classify", "--label-table", "utt2family"], ["verify"]):
        assert eval_utterance.main([*mode, str(tmp / "exp/checkpoints/best.pt"), str(tmp / "data"),
                                    str(tmp / "out")]) == 1
        assert capsys.readouterr().err.endswith(message + "leave them out of the data dir\n")
    assert not (tmp / "out").exists()
    encoder = build_model("hubert", HubertConfig.tiny().to_dict())  # a waveform CNN: 400 samples a frame
    write_table(tmp / "data/utt2spk", {"spkA-u1": "spkA", "spkA-u2": "spkA", "spkB-u3": "spkB"})
    write_table(tmp / "data/wav.scp", {"spkA-u1": str(tmp / "audio/rec0.wav"), "spkA-u2": str(tmp / "audio/rec1.wav"),
                                       "spkB-u3": str(tmp / "audio/rec2.wav")})
    with pytest.raises(DataDirError, match="'spkB-u3' \\(0.020 s\\)"):
        utterance_audio(tmp / "data", encoder)
    soundfile.write(tmp / "audio/rec2.wav", np.full(400, 0.1, np.float32), 16000)
    assert utterance_audio(tmp / "data", encoder).utterances == ["spkA-u1", "spkA-u2", "spkB-u3"]


def test_a_tag_set_whose_tags_do_not_vary_is_refused_before_any_output(run_files, capsys, monkeypatch):
    """Macro ROC-AUC and mAP need a tag on some utterances and off others: a test set without one was refused
    only once every utterance was tagged, and after the earlier results.json of its out dir was removed."""
    tmp = run_files
    (tmp / "run.yaml").write_text("utterance: {head: {kind: multilabel}}\n"
                                  "trainer: {max_updates: 1, batch_seconds: 3, precision: fp32, num_workers: 0}\n")
    write_table(tmp / "data/utt2tags", {"spkA-u1": "organ bass", "spkA-u2": "organ", "spkB-u3": "", "spkB-u4": "bass"})
    assert finetune_utterance.main(["--config", str(tmp / "run.yaml"), "--label-table", "utt2tags", "--train-data",
                                    str(tmp / "data"), "--scratch-like", str(tmp / "m.pt"), str(tmp / "exp")]) == 0
    argv = ["classify", "--label-table", "utt2tags", str(tmp / "exp/checkpoints/best.pt"), str(tmp / "data"),
            str(tmp / "out")]
    assert eval_utterance.main(argv) == 0
    earlier = (tmp / "out/results.json").read_text()
    assert json.loads(earlier)["classes_scored"] == 2
    write_table(tmp / "data/utt2tags", {"spkA-u1": "organ", "spkA-u2": "organ", "spkB-u3": "organ", "spkB-u4": "organ"})
    monkeypatch.setattr(eval_utterance_module, "utterance_outputs", raising(AssertionError("tagged")))
    assert eval_utterance.main(argv) == 1
    assert capsys.readouterr().err.endswith(f"error: {tmp}/data/utt2tags: no tag is on some utterances and off others "
                                            "(4 utterances): ROC-AUC and mAP are undefined\n")
    assert (tmp / "out/results.json").read_text() == earlier


def test_a_data_dir_without_wav_scp_is_named(run_files, capsys):
    """A dir of features alone (feats.scp, no wav.scp): the waveforms cannot be read; it was a KeyError traceback."""
    tmp = run_files
    write_table(tmp / "data/utt2family", {"spkA-u1": "organ", "spkA-u2": "organ", "spkB-u3": "bass", "spkB-u4": "bass"})
    assert finetune(tmp, "--scratch-like", str(tmp / "m.pt"), "--allow-empty-classes") == 0
    (tmp / "data/wav.scp").rename(tmp / "wav.scp")
    message = f"error: {tmp}/data: no wav.scp, which the waveforms of its utterances are read from\n"
    assert finetune(tmp, "--scratch-like", str(tmp / "m.pt"), "--allow-empty-classes") == 1
    assert capsys.readouterr().err.endswith(message)
    assert eval_utterance.main(["classify", "--label-table", "utt2family", str(tmp / "exp/checkpoints/best.pt"),
                                str(tmp / "data"), str(tmp / "out")]) == 1
    assert capsys.readouterr().err.endswith(message)


def test_score_gives_the_metrics_of_any_systems_score_file(tmp_path, capsys):
    """`eval_utterance score` (Kaldi's compute-eer): EER and minDCF of a score file against a trial list."""
    (tmp_path / "trials").write_text("a b target\na c nontarget\nd e target\nd f nontarget\n")
    (tmp_path / "scores").write_text("a b 0.9\na c 0.2\nd e 0.4\nd f 0.5\n")
    assert eval_utterance.main(["score", str(tmp_path / "trials"), str(tmp_path / "scores")]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["eer"] == pytest.approx(0.5) and set(figures) >= {"min_dcf_0.01", "min_dcf_0.05"}
    (tmp_path / "scores").write_text("a b 0.9\na c 0.2\nd e 0.4\n")
    assert eval_utterance.main(["score", str(tmp_path / "trials"), str(tmp_path / "scores")]) == 1
    assert capsys.readouterr().err == f"error: {tmp_path}/scores: no score for trial 'd f'\n"
