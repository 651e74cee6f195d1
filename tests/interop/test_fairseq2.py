"""fairseq2 checkpoint dirs written here by fairseq2's own code (no download): read with fairseq2's hidden
states layer by layer, written back for fairseq2's model hub to load, and what does not convert named."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from fairseq2 import init_fairseq2
from fairseq2.checkpoint.model_metadata import StandardModelMetadataDumper
from fairseq2.file_system import FileSystem
from fairseq2.models.transformer import TransformerNormOrder
from fairseq2.models.wav2vec2 import (Wav2Vec2Config, Wav2Vec2EncoderConfig, create_wav2vec2_model,
                                      get_wav2vec2_model_hub)
from fairseq2.models.wav2vec2.asr import Wav2Vec2AsrConfig, create_wav2vec2_asr_model
from fairseq2.nn import BatchLayout
from fairseq2.runtime.dependency import get_dependency_resolver
from fairseq2.utils.structured import StandardValueConverter, ValueConverter
from fairseq2.utils.yaml import YamlDumper

from audiossl import load_model
from audiossl.bin import convert
from audiossl.checkpoint import build_model, load_checkpoint, save_checkpoint
from audiossl.errors import InteropError
from audiossl.interop.fairseq2 import load_fairseq2, save_fairseq2
from audiossl.models.hubert import HubertConfig
from audiossl.models.wav2vec2 import Wav2Vec2Config as AudiosslWav2Vec2Config

LAYOUTS = {"base-layout": False, "large-layout": True}
SHARD = Path("model", "pp_00", "tp_00", "sdp_00.pt")


@pytest.fixture(scope="module")
def resolver():
    init_fairseq2()
    return get_dependency_resolver()


def encoder_config(pre_norm: bool) -> Wav2Vec2EncoderConfig:
    """fairseq2's encoder at 2 x 64; ``pre_norm``: the large layout (layer-norm CNN with biases)."""
    return Wav2Vec2EncoderConfig(
        model_dim=64, feature_dim=32, feature_extractor_layer_descs=[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2,
        feature_extractor_bias=pre_norm, feature_extractor_layer_norm_convs=pre_norm, layer_norm_features=not pre_norm,
        pos_conv_kernel_size=16, num_pos_conv_groups=4, num_encoder_layers=2, num_encoder_attn_heads=4,
        ffn_inner_dim=256, norm_order=TransformerNormOrder.PRE if pre_norm else TransformerNormOrder.POST)


def randomised(model):
    """``model`` in eval mode with every weight moved off its initial value (norms included)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model.eval()


def write_checkpoint(resolver, directory: Path, family: str, config, model, step: int = 3) -> Path:
    """A checkpoint dir as fairseq2's trainer writes it: its metadata dumper, the model's state dict."""
    dumper = StandardModelMetadataDumper(resolver.resolve(FileSystem), resolver.resolve(YamlDumper),
                                         resolver.resolve(ValueConverter))
    dumper.dump(directory, family, config)
    shard = directory / f"step_{step}" / SHARD
    shard.parent.mkdir(parents=True)
    torch.save(model.state_dict(), shard)
    return directory


def fairseq2_hidden_states(model, wavs: torch.Tensor, lengths: list[int]) -> list[torch.Tensor]:
    """The encoder front end's output, then each layer's (the last through the final norm, if any)."""
    outputs = []
    hooks = [layer.register_forward_hook(lambda module, args, output: outputs.append(output))
             for layer in model.encoder.layers]
    with torch.no_grad():
        seqs, layout, _ = model.encoder_frontend.extract_features(wavs, BatchLayout.of(wavs, lengths))
        seqs, _ = model.encoder_frontend.process_features(seqs, layout, None)
        final = model.encoder(seqs, layout)
    for hook in hooks:
        hook.remove()
    return [seqs] + outputs[:-1] + [final]


def assert_same_hidden_states(ours, theirs, wavs: torch.Tensor, lengths: list[int]) -> None:
    with torch.no_grad():
        hidden, frames = ours.extract_features(wavs, torch.tensor(lengths))
    reference = fairseq2_hidden_states(theirs, wavs, lengths)
    assert len(hidden) == len(reference)
    for layer, (mine, other) in enumerate(zip(hidden, reference)):
        for item, valid in enumerate(frames.tolist()):
            torch.testing.assert_close(mine[item, :valid], other[item, :valid], atol=1e-4, rtol=1e-4,
                                       msg=lambda text: f"layer {layer}, item {item}: {text}")


def batch(pre_norm: bool) -> tuple[torch.Tensor, list[int]]:
    """Two utterances; padded only for the layer-norm CNN (group norm spans the padding in every toolkit)."""
    torch.manual_seed(1)
    lengths = [16000, 11000] if pre_norm else [16000, 16000]
    return torch.randn(2, 16000), lengths


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_fairseq2_checkpoint_gives_fairseq2_hidden_states(tmp_path, resolver, layout, monkeypatch):
    pre_norm = LAYOUTS[layout]
    config = Wav2Vec2Config(encoder_config=encoder_config(pre_norm), final_dim=32, quantized_dim=32,
                            num_codebook_entries=16)
    theirs = randomised(create_wav2vec2_model(config))
    root = write_checkpoint(resolver, tmp_path / "ckpt", "wav2vec2", config, theirs)
    wavs, lengths = batch(pre_norm)
    loads, load = [], torch.load

    def counted(*args, **kwargs):
        loads.append(args[0])
        return load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", counted)
    for path in (root, root / "step_3", root / "step_3" / "model", root / "step_3" / SHARD):
        loads.clear()
        ours = load_model(path)
        assert len(loads) == 1, loads   # unpickled once, the shard file too
        assert ours.config.family == "wav2vec2" and ours.config.codebook_entries == 16
        assert_same_hidden_states(ours, theirs, wavs, lengths)
    codevectors = theirs.state_dict()["quantizer.entries"]
    assert torch.equal(ours.state_dict()["quantizer.codevectors"], codevectors)


def test_the_last_step_is_read(tmp_path, resolver):
    config = Wav2Vec2Config(encoder_config=encoder_config(False), final_dim=32, quantized_dim=32,
                            num_codebook_entries=16)
    early, late = create_wav2vec2_model(config), randomised(create_wav2vec2_model(config))
    root = write_checkpoint(resolver, tmp_path / "ckpt", "wav2vec2", config, early, step=9)
    (root / "step_10" / SHARD).parent.mkdir(parents=True)
    torch.save(late.state_dict(), root / "step_10" / SHARD)
    ours = load_fairseq2(root)
    assert torch.equal(ours.state_dict()["frontend.blocks.0.conv.weight"],
                       late.state_dict()["encoder_frontend.feature_extractor.layers.0.conv.weight"])


def test_a_fine_tuned_fairseq2_model_loads_as_its_encoder(tmp_path, resolver):
    config = Wav2Vec2AsrConfig(encoder_config=encoder_config(False), target_vocab_size=12)
    theirs = randomised(create_wav2vec2_asr_model(config))
    root = write_checkpoint(resolver, tmp_path / "asr", "wav2vec2_asr", config, theirs)
    ours = load_model(root)
    assert ours.config.family == "wav2vec2"
    wavs, lengths = batch(False)
    assert_same_hidden_states(ours, theirs, wavs, lengths)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_an_audiossl_model_goes_to_fairseq2_and_back(tmp_path, resolver, layout):
    config = AudiosslWav2Vec2Config.tiny()
    config.encoder.layer_norm_first = LAYOUTS[layout]
    config.frontend.conv_mode = "layer_norm" if LAYOUTS[layout] else "default"
    ours = randomised(build_model("wav2vec2", config.to_dict()))
    save_checkpoint(tmp_path / "model.pt", "wav2vec2", config.to_dict(), ours.state_dict())
    assert convert.main(["to-fairseq2", str(tmp_path / "model.pt"), str(tmp_path / "fs2")]) == 0
    metadata = yaml.safe_load((tmp_path / "fs2" / "model.yaml").read_text())
    assert metadata["model_family"] == "wav2vec2"
    fairseq2_config = StandardValueConverter().structure(metadata["model_config"], Wav2Vec2Config)
    theirs = get_wav2vec2_model_hub().load_custom_model(tmp_path / "fs2" / "step_0" / "model", fairseq2_config,
                                                         device=torch.device("cpu")).eval()
    wavs, lengths = batch(LAYOUTS[layout])
    assert_same_hidden_states(ours, theirs, wavs, lengths)
    assert convert.main(["from-fairseq2", str(tmp_path / "fs2"), str(tmp_path / "back.pt")]) == 0
    back = load_checkpoint(tmp_path / "back.pt")
    assert back["config"]["encoder"] == ours.config.to_dict()["encoder"]
    assert back["config"]["frontend"]["conv_layers"] == ours.config.to_dict()["frontend"]["conv_layers"]
    for name, tensor in ours.state_dict().items():
        assert torch.equal(back["model"][name], tensor), name


def test_what_does_not_convert_is_named(tmp_path, resolver, capsys):
    config = Wav2Vec2Config(encoder_config=encoder_config(False), final_dim=32, quantized_dim=32,
                            num_codebook_entries=16)
    root = write_checkpoint(resolver, tmp_path / "ckpt", "wav2vec2", config, create_wav2vec2_model(config))
    metadata_file = root / "model.yaml"
    metadata = yaml.safe_load(metadata_file.read_text())

    def with_metadata(**changes) -> None:
        metadata_file.write_text(yaml.safe_dump({**metadata, **changes}))

    with_metadata(model_config={**metadata["model_config"], "final_dimm": 3})
    with pytest.raises(InteropError, match=r"model\.yaml: model_config is not a fairseq2 Wav2Vec2Config.*final_dimm"):
        load_model(root)
    encoder = {**metadata["model_config"]["encoder_config"], "use_conformer": True}
    with_metadata(model_config={**metadata["model_config"], "encoder_config": encoder})
    with pytest.raises(InteropError, match=r"encoder_config\.use_conformer=True \(need False\)"):
        load_model(root)
    encoder["use_conformer"], encoder["model_dim"] = False, "wide"
    with_metadata(model_config={**metadata["model_config"], "encoder_config": encoder})
    with pytest.raises(InteropError, match="`encoder_config` field cannot be structured: .*`model_dim`.*'wide'"):
        load_model(root)
    with_metadata(model_family="w2vbert")
    with pytest.raises(InteropError, match="model_family 'w2vbert' is not supported"):
        load_model(root)
    other = {**metadata["model_config"], "encoder_config": {**metadata["model_config"]["encoder_config"],
                                                              "num_encoder_layers": 3}}
    with_metadata(model_config=other)
    with pytest.raises(InteropError, match=r"sdp_00\.pt: weights do not fit .*missing \['encoder\.layers\.2\."):
        load_model(root)
    with_metadata()
    (root / "step_3" / "model" / "pp_00" / "tp_00" / "sdp_01.pt").write_bytes(b"")
    with pytest.raises(InteropError, match=r"shards .*sdp_01\.pt.*consolidate"):
        load_model(root)
    hubert = build_model("hubert", HubertConfig.tiny().to_dict())
    with pytest.raises(InteropError, match="fairseq2 has a wav2vec 2.0 family only, not 'hubert'"):
        save_fairseq2(hubert, tmp_path / "hubert")
    assert not (tmp_path / "hubert").exists()
    lone = tmp_path / "lone" / "sdp_00.pt"
    lone.parent.mkdir()
    torch.save(create_wav2vec2_model(config).state_dict(), lone)
    assert convert.main(["from-fairseq2", str(lone), str(tmp_path / "out.pt")]) == 1
    assert "no fairseq2 model.yaml here or in the directories above" in capsys.readouterr().err


def test_a_fairseq2_checkpoint_continues_pretraining_and_fine_tunes(tmp_path, resolver):
    """``pretrain --init`` and CTC fine-tuning take a fairseq2 dir: its weights, in train mode."""
    from audiossl.tasks.asr import FineTuningOptions, fine_tuning_encoder
    from audiossl.tasks.pretrain import pretraining_model

    config = Wav2Vec2Config(encoder_config=encoder_config(False), final_dim=32, quantized_dim=32,
                            num_codebook_entries=16)
    theirs = randomised(create_wav2vec2_model(config))
    root = write_checkpoint(resolver, tmp_path / "ckpt", "wav2vec2", config, theirs)
    model = pretraining_model({}, str(root))
    assert model.training
    assert torch.equal(model.state_dict()["quantizer.codevectors"], theirs.state_dict()["quantizer.entries"])
    encoder = fine_tuning_encoder(str(root), FineTuningOptions())
    assert torch.equal(encoder.state_dict()["encoder.layers.1.feed_forward.fc2.weight"],
                       theirs.state_dict()["encoder.layers.1.ffn.output_proj.weight"])


def test_a_relative_path_and_a_run_output_dir_load(tmp_path, resolver, monkeypatch):
    """``ckpt`` as typed from its parent, and fairseq2's run output dir (its checkpoints/ holds model.yaml)."""
    config = Wav2Vec2Config(encoder_config=encoder_config(False), final_dim=32, quantized_dim=32,
                            num_codebook_entries=16)
    theirs = randomised(create_wav2vec2_model(config))
    write_checkpoint(resolver, tmp_path / "run" / "checkpoints", "wav2vec2", config, theirs)
    monkeypatch.chdir(tmp_path)
    wavs, lengths = batch(False)
    for path in ("run/checkpoints", "run", "run/checkpoints/step_3"):
        assert_same_hidden_states(load_model(path), theirs, wavs, lengths)


def test_to_fairseq2_keeps_what_it_would_replace_and_what_fairseq2_cannot_build(tmp_path, capsys):
    config = AudiosslWav2Vec2Config.tiny()
    model = build_model("wav2vec2", config.to_dict())
    exp = tmp_path / "exp"
    exp.mkdir()
    save_checkpoint(exp / "best.pt", "wav2vec2", config.to_dict(), model.state_dict())
    assert convert.main(["to-fairseq2", str(exp / "best.pt"), str(exp)]) == 1
    assert "holds ['best.pt']: not an earlier fairseq2 checkpoint dir" in capsys.readouterr().err
    assert [path.name for path in exp.iterdir()] == ["best.pt"]
    assert convert.main(["to-fairseq2", str(exp / "best.pt"), str(tmp_path / "fs2")]) == 0
    assert convert.main(["to-fairseq2", str(exp / "best.pt"), str(tmp_path / "fs2")]) == 0   # over its own output
    config.feature_grad_mult = 0.0   # a frozen CNN: fairseq2's grad scale must be in (0, 1]
    with pytest.raises(InteropError, match="fairseq2 cannot build this model: `grad_scale` must be greater"):
        save_fairseq2(build_model("wav2vec2", config.to_dict()), tmp_path / "frozen")
