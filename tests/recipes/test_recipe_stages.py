"""recipes/ssl.sh, asr.sh and utterance.sh on a tiny recipe dir: shared feature dirs, --family/--targets,
dry runs and the checkpoint a training stage must leave, --help."""
from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from audiossl.data.kaldi_dir import DataDir, write_table

ROOT = Path(__file__).resolve().parents[2]
SYNTH = "sox -n -r 16000 -b 16 -c 1 -t wav - synth {seconds} sine {freq} |"


@pytest.fixture
def egs(recipe_dir: Path) -> Path:
    """An egs/<corpus>/<task> dir: the site's path.sh and cmd.sh, configs, train_unlab and dev of sox tones."""
    for name in ("path.sh", "cmd.sh", "db.sh"):
        (recipe_dir / name).symlink_to(ROOT / "local" / name)
    (recipe_dir / "conf").mkdir()
    (recipe_dir / "conf/fbank.conf").write_text("--num-mel-bins=23\n")
    (recipe_dir / "conf/mfcc.conf").write_text("--frame-shift=20\n")
    for name, freqs in (("train_unlab", (220, 330)), ("dev", (440, 550))):
        utts = {f"spk{i}-{name}": SYNTH.format(seconds=0.3, freq=f) for i, f in enumerate(freqs)}
        DataDir({"wav.scp": utts, "utt2spk": {u: u.split("-")[0] for u in utts}}).write(recipe_dir / "data" / name)
    return recipe_dir


