"""audiossl.bin.train_lm (held-out sentences never reach the LM, OOV rates, named errors) and
the LM options of audiossl.bin.decode_ctc."""
from __future__ import annotations

import argparse
import json
import unicodedata

import pytest
import soundfile
import torch

from audiossl.bin import decode_ctc, train_lm
from audiossl.checkpoint import build_model, save_checkpoint
from audiossl.data.kaldi_dir import DataDir, read_table, write_table
from audiossl.models.ctc.config import CtcConfig
from audiossl.models.hubert import HubertConfig
from audiossl.tasks.asr import ctc_dataset
from audiossl.text import ngram
from audiossl.text.tokenizer import build_tokenizer
from conftest import synth_speechlike

SENTENCES = ["THE CAT SAT ON THE MAT", "THE DOG SAT ON THE LOG", "A CAT AND A DOG", "THE CAT ATE", "THE DOG ATE",
             "A MAT ON A LOG", "THE CAT SAT", "A DOG SAT", "THE MAT", "ON A MAT", "ZEBRAS EAT GRASS"]


def ctc_checkpoint(path, rate: int = 16000):
    """A tiny untrained CTC model over a HuBERT at ``rate``, of a char tokenizer of SENTENCES, saved at ``path``."""
    encoder = HubertConfig.tiny().to_dict()
    encoder["frontend"]["sample_rate"] = rate
    tokenizer = build_tokenizer("char", SENTENCES)
    config = CtcConfig(encoder_family="hubert", encoder=encoder, tokenizer=tokenizer.to_dict(),
                       vocab_size=tokenizer.vocab_size).to_dict()
    torch.manual_seed(0)
    model = build_model("ctc", config).eval()
    save_checkpoint(path, "ctc", config, model.state_dict())
    return model


def wav_dir(root, wavs, rate: int):
    """A data dir ``root/data`` of the waveforms ``{utt: samples}`` at ``rate``, each transcribed "THE CAT"."""
    for utt, wav in wavs.items():
        soundfile.write(root / f"{utt}.wav", wav, rate)
    DataDir({"wav.scp": {u: str(root / f"{u}.wav") for u in wavs}, "text": {u: "THE CAT" for u in wavs},
             "utt2spk": {u: u for u in wavs}}).write(root / "data")
    return root / "data"


def test_held_out_sentences_are_dropped_and_oov_reported(tmp_path, capsys):
    (tmp_path / "text.txt").write_text("\n".join(SENTENCES) + "\n\n")
    test = tmp_path / "test"
    test.mkdir()
    write_table(test / "text", {"u1": "ZEBRAS  EAT GRASS", "u2": "THE BIRD SAT"})
    assert train_lm.main(["--order", "2", "--exclude-data", str(test), str(tmp_path / "text.txt"),
                          str(tmp_path / "lm")]) == 0
    info = json.loads((tmp_path / "lm" / "info.json").read_text())
    assert info["sentences"] == len(SENTENCES) - 1 and info["dropped_as_held_out"] == 1
    assert info["held_out"] == [str(test)]
    arpa = (tmp_path / "lm" / "lm.arpa").read_text()
    assert "ZEBRAS" not in arpa and "\tTHE CAT\n" in arpa
    assert "ZEBRAS" not in (tmp_path / "lm" / "lexicon.txt").read_text()
    assert info["oov_rate"][str(test)] == 4 / 6   # ZEBRAS EAT GRASS BIRD
    assert "66.67 % of the words are not in the lexicon" in capsys.readouterr().out


def test_an_lm_dir_made_again_is_described_only_once_complete(tmp_path, monkeypatch):
    """A rerun that fails after the LM is written leaves no info.json of the earlier LM (results tables read it);
    one refused for too little text keeps the earlier LM dir whole."""
    (tmp_path / "text.txt").write_text("\n".join(SENTENCES) + "\n")
    lm = tmp_path / "lm"
    assert train_lm.main(["--order", "2", str(tmp_path / "text.txt"), str(lm)]) == 0
    before = {path.name: path.read_text() for path in lm.iterdir()}
    (tmp_path / "little.txt").write_text("A CAT\n")
    assert train_lm.main(["--order", "2", str(tmp_path / "little.txt"), str(lm)]) == 1
    assert {path.name: path.read_text() for path in lm.iterdir()} == before

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ngram, "write_lexicon", disk_full)
    assert train_lm.main(["--order", "3", str(tmp_path / "text.txt"), str(lm)]) == 1
    assert sorted(path.name for path in lm.iterdir()) == ["lexicon.txt", "lm.arpa"]


def test_a_held_out_dir_without_text_is_an_error(tmp_path, capsys):
    (tmp_path / "text.txt").write_text("\n".join(SENTENCES))
    (tmp_path / "test").mkdir()
    write_table(tmp_path / "test" / "utt2spk", {"u1": "s1"})
    assert train_lm.main(["--exclude-data", str(tmp_path / "test"), str(tmp_path / "text.txt"), str(tmp_path / "lm")]) == 1
    assert "no text file, so its sentences cannot be held out" in capsys.readouterr().err
    assert train_lm.main([str(tmp_path / "missing.txt"), str(tmp_path / "lm")]) == 1
    assert "missing.txt" in capsys.readouterr().err


