"""SUPERB runner parts: upstreams, the hidden-state cache, labels and their errors, heads, metrics, the table."""
from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from types import SimpleNamespace

import jiwer
import numpy as np
import pytest
import torch
from torch import nn

import audiossl
from audiossl.data.dataset import UtteranceDataset
from audiossl.checkpoint import build_model, save_checkpoint
from audiossl.data.kaldi_dir import DataDir, DataDirError, read_table, read_utterance_labels, write_table
from audiossl.errors import ConfigError
from audiossl.eval.results import ResultsError
from audiossl.eval.superb import cache as cache_module
from audiossl.eval.superb.cache import CacheError, HiddenStates, cache_dir, hidden_states, write_cache
from audiossl.eval.superb.heads import FrameBlstm, PooledLinear
from audiossl.eval.superb import runner
from audiossl.eval.superb.runner import FeatureSet, check_inputs, read_settings, run_task, sets_at_rate
from audiossl.eval.superb.table import write_table as write_superb_table
from audiossl.eval.superb.tasks import TaskSettings, build_task, class_ids, key_score, task_classes
from audiossl.eval.superb.upstreams import UpstreamError, default_name, open_upstream
from audiossl.eval.verification import TrialsError
from audiossl.interop.s3prl import import_s3prl_nn
from audiossl.models.hubert import HubertConfig
from audiossl.models.mert import MertConfig
from audiossl.models.ssamba import SsambaConfig
from audiossl.nn.frontends import valid_mask
from audiossl.nn.pooling import LayerWeightedSum, MeanPooling


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """A tiny waveform HuBERT (random weights) saved as an audiossl checkpoint."""
    config = HubertConfig.tiny()
    torch.manual_seed(0)
    path = tmp_path / "exp" / "hubert_iter1" / "checkpoints" / "best.pt"
    save_checkpoint(path, "hubert", config.to_dict(), build_model("hubert", config.to_dict()).state_dict())
    return path


@pytest.mark.parametrize("reference, estimate, score", [
    ("C major", "C major", 1.0), ("C major", "G major", 0.5), ("C major", "F major", 0.0),
    ("A minor", "E minor", 0.5), ("C major", "A minor", 0.3), ("A minor", "C major", 0.3),
    ("Eb minor", "Gb major", 0.3), ("C major", "C minor", 0.2), ("Db major", "C# major", 1.0),
    ("C major", "D major", 0.0), ("Eb_minor", "Bb_minor", 0.5)])
def test_key_score_is_mirex_weighting(reference, estimate, score):
    assert key_score(reference, estimate) == score


def test_stacked_weighted_sum_equals_the_list_form():
    featurizer = LayerWeightedSum(4, normalize=True)
    with torch.no_grad():
        featurizer.weights.copy_(torch.tensor([0.5, -1.0, 2.0, 0.1]))
    states = [torch.randn(2, 5, 3) * (i + 1) for i in range(4)]
    assert torch.allclose(featurizer.stacked(torch.stack(states, dim=-2)), featurizer(states), atol=1e-6)


def test_pooled_linear_on_means_equals_projector_mean_pool_linear_on_frames():
    """SUPERB's utterance head (projector per frame, mean pooling, linear) equals ours on cached means."""
    torch.manual_seed(0)
    head = PooledLinear(6, 4, projector_dim=5)
    frames, lengths = torch.randn(3, 9, 6), torch.tensor([9, 4, 6])
    frames[~valid_mask(lengths, 9)] = 1e3  # padding must not count
    on_frames = head.linear(MeanPooling()(head.projector(frames), lengths))
    means = torch.stack([frames[b, :n].mean(0) for b, n in enumerate(lengths)])
    assert torch.allclose(head(means, lengths), on_frames, atol=1e-4)


