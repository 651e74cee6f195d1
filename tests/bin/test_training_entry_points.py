"""Helpers of the training entry points: encoder truncation, continuing from a checkpoint, run configs."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from audiossl.checkpoint import build_model, save_checkpoint
from audiossl.errors import ConfigError, UserError
from audiossl.models.ctc.config import CtcConfig
from audiossl.models.hubert import HubertConfig
from audiossl.models.named import model_config_from_section
from audiossl.tasks.asr import FineTuningOptions, fine_tuning_encoder, read_ctc_section
from audiossl.tasks.pretrain import check_targets, pretraining_model
from audiossl.text.tokenizer import build_tokenizer
from audiossl.train.config import check_sections, load_run_config, trainer_config


def tiny_checkpoint(path):
    config = HubertConfig.tiny(frontend="fbank")
    model = build_model("hubert", config.to_dict())
    save_checkpoint(path, "hubert", config.to_dict(), model.state_dict())
    return model


def test_fine_tuning_encoder_cuts_layers_and_sets_layer_drop(tmp_path):
    original = tiny_checkpoint(tmp_path / "m.pt")
    cut = fine_tuning_encoder(str(tmp_path / "m.pt"), FineTuningOptions(encoder_layers=1, encoder_layer_drop=0.1))
    assert cut.config.encoder.num_layers == 1 and len(cut.hidden_sizes) == 2
    assert cut.config.encoder.layer_drop == 0.1 and original.config.encoder.layer_drop == 0.05
    rebuilt = build_model("hubert", cut.config.to_dict()).encoder_only()
    rebuilt.load_state_dict(cut.state_dict())  # strict: exactly the kept layers, no head
    assert not any(name.startswith("head.") for name in cut.state_dict())
    whole = fine_tuning_encoder(str(tmp_path / "m.pt"), FineTuningOptions())
    assert whole.config.encoder.num_layers == 2 and whole.config.encoder.layer_drop == 0.0
    with pytest.raises(ConfigError, match="cannot keep 3 layers of a 2-layer encoder"):
        fine_tuning_encoder(str(tmp_path / "m.pt"), FineTuningOptions(encoder_layers=3))


def test_ctc_section_refuses_unknown_keys():
    options, settings = read_ctc_section({"tokenizer": "bpe", "vocab_size": 30, "mask_prob": 0.1})
    assert options.tokenizer == "bpe" and options.vocab_size == 30 and settings == {"mask_prob": 0.1}
    with pytest.raises(ConfigError, match=r"ctc: unknown keys \['mask_probb'\]"):
        read_ctc_section({"mask_probb": 0.1})


TINY_SECTION = {"family": "hubert", "size": "tiny", "args": {"frontend": "fbank"}}


@pytest.mark.parametrize("section", [{"set": {"num_classes": 7}}, {**TINY_SECTION, "set": {"num_classes": 7}}])
def test_pretraining_model_keeps_encoder_and_replaces_targets(tmp_path, section):
    original = tiny_checkpoint(tmp_path / "m.pt")
    model = pretraining_model(section, str(tmp_path / "m.pt"))
    assert model.head.label_embeddings.shape[0] == 7 and model.config.num_classes == 7
    for name, value in original.encoder.state_dict().items():
        assert torch.equal(value, model.encoder.state_dict()[name]), name


def test_pretraining_model_refuses_what_init_would_override(tmp_path):
    tiny_checkpoint(tmp_path / "m.pt")
    section = {**TINY_SECTION, "set": {"num_classes": 7, "unmasked_weight": 0.5, "encoder": {"num_layers": 4}}}
    with pytest.raises(ConfigError, match=r"differs in encoder.num_layers \(2 in the checkpoint, 4 in the run "
                                          r"config\); unmasked_weight \(0.0 in the checkpoint, 0.5 in the run config\)"):
        pretraining_model(section, str(tmp_path / "m.pt"))
    with pytest.raises(ConfigError, match="a 'hubert' model, the run config's family is 'wavlm'"):
        pretraining_model({**TINY_SECTION, "family": "wavlm"}, str(tmp_path / "m.pt"))
    with pytest.raises(ConfigError, match=r"\['size'\] need model.family"):
        pretraining_model({"size": "tiny"}, str(tmp_path / "m.pt"))
    with pytest.raises(ConfigError, match="model.set: unknown key 'num_clases'"):
        pretraining_model({"set": {"num_clases": 7}}, str(tmp_path / "m.pt"))


def test_targets_must_match_the_family():
    check_targets("hubert", "train.labels", "dev.labels", "data/dev")
    with pytest.raises(ConfigError, match="hubert predicts k-means labels"):
        check_targets("hubert", None, None, None)
    with pytest.raises(ConfigError, match="--valid-labels"):
        check_targets("hubert", "train.labels", None, "data/dev")


def test_dev_labels_without_dev_data_are_refused():
    """They were ignored: the run went unvalidated, best.pt chosen without a dev set."""
    with pytest.raises(ConfigError, match="--valid-labels dev.labels without --valid-data: give the validation data"):
        check_targets("hubert", "train.labels", "dev.labels", None)


def test_run_config_overrides_and_types(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: {family: hubert, size: tiny, args: {frontend: fbank}}\ntrainer: {lr: 1e-3}\n")
    run = load_run_config(path, ["trainer.max_updates=7", "model.set.num_classes=9", "trainer.schedule.name=tri_stage"])
    config = trainer_config(run["trainer"])
    assert config.lr == 1e-3 and config.max_updates == 7 and config.schedule.total_updates == 7
    assert config.schedule.name == "tri_stage"
    model_config = model_config_from_section(run["model"])
    assert model_config.family == "hubert" and model_config.num_classes == 9 and model_config.frontend.kind == "fbank"
    with pytest.raises(ConfigError, match=r"trainer: unknown keys \['nope'\]"):
        trainer_config({"nope": 1})
    with pytest.raises(ConfigError, match="trainer.lr: expected a number"):
        trainer_config({"lr": "fast"})
    with pytest.raises(ConfigError, match="model.set: unknown key 'wat'"):
        model_config_from_section({"family": "hubert", "size": "tiny", "set": {"wat": 1}})


@pytest.mark.parametrize("values, message", [
    ({"max_updates": "abc"}, "trainer.max_updates: expected a whole number, got 'abc'"),
    ({"betas": "abc"}, r"trainer.betas: expected a list of 2 \(a number, a number\)"),
    ({"schedule": "abc"}, "trainer.schedule: expected a mapping of ScheduleConfig keys"),
    ([{"lr": 1}], "trainer: expected a mapping of keys"),
    ({"precision": "fp8"}, r"trainer.precision is 'fp8'; it must be one of \['auto', 'bf16', 'fp16', 'fp32'\]"),
    ({"schedule": {"name": "cosin"}}, "trainer.schedule.name is 'cosin'; it must be one of"),
    ({"lr": -1}, "trainer.lr is -1.0; it must be more than 0"),
    ({"clip_norm": -1}, "trainer.clip_norm is -1.0; it must be more than 0"),
    ({"device": "gpu0"}, "trainer.device is 'gpu0'; it must be auto, cpu or cuda"),
    ({"max_updates": 0, "save_interval": 0, "keep_last": 0},
     "max_updates is 0; it must be at least 1\n  trainer.save_interval is 0.*\n  trainer.keep_last is 0"),
])
def test_trainer_values_of_the_wrong_type_or_range_are_named(values, message):
    with pytest.raises(ConfigError, match=message):
        trainer_config(values)


def test_numbers_written_as_yaml_text_and_lists_for_tuples_are_read():
    config = trainer_config(load_run_config(None, ["trainer.max_updates=1e3", "trainer.lr=2e-3",
                                                   "trainer.betas=[0.9, 0.99]"])["trainer"])
    assert (config.max_updates, config.lr, config.betas) == (1000, 0.002, (0.9, 0.99))


def test_a_run_config_that_is_not_yaml_is_named(tmp_path):
    (tmp_path / "run.yaml").write_text("trainer:\n  lr: [1, 2\n")
    with pytest.raises(ConfigError, match="run.yaml: not valid YAML: while parsing"):
        load_run_config(tmp_path / "run.yaml")
    with pytest.raises(ConfigError, match=r"override 'trainer.lr=\[1,': not valid YAML"):
        load_run_config(None, ["trainer.lr=[1,"])


@pytest.mark.parametrize("section, message", [
    ({"set": {"encoder": {"dropout": "abc"}}}, "HubertConfig.encoder.dropout: expected a number, got 'abc'"),
    ({"set": {"encoder": {"num_layers": "two"}}}, "HubertConfig.encoder.num_layers: expected a whole number"),
    ({"set": 5}, "model.set: expected a mapping of config keys to change, got 5"),
    ({"args": {"frontend": 3}}, "model.args.frontend: expected text, got 3"),
])
def test_model_values_of_the_wrong_type_are_named(section, message):
    with pytest.raises(ConfigError, match=message):
        model_config_from_section({"family": "hubert", "size": "tiny", **section})


@pytest.mark.parametrize("section, message", [
    ({"tokenizer": "wordpiece"}, r"ctc.tokenizer is one of \['char', 'bpe', 'unigram'\], not 'wordpiece'"),
    ({"tokenizer": "bpe"}, "a bpe tokenizer needs vocab_size"),
    ({"tokenizer": "char", "vocab_size": 30}, "leave vocab_size out"),
    ({"tokenizer": "bpe", "vocab_size": 0}, "ctc.vocab_size is 0: at least 3"),
])
def test_ctc_values_of_the_wrong_kind_are_named(section, message):
    with pytest.raises(ConfigError, match=message):
        read_ctc_section(section)
    _, settings = read_ctc_section({"mask_prob": "abc"})  # a CtcConfig field: checked when the model is built
    with pytest.raises(ConfigError, match="CtcConfig.mask_prob: expected a number, got 'abc'"):
        CtcConfig.from_dict({"encoder": {"x": 1}, "vocab_size": 5, **settings})


@pytest.mark.parametrize("settings, message", [
    ({"final_dropout": 1.5}, "final_dropout 1.5 not in \\[0, 1\\)"),
    ({"mask_length": 0}, "mask_length 0 below 1 \\(with mask_prob 0.5\\)"),
    ({"freeze_encoder_updates": -5}, "freeze_encoder_updates -5 below 0"),
])
def test_ctc_settings_out_of_range_are_refused_before_training(settings, message):
    """A final dropout above 1 was torch's ValueError traceback, a mask length of 0 one at the first batch."""
    with pytest.raises(ConfigError, match=message):
        CtcConfig.from_dict({"encoder": {"x": 1}, "vocab_size": 5, **settings})
    CtcConfig.from_dict({"encoder": {"x": 1}, "vocab_size": 5, "mask_prob": 0.0, "mask_length": 0})  # no mask: no span


