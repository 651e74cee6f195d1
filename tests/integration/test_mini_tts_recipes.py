"""The toy-size demo end to end on the CPU: egs/mini_tts/ssl then egs/mini_tts/asr (and ssl_es, asr_es).

Runs the recipes a user runs (tiny corpus, tiny model, a few updates), checks their outputs,
that re-running skips finished stages, and that a training stage killed mid-way resumes.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

import audiossl
from audiossl.data.kaldi_dir import DataDir

EGS = Path(__file__).resolve().parents[2] / "egs" / "mini_tts"
TINY_PRETRAIN = ("--set model.size=tiny --set trainer.max_updates=4 --set trainer.valid_interval=2 "
                 "--set trainer.save_interval=2 --set trainer.batch_seconds=10")
TINY_FINETUNE = ("--set trainer.max_updates=4 --set trainer.valid_interval=2 --set trainer.save_interval=2 "
                 "--set trainer.batch_seconds=10 --set ctc.freeze_encoder_updates=2 --set ctc.encoder_layers=1")


def run(args, tmp: Path, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "AUDIOSSL_CORPORA": str(tmp / "corpora")}
    return subprocess.run(args, env=env, capture_output=True, text=True, **kwargs)


def ssl_args(tmp: Path) -> list[str]:
    return [str(EGS / "ssl" / "run.sh"), "--data", str(tmp / "data"), "--exp", str(tmp / "exp"),
            "--prepare-args", "--size tiny", "--feature-sets", "train_unlab dev train_10min test test_unseen",
            "--kmeans1-clusters", "8", "--kmeans2-clusters", "8", "--kmeans2-layer", "1", "--kmeans-fit-utts", "10",
            "--pretrain-args", TINY_PRETRAIN]


def lm_args(tmp: Path) -> list[str]:
    """The word LM of the tiny corpus's text, with a two-point grid of word scores."""
    return ["--lm-text", str(tmp / "data/local/lm_text_en.txt"), "--lm-weights", "1", "--word-scores", "0,1",
            "--lm-beam-size", "20"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("demo")
    ssl = run(ssl_args(tmp), tmp)
    assert ssl.returncode == 0, ssl.stdout[-3000:] + ssl.stderr[-3000:]
    asr = run([str(EGS / "asr" / "run.sh"), "--data", str(tmp / "data"), "--exp", str(tmp / "exp_asr"),
               "--pretrained", str(tmp / "exp/hubert_iter2/checkpoints/best.pt"), "--budgets", "train_10min",
               "--results", str(tmp / "RESULTS.md"), "--beam-size", "3", "--finetune-args", TINY_FINETUNE,
               *lm_args(tmp)], tmp)
    assert asr.returncode == 0, asr.stdout[-3000:] + asr.stderr[-3000:]
    return tmp


def test_ssl_outputs(demo):
    for marker in ("data/.done.prepare", "exp/kmeans1/.done", "exp/hubert_iter1/.done", "exp/kmeans2/.done",
                   "exp/hubert_iter2/.done"):
        assert (demo / marker).exists(), marker
    for name in ("train_unlab_fbank", "train_unlab_mfcc", "dev_fbank", "dev_mfcc", "test_fbank"):  # one marker per kind
        assert {".done", "feats.scp", "cmvn.scp"} <= {p.name for p in (demo / "data" / name).iterdir()}, name
    assert not (demo / "data/test_mfcc").exists()   # MFCC only where k-means labels
    for it in (1, 2):  # fitted on a random subset, applied to every utterance
        assert len((demo / f"exp/kmeans{it}/fit_data/utt2spk").read_text().splitlines()) == 10
    labels = (demo / "exp/kmeans2/train_unlab.labels").read_text().splitlines()
    assert len(labels) == len((demo / "data/train_unlab/utt2spk").read_text().splitlines())
    frames = dict(line.split() for line in (demo / "data/train_unlab_fbank/utt2num_frames").read_text().splitlines())
    model = audiossl.load_model(demo / "exp/hubert_iter2/checkpoints/best.pt")
    for line in labels:  # one label per model frame, every value a cluster id
        utt, *ids = line.split()
        assert len(ids) == int(model.num_frames(torch.tensor([int(frames[utt])]))[0])
        assert all(0 <= int(i) < 8 for i in ids)
    records = [json.loads(x) for x in (demo / "exp/hubert_iter2/updates.jsonl").read_text().splitlines()]
    assert [r["update"] for r in records] == [1, 2, 3, 4]


def test_asr_outputs_and_results_table(demo):
    table = (demo / "RESULTS.md").read_text()
    assert "## Demo setting" in table and "Fine-tuning wall time (m:ss, validation and checkpointing included): pretrained on train_10min" in table
    for test_set in ("test", "test_unseen"):
        for init in ("pretrained", "scratch"):
            assert f"| train_10min | {test_set} | {init} |" in table
            decode = demo / "exp_asr" / f"ctc_{init}_train_10min" / f"decode_{test_set}"
            assert (decode / "wer").read_text().startswith("%WER")
            hyps = (decode / "hyp.txt").read_text().splitlines()
            refs = (demo / "data" / test_set / "text").read_text().splitlines()
            assert [h.split()[0] for h in hyps] == [r.split()[0] for r in refs]
    assert "| CER % with LM | WER % with LM |" in table and "word 3-gram LM" in table
    for init in ("pretrained", "scratch"):
        model_dir = demo / "exp_asr" / f"ctc_{init}_train_10min"
        assert "final validation" in (model_dir / "finetune.log").read_text()   # the two ran side by side
        assert (model_dir / "decode_dev" / "scores.json").exists()       # the network outputs of the LM's dev decode
        grid = (model_dir / "decode_dev_lm_3gram" / "lm_grid.tsv").read_text().splitlines()
        assert grid[0] == "lm_weight\tword_score\twer\tcer" and [row.split()[:2] for row in grid[1:]] == [["1", "0"], ["1", "1"]]
        chosen = json.loads((model_dir / "decode_dev_lm_3gram" / "scores.json").read_text())
        assert min(float(row.split()[2]) for row in grid[1:]) == pytest.approx(100 * chosen["wer"], abs=0.006)
        for test_set in ("test", "test_unseen"):
            scores = json.loads((model_dir / f"decode_{test_set}_lm_3gram" / "scores.json").read_text())
            assert (scores["lm_weight"], scores["word_score"]) == (chosen["lm_weight"], chosen["word_score"])
            lexicon = {line.split()[0] for line in (demo / "data/local/lm_3gram/lexicon.txt").read_text().splitlines()}
            hyps = (model_dir / f"decode_{test_set}_lm_3gram" / "hyp.txt").read_text().splitlines()
            assert all(word in lexicon for line in hyps for word in line.split()[1:])
    info = json.loads((demo / "data/local/lm_3gram/info.json").read_text())
    held_out = {line.split(maxsplit=1)[1] for name in ("dev", "test", "test_unseen")
                for line in (demo / "data" / name / "text").read_text().splitlines()}
    assert info["dropped_as_held_out"] == len(held_out)
    assert sorted(Path(name).name for name in info["held_out"]) == ["dev", "test", "test_unseen"]
    model = audiossl.load_model(demo / "exp_asr/ctc_pretrained_train_10min/checkpoints/best.pt")
    wavs = torch.randn(2, 16000) * 0.05
    texts = model.transcribe(wavs, torch.tensor([16000, 8000]))
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    hidden, frames = model.extract_features(wavs, torch.tensor([16000, 8000]))
    assert len(hidden) == 2 and frames.tolist() == [49, 24]   # the input and the one layer kept (of 2)


@pytest.mark.parametrize("family, config, figures, size, frames_per_second", [
    ("wav2vec2", "wav2vec2.yaml", {"acc", "code_perplexity", "temperature"}, "tiny", 49),
    ("best_rq", "best_rq.yaml", {"acc_masked", "target_perplexity"}, "tiny", 49),
    ("ssamba", "ssamba.yaml", {"acc_masked", "loss_nce", "loss_mse"}, "test", 49),
    ("tera", "tera.yaml", {"loss_l1", "time_altered"}, "tiny", 98),
])
def test_families_with_own_targets_pretrain_and_fine_tune_through_the_recipes(demo, family, config, figures, size,
                                                                               frames_per_second):
    """--family wav2vec2 / best_rq / ssamba / tera: no k-means stages, one pretraining run; load_model rebuilds it;
    CTC fine-tunes it (SSAMBA's 128-bin fbank computed from the audio, the recipe's feats.scp holding 80 bins)."""
    exp = demo / f"exp_{family}"
    ssl = run(ssl_args(demo) + ["--stage", "1", "--exp", str(exp), "--family", family,
                                "--pretrain1-config", str(EGS / "ssl/conf" / config),
                                "--pretrain-args", TINY_PRETRAIN.replace("model.size=tiny", f"model.size={size}")], demo)
    assert ssl.returncode == 0, ssl.stdout[-3000:] + ssl.stderr[-3000:]
    assert sum(f"does not apply to {family}" in line for line in ssl.stdout.splitlines()) == 3
    assert (exp / f"{family}_iter1/.done").exists() and not (exp / "kmeans1").exists()
    valid = [json.loads(line) for line in (exp / f"{family}_iter1/valid.jsonl").read_text().splitlines()]
    assert [r["update"] for r in valid] == [2, 4] and figures <= valid[-1].keys()
    model = audiossl.load_model(exp / f"{family}_iter1/checkpoints/best.pt")
    assert model.config.family == family and model.input_kind == "fbank"
    hidden, frames = model.extract_features(torch.randn(1, 16000) * 0.05, torch.tensor([16000]))
    assert len(hidden) == 3 and frames.tolist() == [frames_per_second]
    asr = run([str(EGS / "asr" / "run.sh"), "--data", str(demo / "data"), "--exp", str(demo / f"exp_asr_{family}"),
               "--scratch-exp", str(demo / "exp_asr"), "--pretrained", str(exp / f"{family}_iter1/checkpoints/best.pt"),
               "--budgets", "train_10min", "--test-sets", "test", "--lm-text", "", "--results",
               str(demo / f"RESULTS_{family}.md"), "--results-section", family, "--beam-size", "3",
               "--finetune-args", TINY_FINETUNE], demo)
    assert asr.returncode == 0, asr.stdout[-3000:] + asr.stderr[-3000:]
    section = (demo / f"RESULTS_{family}.md").read_text().split(f"## {family}")[1]
    assert f"({family}, update 4 of its pretraining run)" in section and "| train_10min | test | pretrained |" in section
    ctc = audiossl.load_model(demo / f"exp_asr_{family}/ctc_pretrained_train_10min/checkpoints/best.pt")
    assert ctc.config.encoder_family == family and len(ctc.hidden_sizes) == 2


@pytest.mark.parametrize("family, mixed_with", [("wavlm", "noise=NoiseBank("), ("unispeech_sat", "speakers=")])
def test_mixing_families_pretrain_and_fine_tune_through_the_recipes(demo, family, mixed_with):
    """--family wavlm / unispeech_sat: the first iteration (the second, on other k-means labels, mixes
    the same way and the HuBERT demo runs it) on audio mixed before its features; load_model
    rebuilds the model; CTC fine-tunes it."""
    exp = demo / f"exp_{family}"
    ssl = run(ssl_args(demo) + ["--stage", "1", "--stop-stage", "3", "--exp", str(exp), "--family", family], demo)
    assert ssl.returncode == 0, ssl.stdout[-3000:] + ssl.stderr[-3000:]
    log = (exp / f"{family}_iter1/train.log").read_text()
    transforms = next(line for line in log.splitlines() if "batch transforms:" in line)
    assert "UtteranceMixing(prob=0.2" in transforms and mixed_with in transforms, transforms
    assert "FbankFromWaveform(num_mel_bins=80) in validation" in transforms
    assert not (exp / f"{family}_iter2").exists()
    checkpoint = str(exp / f"{family}_iter1/checkpoints/best.pt")
    model = audiossl.load_model(checkpoint)
    assert model.config.family == family and model.input_kind == "fbank"
    asr = run([str(EGS / "asr" / "run.sh"), "--data", str(demo / "data"), "--exp", str(demo / f"exp_asr_{family}"),
               "--scratch-exp", str(demo / "exp_asr"), "--pretrained", checkpoint, "--budgets", "train_10min",
               "--test-sets", "test", "--lm-text", "", "--results", str(demo / f"RESULTS_{family}.md"),
               "--results-section", family, "--beam-size", "3", "--finetune-args", TINY_FINETUNE], demo)
    assert asr.returncode == 0, asr.stdout[-3000:] + asr.stderr[-3000:]
    ctc = audiossl.load_model(demo / f"exp_asr_{family}/ctc_pretrained_train_10min/checkpoints/best.pt")
    assert ctc.config.encoder_family == family and len(ctc.hidden_sizes) == 2


@pytest.mark.parametrize("family, config", [("hubert", "mamba_hubert1"), ("wavlm", "mamba_wavlm1")])
def test_mamba_encoders_pretrain_and_fine_tune_through_the_recipes(demo, family, config):
    """conf/mamba_hubert1.yaml, conf/mamba_wavlm1.yaml: the family's objective on a bidirectional Mamba
    encoder, through the same recipes; load_model rebuilds it; CTC fine-tunes its first layer."""
    exp = demo / f"exp_{config}"
    ssl = run(ssl_args(demo) + ["--stage", "1", "--stop-stage", "3", "--exp", str(exp), "--family", family,
                                "--pretrain1-config", str(EGS / "ssl" / "conf" / f"{config}.yaml")], demo)
    assert ssl.returncode == 0, ssl.stdout[-3000:] + ssl.stderr[-3000:]
    checkpoint = str(exp / f"{family}_iter1/checkpoints/best.pt")
    model = audiossl.load_model(checkpoint)
    assert model.config.family == family and model.config.encoder.kind == "bimamba"
    assert type(model.encoder).__name__ == "BiMambaEncoder" and len(model.hidden_sizes) == 3
    asr = run([str(EGS / "asr" / "run.sh"), "--data", str(demo / "data"), "--exp", str(demo / f"exp_asr_{config}"),
               "--scratch-exp", str(demo / "exp_asr"), "--pretrained", checkpoint, "--budgets", "train_10min",
               "--test-sets", "test", "--lm-text", "", "--results", str(demo / f"RESULTS_{config}.md"),
               "--results-section", config, "--beam-size", "3", "--finetune-args", TINY_FINETUNE], demo)
    assert asr.returncode == 0, asr.stdout[-3000:] + asr.stderr[-3000:]
    ctc = audiossl.load_model(demo / f"exp_asr_{config}/ctc_pretrained_train_10min/checkpoints/best.pt")
    assert ctc.config.encoder_family == family and len(ctc.hidden_sizes) == 2


def test_continued_pretraining_on_spanish_then_spanish_ctc(demo):
    """egs/mini_tts/ssl_es: the demo's English HuBERT continues on the tiny Spanish set (k-means on its own
    layer 1 of the Spanish audio, its optimizer and schedule kept); egs/mini_tts/asr_es fine-tunes the result
    on Spanish labels and decodes with the Spanish word LM."""
    data, exp = demo / "data_es", demo / "exp_es"
    english = demo / "exp/hubert_iter2/checkpoints/best.pt"
    tiny_run = "--set trainer.max_updates=2 --set trainer.valid_interval=1 --set trainer.save_interval=1 " \
               "--set trainer.batch_seconds=10"
    ssl = run([str(EGS / "ssl_es" / "run.sh"), "--english", str(english), "--data", str(data), "--exp", str(exp),
               "--prepare-args", "--size tiny", "--kmeans1-layer", "1", "--kmeans1-clusters", "6",
               "--kmeans-fit-utts", "10", "--keep-optimizer", "true", "--pretrain-args", tiny_run], demo)
    assert ssl.returncode == 0, ssl.stdout[-3000:] + ssl.stderr[-3000:]
    assert f"k-means 1 (6 clusters) on layer 1 of {english}" in ssl.stdout
    assert not (data / "train_unlab_es_mfcc").exists() and (data / "train_unlab_es_fbank/feats.scp").exists()
    assert "optimizer and schedule from" in (exp / "hubert_iter1/train.log").read_text()
    before, after = audiossl.load_model(english), audiossl.load_model(exp / "hubert_iter1/checkpoints/best.pt")
    assert {**before.config.to_dict(), "num_classes": 6} == after.config.to_dict()
    assert not torch.equal(before.encoder.layers[0].feed_forward.fc1.weight, after.encoder.layers[0].feed_forward.fc1.weight)
    assert not (exp / "hubert_iter2").exists()
    asr = run([str(EGS / "asr_es" / "run.sh"), "--data", str(data), "--exp", str(demo / "exp_asr_es"),
               "--pretrained", str(exp / "hubert_iter1/checkpoints/best.pt"), "--budgets", "train_10min_es",
               "--test-sets", "test_es", "--lm-text", str(data / "local/lm_text_es.txt"), "--lm-weights", "1",
               "--word-scores", "0", "--lm-beam-size", "20", "--results", str(demo / "RESULTS_es.md"),
               "--beam-size", "3", "--finetune-args", TINY_FINETUNE], demo)
    assert asr.returncode == 0, asr.stdout[-3000:] + asr.stderr[-3000:]
    section = (demo / "RESULTS_es.md").read_text().split("## English HuBERT continued on Spanish")[1]
    assert "| train_10min_es | test_es | pretrained |" in section and "| train_10min_es | test_es | scratch |" in section
    ctc = audiossl.load_model(demo / "exp_asr_es/ctc_pretrained_train_10min_es/checkpoints/best.pt")
    letters = {c for line in (data / "train_10min_es/text").read_text().splitlines() for c in line.split(" ", 1)[1]}
    assert letters - {" "} <= set(ctc.tokenizer.tokens)  # Spanish letters


def test_asr_derived_targets_then_a_vietasr_iteration(demo):
    """ssl_es --setting asr_targets on the tiny Spanish set: k-means 1 on the token posteriors of the scratch CTC
    model of the test above (GigaAM's HuBERT-CTC), HuBERT on them; one VietASR iteration (that model fine-tuned
    with CTC, k-means 2 on the fine-tuned layer 1, iteration 2), both with chunkwise attention; asr_es fine-tunes
    the result and decodes it with full context and in chunks of 2 frames."""
    data, exp = demo / "data_es", demo / "exp_asr_targets"
    ctc = demo / "exp_asr_es/ctc_scratch_train_10min_es/checkpoints/best.pt"
    ssl = run([str(EGS / "ssl_es" / "run.sh"), "--setting", "asr_targets", "--data", str(data), "--exp", str(exp),
               "--prepare-args", "--size tiny", "--kmeans1-model", str(ctc), "--kmeans1-layer", "posteriors",
               "--kmeans1-clusters", "6", "--kmeans2-clusters", "6", "--kmeans2-layer", "1", "--kmeans-fit-utts", "10",
               "--finetune-set", "train_10min_es", "--finetune-args", TINY_FINETUNE, "--pretrain-args", TINY_PRETRAIN],
              demo)
    assert ssl.returncode == 0, ssl.stdout[-3000:] + ssl.stderr[-3000:]
    assert f"k-means 1 (6 clusters) on layer posteriors of {ctc}" in ssl.stdout
    fit = (exp / "kmeans1/fit.log").read_text()
    assert f"frames of dimension {len(audiossl.load_model(ctc).tokenizer.tokens)}" in fit   # one probability per token
    finetuned = exp / "hubert_iter1/ctc/checkpoints/best.pt"
    assert f"k-means 2 (6 clusters) on layer 1 of {finetuned}" in ssl.stdout
    assert audiossl.load_model(finetuned).config.encoder_family == "hubert"
    assert (exp / "hubert_iter2/.done").exists() and not (exp / "hubert_iter3").exists()
    pretrained = audiossl.load_model(exp / "hubert_iter2/checkpoints/best.pt")
    assert pretrained.config.encoder.dynamic_chunks == (4, 25)
    asr = run([str(EGS / "asr_es" / "run.sh"), "--setting", "asr_targets", "--data", str(data),
               "--exp", str(demo / "exp_asr_es_targets"), "--scratch-exp", str(demo / "exp_asr_es"),
               "--pretrained", str(exp / "hubert_iter2/checkpoints/best.pt"), "--budgets", "train_10min_es",
               "--test-sets", "test_es", "--lm-text", "", "--results", str(demo / "RESULTS_es.md"),
               "--beam-size", "3", "--finetune-args", TINY_FINETUNE, "--chunk-frames", "2"], demo)
    assert asr.returncode == 0, asr.stdout[-3000:] + asr.stderr[-3000:]
    section = (demo / "RESULTS_es.md").read_text().split("## HuBERT on ASR-derived targets")[1]
    assert "a latency of 40 ms for 2" in section and "| CER % | WER % | CER % chunks of 2 |" in section
    assert "| train_10min_es | test_es | pretrained |" in section
    scores = json.loads((demo / "exp_asr_es_targets/ctc_pretrained_train_10min_es/decode_test_es_chunk2/scores.json")
                        .read_text())
    assert scores["chunk_frames"] == 2 and scores["latency_s"] == 0.04

def test_self_training_pseudo_labels_with_the_lm_and_fine_tunes_again(demo):
    """asr_es --setting self_training: the continued test's fine-tuned model pseudo-labels the tiny train_unlab_es
    with the Spanish LM (its dev weights), the more confident half joins train_10min_es, and both models train on it."""
    data, exp = demo / "data_es", demo / "exp_asr_es_st"
    asr = run([str(EGS / "asr_es" / "run.sh"), "--setting", "self_training", "--data", str(data), "--exp", str(exp),
               "--pseudo-label-from", str(demo / "exp_asr_es"), "--pretrained",
               str(demo / "exp_es/hubert_iter1/checkpoints/best.pt"), "--budgets", "train_10min_es",
               "--test-sets", "test_es", "--lm-text", str(data / "local/lm_text_es.txt"), "--lm-weights", "1",
               "--word-scores", "0", "--lm-beam-size", "20", "--results", str(demo / "RESULTS_es.md"),
               "--beam-size", "3", "--finetune-args", TINY_FINETUNE], demo)
    assert asr.returncode == 0, asr.stdout[-3000:] + asr.stderr[-3000:]
    combined = DataDir.read(data / "train_10min_es_st_fbank")
    labelled = DataDir.read(data / "train_10min_es_fbank")
    report = json.loads((data / "train_10min_es_st_fbank/pseudo_labels.json").read_text())
    unlabelled = set(DataDir.read(data / "train_unlab_es_fbank").utterances) - set(labelled.utterances)
    usable = [label for label in report["labels"].values() if label["text"].strip() and label["confidence"] > -math.inf]
    assert report["pseudo_labelled"] == len(unlabelled) and report["kept"] == min(round(len(unlabelled) / 2), len(usable))
    assert len(combined.utterances) == len(labelled.utterances) + report["kept"]
    kept = [utt for utt, label in report["labels"].items() if label["kept"]]
    assert all(combined["text"][utt] == report["labels"][utt]["text"] for utt in kept)
    assert "dropped_wer" in report   # the synthetic corpus knows the true texts
    for init in ("pretrained", "scratch"):
        log = (exp / f"ctc_{init}_train_10min_es/finetune.log").read_text()
        assert f"{len(combined.utterances)} training utterances" in log
    section = (demo / "RESULTS_es.md").read_text().split("## English HuBERT continued on Spanish, one round of self")[1]
    assert "| train_10min_es | test_es | pretrained |" in section and "| train_10min_es | test_es | scratch |" in section

def test_multilingual_pretraining_samples_batches_by_language(demo):
    """ssl_es --setting multilingual, iteration 1 on the tiny English + Spanish sets: one language per batch,
    figures per language in the logs."""
    data, exp = demo / "data_es", demo / "exp_multilingual"
    ssl = run([str(EGS / "ssl_es" / "run.sh"), "--setting", "multilingual", "--data", str(data), "--exp", str(exp),
               "--prepare-args", "--size tiny", "--kmeans1-clusters", "6", "--kmeans-fit-utts", "10",
               "--stop-stage", "3", "--pretrain-args", TINY_PRETRAIN], demo)
    assert ssl.returncode == 0, ssl.stdout[-3000:] + ssl.stderr[-3000:]
    assert set(DataDir.read(data / "train_unlab_en_es_fbank")["utt2lang"].values()) == {"en", "es"}
    assert "language stage 1 of 1, batches of one language drawn with p ∝ weight · amount^1: en 0." in (exp / "hubert_iter1/train.log").read_text()
    valid = json.loads((exp / "hubert_iter1/valid.jsonl").read_text().splitlines()[-1])
    assert {"acc_masked@en", "acc_masked@es", "loss@en", "loss@es"} <= valid.keys()


def test_another_encoder_shares_the_scratch_control(demo):
    """--scratch-exp: a second encoder's table reuses the first run's scratch models, untouched."""
    scratch = demo / "exp_asr" / "ctc_scratch_train_10min"
    before = {p: p.stat().st_mtime_ns for p in scratch.rglob("*")}
    asr = run([str(EGS / "asr" / "run.sh"), "--data", str(demo / "data"), "--exp", str(demo / "exp_asr_iter1"),
               "--scratch-exp", str(demo / "exp_asr"), "--pretrained", str(demo / "exp/hubert_iter1/checkpoints/best.pt"),
               "--budgets", "train_10min", "--results", str(demo / "RESULTS.md"), "--results-section", "Iteration 1",
               "--results-command", "asr/run_iter1.sh", "--beam-size", "3", "--finetune-args", TINY_FINETUNE,
               *lm_args(demo)], demo)
    assert asr.returncode == 0, asr.stdout[-3000:] + asr.stderr[-3000:]
    assert not (demo / "exp_asr_iter1" / "ctc_scratch_train_10min").exists()
    assert (demo / "exp_asr_iter1" / "ctc_pretrained_train_10min" / "decode_test" / "scores.json").exists()
    assert {p: p.stat().st_mtime_ns for p in scratch.rglob("*")} == before
    demo_section, iter1_section = (demo / "RESULTS.md").read_text().split("## Iteration 1")
    assert f"The scratch control is the one in `{demo / 'exp_asr'}`" in iter1_section
    assert "Produced by `asr/run_iter1.sh`." in iter1_section
    scratch_rows = [[line for line in section.splitlines() if "| scratch |" in line]
                    for section in (demo_section, iter1_section)]
    assert len(scratch_rows[1]) == 2 and scratch_rows[0] == scratch_rows[1]


def test_a_failed_fine_tune_among_parallel_ones_fails_the_stage(demo):
    """--finetune-jobs 2: one job's error ends the stage, names its log, and nothing is marked done."""
    exp = demo / "exp_asr_bad"
    asr = run([str(EGS / "asr" / "run.sh"), "--data", str(demo / "data"), "--exp", str(exp), "--stage", "2",
               "--stop-stage", "2", "--pretrained", str(demo / "exp/hubert_iter2/checkpoints/best.pt"),
               "--budgets", "train_10min", "--finetune-args", TINY_FINETUNE + " --set trainer.no_such_option=1"], demo)
    assert asr.returncode != 0
    assert f"a job failed: see {exp}/ctc_" in asr.stderr
    logs = [exp / f"ctc_{init}_train_10min" / "finetune.log" for init in ("pretrained", "scratch")]
    assert any("no_such_option" in log.read_text() for log in logs if log.exists())
    assert not list(exp.rglob(".done"))


def test_rerun_skips_finished_stages(demo):
    again = run(ssl_args(demo), demo)
    assert again.returncode == 0
    skipped = [line for line in again.stdout.splitlines() if "already done" in line]
    assert len(skipped) >= 5 and any("stage 3: pretraining hubert, iteration 1" in line for line in skipped)


def test_killed_training_stage_resumes(demo):
    args = ssl_args(demo) + ["--stage", "3", "--stop-stage", "3", "--exp", str(demo / "exp_kill"),
                             "--pretrain-args", TINY_PRETRAIN + " --set trainer.max_updates=40"]
    (demo / "exp_kill" / "kmeans1").mkdir(parents=True)
    for name in ("train_unlab.labels", "dev.labels"):
        (demo / "exp_kill" / "kmeans1" / name).write_text((demo / "exp" / "kmeans1" / name).read_text())
    env = {**os.environ, "AUDIOSSL_CORPORA": str(demo / "corpora")}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    checkpoint = demo / "exp_kill/hubert_iter1/checkpoints/update_6.pt"
    while not checkpoint.exists() and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (demo / "exp_kill/hubert_iter1/.done").exists(), "the stage finished before it could be killed"
    resumed = run(args, demo)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in (demo / "exp_kill/hubert_iter1/train.log").read_text()
    records = [json.loads(x) for x in (demo / "exp_kill/hubert_iter1/updates.jsonl").read_text().splitlines()]
    assert [r["update"] for r in records] == list(range(1, 41))