def test_cache_holds_the_upstreams_hidden_states_and_is_keyed_by_audio(checkpoint, data_dir, tmp_path, monkeypatch):
    upstream = open_upstream(str(checkpoint))
    assert default_name(str(checkpoint)) == "hubert_iter1_best"
    frames = hidden_states(tmp_path / "cache", upstream, data_dir, "frames")
    means = hidden_states(tmp_path / "cache", upstream, data_dir, "mean")
    model = audiossl.load_model(checkpoint)
    audio = {utt: wav for utt, wav, _ in UtteranceDataset(data_dir, "waveform")}
    for i, utt in enumerate(frames.utterances):
        wav = torch.as_tensor(audio[utt])
        with torch.no_grad():
            states, count = model.extract_features(wav[None], torch.tensor([wav.numel()]))
        expected = torch.stack(states, dim=2)[0, :int(count)]
        assert np.allclose(frames.frames(i), expected.numpy(), atol=2e-3)  # float16 storage
        assert np.allclose(means.states[i], expected.mean(0).numpy(), atol=1e-5)
    # a second call reads the cache: the upstream is not run again
    monkeypatch.setattr(upstream, "run", lambda *a: (_ for _ in ()).throw(AssertionError("recomputed")))
    again = hidden_states(tmp_path / "cache", upstream, data_dir, "frames")
    assert np.array_equal(again.states, frames.states)
    # the same audio elsewhere: the same key; other audio: another key
    def key(path):
        return cache_dir(tmp_path / "cache", upstream, path, "frames").name.split("-")[-1]

    same, other = tmp_path / "same", tmp_path / "other"
    shutil.copytree(data_dir, same)
    shutil.copytree(data_dir, other)
    table = read_table(other / "wav.scp")
    table.pop("spkB-u4")
    write_table(other / "wav.scp", table)
    assert key(same) == key(data_dir) != key(other)


def mamba_hubert() -> HubertConfig:
    config = HubertConfig.tiny()
    config.encoder.kind = "bimamba"
    return config


@pytest.mark.parametrize("family, config", [("ssamba", SsambaConfig.test("frame")), ("hubert", mamba_hubert())])
def test_mamba_upstreams_give_the_runner_their_hidden_states(family, config, data_dir, tmp_path):
    """SSAMBA and a HuBERT on a bidirectional Mamba encoder are upstreams like any other checkpoint."""
    torch.manual_seed(0)
    path = tmp_path / f"{family}.pt"
    save_checkpoint(path, family, config.to_dict(), build_model(family, config.to_dict()).state_dict())
    frames = hidden_states(tmp_path / "cache", open_upstream(str(path)), data_dir, "frames")
    model = audiossl.load_model(path)
    utt, wav, _ = UtteranceDataset(data_dir, "waveform")[0]
    with torch.no_grad():
        states, count = model.extract_features(torch.as_tensor(wav)[None], torch.tensor([len(wav)]))
    expected = torch.stack(states, dim=2)[0, :int(count)]
    assert np.allclose(frames.frames(frames.index()[utt]), expected.numpy(), atol=2e-3)


def test_cache_whose_meta_disagrees_is_an_error(checkpoint, data_dir, tmp_path):
    upstream = open_upstream(str(checkpoint))
    hidden_states(tmp_path / "cache", upstream, data_dir, "mean")
    meta_path = cache_dir(tmp_path / "cache", upstream, data_dir, "mean") / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "upstream": "audiossl:another"}))
    with pytest.raises(CacheError, match="disagrees on \\['upstream'\\]"):
        hidden_states(tmp_path / "cache", upstream, data_dir, "mean")