def test_a_sentencepiece_vocabulary_it_cannot_make_is_a_config_error():
    with pytest.raises(ConfigError, match="SentencePiece cannot make a bpe vocabulary of 5 pieces"):
        build_tokenizer("bpe", ["hello world", "a quick brown fox"], 5)


def test_unknown_sections_keys_families_sizes_and_arguments_are_named():
    with pytest.raises(ConfigError, match=r"run.yaml: unknown sections \['trainr'\]"):
        check_sections({"model": {}, "trainr": {}}, ("model", "trainer"), "run.yaml")
    with pytest.raises(ConfigError, match=r"model: unknown keys \['sise'\]"):
        model_config_from_section({"family": "hubert", "sise": "tiny"})
    with pytest.raises(ConfigError, match=r"model.family must be one of \['best_rq', 'hubert', 'mert', 'ssamba', 'tera', 'unispeech_sat', 'wav2vec2', 'wavlm'\], not 'hubret'"):
        model_config_from_section({"family": "hubret"})
    with pytest.raises(ConfigError, match="model.size must be one of"):
        model_config_from_section({"family": "hubert", "size": "huge"})
    with pytest.raises(ConfigError, match=r"model.args: unknown arguments \['frontnd'\]"):
        model_config_from_section({"family": "hubert", "size": "tiny", "args": {"frontnd": "fbank"}})
    with pytest.raises(ConfigError, match=r"model.set.encoder: unknown key 'dims'"):
        model_config_from_section({"family": "hubert", "size": "tiny", "set": {"encoder": {"dims": 3}}})
    data = HubertConfig.tiny().to_dict()
    data["encoder"]["dims"] = 3
    with pytest.raises(ConfigError, match=r"HubertConfig.encoder: unknown keys \['dims'\]"):
        HubertConfig.from_dict(data)


