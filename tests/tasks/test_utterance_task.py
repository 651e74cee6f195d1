"""Utterance fine-tuning: class lists, label tables → class ids and their errors, the run config section,
the task's figures as sums, and the trainer's parameter groups and higher-is-better choice of best.pt."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from audiossl.checkpoint import load_checkpoint
from audiossl.data.dataset import UtteranceDataset, collate
from audiossl.data.kaldi_dir import DataDirError, write_table
from audiossl.errors import ConfigError
from audiossl.models.hubert import HubertConfig, build_hubert
from audiossl.models.utterance import utterance_over_encoder
from audiossl.tasks.utterance import (UtteranceTask, check_every_class_seen, class_targets, labelled_dataset,
                                      read_class_list, read_labels, read_utterance_section, training_classes,
                                      write_classes)
from audiossl.train.config import trainer_config
from audiossl.train.trainer import Trainer
from tests.conftest import synth_speechlike

UTTS = ("spkA-u1", "spkA-u2", "spkB-u3", "spkB-u4")   # the shared data_dir fixture's utterances


@pytest.fixture
def data_dir(plain_data_dir: Path) -> Path:
    """The shared utterances as plain files: these tests need no sox."""
    return plain_data_dir


def labelled(data_dir: Path, **tables: dict[str, str]) -> Path:
    """``data_dir`` with extra tables (``utt2family={...}``, ``labels_family="..."`` for labels.family)."""
    for name, table in tables.items():
        if name.startswith("labels"):
            (data_dir / name.replace("_", ".")).write_text(table)
        else:
            write_table(data_dir / name, table)
    return data_dir


def tiny_model(kind: str = "linear", num_classes: int = 2, **settings):
    torch.manual_seed(0)
    encoder = build_hubert(HubertConfig.tiny(frontend="fbank"))
    head = {"kind": kind, "num_classes": num_classes, "embedding_dim": 8}
    return utterance_over_encoder(encoder, {"freeze_upstream": False, "head": head, **settings})


def test_class_lists_with_and_without_indices(tmp_path):
    (tmp_path / "plain").write_text("organ\nbass\n")
    (tmp_path / "indexed").write_text("spk2 0\nspk1 1\n")
    assert read_class_list(tmp_path / "plain") == ["organ", "bass"]
    assert read_class_list(tmp_path / "indexed") == ["spk2", "spk1"]
    (tmp_path / "bom").write_text("organ 0\nbass 1\n", encoding="utf-8-sig")   # saved by a Windows editor
    assert read_class_list(tmp_path / "bom") == ["organ", "bass"]
    (tmp_path / "keys").write_text("C major\nEb minor\n")   # mini_music's labels.key: classes with spaces
    (tmp_path / "keys_indexed").write_text("C major 0\nEb minor 1\n")
    assert read_class_list(tmp_path / "keys") == read_class_list(tmp_path / "keys_indexed") == ["C_major", "Eb_minor"]
    for text, message in (("a 0\nb 2\n", "bad:2: class 'b' has index 2, expected 1"),
                          ("a\na\n", "bad:2: class 'a' repeated"), ("a\n\n", "bad:2: expected '<class>'"),
                          ("", "bad: no classes")):
        (tmp_path / "bad").write_text(text)
        with pytest.raises(DataDirError, match=message):
            read_class_list(tmp_path / "bad")


def test_labels_map_through_the_class_list_of_their_table(data_dir):
    labelled(data_dir, utt2family=dict(zip(UTTS, ("organ", "bass", "organ", "reed"))),
             labels_family="bass\nreed\norgan\n", utt2tags=dict(zip(UTTS, ("drums piano", "piano", "", "flute drums"))))
    assert training_classes(data_dir, "utt2family", False) == ["bass", "reed", "organ"]   # labels.family first
    assert training_classes(data_dir, "utt2tags", True) == ["drums", "flute", "piano"]    # no list: sorted values
    labelled(data_dir, labels="spkB 0\nspkA 1\n")
    assert training_classes(data_dir, "utt2spk", False) == ["spkB", "spkA"]               # else labels
    assert training_classes(data_dir, "utt2spk", False, data_dir / "labels.family") == ["bass", "reed", "organ"]
    assert class_targets(data_dir, "utt2family", ["bass", "reed", "organ"], False) == {
        "spkA-u1": [2], "spkA-u2": [0], "spkB-u3": [2], "spkB-u4": [1]}
    tags = class_targets(data_dir, "utt2tags", ["drums", "flute", "piano"], True)
    assert tags == {"spkA-u1": [0, 2], "spkA-u2": [2], "spkB-u3": [], "spkB-u4": [1, 0]}
    model = tiny_model()
    dataset = labelled_dataset(data_dir, "utt2spk", ["spkB", "spkA"], False, model)
    assert [int(dataset[i][2]) for i in range(4)] == [1, 1, 0, 0]
    tagged = labelled_dataset(data_dir, "utt2tags", ["drums", "flute", "piano"], True, model)
    batch = collate([tagged[i] for i in range(4)])
    assert batch.targets.tolist() == [[0, 2], [2, -100], [-100, -100], [1, 0]]



def test_labels_with_spaces_are_one_class_as_superb_reads_them(data_dir):
    """mini_music's keys (``utt2key`` values and ``labels.key`` lines such as ``Eb minor``) are one class each,
    ``Eb_minor``, for fine-tuning as for SUPERB: the class list was refused as '<class> <index>' misnumbered."""
    labelled(data_dir, utt2key=dict(zip(UTTS, ("C major", "Eb minor", "C major", "Eb minor"))),
             labels_key="C major\nEb minor\nG major\n")
    classes = training_classes(data_dir, "utt2key", False)
    assert classes == ["C_major", "Eb_minor", "G_major"]
    assert class_targets(data_dir, "utt2key", classes, False) == {
        "spkA-u1": [0], "spkA-u2": [1], "spkB-u3": [0], "spkB-u4": [1]}

def test_bad_labels_name_the_file_line_and_utterance(data_dir):
    labelled(data_dir, utt2family=dict(zip(UTTS, ("organ", "kazoo", "organ", "bass"))),
             utt2two={"spkA-u1": "a", "spkA-u2": "a b", "spkB-u3": "a", "spkB-u4": "a"},
             utt2some={"spkA-u1": "a", "spkB-u3": "a"})
    with pytest.raises(DataDirError, match=rf"{data_dir}/utt2family:2: utterance 'spkA-u2' has label 'kazoo', "
                                           r"not one of the 2 classes \(organ, bass\)"):
        class_targets(data_dir, "utt2family", ["organ", "bass"], False)
    with pytest.raises(DataDirError, match=r"utt2two:2: utterance 'spkA-u2' has label 'a_b', not one of the 2 "):
        class_targets(data_dir, "utt2two", ["a", "b"], False)   # one label of two words (a key: 'Eb minor')
    assert class_targets(data_dir, "utt2two", ["a", "b"], True)["spkA-u2"] == [0, 1]
    with pytest.raises(DataDirError, match=r"utt2some: no label for 2 utterance\(s\) .* e.g. 'spkA-u2'"):
        class_targets(data_dir, "utt2some", ["a"], False)
    with pytest.raises(DataDirError, match="utt2nothing: no such table"):
        class_targets(data_dir, "utt2nothing", ["a"], False)
    with pytest.raises(ConfigError, match="'text' is not a data dir table named utt2<label>"):
        class_targets(data_dir, "text", ["a"], False)
    with pytest.raises(DataDirError, match=r"train/utt2family: no training utterance of 2 of the 4 classes: reed, "
                                           "pipe"):
        check_every_class_seen({"u1": [0], "u2": [2]}, ["organ", "reed", "bass", "pipe"], "train/utt2family")


def test_labels_of_a_data_dir_whose_write_stopped_midway_are_refused_as_such(data_dir):
    """The label table may be of another write than the dir's others: the marker, not its lines, is at fault."""
    (data_dir / "utt2spk").write_text("spkA-u1 spkA\n\nspkA-u2 spkA\n")
    (data_dir / ".incomplete").touch()
    with pytest.raises(DataDirError, match=f"^{data_dir}: a write of its tables stopped midway"):
        read_labels(data_dir, "utt2spk", False)