def test_a_cache_another_process_is_writing_is_waited_for_and_a_cache_without_meta_is_replaced(
        checkpoint, data_dir, tmp_path, monkeypatch):
    """Runs side by side take turns on <cache>.lock (the one that holds it computes, the next reads); a cache
    dir left without its meta.json (removed by hand) is computed again in its place."""
    upstream = open_upstream(str(checkpoint))
    path = cache_dir(tmp_path / "cache", upstream, data_dir, "mean")
    path.mkdir(parents=True)
    (path / "states.npy").write_bytes(b"left over")
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, os, sys
        fd = os.open({str(path) + '.lock'!r}, os.O_RDWR | os.O_CREAT)
        fcntl.lockf(fd, fcntl.LOCK_EX)
        print("locked", flush=True)
        sys.stdin.readline()""")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "locked\n"
    writes = []
    monkeypatch.setattr(cache_module, "write_cache", lambda *args: writes.append(args) or write_cache(*args))
    result = []
    worker = threading.Thread(target=lambda: result.append(hidden_states(tmp_path / "cache", upstream, data_dir, "mean")))
    worker.start()
    worker.join(timeout=1.0)
    assert worker.is_alive() and not writes   # waits for the holder
    holder.communicate("go\n", timeout=60)
    worker.join(timeout=120)
    assert len(writes) == 1 and result[0].states.shape[0] == len(result[0].utterances) == 4
    assert (path / "meta.json").is_file() and sorted(p.name for p in path.parent.iterdir()) == [path.name,
                                                                                               f"{path.name}.lock"]


def test_a_cache_write_that_fails_leaves_nothing_beside_the_cache(checkpoint, data_dir, tmp_path, monkeypatch):
    """A full disk while the states are written: no temporary dir of them stays, and a rerun computes the cache."""
    upstream = open_upstream(str(checkpoint))
    path = cache_dir(tmp_path / "cache", upstream, data_dir, "mean")
    monkeypatch.setattr("audiossl.eval.superb.cache.np.savez", lambda *a, **k: (_ for _ in ()).throw(
        OSError(28, "No space left on device")))
    with pytest.raises(OSError, match="No space left"):
        hidden_states(tmp_path / "cache", upstream, data_dir, "mean")
    assert sorted(p.name for p in path.parent.iterdir()) == [f"{path.name}.lock"]
    monkeypatch.undo()
    assert hidden_states(tmp_path / "cache", upstream, data_dir, "mean").states.shape[0] == 4
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, f"{path.name}.lock"]


def test_s3prl_baseline_upstream_is_s3prl_itself(data_dir):
    upstream = open_upstream("fbank")
    wavs, lengths = torch.randn(2, 16000), torch.tensor([16000, 12000])
    ours, frames = upstream.hidden_states(wavs, lengths)
    reference = import_s3prl_nn().S3PRLUpstream("fbank").eval()
    with torch.no_grad():
        theirs, their_lengths = reference(wavs, lengths)
    assert torch.equal(ours[0], theirs[0]) and torch.equal(frames, their_lengths[0])
    assert upstream.hidden_sizes == [240] and upstream.frame_rate == 100 and upstream.identity.startswith("s3prl:fbank")


def test_unknown_upstreams_are_errors_naming_them(tmp_path):
    with pytest.raises(UpstreamError, match="'nonexistent.pt': no such file or directory, and not an s3prl baseline"):
        open_upstream("nonexistent.pt")
    junk = tmp_path / "junk.pt"
    junk.write_text("not a model")
    with pytest.raises(UpstreamError, match=f"upstream {junk}: neither an audiossl checkpoint nor a Hugging Face"):
        open_upstream(str(junk))
    with pytest.raises(UpstreamError, match="neither"):
        open_upstream(str(tmp_path))  # a directory without a Hugging Face model


def labelled(tmp_path: Path, name: str, labels: dict[str, str], table: str = "utt2label",
             classes: list[str] | None = None) -> Path:
    path = tmp_path / name
    DataDir({"wav.scp": {u: "/dev/null" for u in labels}, "utt2spk": {u: u for u in labels}, table: labels}).write(path)
    if classes is not None:
        (path / f"labels.{table[4:]}").write_text("".join(f"{c}\n" for c in classes))
    return path


def test_labels_outside_the_training_classes_and_empty_classes_are_errors(tmp_path):
    train = labelled(tmp_path, "train", {"a": "Eb minor", "b": "C major"}, "utt2key", ["C major", "Eb minor", "G major"])
    with pytest.raises(DataDirError, match="utt2key: no training utterance of 1 of the 3 classes: G_major"):
        task_classes(train, "utt2key", False, allow_empty=False)
    classes = task_classes(train, "utt2key", False, allow_empty=True)
    assert classes == ["C_major", "Eb_minor", "G_major"]
    assert class_ids(train, "utt2key", classes) == {"a": 1, "b": 0}
    test = labelled(tmp_path, "test", {"c": "C major", "d": "D major"}, "utt2key")
    with pytest.raises(DataDirError, match=r"test/utt2key:2: utterance 'd' has label 'D_major', not one of the 3"):
        class_ids(test, "utt2key", classes)
    tags = labelled(tmp_path, "tags", {"a": "electric_piano organ", "b": "organ"}, "utt2tags")
    assert task_classes(tags, "utt2tags", True, allow_empty=False) == ["electric_piano", "organ"]



def test_label_lines_of_utterances_not_in_the_set_make_no_class_and_shift_no_line_number(tmp_path, caplog):
    """A line of an utterance the set lacks (removed from wav.scp) is left out with a warning: its label
    neither counts as a seen class nor hides an empty one, and errors still name the file's own line."""
    train = labelled(tmp_path, "train", {"a": "flute", "b": "oboe"}, "utt2family", ["flute", "oboe", "reed"])
    (train / "utt2family").write_text("a flute\nb oboe\nzz-gone reed\n")
    with pytest.raises(DataDirError, match="no training utterance of 1 of the 3 classes: reed"):
        task_classes(train, "utt2family", False, allow_empty=False)
    assert "1 line(s) of utterances not in" in caplog.text
    test = labelled(tmp_path, "test", {"c": "flute", "d": "oboe"}, "utt2family")
    (test / "utt2family").write_text("0-gone flute\nc flute\nd harp\n")
    with pytest.raises(DataDirError, match=r"test/utt2family:3: utterance 'd' has label 'harp'"):
        class_ids(test, "utt2family", ["flute", "oboe"])