def write_audio_dir(path, utts_speakers, seconds=1.0, seed=0):
    """A data dir of random-noise "utterances" (wav.scp, utt2spk) at 16 kHz."""
    import numpy as np
    import soundfile

    from audiossl.data.kaldi_dir import DataDir

    path.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for utt in utts_speakers:
        soundfile.write(path / f"{utt}.wav", rng.normal(0, 0.1, int(seconds * 16000)).astype("float32"), 16000)
    DataDir({"wav.scp": {u: str(path / f"{u}.wav") for u in utts_speakers}, "utt2spk": dict(utts_speakers)}).write(path)
    return path


def test_mixing_section_reads_waveforms_and_computes_fbank_after_mixing(tmp_path):
    from audiossl.data.dataset import Batch
    from audiossl.data.mixing import UtteranceMixing
    from audiossl.data.transforms import FbankFromWaveform
    from audiossl.tasks.pretrain import pretraining_inputs

    train = write_audio_dir(tmp_path / "train", {"a1": "a", "a2": "a", "b1": "b"})
    noise = write_audio_dir(tmp_path / "noise", {"n1": "n1"}, seed=1)
    from audiossl.models.wavlm import WavLMConfig

    model = build_model("wavlm", WavLMConfig.tiny(frontend="fbank").to_dict())
    plain = pretraining_inputs(model, None, str(train), None)
    assert (plain.input_kind, plain.transform, plain.num_frames(100)) == ("fbank", None, 50)
    inputs = pretraining_inputs(model, {"prob": 1.0, "noise_prob": 0.5, "speaker_aware": True}, str(train), str(noise))
    mixing, features = inputs.transform.transforms
    assert inputs.input_kind == "waveform" and isinstance(mixing, UtteranceMixing) and isinstance(features, FbankFromWaveform)
    assert mixing.speakers == {"a1": "a", "a2": "a", "b1": "b"} and len(mixing.noise) == 1
    assert inputs.num_frames(16000) == 49  # 98 fbank frames of one second, subsampled by two
    batch = Batch(["a1", "b1"], torch.randn(2, 16000) * 0.1, torch.tensor([16000, 16000]))
    out = inputs.transform.active(training=True)(batch, torch.Generator().manual_seed(0))
    assert out.inputs.shape == (2, 98, 80) and out.lengths.tolist() == [98, 98]
    with pytest.raises(ConfigError, match=r"unknown mixing keys \['probb'\]"):
        pretraining_inputs(model, {"probb": 0.2}, str(train), None)
    with pytest.raises(ConfigError, match=r"mixing.speech_ratio_db: expected a list of 2 \(a number, a number\)"):
        pretraining_inputs(model, {"speech_ratio_db": "loud"}, str(train), None)
    with pytest.raises(ConfigError, match="noise_prob is 0.5: give the noise data dir"):
        pretraining_inputs(model, {"noise_prob": 0.5}, str(train), None)
    with pytest.raises(ConfigError, match="add a mixing section"):
        pretraining_inputs(model, None, str(train), str(noise))
    with pytest.raises(UserError, match=str(tmp_path / "nowhere")):
        pretraining_inputs(model, {"prob": 0.2}, str(train), str(tmp_path / "nowhere"))


