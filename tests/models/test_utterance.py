"""Utterance models: every head kind, padding invariance, checkpoints, freezing, parameter groups,
layer selection, the metric sums and learning toy labels."""
from __future__ import annotations

import pytest
import torch
from sklearn.metrics import label_ranking_average_precision_score

import audiossl
from audiossl.checkpoint import build_model, save_checkpoint
from audiossl.data.dataset import collate
from audiossl.errors import ConfigError
from audiossl.models.ctc.config import CtcConfig
from audiossl.models.hubert import HubertConfig, build_hubert
from audiossl.models.utterance import HeadConfig, UtteranceConfig, utterance_over_encoder
from audiossl.models.utterance.model import label_ranking_average_precision, multi_hot
from audiossl.models.wav2vec2 import Wav2Vec2Config
from audiossl.tasks.pretrain import PretrainingTask
from audiossl.text.tokenizer import build_tokenizer
from tests.conftest import synth_speechlike

HEADS = {
    "linear": {"kind": "linear", "num_classes": 3},
    "xvector": {"kind": "xvector", "num_classes": 3, "embedding_dim": 16, "pooling": "attentive",
                "attention_channels": 8, "tdnn_channels": [24, 24], "tdnn_kernels": [5, 3], "tdnn_dilations": [1, 2]},
    "multilabel": {"kind": "multilabel", "num_classes": 4, "embedding_dim": 12, "pooling": "attentive",
                   "attention_channels": 8},
}


def tiny_model(head="linear", upstream="hubert", frontend="waveform", seed=0, **settings):
    encoder = {"hubert": HubertConfig, "wav2vec2": Wav2Vec2Config}[upstream].tiny(frontend)
    config = UtteranceConfig(upstream_family=upstream, upstream=encoder.to_dict(),
                             head=HeadConfig(**HEADS[head]), **settings)
    torch.manual_seed(seed)
    return build_model("utterance", config.to_dict())


def waves(seconds=(0.5, 0.3, 0.4), seed=0):
    """Padded ``(B, S)`` speech-like waveforms and ``(B,)`` samples."""
    items = [torch.from_numpy(synth_speechlike(s, seed + i)) for i, s in enumerate(seconds)]
    return torch.nn.utils.rnn.pad_sequence(items, batch_first=True), torch.tensor([len(w) for w in items])


@pytest.mark.parametrize("head,upstream,frontend", [("linear", "hubert", "waveform"),
                                                    ("xvector", "wav2vec2", "waveform"),
                                                    ("multilabel", "hubert", "fbank")])
def test_items_alone_equal_items_padded_in_a_batch(head, upstream, frontend):
    model = tiny_model(head, upstream, frontend, freeze_upstream=False).eval()
    wavs, lengths = waves()
    wavs[1, lengths[1]:] = 0.5  # padding that is not silence
    with torch.no_grad():
        logits, embeddings = model.classify(wavs, lengths), model.embed(wavs, lengths)
        assert logits.shape == (3, model.num_classes) and embeddings.shape == (3, model.embedding_dim)
        for i, n in enumerate(lengths.tolist()):
            torch.testing.assert_close(model.classify(wavs[i:i + 1, :n], lengths[i:i + 1])[0], logits[i],
                                       atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(model.embed(wavs[i:i + 1, :n], lengths[i:i + 1])[0], embeddings[i],
                                       atol=1e-4, rtol=1e-4)
        unit = model.embed(wavs, lengths, normalize=True)
    torch.testing.assert_close(unit.norm(dim=-1), torch.ones(3))
    assert not torch.allclose(embeddings[0], embeddings[2])


@pytest.mark.parametrize("head", list(HEADS))
def test_checkpoint_round_trip(tmp_path, head):
    model = tiny_model(head, layers=[0, 2], normalize_layers=True)
    with torch.no_grad():
        model.featurizer.weights.copy_(torch.tensor([0.5, -0.5]))
    wavs, lengths = waves()
    targets = torch.tensor([0, 2, 1]) if head != "multilabel" else torch.tensor([[0, 3], [2, -100], [-100, -100]])
    model(wavs, lengths, targets).loss.backward()  # a training step moves the batch-norm statistics
    save_checkpoint(tmp_path / "m.pt", "utterance", model.config.to_dict(), model.state_dict())
    loaded = audiossl.load_model(tmp_path / "m.pt")
    assert not loaded.training and type(loaded).__name__ == "UtteranceModel"
    assert loaded.config == model.config and loaded.featurizer.layers == (0, 2)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.classify(wavs, lengths), model.classify(wavs, lengths))
        torch.testing.assert_close(loaded.embed(wavs, lengths), model.embed(wavs, lengths))
        hidden, frames = loaded.extract_features(wavs, lengths)
    assert len(hidden) == 3 and frames.tolist() == [24, 14, 19]