def test_a_set_without_transcripts_is_named(tmp_path):
    """The phoneme and ASR tasks name the data dir lacking its text (they named the file 'text' as the dir)."""
    test = labelled(tmp_path, "test", {"a": "x", "b": "y"})
    with pytest.raises(DataDirError, match=f"^{test}: no text file"):
        build_task("pr", TaskSettings()).targets(test)

def test_phoneme_error_rate_is_jiwers_wer_on_phonemes(tmp_path):
    refs = {"u1": "dh ah k ae t", "u2": "s ih t s"}
    hyps = {"u1": "dh ah k ae", "u2": "s iy t s z"}
    task = build_task("pr", TaskSettings())
    task.classes = ["<blank>", "ae", "ah", "dh", "ih", "iy", "k", "s", "t", "z"]
    figures = task.evaluate(hyps, refs, tmp_path, tmp_path)
    assert figures["per"] == pytest.approx(jiwer.wer(list(refs.values()), list(hyps.values())))


def test_check_names_a_trial_with_an_unknown_utterance(checkpoint, tmp_path):
    root = tmp_path / "tasks"
    labelled(root / "speakers", "asv_train", {"s1-a": "s1", "s2-a": "s2"}, "utt2spk")
    labelled(root / "speakers", "sid_dev", {"s1-b": "s1", "s2-b": "s2"}, "utt2spk")
    test = labelled(root / "speakers", "asv_test", {"s3-a": "s3", "s3-b": "s3"}, "utt2spk")
    (test / "trials").write_text("s3-a s3-b target\ns3-a s4-a nontarget\n")
    with pytest.raises(TrialsError, match="trials:2.*s4-a"):
        check_inputs(str(checkpoint), ["asv"], root)


def fake_results(exp: Path, upstream: str, task: str, value: float, higher: bool) -> None:
    path = exp / upstream / task
    path.mkdir(parents=True)
    (path / "results.json").write_text(json.dumps({
        "task": task, "upstream": upstream, "value": value, "higher_is_better": higher,
        "hidden_state_seconds": 60.0, "train_seconds": 30.0}))


def test_table_bolds_the_best_of_each_column(tmp_path):
    exp = tmp_path / "exp"
    fake_results(exp, "fbank", "pr", 0.77, False)
    fake_results(exp, "fbank", "ks", 0.50, True)
    fake_results(exp, "wavlm", "pr", 0.48, False)
    fake_results(exp, "wavlm", "ks", 0.90, True)
    fake_results(exp, "wavlm", "key", 0.30, True)
    write_superb_table(exp, tmp_path / "RESULTS.md", tmp_path / "results.csv", "Frozen", "superb/run.sh", "a CPU")
    text = (tmp_path / "RESULTS.md").read_text()
    assert "| Upstream | PR PER % ↓ | KS Acc % ↑ | Key score ↑ |" in text
    assert "| fbank | 77.0 | 50.0 | – |" in text and "| wavlm | **48.0** | **90.0** | **0.300** |" in text
    assert "fbank 3.0 min, wavlm 4.5 min, on a CPU" in text and "Produced by `superb/run.sh`" in text
    rows = (tmp_path / "results.csv").read_text().splitlines()
    assert rows[0].startswith("upstream,PR PER") and rows[0].endswith(",minutes,cpu")
    assert rows[1] == "fbank,0.770000,0.500000,,3.0,a CPU"