def test_mixing_needs_k_means_targets_and_speakers_for_speaker_aware_mixing(tmp_path):
    from audiossl.data.kaldi_dir import DataDirError
    from audiossl.models.wav2vec2 import Wav2Vec2Config
    from audiossl.models.wavlm import WavLMConfig
    from audiossl.tasks.pretrain import pretraining_inputs

    train = write_audio_dir(tmp_path / "train", {"a1": "a", "b1": "b"})
    (train / "utt2spk").unlink()
    (train / "spk2utt").unlink()
    wav2vec2 = build_model("wav2vec2", Wav2Vec2Config.tiny(frontend="fbank").to_dict())
    with pytest.raises(ConfigError, match="wav2vec2 makes its targets from its input"):
        pretraining_inputs(wav2vec2, {"prob": 0.2}, str(train), None)
    wavlm = build_model("wavlm", WavLMConfig.tiny(frontend="fbank").to_dict())
    with pytest.raises(DataDirError, match=f"{train}: no utt2spk"):
        pretraining_inputs(wavlm, {"speaker_aware": True}, str(train), None)


def test_speaker_aware_mixing_of_a_single_speaker_is_refused(tmp_path):
    """Every utterance of one speaker: no utterance has a partner, so the run mixed no speech, silently."""
    from audiossl.data.kaldi_dir import DataDirError
    from audiossl.models.wavlm import WavLMConfig
    from audiossl.tasks.pretrain import pretraining_inputs

    train = write_audio_dir(tmp_path / "train", {"a1": "a", "a2": "a"})
    noise = write_audio_dir(tmp_path / "noise", {"n1": "n1"}, seed=1)
    wavlm = build_model("wavlm", WavLMConfig.tiny(frontend="fbank").to_dict())
    for mixing, noise_data in (({"speaker_aware": True}, None), ({"speaker_aware": True, "noise_prob": 0.5}, noise)):
        with pytest.raises(DataDirError, match=f"{train}/utt2spk: every utterance is of speaker 'a': speaker-aware "
                                               "mixing would find no other speaker's utterance to mix in"):
            pretraining_inputs(wavlm, mixing, str(train), noise_data and str(noise_data))
    # noise alone asks nothing of the speakers
    pretraining_inputs(wavlm, {"speaker_aware": True, "noise_prob": 1.0}, str(train), str(noise))