def test_frozen_upstream_gets_no_gradient_and_stays_in_eval_mode():
    model = tiny_model("xvector").train()
    assert model.upstream_frozen and not model.upstream.training and model.head.training
    wavs, lengths = waves()
    model(wavs, lengths, torch.tensor([0, 1, 2])).loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in model.upstream.parameters())
    assert model.featurizer.weights.grad is not None and model.head.embedding.weight.grad is not None
    groups = model.parameter_groups(head_lr=1e-3, upstream_lr=1e-5)
    assert [g["name"] for g in groups] == ["head"] and groups[0]["lr"] == 1e-3
    assert len(groups[0]["params"]) == len(list(model.parameters())) - len(list(model.upstream.parameters()))


def test_a_training_batch_of_one_item():
    model = tiny_model("xvector").train()
    wavs, lengths = waves()
    running = model.head.pooled_norm.running_mean.clone()
    out = model(wavs[:1], lengths[:1], torch.tensor([2]))
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.sums["items"] == 1.0
    assert torch.equal(model.head.pooled_norm.running_mean, running)
    model(wavs, lengths, torch.tensor([0, 1, 2]))
    assert not torch.equal(model.head.pooled_norm.running_mean, running)


def test_parameter_groups_split_a_trainable_model_once():
    model = tiny_model("linear", freeze_upstream=False).train()
    assert model.upstream.training
    groups = model.parameter_groups(head_lr=1e-3, upstream_lr=1e-5)
    assert [(g["name"], g["lr"]) for g in groups] == [("head", 1e-3), ("upstream", 1e-5)]
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())
    optimizer = torch.optim.AdamW(groups)
    before = model.upstream.feature_projection.projection.weight.detach().clone()
    wavs, lengths = waves()
    model(wavs, lengths, torch.tensor([0, 1, 2]), torch.Generator().manual_seed(0)).loss.backward()
    optimizer.step()
    assert not torch.equal(before, model.upstream.feature_projection.projection.weight)


def test_layer_selection_runs_the_needed_layers_only(monkeypatch):
    wavs, lengths = waves()
    full = tiny_model("linear").eval()
    with torch.no_grad():
        hidden, frames = full.extract_features(wavs, lengths)
    calls = []
    for layers, expected_layers, state in (("last", None, hidden[2]), ([1], 1, hidden[1]), ([0], 0, hidden[0])):
        model = tiny_model("linear", layers=layers).eval()
        encode = model.upstream.encode
        monkeypatch.setattr(model.upstream, "encode", lambda *a, **k: calls.append(k["num_layers"]) or encode(*a, **k))
        with torch.no_grad():
            torch.testing.assert_close(model.embed(wavs, lengths), model.head.pooling(state, frames))
        assert calls[-1] == expected_layers
    with pytest.raises(ConfigError, match="layers"):
        tiny_model("linear", layers=[3])
    with pytest.raises(ConfigError, match="head.kind"):
        UtteranceConfig.from_dict({"upstream": HubertConfig.tiny().to_dict(), "head": {"kind": "svm"}})


def test_over_a_pretrained_encoder_copies_its_weights():
    torch.manual_seed(3)
    pretrained = build_hubert(HubertConfig.tiny()).eval()
    wavs, lengths = waves()
    with torch.no_grad():
        expected, _ = pretrained.extract_features(wavs, lengths)
    model = utterance_over_encoder(pretrained, {"head": HEADS["xvector"], "layers": "last"}).eval()
    assert model.config.upstream_family == "hubert" and model.upstream.head is None
    with torch.no_grad():
        torch.testing.assert_close(model.extract_features(wavs, lengths)[0][-1], expected[-1])
    scratch = utterance_over_encoder(pretrained, {"head": HEADS["linear"]}, copy_weights=False).eval()
    with torch.no_grad():
        assert not torch.allclose(scratch.extract_features(wavs, lengths)[0][-1], expected[-1])
    tokenizer = build_tokenizer("char", ["AB"])
    ctc = build_model("ctc", CtcConfig(encoder_family="hubert", encoder=HubertConfig.tiny().to_dict(),
                                       tokenizer=tokenizer.to_dict(), vocab_size=tokenizer.vocab_size).to_dict())
    over_ctc = utterance_over_encoder(ctc, {"head": HEADS["linear"]})
    assert over_ctc.config.upstream_family == "hubert"
    projection = over_ctc.upstream.feature_projection.projection.weight
    assert torch.equal(projection, ctc.encoder.feature_projection.projection.weight)