def test_table_keeps_the_csv_rows_of_upstreams_not_under_exp(tmp_path):
    """A later run on another machine adds its upstream; the earlier rows stay, an upstream run again
    replaces its row, and each row keeps the CPU it ran on."""
    exp, csv_path = tmp_path / "exp", tmp_path / "results.csv"
    fake_results(exp, "fbank", "pr", 0.77, False)
    fake_results(exp, "mfcc", "pr", 0.70, False)
    write_superb_table(exp, tmp_path / "RESULTS.md", csv_path, "Frozen", "superb/run.sh", "CPU A")
    shutil.rmtree(exp)
    fake_results(exp, "hubert", "pr", 0.50, False)
    fake_results(exp, "mfcc", "pr", 0.75, False)
    fake_results(exp, "mfcc", "ks", 0.20, True)
    lines = write_superb_table(exp, tmp_path / "RESULTS.md", csv_path, "Frozen", "superb/run.sh", "CPU B")
    assert lines[2:5] == ["| fbank | 77.0 | – |", "| hubert | **50.0** | – |", "| mfcc | 75.0 | **20.0** |"]
    assert "fbank 1.5 min, on CPU A; hubert 1.5 min, mfcc 3.0 min, on CPU B." in lines[6]
    (tmp_path / "bad.csv").write_text("upstream,PR PER % ↓,minutes,cpu\nfbank,seventy,1.0,a CPU\n")
    with pytest.raises(ResultsError, match="bad.csv:2"):
        write_superb_table(exp, tmp_path / "RESULTS.md", tmp_path / "bad.csv", "Frozen", "superb/run.sh", "CPU B")


def test_two_results_of_one_upstream_and_task_are_refused(tmp_path):
    fake_results(tmp_path / "exp", "fbank", "pr", 0.77, False)
    fake_results(tmp_path / "exp", "fbank_old", "pr", 0.70, False)
    moved = tmp_path / "exp/fbank_old/pr/results.json"
    moved.write_text(moved.read_text().replace('"upstream": "fbank_old"', '"upstream": "fbank"'))
    with pytest.raises(ResultsError, match=f"^{moved}: results of pr for upstream 'fbank', as "
                                           f"{tmp_path}/exp/fbank/pr/results.json$"):
        write_superb_table(tmp_path / "exp", tmp_path / "RESULTS.md", tmp_path / "results.csv", "F", "run.sh", "CPU")


@pytest.mark.parametrize("text, message", [("{", "not JSON"), ('{"task": "ks", "upstream": "fbank"}',
                                                                "missing value, hidden_state_seconds, train_seconds")])
def test_a_results_file_the_table_cannot_read_is_named(tmp_path, text, message):
    fake_results(tmp_path / "exp", "fbank", "pr", 0.77, False)
    (tmp_path / "exp/fbank/ks").mkdir()
    (tmp_path / "exp/fbank/ks/results.json").write_text(text)
    (tmp_path / "RESULTS.md").write_text("# Kept\n")
    with pytest.raises(ResultsError, match=f"^{tmp_path}/exp/fbank/ks/results.json: {message}"):
        write_superb_table(tmp_path / "exp", tmp_path / "RESULTS.md", tmp_path / "results.csv", "F", "run.sh", "CPU")
    assert (tmp_path / "RESULTS.md").read_text() == "# Kept\n" and not (tmp_path / "results.csv").exists()


def test_blstm_head_equals_a_packed_bidirectional_lstm():
    torch.manual_seed(0)
    head = FrameBlstm(6, 5, 4, num_layers=2, dropout=0.0).eval()
    reference = nn.LSTM(6, 4, 2, batch_first=True, bidirectional=True)
    weights = {}
    for layer in range(2):
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            weights[f"{name}_l{layer}"] = getattr(head.forward_layers[layer], f"{name}_l0")
            weights[f"{name}_l{layer}_reverse"] = getattr(head.backward_layers[layer], f"{name}_l0")
    reference.load_state_dict(weights)
    frames, lengths = torch.randn(3, 7, 6), torch.tensor([7, 3, 5])
    frames[~valid_mask(lengths, 7)] = 100.0
    packed = nn.utils.rnn.pack_padded_sequence(frames, lengths, batch_first=True, enforce_sorted=False)
    out, _ = nn.utils.rnn.pad_packed_sequence(reference(packed)[0], batch_first=True, total_length=7)
    valid = valid_mask(lengths, 7)
    with torch.no_grad():
        assert torch.allclose(head(frames, lengths)[valid], head.linear(out)[valid], atol=1e-6)