def recipe(name: str, egs: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([str(ROOT / "recipes" / name), *args], cwd=egs, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done


def ssl(egs: Path, *args: str) -> subprocess.CompletedProcess:
    return recipe("ssl.sh", egs, "--nj", "1", "--feature-sets", "train_unlab dev", *args)


def test_asr_features_first_leave_ssl_its_mfcc(egs):
    """asr.sh's stage 1 marks dev_fbank done; ssl.sh's stage 1 still makes dev's MFCC (k-means 1 labels dev).
    Features of dev only (a torch import per feature dir): the train set's are made the same way."""
    recipe("asr.sh", egs, "--stage", "1", "--stop-stage", "1", "--pretrained", "none", "--nj", "1",
           "--budgets", "", "--test-sets", "")
    fbank = egs / "data/dev_fbank"
    assert {"feats.scp", "cmvn.scp", ".done"} <= {p.name for p in fbank.iterdir()}
    made = fbank.joinpath("feats.scp").stat().st_mtime_ns
    dev_only = ("--stage", "1", "--stop-stage", "1", "--feature-sets", "dev", "--train-set", "dev")
    ssl(egs, *dev_only, "--targets", "none")   # no k-means: no MFCC
    assert not (egs / "data/dev_mfcc").exists()
    out = ssl(egs, *dev_only, "--targets", "kmeans").stdout
    assert "features: fbank of data/dev in data/dev_fbank: already done" in out
    assert fbank.joinpath("feats.scp").stat().st_mtime_ns == made
    mfcc = DataDir.read(egs / "data/dev_mfcc")
    assert (egs / "data/dev_mfcc/.done").exists() and (egs / "data/dev_mfcc/conf_mfcc").read_text() == "--frame-shift=20\n"
    assert set(mfcc.tables["feats.scp"]) == set(mfcc.tables["utt2spk"])
    assert set(mfcc.tables["cmvn.scp"]) == set(mfcc.tables["spk2utt"])


def pretrain_commands(out: str) -> list[str]:
    """The pretraining command lines a recipe run with --launcher echo printed."""
    return [line for line in out.splitlines() if line.startswith("-m audiossl.bin.pretrain ")]


def test_targets_none_pretrains_once_without_labels(egs):
    (egs / "exp/wav2vec2_iter1").mkdir(parents=True)   # what pretraining would make (echo does not)
    out = ssl(egs, "--stage", "2", "--family", "wav2vec2", "--targets", "none", "--launcher", "echo").stdout
    for stage, what in ((2, "k-means 1"), (4, "k-means 2"), (5, "pretraining, iteration 2")):
        assert f"stage {stage}: {what}: does not apply to wav2vec2 (targets: none)" in out
    [command] = pretrain_commands(out)
    assert command.startswith("-m audiossl.bin.pretrain --family wav2vec2 --config conf/pretrain1.yaml ")
    assert "labels" not in command and "num_classes" not in command
    assert command.endswith("--train-data data/train_unlab_fbank --valid-data data/dev_fbank exp/wav2vec2_iter1")
    assert not (egs / "exp/wav2vec2_iter1/.done").exists() and not (egs / "exp/kmeans1").exists()


def test_kmeans_targets_pretrain_on_each_iterations_labels(egs):
    for it in (1, 2):
        (egs / f"exp/hubert_iter{it}").mkdir(parents=True)
    out = ssl(egs, "--stage", "3", "--stop-stage", "3", "--targets", "kmeans", "--kmeans1-clusters", "7",
              "--launcher", "echo").stdout
    out += ssl(egs, "--stage", "5", "--targets", "kmeans", "--kmeans2-clusters", "9", "--launcher", "echo").stdout
    iter1, iter2 = pretrain_commands(out)
    assert iter1 == ("-m audiossl.bin.pretrain --family hubert --config conf/pretrain1.yaml --set model.set.num_classes=7 "
                     "--train-labels exp/kmeans1/train_unlab.labels --valid-labels exp/kmeans1/dev.labels "
                     "--train-data data/train_unlab_fbank --valid-data data/dev_fbank exp/hubert_iter1")
    assert "--set model.set.num_classes=9 --train-labels exp/kmeans2/train_unlab.labels" in iter2
    assert "--init exp/hubert_iter1/checkpoints/best.pt" in iter2 and iter2.endswith(" exp/hubert_iter2")


def test_labelling_takes_no_more_jobs_than_a_set_has_utterances(egs):
    """k-means 1 labels dev (two utterances) with --nj 4: two jobs, not a refused split into four parts."""
    out = ssl(egs, "--stage", "1", "--stop-stage", "2", "--targets", "kmeans", "--kmeans1-clusters", "2", "--nj", "4",
              "--kmeans-fit-utts", "2").stdout
    assert (egs / "exp/kmeans1/dev.labels").is_file() and not (egs / "exp/kmeans1/dev.3.labels").exists()
    assert (egs / "exp/kmeans1/dev.2.labels").is_file(), out[-2000:]


def test_asr_biased_iterations_fine_tune_each_model_before_clustering_it(egs):
    """--iterations 3 --finetune-set S (VietASR): iteration 3's k-means clusters iteration 2's model once
    CTC fine-tuned on S; iteration 3 pretrains from iteration 2 on those labels (stages 6 and 7)."""
    for made in ("exp/hubert_iter2/ctc", "exp/hubert_iter3", "exp/kmeans3"):   # what training would make
        (egs / made).mkdir(parents=True)
    # k-means itself needs the fine-tuned model that echo does not make: its marker, as k-means 3 would write it
    fbank_config = hashlib.sha256((egs / "conf/fbank.conf").read_bytes()).hexdigest()
    (egs / "exp/kmeans3/.done").write_text(
        "clusters=9 max_frames=200000 fit_utts=1000 n_init=3 data=data/train_unlab_fbank data/dev_fbank "
        f"model=exp/hubert_iter2/ctc/checkpoints/best.pt layer=4 inputs=fbank fbank_config={fbank_config}\n")
    out = ssl(egs, "--stage", "6", "--targets", "kmeans", "--iterations", "3", "--finetune-set", "dev",
              "--kmeans2-clusters", "9", "--launcher", "echo").stdout
    finetune = [line for line in out.splitlines() if line.startswith("-m audiossl.bin.finetune_ctc ")]
    assert finetune == ["-m audiossl.bin.finetune_ctc --config conf/finetune.yaml --init exp/hubert_iter2/checkpoints/best.pt "
                        "--train-data data/dev_fbank --valid-data data/dev_fbank exp/hubert_iter2/ctc"]
    assert "stage 6: k-means 3 (9 clusters) on layer 4 of exp/hubert_iter2/ctc/checkpoints/best.pt: already done" in out
    [iter3] = pretrain_commands(out)
    assert "--set model.set.num_classes=9 --train-labels exp/kmeans3/train_unlab.labels" in iter3
    assert "--init exp/hubert_iter2/checkpoints/best.pt" in iter3 and iter3.endswith(" exp/hubert_iter3")
    assert not (egs / "exp/hubert_iter2/ctc/.done").exists() and not (egs / "exp/hubert_iter3/.done").exists()
    assert not (egs / "exp/hubert_iter4").exists()


TRAINING_STAGES = {   # recipe, its options for one training stage, the model dir it trains
    "ssl.sh": (["--nj", "1", "--stage", "3", "--stop-stage", "3", "--family", "wav2vec2", "--targets", "none"],
               "exp/wav2vec2_iter1"),
    "asr.sh": (["--stage", "2", "--stop-stage", "2", "--pretrained", "none", "--budgets", "dev"], "exp/ctc_pretrained_dev"),
    "utterance.sh": (["--stage", "2", "--stop-stage", "2", "--pretrained", "none"], "exp/scratch"),
}


@pytest.mark.parametrize("name", TRAINING_STAGES)
def test_a_dry_run_or_a_run_without_best_pt_marks_no_training_stage_done(egs, tmp_path, name):
    """--launcher echo prints the command and writes no .done, so the next run trains; a run that ends
    without checkpoints/best.pt (no finite validation score) fails naming it, not done; one with it is done."""
    options, model = TRAINING_STAGES[name]
    (egs / model).mkdir(parents=True)
    out = recipe(name, egs, *options, "--launcher", "echo").stdout
    assert f"dry run: {model}/.done not written" in out and f" {model}\n" in out
    assert not (egs / model / ".done").exists()
    train = tmp_path / "train"   # stands in for the launch: trains into the last argument, saving best.pt or not
    train.write_text('#!/bin/sh\nfor dir; do :; done\necho "training $dir"\nmkdir -p "$dir/checkpoints"\n'
                     '[ -z "$SAVE_BEST" ] || touch "$dir/checkpoints/best.pt"\n')
    train.chmod(0o755)
    failed = subprocess.run([str(ROOT / "recipes" / name), *options, "--launcher", str(train)], cwd=egs,
                            capture_output=True, text=True)
    assert failed.returncode == 1 and f"training {model}" in failed.stdout
    assert f"training ended without {model}/checkpoints/best.pt" in failed.stderr
    assert not (egs / model / ".done").exists()
    trained = subprocess.run([str(ROOT / "recipes" / name), *options, "--launcher", str(train)], cwd=egs,
                             capture_output=True, text=True, env={**os.environ, "SAVE_BEST": "1"})
    assert trained.returncode == 0 and f"training {model}" in trained.stdout, trained.stderr[-2000:]
    assert (egs / model / ".done").exists()
    assert "already done" in recipe(name, egs, *options, "--launcher", "echo").stdout


@pytest.mark.parametrize("name", TRAINING_STAGES)
def test_a_training_stage_run_again_with_other_options_is_refused(egs, tmp_path, name):
    """Other extra training options (--pretrain-args, --finetune-args) than those a model was trained with:
    the recipe fails naming the model dir and the options, launches nothing and keeps the model."""
    options, model = TRAINING_STAGES[name]
    train = tmp_path / "train"
    train.write_text('#!/bin/sh\nfor dir; do :; done\necho "training $dir"\nmkdir -p "$dir/checkpoints"\n'
                     'touch "$dir/checkpoints/best.pt"\n')
    train.chmod(0o755)
    recipe(name, egs, *options, "--launcher", str(train))
    done = (egs / model / ".done").read_text()
    extra = "--pretrain-args" if name == "ssl.sh" else "--finetune-args"
    refused = subprocess.run([str(ROOT / "recipes" / name), *options, "--launcher", str(train), extra,
                              "--set trainer.lr=1"], cwd=egs, capture_output=True, text=True)
    assert refused.returncode == 1 and "training " not in refused.stdout
    assert f"{model} was trained (or started) with other settings or inputs than this run's ({model}/.done)" in refused.stderr
    assert "  recorded: (nothing)\n  now:      --set trainer.lr=1\n" in refused.stderr
    assert (egs / model / ".done").read_text() == done and (egs / model / "checkpoints/best.pt").exists()


def test_the_recipes_leave_out_of_training_settings_what_the_trainer_resumes_under():
    """launch.sh's list is the trainer's RESUMABLE and accum_steps (checked by the trainer with the process count)."""
    from audiossl.train.trainer import RESUMABLE
    listed = subprocess.run(["bash", "-c", f". {ROOT}/recipes/utils/launch.sh; echo $resumable_trainer_keys"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert sorted(listed) == sorted(RESUMABLE | {"accum_steps"})


@pytest.mark.parametrize("name", TRAINING_STAGES)
def test_an_interrupted_training_stage_resumes_with_other_resumable_trainer_settings(egs, tmp_path, name):
    """A run started on one process goes on with half the accumulation (on two) and other workers: the recipe
    resumes it and marks it done, and a later run with the first settings finds it done."""
    options, model = TRAINING_STAGES[name]
    train = tmp_path / "train"   # saves best.pt only when SAVE_BEST is set: the first run is "interrupted"
    train.write_text('#!/bin/sh\nfor dir; do :; done\necho "training $dir"\nmkdir -p "$dir/checkpoints"\n'
                     '[ -z "$SAVE_BEST" ] || touch "$dir/checkpoints/best.pt"\n')
    train.chmod(0o755)
    extra = "--pretrain-args" if name == "ssl.sh" else "--finetune-args"
    first = subprocess.run([str(ROOT / "recipes" / name), *options, "--launcher", str(train), extra,
                            "--set trainer.accum_steps=2 --set trainer.lr=1"], cwd=egs, capture_output=True, text=True)
    assert first.returncode == 1 and (egs / model / ".settings").exists()
    resumed = subprocess.run([str(ROOT / "recipes" / name), *options, "--launcher", str(train), extra,
                              "--set trainer.num_workers=0 --set trainer.lr=1 --set=trainer.accum_steps=1"],
                             cwd=egs, capture_output=True, text=True, env={**os.environ, "SAVE_BEST": "1"})
    assert resumed.returncode == 0 and f"training {model}" in resumed.stdout, resumed.stderr[-2000:]
    again = recipe(name, egs, *options, "--launcher", str(train), extra, "--set trainer.lr=1")
    assert "already done" in again.stdout and f"training {model}" not in again.stdout
    refused = subprocess.run([str(ROOT / "recipes" / name), *options, "--launcher", str(train)], cwd=egs,
                             capture_output=True, text=True)
    assert refused.returncode == 1 and "  recorded: --set trainer.lr=1\n  now:      (nothing)\n" in refused.stderr
    assert refused.stderr.rstrip().endswith("give this run another --exp.")
    if name == "asr.sh":   # the scratch control's remedy names its own option
        shutil.rmtree(egs / model)
        refused = subprocess.run([str(ROOT / "recipes" / name), *options, "--launcher", str(train)], cwd=egs,
                                 capture_output=True, text=True)
        assert "exp/ctc_scratch_dev was trained (or started)" in refused.stderr
        assert refused.stderr.rstrip().endswith("give this run another --scratch-exp.")


def python_shim(tmp_path: Path, module: str) -> dict[str, str]:
    """An environment whose python3 prints the arguments of `python3 -m <module>` instead of running it."""
    shim = tmp_path / "bin" / "python3"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/bash\nif [ "$1 $2" = "-m {module}" ]; then echo "{module}: ${{*:3}}"; exit 0; fi\n'
                    f'exec {sys.executable} "$@"\n')
    shim.chmod(0o755)
    return {**os.environ, "PATH": f"{shim.parent}:{os.environ['PATH']}"}


def test_kmeans_is_done_again_when_its_settings_change(egs, tmp_path):
    """The k-means marker records the options the labels depend on: the same ones skip the stage, another
    number of clusters (or fitting option) fits and labels again, and the log says why."""
    env = python_shim(tmp_path, "audiossl.bin.kmeans")
    stage2 = [str(ROOT / "recipes/ssl.sh"), "--nj", "1", "--stage", "2", "--stop-stage", "2", "--targets", "kmeans",
              "--inputs", "wav", "--kmeans1-features", "logmel_chroma"]

    def run(*args: str) -> str:
        done = subprocess.run([*stage2, *args], cwd=egs, capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    assert "audiossl.bin.kmeans: fit --num-clusters 7 " in run("--kmeans1-clusters", "7")
    marker = (egs / "exp/kmeans1/.done").read_text()
    assert "clusters=7 " in marker and "features=logmel_chroma" in marker
    again = run("--kmeans1-clusters", "7")
    assert "k-means 1 (7 clusters) on logmel_chroma: already done" in again and "fit" not in again
    redone = run("--kmeans1-clusters", "9")
    assert f"doing it again: exp/kmeans1/.done records other settings ({marker.strip()})" in redone
    assert "audiossl.bin.kmeans: fit --num-clusters 9 " in redone
    assert "clusters=9 " in (egs / "exp/kmeans1/.done").read_text()
    assert "audiossl.bin.kmeans: fit --num-clusters 9 --max-frames 200000 --n-init 5 " in run(
        "--kmeans1-clusters", "9", "--kmeans-n-init", "5")


OPTION_STAGES = {   # recipe, its options for a stage whose output depends on options, the module it runs, its
    # output dirs (that module would make them), an option that changes the output, what the module gets then
    "asr.sh decodes": ("asr.sh", ["--stage", "4", "--stop-stage", "4", "--pretrained", "none", "--budgets", "dev",
                                  "--test-sets", "test"], "audiossl.bin.decode_ctc",
                       ["exp/ctc_pretrained_dev/decode_test", "exp/ctc_scratch_dev/decode_test"],
                       ["--beam-size", "4"], "--beam-size 4 exp/ctc_scratch_dev/checkpoints/best.pt"),
    "utterance.sh evaluation": ("utterance.sh", ["--stage", "3", "--stop-stage", "3", "--pretrained", "none"],
                                "audiossl.bin.eval_utterance", ["exp/pretrained/eval_sid_test", "exp/scratch/eval_sid_test"],
                                ["--eval-args", "--batch-size 2"], "classify --label-table utt2spk --no-progress --batch-size 2"),
    "superb.sh tasks": ("superb.sh", ["--stage", "2", "--stop-stage", "2", "--upstream", "fbank", "--name", "fbank",
                                      "--tasks", "ks"], "audiossl.bin.superb", [], ["--seed", "1"], "--seed 1 "),
}


@pytest.mark.parametrize("name", OPTION_STAGES)
def test_a_stage_is_done_again_when_an_option_of_its_output_changes(egs, tmp_path, name):
    """Decodes, evaluations and SUPERB tasks: the same options skip the stage, another one does it again."""
    script, options, module, outputs, change, changed = OPTION_STAGES[name]
    env = python_shim(tmp_path, module)
    for output in outputs:
        (egs / output).mkdir(parents=True)
    (egs / "conf/superb.yaml").write_text("{}\n")

    def run(*args: str) -> str:
        done = subprocess.run([str(ROOT / "recipes" / script), *options, *args], cwd=egs, capture_output=True,
                              text=True, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    assert f"{module}: " in run()
    again = run()
    assert "already done" in again and f"{module}: " not in again
    redone = run(*change)
    assert "doing it again" in redone and changed in redone
    assert "already done" in run(*change)


def test_an_evaluation_is_done_again_when_a_file_its_options_name_changes(egs, tmp_path):
    """utterance.sh's stage 3 records a trial list or class list named in --eval-args by checksum: an edited one
    evaluates again, where the evaluation of the earlier trials counted as done."""
    env = python_shim(tmp_path, "audiossl.bin.eval_utterance")
    for init in ("pretrained", "scratch"):
        (egs / f"exp/{init}/eval_sid_test").mkdir(parents=True)
    trials = tmp_path / "trials"
    trials.write_text("a b target\na c nontarget\n")

    def run() -> str:
        done = subprocess.run([str(ROOT / "recipes/utterance.sh"), "--stage", "3", "--stop-stage", "3", "--pretrained",
                               "none", "--eval-task", "verify", "--eval-args", f"--trials {trials}"],
                              cwd=egs, capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    assert f"audiossl.bin.eval_utterance: verify --no-progress --trials {trials} " in run()
    assert "already done" in run()
    trials.write_text("a b target\na d nontarget\n")
    redone = run()
    assert "doing it again" in redone and "audiossl.bin.eval_utterance: verify" in redone


def test_a_feature_dir_is_made_again_for_another_config(egs):
    """make_feature_dir.sh's marker records the config's checksum: an edited config makes the features again."""
    dev_only = ("--stage", "1", "--stop-stage", "1", "--feature-sets", "dev", "--train-set", "dev", "--targets", "kmeans")
    ssl(egs, *dev_only)
    assert "features: mfcc of data/dev in data/dev_mfcc: already done" in ssl(egs, *dev_only).stdout
    (egs / "conf/mfcc.conf").write_text("--frame-shift=10\n")
    out = ssl(egs, *dev_only).stdout
    assert "features: mfcc of data/dev in data/dev_mfcc: doing it again" in out
    assert "features: fbank of data/dev in data/dev_fbank: already done" in out
    assert (egs / "data/dev_mfcc/conf_mfcc").read_text() == "--frame-shift=10\n"
    # and for a source data dir made again (e.g. prepared with other --prepare-args), each of its feature dirs
    wav_scp = egs / "data/dev/wav.scp"
    wav_scp.write_text(wav_scp.read_text().replace("sine 440", "sine 460"))
    out = ssl(egs, *dev_only).stdout
    assert "features: mfcc of data/dev in data/dev_mfcc: doing it again" in out
    assert "features: fbank of data/dev in data/dev_fbank: doing it again" in out
    assert "sine 460" in (egs / "data/dev_fbank/wav.scp").read_text()


def test_targets_default_to_the_familys_own(egs):
    pytest.importorskip("audiossl.bin.models")
    (egs / "exp/hubert_iter1").mkdir(parents=True)
    out = ssl(egs, "--stage", "3", "--stop-stage", "3", "--launcher", "echo").stdout
    [command] = pretrain_commands(out)
    assert "--train-labels exp/kmeans1/train_unlab.labels" in command


def test_bad_targets_are_refused(egs):
    bad = subprocess.run([str(ROOT / "recipes/ssl.sh"), "--targets", "clusters"], cwd=egs, capture_output=True, text=True)
    assert bad.returncode != 0 and "--targets is kmeans, rvq or none, not 'clusters'" in bad.stderr


@pytest.mark.parametrize("name", ["ssl.sh", "asr.sh", "steps/make_feature_dir.sh"])
def test_help_names_every_option(egs, name):
    """Every variable set before parse_options.sh (but the help and the command line) is an option."""
    script = (ROOT / "recipes" / name).read_text().split(". utils/parse_options.sh")[0]
    options = set(re.findall(r"^([a-z][a-z0-9_]*)=", script, flags=re.M)) - {"help_message", "command_line"}
    helped = recipe(name, egs, "--help").stdout
    assert options and [o for o in options if f"--{o.replace('_', '-')}" not in helped] == []


def test_ngpu_and_num_nodes_reach_the_launcher(egs, tmp_path):
    """--ngpu / --num-nodes and cmd.sh's settings go to audiossl.bin.launch (here a stand-in that prints them)."""
    env = python_shim(tmp_path, "audiossl.bin.launch")
    (egs / "exp/wav2vec2_iter1/checkpoints").mkdir(parents=True)   # what training would make
    (egs / "exp/wav2vec2_iter1/checkpoints/best.pt").touch()
    done = subprocess.run([str(ROOT / "recipes/ssl.sh"), "--nj", "1", "--feature-sets", "train_unlab dev", "--stage",
                           "3", "--family", "wav2vec2", "--targets", "none", "--ngpu", "4", "--num-nodes", "2"],
                          cwd=egs, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    [line] = [line for line in done.stdout.splitlines() if line.startswith("audiossl.bin.launch: ")]
    assert line.startswith("audiossl.bin.launch: --mode local --ngpu 4 --num-nodes 2 --slurm-args=--gpus-per-node={ngpu} --hostfile  "
                           "--max-restarts 0 exp/wav2vec2_iter1 -- -m audiossl.bin.pretrain --family wav2vec2 ")


def test_an_lm_dir_built_from_another_text_is_refused_not_reused(egs):
    write_table(egs / "data/dev/text", {utt: "A HELD OUT LINE" for utt in DataDir.read(egs / "data/dev").utterances})
    words, rng = [f"W{i}" for i in range(400)], random.Random(0)
    zipf = [1 / (i + 1) for i in range(len(words))]   # some words seen once or twice, as Kneser-Ney needs
    lm_text = egs / "lm_text"
    lm_text.write_text("".join(" ".join(rng.choices(words, zipf, k=6)) + "\n" for _ in range(300)))
    stage3 = ("--stage", "3", "--stop-stage", "3", "--pretrained", "none", "--budgets", "", "--test-sets", "",
              "--lm-text", str(lm_text))
    recipe("asr.sh", egs, *stage3)
    lm_dir = egs / "data/local/lm_3gram"
    assert (lm_dir / ".done").read_text().split()[0] == str(lm_text.resolve())
    assert "already done" in recipe("asr.sh", egs, *stage3).stdout
    lm_text.write_text(lm_text.read_text() + "W1 W2 W3\n")
    refused = subprocess.run([str(ROOT / "recipes/asr.sh"), *stage3], cwd=egs, capture_output=True, text=True)
    assert refused.returncode == 1
    assert f"{lm_dir.relative_to(egs)} holds the LM of {lm_text.resolve()}" in refused.stderr
    assert "give this LM its own --lm-dir" in refused.stderr
    recipe("asr.sh", egs, *stage3, "--lm-dir", "data/local/lm_other")
    assert (egs / "data/local/lm_other/.done").exists()


def test_an_lm_dir_that_kept_the_sentences_of_a_set_decoded_now_is_refused(egs):
    """An LM built holding out dev only was reused for a later run that also decodes test, whose sentences it kept."""
    write_table(egs / "data/dev/text", {utt: "A HELD OUT LINE" for utt in DataDir.read(egs / "data/dev").utterances})
    (egs / "data/test").mkdir()
    write_table(egs / "data/test/text", {"spk0-test": "ANOTHER HELD OUT LINE"})
    words, rng = [f"W{i}" for i in range(400)], random.Random(0)
    zipf = [1 / (i + 1) for i in range(len(words))]   # some words seen once or twice, as Kneser-Ney needs
    lm_text = egs / "lm_text"
    lm_text.write_text("".join(" ".join(rng.choices(words, zipf, k=6)) + "\n" for _ in range(300)))
    stage3 = ("--stage", "3", "--stop-stage", "3", "--pretrained", "none", "--budgets", "", "--lm-text", str(lm_text))
    recipe("asr.sh", egs, *stage3, "--test-sets", "")
    refused = subprocess.run([str(ROOT / "recipes/asr.sh"), *stage3, "--test-sets", "test"], cwd=egs,
                             capture_output=True, text=True)
    assert refused.returncode == 1
    assert ("data/local/lm_3gram holds an LM whose text kept the sentences of test (it held out dev): it would score "
            "them optimistically; give this LM its own --lm-dir") in refused.stderr
    recipe("asr.sh", egs, *stage3, "--test-sets", "test", "--lm-dir", "data/local/lm_test")
    assert "already done" in recipe("asr.sh", egs, *stage3, "--test-sets", "", "--lm-dir", "data/local/lm_test").stdout


def stand_ins(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A launcher that trains into its last argument (best.pt only with SAVE_BEST set), and an environment
    whose k-means writes a model of its fit options and labels of that model, so other options give other labels."""
    train = tmp_path / "train"
    train.write_text('#!/bin/sh\nfor dir; do :; done\necho "training $dir"\nmkdir -p "$dir/checkpoints"\n'
                     '[ -z "$SAVE_BEST" ] || touch "$dir/checkpoints/best.pt"\n')
    train.chmod(0o755)
    shim = tmp_path / "bin" / "python3"
    shim.parent.mkdir()
    shim.write_text('#!/bin/bash\nif [ "$1 $2" = "-m audiossl.bin.kmeans" ]; then\n  case $3 in\n'
                    '    fit) echo "${*:4}" > "${@: -1}" ;;\n    apply) cat "${@: -3:1}" > "${@: -1}" ;;\n'
                    '    merge) cat "${@:7}" > "$6" ;;\n  esac\n  exit 0\nfi\n'
                    f'exec {sys.executable} "$@"\n')
    shim.chmod(0o755)
    return train, {**os.environ, "PATH": f"{shim.parent}:{os.environ['PATH']}"}


def test_training_on_labels_made_again_is_refused_not_reused_nor_resumed(egs, tmp_path):
    """K-means 1 done again with other options makes other labels: iteration 1, started (its .settings) or
    done (its .done) on the earlier labels, is neither resumed nor skipped; the recipe fails naming the exp
    dir, the labels recorded and now, and the remedy, and removes nothing. The same labels again go on."""
    train, env = stand_ins(tmp_path)
    stages = [str(ROOT / "recipes/ssl.sh"), "--nj", "1", "--stage", "2", "--stop-stage", "3", "--targets", "kmeans",
              "--inputs", "wav", "--kmeans1-features", "logmel_chroma", "--launcher", str(train)]

    def run(*args: str, save_best: bool = False) -> subprocess.CompletedProcess:
        return subprocess.run([*stages, *args], cwd=egs, capture_output=True, text=True,
                              env={**env, "SAVE_BEST": "1" if save_best else ""})

    iter1 = egs / "exp/hubert_iter1"
    assert run().returncode == 1 and (iter1 / ".settings").exists()   # interrupted: no best.pt
    started = (iter1 / ".settings").read_text()
    assert "exp/kmeans1/train_unlab.labels@" in started
    for marker in (".settings", ".done"):
        refused = run("--kmeans-n-init", "5")
        assert refused.returncode == 1, refused.stderr
        assert "stage 2: k-means 1 (100 clusters) on logmel_chroma: doing it again" in refused.stdout
        assert "training exp/hubert_iter1" not in refused.stdout
        assert (f"exp/hubert_iter1 was trained (or started) with other settings or inputs than this run's "
                f"(exp/hubert_iter1/{marker}):") in refused.stderr
        recorded, now = (line.split(":", 1)[1].split() for line in refused.stderr.splitlines()[1:3])
        assert [w.split("@")[0] for w in recorded] == [w.split("@")[0] for w in now] == [
            "exp/kmeans1/train_unlab.labels", "exp/kmeans1/dev.labels"] and recorded != now
        assert "Remove exp/hubert_iter1 to train it again with this run's settings, or keep it" in refused.stderr
        assert (iter1 / ".settings").read_text() == started and (iter1 / "checkpoints").is_dir()
        if marker == ".settings":   # the first labels again: the interrupted training goes on, then is done
            resumed = run(save_best=True)
            assert resumed.returncode == 0 and "training exp/hubert_iter1" in resumed.stdout, resumed.stderr
            assert (iter1 / ".done").read_text() == started
    again = run()
    assert again.returncode == 0 and "iteration 1 (log: exp/hubert_iter1/train.log): already done" in again.stdout
    assert (iter1 / "checkpoints/best.pt").exists()


def test_a_decode_is_made_again_for_another_checkpoint(egs, tmp_path):
    """A decode's marker records its checkpoint's checksum: a model trained again is decoded again, the other not."""
    env = python_shim(tmp_path, "audiossl.bin.decode_ctc")
    for init in ("pretrained", "scratch"):
        (egs / f"exp/ctc_{init}_dev/decode_test").mkdir(parents=True)   # what decoding would make
        (egs / f"exp/ctc_{init}_dev/checkpoints").mkdir()
        (egs / f"exp/ctc_{init}_dev/checkpoints/best.pt").write_text("weights")

    def run() -> str:
        done = subprocess.run([str(ROOT / "recipes/asr.sh"), "--stage", "4", "--stop-stage", "4", "--pretrained", "none",
                               "--budgets", "dev", "--test-sets", "test"], cwd=egs, capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    assert run().count("audiossl.bin.decode_ctc: ") == 2
    assert "audiossl.bin.decode_ctc: " not in run()
    (egs / "exp/ctc_pretrained_dev/checkpoints/best.pt").write_text("weights trained again")
    redone = run()
    assert "stage 4: decoding test with exp/ctc_pretrained_dev: doing it again" in redone
    assert "decoding with exp/ctc_scratch_dev: already done" in redone
    [decode] = [line for line in redone.splitlines() if line.startswith("audiossl.bin.decode_ctc: ")]
    assert "exp/ctc_pretrained_dev/checkpoints/best.pt" in decode


def test_another_seed_prepares_the_utterance_data_again(egs, tmp_path):
    """utterance.sh's stage 0 marker records --seed (it draws texts, voices and renderings)."""
    env = python_shim(tmp_path, "audiossl.bin.prepare_tasks")
    stage0 = [str(ROOT / "recipes/utterance.sh"), "--stage", "0", "--stop-stage", "0", "--pretrained", "none",
              "--size", "tiny"]

    def run(*args: str) -> str:
        done = subprocess.run([*stage0, *args], cwd=egs, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    assert "audiossl.bin.prepare_tasks: --tasks speakers --size tiny --seed 1 " in run("--seed", "1")
    again = run("--seed", "1")
    assert "stage 0: tiny speakers data in data: already done" in again and "prepare_tasks:" not in again
    redone = run("--seed", "2")
    assert "doing it again: data/.done.speakers_tiny records other settings (seed=1 audio=default)" in redone
    assert "audiossl.bin.prepare_tasks: --tasks speakers --size tiny --seed 2 " in redone


def test_other_prepare_args_prepare_the_data_again(egs):
    """Stage 0's marker records --prepare-args: the same ones skip it, others prepare again."""
    (egs / "local").mkdir()
    (egs / "local/prepare_data.sh").write_text('#!/bin/sh\necho "preparing $*"\n')
    (egs / "local/prepare_data.sh").chmod(0o755)
    stage0 = ("--stage", "0", "--stop-stage", "0", "--targets", "none", "--feature-sets", "")
    assert "preparing --size tiny data" in ssl(egs, *stage0, "--prepare-args", "--size tiny").stdout
    again = ssl(egs, *stage0, "--prepare-args", "--size tiny").stdout
    assert "stage 0: preparing data dirs in data: already done" in again and "preparing --size" not in again
    redone = ssl(egs, *stage0, "--prepare-args", "--size full").stdout
    assert "doing it again: data/.done.prepare records other settings (prepare_args=--size tiny)" in redone
    assert "preparing --size full data" in redone


@pytest.mark.parametrize("size", [["--size", "tiny"], ["--size=tiny"]])
def test_the_domain_copies_go_under_the_size_given_in_either_form(tmp_path, size):
    """egs/mini_tts/domain's data step reads ../ssl's --size for its audio dir: `--size=tiny`, which
    parse_options.sh takes as well, put the tiny copies under domains/full."""
    env = python_shim(tmp_path, "audiossl.bin.data_dir")
    domain, ssl_local = tmp_path / "egs/domain", tmp_path / "egs/ssl/local"
    for path in (domain / "local", domain / "utils", ssl_local):
        path.mkdir(parents=True)
    shutil.copy(ROOT / "egs/mini_tts/domain/local/prepare_data.sh", domain / "local")
    (domain / "db.sh").write_text(f"mini_tts={tmp_path}/corpora/mini_tts\n")
    for stub in (ssl_local / "prepare_data.sh", domain / "utils/combine_data.sh"):
        stub.write_text("#!/bin/sh\n")
        stub.chmod(0o755)
    done = subprocess.run(["local/prepare_data.sh", *size, "data"], cwd=domain, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"shift --domain noisy data/train_unlab data/train_unlab_noisy {tmp_path}/corpora/mini_tts/domains/tiny" \
        in done.stdout