def test_class_list_of_a_run_is_kept(tmp_path):
    write_classes(tmp_path / "classes.txt", ["b", "a"])
    assert (tmp_path / "classes.txt").read_text() == "b 0\na 1\n"
    write_classes(tmp_path / "classes.txt", ["b", "a"])
    with pytest.raises(ConfigError, match="classes.txt: the run started with 2 other classes"):
        write_classes(tmp_path / "classes.txt", ["a", "b"])


def test_utterance_section():
    options, settings = read_utterance_section({"upstream_lr_scale": "0.5", "layers": [1, 2], "freeze_upstream": False,
                                                "head": {"kind": "xvector", "embedding_dim": 4}}, 7)
    assert options.upstream_lr_scale == 0.5 and options.valid_metric is None
    assert settings == {"layers": [1, 2], "freeze_upstream": False,
                        "head": {"kind": "xvector", "embedding_dim": 4, "num_classes": 7}}
    with pytest.raises(ConfigError, match=r"utterance: unknown keys \['upstream_lr'\]"):
        read_utterance_section({"upstream_lr": 0.1}, 2)
    with pytest.raises(ConfigError, match="head.num_classes is 3, the labels have 2 classes"):
        read_utterance_section({"head": {"num_classes": 3}}, 2)
    with pytest.raises(ConfigError, match="valid_metric 'f1' not one of"):
        read_utterance_section({"valid_metric": "f1"}, 2)
    with pytest.raises(ConfigError, match="upstream_lr_scale: expected a number"):
        read_utterance_section({"upstream_lr_scale": "fast"}, 2)
    for scale in (-1.0, float("nan")):   # the upstream trained up the loss (or to NaN weights), silently
        with pytest.raises(ConfigError, match=rf"utterance.upstream_lr_scale {scale}: must be a number >= 0"):
            read_utterance_section({"upstream_lr_scale": scale}, 2)
    assert read_utterance_section({"upstream_lr_scale": 0}, 2)[0].upstream_lr_scale == 0