def test_training_batches_cover_each_row_once_an_epoch():
    states = HiddenStates("frames", [f"u{i}" for i in range(10)], np.zeros((55, 2, 3), np.float16),
                          np.cumsum([0, *range(1, 10)]), np.arange(1, 11), 50.0)
    data = FeatureSet(states, {})
    batches = data.training_batches(3, torch.Generator().manual_seed(0))
    epoch = [next(batches) for _ in range(4)]  # 10 rows: batches of 3, 3, 3, 1
    assert sorted(r for rows in epoch for r in rows) == list(range(10))
    assert all(rows == sorted(rows, key=lambda i: states.lengths[i]) for rows in epoch)
    padded, lengths, _ = data.batch([9, 2])
    assert padded.shape == (2, 10, 2, 3) and lengths.tolist() == [10, 3]


def test_an_intent_slot_value_unseen_in_training_is_an_error_naming_the_line(tmp_path):
    root = tmp_path / "tasks"
    labelled(root / "ic", "train", {"a": "activate lights kitchen", "b": "decrease heat none"}, "utt2intent")
    test = labelled(root / "ic", "test", {"c": "decrease heat none", "d": "activate lamp none"}, "utt2intent")
    task = build_task("ic", TaskSettings())
    task.prepare(root, False)
    assert task.targets(root / "ic" / "train") == {"a": [0, 1, 0], "b": [1, 0, 1]}
    with pytest.raises(DataDirError, match=f"{test}/utt2intent:2: utterance 'd' has intent 'activate lamp none'"):
        task.targets(test)


def test_an_intent_table_missing_an_utterance_or_a_slot_is_an_error_naming_it(tmp_path):
    root = tmp_path / "tasks"
    train = labelled(root / "ic", "train", {"a": "activate lights kitchen", "b": "decrease heat"}, "utt2intent")
    task = build_task("ic", TaskSettings())
    with pytest.raises(DataDirError, match=f"^{train}/utt2intent:2: utterance 'b' has intent 'decrease heat', not "
                                           r"three slot values \(action object location\)$"):
        task.prepare(root, False)
    labelled(root / "ic", "train", {"a": "activate lights kitchen", "b": "decrease heat none"}, "utt2intent")
    task.prepare(root, False)
    test = labelled(root / "ic", "test", {"c": "decrease heat none", "d": "activate lights kitchen"}, "utt2intent")
    write_table(test / "utt2intent", {"c": "decrease heat none"})
    with pytest.raises(DataDirError, match=f"^{test}/utt2intent: no label for 1 utterance.*e.g. 'd'$"):
        task.targets(test)


def test_labels_of_a_data_dir_whose_write_stopped_midway_are_refused_as_such(tmp_path):
    """The label table may be of another write than the dir's others: the marker, not its lines, is at fault."""
    train = labelled(tmp_path / "ks", "train", {"a": "yes", "b": "no"})
    (train / "utt2label").write_text("a yes\n\nb no\n")
    (train / ".incomplete").touch()
    with pytest.raises(DataDirError, match=f"^{train}: a write of its tables stopped midway"):
        read_utterance_labels(train, "utt2label")


def test_a_task_run_again_and_stopped_leaves_no_earlier_results(tmp_path, monkeypatch):
    """The table reads every results.json: a rerun that stops (killed, failed) must not leave the earlier one."""
    root, exp = tmp_path / "tasks", tmp_path / "exp"
    for name, utts in (("train", "abcdef"), ("dev", "gh"), ("test", "ij")):
        labelled(root / "ks", name, {u: "yes" if i % 2 else "no" for i, u in enumerate(utts)})

    def states(cache_root, upstream, data_dir, level, progress=False):
        utts = DataDir.read(data_dir).utterances
        rows = np.random.default_rng(len(utts)).standard_normal((len(utts), 2, 3)).astype(np.float32)
        return HiddenStates("mean", utts, rows, np.arange(len(utts)), np.ones(len(utts), dtype=int), 50.0)

    monkeypatch.setattr(runner, "hidden_states", states)
    upstream = SimpleNamespace(sample_rate=16000, name="up.pt", identity="up")
    settings = TaskSettings(updates=2, batch_size=2, valid_interval=1)
    run_task("ks", settings, upstream, "up", root, tmp_path / "cache", exp / "up" / "ks")
    assert json.loads((exp / "up/ks/results.json").read_text())["task"] == "ks"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "train_probe", killed)
    with pytest.raises(KeyboardInterrupt):
        run_task("ks", TaskSettings(updates=3, batch_size=2), upstream, "up", root, tmp_path / "cache", exp / "up/ks")
    assert not (exp / "up/ks/results.json").exists()
    with pytest.raises(ResultsError, match="no <upstream>/<task>/results.json"):
        write_superb_table(exp, tmp_path / "RESULTS.md", tmp_path / "results.csv", "Frozen", "run.sh", "CPU")