def test_multilabel_targets_and_sums():
    ids = torch.tensor([[0, 3], [2, -100], [-100, -100]])
    hot = torch.tensor([[1.0, 0, 0, 1], [0, 0, 1, 0], [0, 0, 0, 0]])
    assert torch.equal(multi_hot(ids, 4), hot) and torch.equal(multi_hot(hot.bool(), 4), hot)
    with pytest.raises(ValueError, match=r"class ids \[4\]"):
        multi_hot(torch.tensor([[4]]), 4)
    scores = torch.tensor([[0.1, 0.9, 0.9, 0.3, -1.0], [2.0, 1.0, 0.0, 0.0, 0.5], [0.2, 0.2, 0.2, 0.2, 0.2],
                           [1.0, 0.0, 0.0, 0.0, 0.0], [0.3, 0.1, 0.4, 0.2, 0.0]])
    labels = torch.tensor([[0, 1, 0, 1, 0], [0, 0, 1, 1, 1], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]]).bool()
    ours = label_ranking_average_precision(scores, labels)
    assert abs(float(ours.mean()) - label_ranking_average_precision_score(labels.numpy(), scores.numpy())) < 1e-6
    model = tiny_model("multilabel").eval()
    wavs, lengths = waves()
    with torch.no_grad():
        from_ids, from_hot = model(wavs, lengths, ids), model(wavs, lengths, hot)
        logits = model.classify(wavs, lengths)
    torch.testing.assert_close(from_ids.loss, from_hot.loss)
    torch.testing.assert_close(from_ids.loss, torch.nn.functional.binary_cross_entropy_with_logits(logits, hot))
    assert from_ids.sums == from_hot.sums and from_ids.sums["items"] == 3.0
    assert from_ids.sums["exact_matches"] == float(((logits > 0) == hot.bool()).all(-1).sum())
    expected = label_ranking_average_precision_score(hot.numpy(), logits.numpy()) * 3
    assert abs(from_ids.sums["lrap_sum"] - expected) < 1e-5


def test_pretraining_task_trains_a_speaker_head():
    """Two "speakers" (voices of different seeds): the x-vector head over a frozen encoder learns them,
    driven by the pretraining task's step and figures, with utterance labels as (B, 1) targets."""
    model = tiny_model("xvector", layers="all")
    model.head.classifier.scale = 10.0
    wavs = [torch.from_numpy(synth_speechlike(0.25, 1 + i % 2)) * (0.5 + 0.1 * i) for i in range(6)]
    batch = collate([(f"u{i}", w, torch.tensor([i % 2])) for i, w in enumerate(wavs)])
    task = PretrainingTask(model)
    optimizer = torch.optim.Adam(model.parameter_groups(head_lr=3e-3, upstream_lr=0.0))
    generator = torch.Generator().manual_seed(0)
    first = float(task.train_step(model, batch, generator).loss.detach())
    for _ in range(15):
        out = task.train_step(model, batch, generator)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        figures = task.summarize(task.train_step(model, batch, generator).sums)
    assert figures["acc"] == 1.0 and figures["err"] == 0.0 and task.valid_metric == "err"
    assert figures["loss"] < 0.5 * first
    with torch.no_grad():
        assert model.classify(batch.inputs, batch.lengths).argmax(-1).tolist() == [0, 1, 0, 1, 0, 1]


@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
def test_a_half_or_double_model_classifies_and_embeds_as_the_float_one(head, dtype):
    """The pooled statistics are fp32 (for autocast); a model on .half() or .double() fed them to its
    linear layers and batch norm of its own dtype and failed."""
    model = tiny_model(head).eval()
    wavs, lengths = waves()
    with torch.no_grad():
        logits, embeddings = model.classify(wavs, lengths), model.embed(wavs, lengths)
        model.to(dtype)
        torch.testing.assert_close(model.classify(wavs, lengths), logits, atol=0.02, rtol=0.02)
        torch.testing.assert_close(model.embed(wavs, lengths).float(), embeddings, atol=0.02, rtol=0.02)