def test_task_figures_are_sums_over_batches():
    """Accuracy and loss of a set split in two batches equal those of the set in one batch."""
    model = tiny_model(num_classes=3).eval()
    task = UtteranceTask(model)
    assert (task.valid_metric, task.higher_is_better) == ("err", False)
    wavs = [torch.from_numpy(synth_speechlike(0.3 + 0.05 * i, i)) for i in range(5)]
    items = [(f"u{i}", w, torch.tensor([i % 3])) for i, w in enumerate(wavs)]
    transform = model.waveform_transform()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        def sums(part):
            return task.valid_step(model, transform(collate(part), generator), generator)
        whole, first, second = sums(items), sums(items[:2]), sums(items[2:])
    split = task.summarize({k: first[k] + second[k] for k in first})
    together = task.summarize(whole)
    assert split.keys() == {"loss", "acc", "err"} and whole["items"] == 5.0
    for key in split:
        assert split[key] == pytest.approx(together[key], abs=1e-5)
    assert together["acc"] + together["err"] == pytest.approx(1.0) and together["acc"] * 5 == whole["correct"]
    assert UtteranceTask(model, "acc").higher_is_better
    multilabel = UtteranceTask(tiny_model("multilabel", 4))
    assert (multilabel.valid_metric, multilabel.higher_is_better) == ("lrap", True)
    with pytest.raises(ConfigError, match=r"a linear head logs \['loss', 'acc', 'err'\]"):
        UtteranceTask(model, "lrap")


class ScriptedScore(UtteranceTask):
    """Validation scores taken from a list, one per validation."""

    def __init__(self, model, scores, higher_is_better):
        super().__init__(model)
        self.scores = list(scores)
        self.higher_is_better = higher_is_better

    def valid_score(self, summary):
        return self.scores.pop(0)


def trainer(data_dir: Path, exp: Path, task_of, **settings) -> Trainer:
    labelled(data_dir, labels="spkA 0\nspkB 1\n")
    model = tiny_model()
    data = labelled_dataset(data_dir, "utt2spk", ["spkA", "spkB"], False, model)
    config = trainer_config({"max_updates": 3, "batch_seconds": 2.5, "lr": 1e-3, "precision": "fp32",
                             "valid_interval": 1, "save_interval": 10, "keep_last": 5, "num_workers": 0,
                             "log_interval": 1, **settings})
    return Trainer(task_of(model), model, data, data, config, exp, batch_transform=model.waveform_transform(),
                   parameter_groups=model.parameter_groups(1e-3, 1e-4))


@pytest.mark.parametrize("higher_is_better, best_update", [(True, 2), (False, 1)])
def test_best_checkpoint_follows_the_direction_of_the_score(data_dir, tmp_path, higher_is_better, best_update):
    run = trainer(data_dir, tmp_path / "exp", lambda m: ScriptedScore(m, [0.2, 0.5, 0.3], higher_is_better))
    run.fit()
    best = load_checkpoint(tmp_path / "exp/checkpoints/best.pt")["train_state"]
    assert best["update"] == best_update and best["best_score"] == {1: 0.2, 2: 0.5}[best_update]
    kept = sorted(p.name for p in (tmp_path / "exp/checkpoints").glob("update_*.pt"))
    assert kept == (["update_1.pt", "update_2.pt", "update_3.pt"] if higher_is_better else ["update_1.pt", "update_3.pt"])