@pytest.mark.parametrize("family, extra", [("wav2vec2", {}), ("unispeech_sat", {"unmasked_weight": 0.5}),
                                           ("ssamba", {}), ("hubert", {}), ("best_rq", {}), ("mert", {})])
def test_a_mask_of_no_frame_is_refused_where_only_masked_frames_are_predicted(family, extra):
    """wav2vec 2.0, UniSpeech-SAT and SSAMBA failed their first batch with a reshape or argmax error, the others
    trained with a zero loss and gradient, silently."""
    no_mask = {"mask": {"prob": 0.0, "min_masks": 0}}
    with pytest.raises(ConfigError, match="mask.prob 0 with mask.min_masks 0 masks no frame, which leaves nothing"):
        model_config_from_section({"family": family, "size": "tiny", "set": {**no_mask, **extra}})
    model_config_from_section({"family": family, "size": "tiny", "set": {"mask": {"prob": 0.0}, **extra}})


def test_a_mask_of_no_frame_is_accepted_where_other_frames_count():
    """HuBERT scoring unmasked frames too (a deterministic run), TERA's frequency alterations."""
    no_mask = {"mask": {"prob": 0.0, "min_masks": 0}}
    model_config_from_section({"family": "hubert", "size": "tiny", "set": {**no_mask, "unmasked_weight": 1.0}})
    model_config_from_section({"family": "tera", "size": "tiny", "set": no_mask})


def test_partial_nested_sections_keep_the_family_defaults():
    from audiossl.models.best_rq import BestRqConfig
    from audiossl.models.wavlm import WavLMConfig

    assert WavLMConfig.from_dict({"encoder": {"num_layers": 3}}).encoder.position_bias == "gated_relative"
    mask = BestRqConfig.from_dict({"mask": {"length": 10}}).mask
    assert (mask.prob, mask.length) == (BestRqConfig().mask.prob, 10)


@pytest.fixture
def fbank_corpus(plain_data_dir, tmp_path):
    """The shared data dir with 80-dim fbank, random labels per frame of a tiny HuBERT, and two tiny HuBERT
    checkpoints of the same shapes (other weights) to start from."""
    import numpy as np
    import yaml

    from audiossl.data.kaldi_dir import DataDir, merge_tables, write_table
    from audiossl.features.kaldi import FeatureConfig, FeatureExtractor
    from audiossl.features.store import compute_features

    data_dir = plain_data_dir
    extractor = FeatureExtractor(FeatureConfig.from_kaldi_args("fbank", ["--num-mel-bins=80"]))
    frames = compute_features(DataDir.read(data_dir), extractor, data_dir / "fbank" / "raw.ark")
    write_table(data_dir / "feats.scp", merge_tables([data_dir / "fbank" / "raw.scp"]))
    write_table(data_dir / "utt2num_frames", {k: str(v) for k, v in frames.items()})
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = tiny_checkpoint(tmp_path / f"tiny{seed}.pt")
    rng = np.random.default_rng(0)
    write_table(tmp_path / "labels", {utt: " ".join(map(str, rng.integers(0, 5, int(n))))
                                      for utt, n in zip(frames, model.num_frames(torch.tensor(list(frames.values()))))})
    trainer = {"max_updates": 2, "batch_seconds": 4.0, "precision": "fp32", "num_workers": 0, "save_interval": 2}
    (tmp_path / "pretrain.yaml").write_text(yaml.safe_dump({"model": {**TINY_SECTION, "set": {"num_classes": 5}},
                                                            "trainer": trainer}))
    (tmp_path / "ctc.yaml").write_text(yaml.safe_dump({"ctc": {"tokenizer": "char"}, "trainer": trainer}))
    return data_dir


