"""The LM weight / word score grid search over the lexicon search, and the decode dirs it writes."""
from __future__ import annotations

import json

import pytest
import torch

from audiossl.errors import UserError
from audiossl.text.lm_search import decode_with_lm, lm_grid, read_lm_params, write_decode
from audiossl.text.ngram import LMError, train_arpa, write_lexicon
from audiossl.text.tokenizer import CharTokenizer

TEXT = ["THE CAT SAT ON THE MAT", "THE DOG SAT ON THE LOG", "A CAT AND A DOG", "THE CAT ATE", "THE DOG ATE",
        "A MAT ON A LOG", "THE CAT SAT", "A DOG SAT", "THE MAT", "ON A MAT"]


@pytest.fixture
def lm_dir(tmp_path):
    lm = tmp_path / "lm"
    lm.mkdir()
    train_arpa(TEXT, 3, lm / "lm.arpa")
    write_lexicon({w for line in TEXT for w in line.split()}, lm / "lexicon.txt")
    return lm


def outputs(tokenizer: CharTokenizer) -> list:
    """One batch of two utterances: "THE CAT SAT" spelled clearly except that "MAT" is likelier than "SAT"
    (the LM prefers "SAT"), and "A DOG" padded with blanks."""
    def frames(text: str) -> list[dict[str, float]]:
        out = []
        for char in "|".join(text.split()):
            out += [{char: 0.9}, {char: 0.9}, {"<blank>": 0.9}]
        return out

    first, second = frames("THE CAT SAT"), frames("A DOG") + [{"<blank>": 0.9}] * 18
    first[24:26] = [{"S": 0.4, "M": 0.5}] * 2
    log_probs = torch.empty(2, len(first), tokenizer.vocab_size)
    for b, utt in enumerate((first, second)):
        for t, probs in enumerate(utt):
            log_probs[b, t] = (1.0 - sum(probs.values())) / (tokenizer.vocab_size - len(probs))
            for token, p in probs.items():
                log_probs[b, t, tokenizer.tokens.index(token)] = p
    return [(["u1", "u2"], log_probs.log(), torch.tensor([len(first), 15]))]


def test_the_grid_is_every_pair_or_the_dev_choice(tmp_path):
    assert lm_grid([1.0, 2.0], [0.0, 1.0]) == [(1.0, 0.0), (1.0, 1.0), (2.0, 0.0), (2.0, 1.0)]
    (tmp_path / "dev.json").write_text(json.dumps({"lm_weight": 3.0, "word_score": 1.0, "wer": 0.4}))
    assert lm_grid([1.0, 2.0], [0.0], tmp_path / "dev.json") == [(3.0, 1.0)]
    (tmp_path / "no_lm.json").write_text(json.dumps({"beam_size": 8, "wer": 0.4}))
    with pytest.raises(ValueError, match="no_lm.json: not the scores of a decode with an LM"):
        lm_grid([1.0], [0.0], tmp_path / "no_lm.json")
    (tmp_path / "broken.json").write_text('{"lm_weight": 3.0,')
    with pytest.raises(LMError, match="broken.json: not JSON"):
        read_lm_params(tmp_path / "broken.json")
    (tmp_path / "edited.json").write_text(json.dumps({"lm_weight": "2", "word_score": None}))
    with pytest.raises(LMError, match="edited.json: lm_weight '2' and word_score None must be finite numbers"):
        read_lm_params(tmp_path / "edited.json")
    assert issubclass(LMError, UserError)


@pytest.mark.parametrize("nj", [1, 2])
def test_the_pair_with_the_lowest_wer_is_kept(lm_dir, tmp_path, nj, capsys):
    tokenizer = CharTokenizer.train(TEXT)
    refs = {"u1": "THE CAT SAT", "u2": "A DOG"}
    hyps, settings = decode_with_lm(tokenizer.tokens, outputs(tokenizer), refs, [(0.0, 0.0), (2.0, 0.0)],
                                    str(lm_dir), tmp_path / "decode", beam_size=20, token_beam=5, nj=nj)
    assert hyps == refs
    assert settings == {"beam_size": 20, "lm_dir": str(lm_dir), "token_beam": 5, "lm_weight": 2.0, "word_score": 0.0}
    assert (tmp_path / "decode" / "lm_grid.tsv").read_text().splitlines() == [
        "lm_weight\tword_score\twer\tcer", "0\t0\t20.00\t6.25", "2\t0\t0.00\t0.00"]
    assert "LM weight 0, word score 0: WER 20.00 %" in capsys.readouterr().err
    decode_with_lm(tokenizer.tokens, outputs(tokenizer), refs, [(1.0, 0.0)], str(lm_dir), tmp_path / "decode", nj=nj)
    assert not (tmp_path / "decode" / "lm_grid.tsv").exists()


def test_a_bad_lm_file_is_named_from_the_worker_processes(lm_dir, tmp_path):
    (lm_dir / "lm.arpa").write_text("not an ARPA file\n")
    tokenizer = CharTokenizer.train(TEXT)
    with pytest.raises(LMError, match=r"lm.arpa: KenLM cannot read it: .*not an ARPA file"):
        decode_with_lm(tokenizer.tokens, outputs(tokenizer), {"u1": "A", "u2": "B"}, [(0.0, 0.0), (1.0, 0.0)],
                       str(lm_dir), tmp_path / "decode", nj=2)


def test_the_decode_dir_and_its_scores(tmp_path, capsys):
    write_decode(tmp_path / "decode", "model.pt", "data/test", {"u1": "A CAT", "u2": "A DOG"},
                 {"u1": "A CAT", "u2": "A LOG"}, {"beam_size": 8}, "model.pt beam 8")
    scores = json.loads((tmp_path / "decode" / "scores.json").read_text())
    assert list(scores)[:3] == ["model", "data", "beam_size"] and scores["wer"] == 0.25
    assert {"hyp.txt", "ref.txt", "wer", "cer", "per_utt"} <= {p.name for p in (tmp_path / "decode").iterdir()}
    assert capsys.readouterr().out == f"data/test: WER 25.00 % CER 10.00 % (2 utterances) -> {tmp_path / 'decode'}\n"


def test_a_decode_stopped_while_writing_leaves_no_earlier_scores_beside_its_hypotheses(tmp_path, monkeypatch):
    refs = {"u1": "A CAT", "u2": "A DOG"}
    write_decode(tmp_path / "decode", "old.pt", "data/test", refs, refs, {}, "old")

    def stopped(decode_dir, *args):   # killed once the hypotheses are written, before the rates
        (decode_dir / "hyp.txt").write_text("u1 NEW\n")
        raise KeyboardInterrupt

    monkeypatch.setattr("audiossl.text.lm_search.write_decode_dir", stopped)
    with pytest.raises(KeyboardInterrupt):
        write_decode(tmp_path / "decode", "new.pt", "data/test", refs, {"u1": "NEW"}, {}, "new")
    assert not (tmp_path / "decode" / "scores.json").exists()