def test_parameter_groups_train_at_their_own_rates(data_dir, tmp_path):
    run = trainer(data_dir, tmp_path / "exp", UtteranceTask, schedule={"name": "constant", "warmup_updates": 2})
    upstream_before = run.model.upstream.feature_projection.projection.weight.detach().clone()
    assert [(g["name"], g["lr"]) for g in run.optimizer.param_groups] == [("head", 0.0), ("upstream", 0.0)]
    run.fit()
    records = [json.loads(line) for line in (tmp_path / "exp/updates.jsonl").read_text().splitlines()]
    assert [(r["lr_head"], r["lr_upstream"]) for r in records] == [(5e-4, 5e-5), (1e-3, 1e-4), (1e-3, 1e-4)]
    assert all(r["lr"] == r["lr_head"] for r in records)
    assert not torch.equal(upstream_before, run.model.upstream.feature_projection.projection.weight)
    state = load_checkpoint(tmp_path / "exp/checkpoints/last.pt")["train_state"]
    assert [g["lr"] for g in state["optimizer"]["param_groups"]] == [1e-3, 1e-4]


def test_frozen_upstream_keeps_its_weights(data_dir, tmp_path):
    """A probe: the upstream is in no parameter group, so it does not change, while the head learns."""
    labelled(data_dir, labels="spkA 0\nspkB 1\n")
    model = tiny_model(freeze_upstream=True)
    data = labelled_dataset(data_dir, "utt2spk", ["spkA", "spkB"], False, model)
    groups = model.parameter_groups(1e-2, 1e-2)
    assert [g["name"] for g in groups] == ["head"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = trainer_config({"max_updates": 2, "batch_seconds": 2.5, "precision": "fp32", "num_workers": 0})
    Trainer(UtteranceTask(model), model, data, None, config, tmp_path / "exp",
            batch_transform=model.waveform_transform(), parameter_groups=groups).fit()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("head.", "featurizer.")) for k in changed)
    assert UtteranceDataset(data_dir, "waveform").lengths == data.lengths


def test_labels_of_utterances_not_in_the_data_dir_are_left_out(data_dir, caplog):
    """A label table of more utterances than the dir (kept from before a subset) makes no class of their labels,
    nor hides a class that no utterance of the dir has."""
    labelled(data_dir, utt2family={**dict(zip(UTTS, ("organ", "organ", "bass", "bass"))), "zz-gone": "reed",
                                   "zz-old": "kazoo pipe"})
    assert training_classes(data_dir, "utt2family", False) == ["bass", "organ"]
    assert "utt2family: 2 line(s) of utterances not in" in caplog.text and "e.g. 'zz-gone'" in caplog.text
    assert class_targets(data_dir, "utt2family", ["bass", "organ"], False) == {
        "spkA-u1": [1], "spkA-u2": [1], "spkB-u3": [0], "spkB-u4": [0]}
    targets = class_targets(data_dir, "utt2family", ["bass", "organ", "reed"], False)
    with pytest.raises(DataDirError, match="no training utterance of 1 of the 3 classes: reed"):
        check_every_class_seen(targets, ["bass", "organ", "reed"], "train/utt2family")
    labelled(data_dir, utt2family={**dict(zip(UTTS, ("organ", "organ", "kazoo", "bass"))), "zz-gone": "reed"})
    with pytest.raises(DataDirError, match=r"utt2family:3: utterance 'spkB-u3' has label 'kazoo'"):
        class_targets(data_dir, "utt2family", ["bass", "organ"], False)


def test_a_training_set_of_one_class_is_named(data_dir, tmp_path):
    """One language or speaker in the table: refused naming it, where the head's config was blamed
    (``head.num_classes 1 too small``), a setting the user never gave."""
    labelled(data_dir, utt2lang=dict.fromkeys(UTTS, "en"), utt2tags=dict.fromkeys(UTTS, ""))
    with pytest.raises(DataDirError, match=rf"^{data_dir}/utt2lang: 1 class\(es\) \['en'\]: a single-label head needs "
                                           "two or more"):
        training_classes(data_dir, "utt2lang", False)
    assert training_classes(data_dir, "utt2lang", True) == ["en"]   # one tag, on or off
    with pytest.raises(DataDirError, match=rf"^{data_dir}/utt2tags: 0 class\(es\) \[\]: a multilabel head needs a tag"):
        training_classes(data_dir, "utt2tags", True)
    (tmp_path / "one").write_text("en\n")
    with pytest.raises(DataDirError, match=rf"^{tmp_path}/one: 1 class\(es\)"):
        training_classes(data_dir, "utt2lang", False, tmp_path / "one")