def test_a_tagging_set_whose_tags_do_not_vary_is_an_error_before_any_compute(tmp_path):
    root = tmp_path / "tasks"
    labelled(root / "16k", "tagging_train", {"a": "organ", "b": "organ piano", "c": "piano"}, "utt2tags")
    dev = labelled(root / "16k", "tagging_dev", {"d": "organ piano", "e": "piano organ"}, "utt2tags")
    task = build_task("tagging", TaskSettings())
    task.prepare(root, False)
    assert task.targets(root / "16k/tagging_train") == {"a": [0], "b": [0, 1], "c": [1]}
    with pytest.raises(DataDirError, match=f"^{dev}/utt2tags: no tag is on some utterances and off others"):
        task.targets(dev)


def test_a_key_the_key_score_cannot_read_is_an_error_before_any_compute(tmp_path):
    root = tmp_path / "tasks"
    train = labelled(root / "16k", "key_train", {"a": "Eb minor", "b": "H major"}, "utt2key")
    with pytest.raises(DataDirError, match=f"^{train}: key 'H_major' is not '<tonic> major|minor' \\(tonics: C, C#"):
        build_task("key", TaskSettings()).prepare(root, False)
    labelled(root / "16k", "key_train", {"a": "Eb minor", "b": "B major"}, "utt2key")
    build_task("key", TaskSettings()).prepare(root, False)


def test_a_24khz_upstream_reads_the_24k_music_sets_and_resampled_speech(data_dir, tmp_path, caplog):
    """MERT takes 24 kHz audio: the music tasks use mini_music's 24k/ dirs, the speech sets are resampled."""
    (tmp_path / "root/24k/notes_train").mkdir(parents=True)
    sets = ("16k/notes_train", "16k/notes_dev", "ks/train")
    assert sets_at_rate(sets, tmp_path / "root", 24000) == ("24k/notes_train", "16k/notes_dev", "ks/train")
    assert sets_at_rate(sets, tmp_path / "root", 16000) == sets
    torch.manual_seed(0)
    config = MertConfig.tiny()
    path = tmp_path / "mert.pt"
    save_checkpoint(path, "mert", config.to_dict(), build_model("mert", config.to_dict()).state_dict())
    upstream = open_upstream(str(path))
    assert (upstream.sample_rate, upstream.frame_rate) == (24000, 75.0)
    with caplog.at_level(logging.INFO):
        frames = hidden_states(tmp_path / "cache", upstream, data_dir, "frames")
    assert "the model takes 24000 Hz: resampled as it is read" in caplog.text
    utt, wav, _ = UtteranceDataset(data_dir, "waveform", sample_rate=24000)[0]
    with torch.no_grad():
        states, count = audiossl.load_model(path).extract_features(torch.as_tensor(wav)[None], torch.tensor([len(wav)]))
    assert np.allclose(frames.frames(frames.index()[utt]), torch.stack(states, dim=2)[0, :int(count)].numpy(), atol=2e-3)


@pytest.mark.parametrize("text, message", [
    ("tasks: {sid: {updates: abc}}", "tasks.sid.updates: expected a whole number, got 'abc'"),
    ("tasks: {sid: {lr: -1, batch_size: 0}}", "tasks.sid: batch_size, lr must be more than 0, got 0, -1.0"),
    ("tasks: {sid: {updates: 5}", "not valid YAML"),
    ("tasks: {sdi: {}}", r"unknown keys \['sdi'\]"),
    ("tasks: {asr: {head: {hiden_size: 64}}}", r"tasks.asr.head: unknown key 'hiden_size' \(known: projector_dim, "),
    ("tasks: {key: {head: {hidden_size: big, dropout: 1.5}}}",
     r"tasks.key.head: hidden_size 'big': expected a positive whole number; dropout 1.5: expected a number in \[0, 1\)"),
    ("tasks: {asv: {head: 5}}", "tasks.asv.head"),
])
def test_a_bad_task_setting_is_named(tmp_path, text, message):
    (tmp_path / "superb.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_settings(tmp_path / "superb.yaml")
