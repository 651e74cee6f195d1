"""CTC ASR model: shapes, freezing, learning a toy task, checkpoint round trip with transcribe."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from audiossl.checkpoint import build_model, load_model, save_checkpoint
from audiossl.data.dataset import collate
from audiossl.data.kaldi_dir import DataDirError
from audiossl.models.ctc.config import CtcConfig
from audiossl.models.ctc.model import ctc_loss
from audiossl.models.hubert import HubertConfig
from audiossl.models.hubert import model as hubert_model
from audiossl.nn.frontends import waveform_to_fbank
from audiossl.tasks.asr import CtcTask, check_ctc_lengths
from audiossl.text.lexicon_decode import LexiconDecoder
from audiossl.text.ngram import train_arpa, write_lexicon
from audiossl.text.tokenizer import build_tokenizer
from tests.conftest import synth_speechlike

TEXTS = ["HELLO WORLD", "A B", "OK"]


def tiny_ctc(mask_prob: float = 0.0, freeze: int = 0, layer_drop: float = 0.0, frequency_warp: float = 0.0):
    tokenizer = build_tokenizer("char", TEXTS)
    encoder = HubertConfig.tiny(frontend="fbank")
    encoder.encoder.layer_drop = layer_drop
    encoder.frequency_warp = frequency_warp
    config = CtcConfig(encoder_family="hubert", encoder=encoder.to_dict(), tokenizer=tokenizer.to_dict(),
                       vocab_size=tokenizer.vocab_size, final_dropout=0.0, mask_prob=mask_prob,
                       freeze_encoder_updates=freeze)
    torch.manual_seed(0)
    return build_model("ctc", config.to_dict()), tokenizer


def toy_batch(tokenizer):
    wavs = [torch.from_numpy(synth_speechlike(s, i)) for i, s in enumerate((1.0, 0.6, 0.5))]
    fbanks = [waveform_to_fbank(w[None], torch.tensor([len(w)]))[0][0] for w in wavs]
    return collate([(f"u{i}", f, torch.tensor(tokenizer.encode(t))) for i, (f, t) in enumerate(zip(fbanks, TEXTS))])


def test_forward_shapes_and_no_head_from_pretraining():
    model, tokenizer = tiny_ctc()
    batch = toy_batch(tokenizer)
    log_probs, frames = model(batch.inputs, batch.lengths)
    assert log_probs.shape == (3, int(frames.max()), tokenizer.vocab_size)
    assert frames.tolist() == model.num_frames(batch.lengths).tolist()
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(log_probs.shape[:2]))
    assert not any(name.startswith("encoder.head") for name, _ in model.named_parameters())


def test_layer_drop_only_in_training_with_a_generator():
    def run(model, generator):
        torch.manual_seed(0)  # the same dropout draws
        return model(batch.inputs, batch.lengths, generator)[0]

    model, tokenizer = tiny_ctc(layer_drop=0.0)
    batch = toy_batch(tokenizer)
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    torch.testing.assert_close(run(model, generator), run(model, None))
    assert torch.equal(generator.get_state(), state)  # no layer-drop draws at 0
    model, _ = tiny_ctc(layer_drop=0.99)
    assert not torch.allclose(run(model, torch.Generator().manual_seed(0)), run(model, None))
    model.eval()
    torch.testing.assert_close(run(model, torch.Generator().manual_seed(0)), run(model, None))


def test_fine_tuning_never_warps_the_input(monkeypatch):
    def refuse(features, factors):
        raise AssertionError("CTC fine-tuning warped its input")

    monkeypatch.setattr(hubert_model, "warp_frequency_axis", refuse)
    model, tokenizer = tiny_ctc(frequency_warp=0.2)
    assert model.encoder.config.frequency_warp == 0.2
    batch = toy_batch(tokenizer)
    model.train()
    model(batch.inputs, batch.lengths, torch.Generator().manual_seed(0))[0].sum().backward()


def test_frozen_encoder_gets_no_gradient():
    model, tokenizer = tiny_ctc(freeze=5)
    batch = toy_batch(tokenizer)
    task = CtcTask()
    task.before_update(model, 0)
    task.train_step(model, batch, torch.Generator().manual_seed(0)).loss.backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert model.head.weight.grad is not None
    task.before_update(model, 5)
    assert not model.encoder_frozen


def test_learns_toy_transcripts(tmp_path):
    model, tokenizer = tiny_ctc(mask_prob=0.0)
    batch = toy_batch(tokenizer)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(300):
        log_probs, frames = model(batch.inputs, batch.lengths)
        loss = ctc_loss(log_probs, frames, batch.targets, batch.target_lengths) / batch.target_lengths.sum()
        first = first if first is not None else float(loss.detach())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < 0.2 * first
    model.eval()
    log_probs, frames = model(batch.inputs, batch.lengths)
    assert model.decode(log_probs, frames) == TEXTS
    assert model.decode(log_probs, frames, beam_size=4) == TEXTS
    lm_dir = tmp_path / "lm"   # a word LM that knows the transcripts, and "HELL" and "WORD" too
    lm_dir.mkdir()
    train_arpa(TEXTS * 2 + ["HELL A", "WORD OK", "A OK", "B B"], 2, lm_dir / "lm.arpa")
    write_lexicon(["HELLO", "HELL", "WORLD", "WORD", "A", "B", "OK"], lm_dir / "lexicon.txt")
    lm = LexiconDecoder(tokenizer.tokens, lm_dir, beam_size=20, lm_weight=0.5)
    assert model.decode(log_probs, frames, lm=lm) == TEXTS


def test_checkpoint_round_trip_transcribe(tmp_path):
    model, _ = tiny_ctc()
    save_checkpoint(tmp_path / "m.pt", "ctc", model.config.to_dict(), model.state_dict())
    loaded = load_model(tmp_path / "m.pt")
    wavs = torch.stack([torch.from_numpy(synth_speechlike(0.8, 1)), torch.from_numpy(synth_speechlike(0.8, 2))])
    lengths = torch.tensor([12800, 9000])
    model.eval()
    assert loaded.transcribe(wavs, lengths) == model.transcribe(wavs, lengths)
    assert all(isinstance(t, str) for t in loaded.transcribe(wavs, lengths, beam_size=3))
    with pytest.raises(ValueError, match="beam_size must be a positive whole number, got 0"):
        loaded.transcribe(wavs, lengths, beam_size=0)   # decoded greedily, silently
    hidden, frames = loaded.extract_features(wavs, lengths)
    assert len(hidden) == loaded.encoder.config.encoder.num_layers + 1 and frames.tolist() == [39, 27]
    assert loaded.hidden_sizes == [h.shape[-1] for h in hidden]


def test_validation_counts_the_words_inserted_where_every_reference_is_empty(monkeypatch):
    """A batch of empty transcripts (silences) has no reference word: its insertions counted as 0."""
    model, tokenizer = tiny_ctc()
    wavs = [torch.from_numpy(synth_speechlike(s, i)) for i, s in enumerate((1.0, 0.6))]
    fbanks = [waveform_to_fbank(w[None], torch.tensor([len(w)]))[0][0] for w in wavs]
    silences = collate([(f"s{i}", f, torch.tensor([], dtype=torch.long)) for i, f in enumerate(fbanks)])
    monkeypatch.setattr(model, "decode", lambda log_probs, frames: ["A B", "OK"])
    task = CtcTask()
    with torch.no_grad():
        sums = task.valid_step(model.eval(), silences, None)
        speech = task.valid_step(model, toy_batch(tokenizer), None)   # scored apart, then summed over the dev set
    assert (sums["word_errors"], sums["words"], sums["char_errors"], sums["chars"]) == (3.0, 0.0, 5.0, 0.0)
    summary = task.summarize({key: sums[key] + speech[key] for key in sums})
    assert summary["wer"] == 100 * (3 + speech["word_errors"]) / speech["words"]


def test_an_utterance_of_repeated_tokens_with_a_frame_per_token_is_refused_before_training():
    """"LL" needs a blank between its letters: with a frame per token the CTC loss was infinite, counted as zero."""
    model, tokenizer = tiny_ctc()
    frames = int(model.num_frames(torch.tensor([100])))
    fits, repeats = [3, 4] * (frames // 2) + [3] * (frames % 2), [3] * frames
    data = SimpleNamespace(utterances=["u1", "u2"], lengths=[100, 100], targets={"u1": fits, "u2": repeats})
    with pytest.raises(DataDirError, match=f"data/text: utterance 'u2' has {frames} tokens, which CTC aligns to at "
                                           f"least {2 * frames - 1} frames .*, but only {frames} frames"):
        check_ctc_lengths(data, model, "data/text")
    check_ctc_lengths(SimpleNamespace(utterances=["u1"], lengths=[100], targets={"u1": fits}), model, "data/text")


def test_the_dev_error_rates_score_the_transcripts_not_their_tokens(monkeypatch):
    """A dev letter unseen in training decoded back from its tokens as "<unk>": five reference characters for one."""
    model, tokenizer = tiny_ctc()
    batch = toy_batch(tokenizer)
    monkeypatch.setattr(model, "decode", lambda log_probs, frames: ["HELLO WORLD", "A B", "OK"])
    with torch.no_grad():
        sums = CtcTask({"u1": "A É"}).valid_step(model.eval(), batch, None)
    assert (sums["char_errors"], sums["chars"], sums["word_errors"], sums["words"]) == (1.0, 16.0, 1.0, 5.0)