def test_a_resumed_pretraining_of_another_model_is_refused_and_keeps_the_run_config(fbank_corpus, tmp_path, capsys):
    from audiossl.bin import pretrain

    exp = tmp_path / "exp"
    command = ["--config", str(tmp_path / "pretrain.yaml"), "--train-data", str(fbank_corpus),
               "--train-labels", str(tmp_path / "labels"), str(exp)]
    assert pretrain.main(command) == 0
    config = (exp / "config.yaml").read_text()
    assert "num_classes: 5" in config and f"exp_dir: {exp}" in config
    capsys.readouterr()
    assert pretrain.main(["--set", "model.set.encoder.num_layers=3", *command]) == 1
    assert (f"error: {exp}/checkpoints/last.pt: this run differs from the one that wrote the checkpoint: "
            "model.encoder.num_layers: 2 then, 3 now. To resume it, put the old values back") in capsys.readouterr().err
    assert (exp / "config.yaml").read_text() == config


def test_a_fine_tuning_resumes_after_its_exp_dir_and_init_checkpoint_moved(fbank_corpus, tmp_path, capsys):
    """The run records what its --init holds as well as its path: the same checkpoint elsewhere is the same origin."""
    from audiossl.bin import finetune_ctc

    def command(init: Path, exp: Path) -> list[str]:
        return ["--config", str(tmp_path / "ctc.yaml"), "--init", str(init), "--train-data", str(fbank_corpus),
                str(exp)]

    assert finetune_ctc.main(command(tmp_path / "tiny0.pt", tmp_path / "ctc")) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "tiny0.pt").rename(elsewhere / "tiny0.pt")
    (tmp_path / "ctc").rename(elsewhere / "ctc")
    capsys.readouterr()
    assert finetune_ctc.main(command(elsewhere / "tiny0.pt", elsewhere / "ctc")) == 0
    assert "resumed from" in (elsewhere / "ctc" / "train.log").read_text()
    assert finetune_ctc.main(command(tmp_path / "tiny1.pt", elsewhere / "ctc")) == 1   # other weights: refused
    assert f"init: '{tmp_path}/tiny0.pt' then, '{tmp_path}/tiny1.pt' now. To resume it" in capsys.readouterr().err


def test_a_resumed_fine_tuning_from_another_checkpoint_is_refused(fbank_corpus, tmp_path, capsys):
    from audiossl.bin import finetune_ctc

    exp = tmp_path / "ctc"

    def command(init: str) -> list[str]:
        return ["--config", str(tmp_path / "ctc.yaml"), "--init", str(tmp_path / init), "--train-data",
                str(fbank_corpus), str(exp)]

    assert finetune_ctc.main(command("tiny0.pt")) == 0
    config = (exp / "config.yaml").read_text()
    capsys.readouterr()
    assert finetune_ctc.main(command("tiny1.pt")) == 1  # the same shapes: only the origin tells them apart
    assert (f"init: '{tmp_path}/tiny0.pt' then, '{tmp_path}/tiny1.pt' now. To resume it"
            in capsys.readouterr().err)
    assert (exp / "config.yaml").read_text() == config
    assert finetune_ctc.main(command("tiny0.pt") + ["--scratch"]) == 1  # random weights now, not pretrained
    assert "weights: 'pretrained' then, 'random' now" in capsys.readouterr().err
    scratch = ["--scratch", str(tmp_path / "scratch")]
    assert finetune_ctc.main(command("tiny0.pt")[:-1] + scratch) == 0
    # a scratch control resumes with another donor of its architecture: the recipes share one between encoders
    assert finetune_ctc.main(command("tiny1.pt")[:-1] + scratch) == 0