def test_too_little_text_is_a_named_error(tmp_path, capsys):
    (tmp_path / "text.txt").write_text("A CAT\n")
    assert train_lm.main(["--order", "2", str(tmp_path / "text.txt"), str(tmp_path / "lm")]) == 1
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'text.txt'}: too little text for a 1-gram")
    (tmp_path / "latin1.txt").write_bytes("CAFÉ AU LAIT\n".encode("latin-1"))
    assert train_lm.main([str(tmp_path / "latin1.txt"), str(tmp_path / "lm")]) == 1
    assert "latin1.txt: not UTF-8 text" in capsys.readouterr().err


def test_decode_options(tmp_path, capsys):
    assert decode_ctc.floats("0.5,1,2") == [0.5, 1.0, 2.0]
    for text in ("0.5;1", "1,nan", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="comma-separated numbers"):
            decode_ctc.floats(text)
    assert decode_ctc.main([str(tmp_path / "missing.pt"), str(tmp_path), str(tmp_path / "decode")]) == 1
    assert "missing.pt: no such file or directory" in capsys.readouterr().err


@pytest.mark.parametrize("options, message", [
    (["--lm-dir", "lm", "--lm-decode-dir", "lm_decode", "--lm-params-from", "dev/scores.json", "--lm-weight", "1"],
     "are not taken with --lm-params-from"),
    (["--word-score", "1"], "--lm-weight and --word-score need --lm-dir"),
    (["--lm-dir", "lm", "--lm-decode-dir", "./decode/"], "--lm-decode-dir is <decode-dir>"),
])
def test_lm_options_that_would_be_ignored_or_overwrite_the_decode_are_usage_errors(options, message, tmp_path,
                                                                                  monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        decode_ctc.main([*options, "m.pt", "data", "decode"])
    assert exited.value.code == 2 and message in capsys.readouterr().err


def test_lm_text_with_combining_accents_is_read_as_the_composed_transcripts(tmp_path):
    """An LM text in NFD (combining accents) kept the test sentence an NFC transcript held out, and its lexicon
    spelt words in letters the tokenizer has not (É as E and an accent): the search left them out."""
    nfc = [unicodedata.normalize("NFC", s) for s in ("EL CAFÉ ESTÁ AQUÍ", *SENTENCES)]
    (tmp_path / "text.txt").write_text("\n".join(unicodedata.normalize("NFD", s) for s in nfc) + "\n")
    test = tmp_path / "test"
    test.mkdir()
    write_table(test / "text", {"u1": nfc[0], "u2": unicodedata.normalize("NFC", "THE CAFÉ")})
    assert train_lm.main(["--order", "2", "--exclude-data", str(test), str(tmp_path / "text.txt"),
                          str(tmp_path / "lm")]) == 0
    info = json.loads((tmp_path / "lm" / "info.json").read_text())
    assert info["dropped_as_held_out"] == 1 and info["oov_rate"][str(test)] == 5 / 6   # all but THE
    lexicon = (tmp_path / "lm" / "lexicon.txt").read_text()
    assert lexicon == unicodedata.normalize("NFC", lexicon) and "\u0301" not in (tmp_path / "lm" / "lm.arpa").read_text()


def test_a_model_of_another_rate_than_16_khz_reads_its_audio_at_its_rate(tmp_path):
    """An 8 kHz CTC model (telephone speech) was fine-tuned on and decoded from its audio read at 16 kHz."""
    model = ctc_checkpoint(tmp_path / "ctc.pt", 8000)
    wavs = {f"u{i}": synth_speechlike(1.0 + 0.5 * i, i, rate=8000) for i in range(2)}
    data = wav_dir(tmp_path, wavs, 8000)
    assert ctc_dataset(data, model).lengths == [8000, 12000]
    assert decode_ctc.main([str(tmp_path / "ctc.pt"), str(data), str(tmp_path / "decode")]) == 0
    expected = {utt: model.transcribe(torch.from_numpy(wav)[None], torch.tensor([len(wav)]))[0]
                for utt, wav in wavs.items()}
    assert read_table(tmp_path / "decode" / "hyp.txt") == expected and any(expected.values())


def test_an_utterance_too_short_for_one_frame_is_named_before_decoding(tmp_path, capsys):
    """It failed the batch holding it with a ValueError naming no utterance, mid-decode (or at a validation)."""
    ctc_checkpoint(tmp_path / "ctc.pt")
    data = wav_dir(tmp_path, {"u1": synth_speechlike(1.0, 0), "u2": synth_speechlike(0.01, 1)}, 16000)
    assert decode_ctc.main([str(tmp_path / "ctc.pt"), str(data), str(tmp_path / "decode")]) == 1
    assert capsys.readouterr().err == (f"error: {data}: 1 utterance(s) too short for one frame of the model: 'u2' "
                                       "(160 samples); leave them out (python -m audiossl.bin.data_dir subset "
                                       "--utt-list)\n")
    assert not (tmp_path / "decode").exists()


def test_a_unigram_lm_is_a_usage_error(tmp_path, capsys):
    """KenLM reads no unigram ARPA file: the LM dir was written, then refused by the decode, after the network ran."""
    (tmp_path / "text.txt").write_text("\n".join(SENTENCES) + "\n")
    with pytest.raises(SystemExit) as exited:
        train_lm.main(["--order", "1", str(tmp_path / "text.txt"), str(tmp_path / "lm")])
    assert exited.value.code == 2
    assert "--order is 1: at least 2, as the lexicon search's KenLM takes no unigram LM" in capsys.readouterr().err
    assert not (tmp_path / "lm").exists()