def test_a_fine_tuning_resumed_with_another_tokenizer_is_refused(fbank_corpus, tmp_path, capsys):
    """The tokenizer comes from last.pt when resuming: another ctc.tokenizer or vocab_size was ignored silently."""
    from audiossl.bin import finetune_ctc

    exp = tmp_path / "ctc"
    command = ["--config", str(tmp_path / "ctc.yaml"), "--init", str(tmp_path / "tiny0.pt"), "--train-data",
               str(fbank_corpus), str(exp)]
    assert finetune_ctc.main(command) == 0
    config = (exp / "config.yaml").read_text()
    capsys.readouterr()
    assert finetune_ctc.main(["--set", "ctc.tokenizer=bpe", "--set", "ctc.vocab_size=24", *command]) == 1
    assert (f"error: {exp}/checkpoints/last.pt: this run differs from the one that wrote the checkpoint: "
            "ctc.tokenizer: 'char' then, 'bpe' now; ctc.vocab_size: None then, 24 now. To resume it"
            in capsys.readouterr().err)
    assert (exp / "config.yaml").read_text() == config
    assert finetune_ctc.main(command) == 0


def test_label_ids_beyond_the_model_s_classes_are_refused_before_training(fbank_corpus, tmp_path, capsys):
    """Labels of more clusters than num_classes failed the first batch holding one, after hours of training."""
    from audiossl.bin import pretrain
    from audiossl.data.kaldi_dir import read_table, write_table

    table = read_table(tmp_path / "labels")
    utt = sorted(table)[-1]
    write_table(tmp_path / "labels", {**table, utt: table[utt].rsplit(" ", 1)[0] + " 7"})
    exp = tmp_path / "exp"
    assert pretrain.main(["--config", str(tmp_path / "pretrain.yaml"), "--train-data", str(fbank_corpus),
                          "--train-labels", str(tmp_path / "labels"), str(exp)]) == 1
    assert (f"error: {tmp_path}/labels: utterance '{utt}' has label 7, outside [0, 5) (1 utterance(s) of such "
            "labels; the largest id is 7): the hubert model predicts num_classes=5 classes; set "
            "model.set.num_classes to the number of clusters") in capsys.readouterr().err
    assert not exp.exists()


def test_an_utterance_too_short_for_one_frame_is_refused_by_name_before_training(tmp_path, capsys):
    """A 20 ms utterance, shorter than the CNN's receptive field, failed its batch mid-training naming no utterance."""
    import numpy as np
    import soundfile
    import yaml

    from audiossl.bin import pretrain

    train = write_audio_dir(tmp_path / "train", {"a1": "a", "b1": "b"})
    soundfile.write(train / "b1.wav", np.zeros(320, dtype="float32"), 16000)
    config = tmp_path / "w2v.yaml"
    config.write_text(yaml.safe_dump({"model": {"family": "wav2vec2", "size": "tiny"},
                                      "trainer": {"max_updates": 1, "precision": "fp32", "num_workers": 0}}))
    exp = tmp_path / "exp"
    assert pretrain.main(["--config", str(config), "--train-data", str(train), str(exp)]) == 1
    assert (f"error: {train}: 1 utterance(s) too short for one frame of the wav2vec2 model (it needs at least 400 "
            "samples), e.g. 'b1' of 320 samples; leave them out") in capsys.readouterr().err
    assert not exp.exists()


def test_a_pretraining_resumed_with_another_mixing_is_refused(fbank_corpus, tmp_path, capsys):
    """The mixing section shapes the training as the trainer's settings do: it was not compared, and a run
    resumed with another or none went on mixing otherwise, silently."""
    import yaml

    from audiossl.bin import pretrain

    run = yaml.safe_load((tmp_path / "pretrain.yaml").read_text())
    run["trainer"]["schedule"] = {"name": "constant"}  # max_updates may grow
    exp = tmp_path / "exp"

    def pretrain_with(mixing, *extra: str) -> int:
        config = tmp_path / "mixing.yaml"
        config.write_text(yaml.safe_dump({**run, **({} if mixing is None else {"mixing": mixing})}))
        return pretrain.main(["--config", str(config), "--train-data", str(fbank_corpus), "--train-labels",
                              str(tmp_path / "labels"), *extra, str(exp)])

    assert pretrain_with({"prob": 0.2}) == 0
    capsys.readouterr()
    more = ("--set", "trainer.max_updates=4")
    assert pretrain_with({"prob": 0.5}, *more) == 1
    assert "differs from the one that wrote the checkpoint: mixing.prob: 0.2 then, 0.5 now" in capsys.readouterr().err
    assert pretrain_with(None, *more) == 1
    assert "mixing: {'prob': 0.2} then, None now" in capsys.readouterr().err
    assert pretrain_with({"prob": "0.2"}, *more) == 0  # the same value, written as text
    assert "resumed from" in (exp / "train.log").read_text()
