"""RESULTS.md sections: one table per setting, replaced in place with its notes, other sections kept."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from audiossl.bin import results_table
from audiossl.checkpoint import save_checkpoint
from audiossl.errors import UserError
from audiossl.eval.results import (CAVEAT, CTC_PAGE_HEAD, ResultsError, ctc_results_lines, minutes, parse_record, read_json,
                                   with_section, write_section)


def test_sections_are_added_replaced_and_kept():
    first = with_section("", "Demo setting", ["| demo v1 |"], CTC_PAGE_HEAD)
    assert first.startswith("# CTC ASR") and CAVEAT in first and "## Demo setting\n\n| demo v1 |\n" in first
    both = with_section(first, "Long setting", ["| long |"], CTC_PAGE_HEAD)
    assert both.index("## Demo setting") < both.index("## Long setting")
    again = with_section(both, "Demo setting", ["| demo v2 |"], CTC_PAGE_HEAD)
    assert "demo v1" not in again and "| demo v2 |" in again and "| long |" in again
    assert again.count("## Demo setting") == 1 and again.count(CAVEAT) == 1
    assert with_section(again, "Demo setting", ["| demo v2 |"], CTC_PAGE_HEAD) == again
    assert again.index("## Demo setting") < again.index("## Long setting")  # replaced where it stood
    assert with_section(again, " Long setting ", ["| long v2 |"], CTC_PAGE_HEAD).count("## Long setting") == 1


def test_document_starting_with_a_section():
    document = "## A\n\nold\n"
    assert with_section(document, "A", ["new"], CTC_PAGE_HEAD) == "## A\n\nnew\n"


def test_a_replaced_section_keeps_its_notes():
    document = ("# Page\n\n## A\n\n| old table |\n\nold wall time\n\n### Notes\n\nWhy A is slow.\n\n"
                "### Setup\n\n- a list\n\n\n## B\n\n| b |\n\n### Notes\n\nOn B.\n")
    replaced = with_section(document, "A", ["| new table |", "", "new wall time"], CTC_PAGE_HEAD)
    assert replaced == ("# Page\n\n## A\n\n| new table |\n\nnew wall time\n\n### Notes\n\nWhy A is slow.\n\n"
                        "### Setup\n\n- a list\n\n## B\n\n| b |\n\n### Notes\n\nOn B.\n")
    assert with_section(replaced, "A", ["| new table |", "", "new wall time"], CTC_PAGE_HEAD) == replaced
    assert with_section(replaced, "C", ["| c |"], CTC_PAGE_HEAD) == replaced + "\n## C\n\n| c |\n"


def test_the_notes_of_a_repeated_section_are_kept():
    document = "## A\n\nold 1\n\n### Notes\n\nfirst\n\n## A\n\nold 2\n\n### More\n\nsecond\n"
    assert with_section(document, "A", ["new"], CTC_PAGE_HEAD) == ("## A\n\nnew\n\n### Notes\n\nfirst\n\n### More\n\n"
                                                                "second\n")


def test_a_full_disk_while_writing_a_section_keeps_the_file_as_it_was(tmp_path, monkeypatch):
    results = tmp_path / "RESULTS.md"
    write_section(results, "A", ["| a |"], CTC_PAGE_HEAD)
    before = results.read_text()
    write_text = Path.write_text

    def disk_full(self, text, *args, **kwargs):
        write_text(self, text[:len(text) // 2], *args, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError, match="No space left on device"):
        write_section(results, "B", ["| b |"], CTC_PAGE_HEAD)
    assert results.read_text() == before and [p.name for p in tmp_path.iterdir()] == ["RESULTS.md"]


def test_minutes():
    assert minutes(0) == "0:00" and minutes(61.9) == "1:01" and minutes(3600) == "60:00"


def test_malformed_inputs_are_results_errors(tmp_path):
    (tmp_path / "scores.json").write_text(json.dumps({"wer": 0.1}))
    with pytest.raises(ResultsError, match="scores.json: missing cer") as raised:
        read_json(tmp_path / "scores.json", "cer", "wer")
    assert isinstance(raised.value, UserError) and isinstance(raised.value, ValueError)
    with pytest.raises(ResultsError, match="valid.jsonl:2: not JSON"):
        parse_record('{"update": 2', "valid.jsonl:2", ("update",))
    with pytest.raises(ResultsError, match="x: not a JSON object"):
        parse_record("[1]", "x")


def write_json(path, record):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


@pytest.fixture
def grid(tmp_path):
    """An experiment grid of one budget, one test set, the scratch control in its own dir and an LM."""
    save_checkpoint(tmp_path / "ssl.pt", "hubert", {}, {}, {"update": 150})
    lm_dir = tmp_path / "lm"
    write_json(lm_dir / "info.json", {"oov_rate": {"data/test": 0.0326}, "held_out": ["data/dev", "data/test"],
                                      "order": 3, "sentences": 100, "lexicon_words": 50})
    for init, exp, cer in (("pretrained", tmp_path / "exp", 0.5), ("scratch", tmp_path / "scratch", 0.6)):
        model = exp / f"ctc_{init}_b1"
        save_checkpoint(model / "checkpoints" / "best.pt", "ctc", {}, {}, {"update": 20})
        save_checkpoint(model / "checkpoints" / "last.pt", "ctc", {}, {},
                        {"update": 30, "train_seconds": 75.5, "precision": "fp32"})
        (model / "valid.jsonl").write_text('{"update": 10, "cer": 70.0}\n{"update": 20, "cer": 61.25}\n')
        write_json(model / "decode_t1" / "scores.json", {"cer": cer, "wer": 0.9, "beam_size": 8})
        write_json(model / "decode_t1_lm" / "scores.json", {"cer": cer - 0.1, "wer": 0.8, "lm_weight": 2.0,
                                                            "word_score": 1.0})
        write_json(model / "decode_dev_lm" / "scores.json",
                   {"lm_weight": 2.0, "word_score": 1.0, "beam_size": 100, "token_beam": 10, "cer": 0.1, "wer": 0.2})
    return tmp_path


def test_results_lines_of_a_grid(grid):
    lines = ctc_results_lines(grid / "exp", grid / "scratch", ["b1"], ["t1"], grid / "ssl.pt", "run.sh",
                              lm_dir=grid / "lm")
    assert lines[:3] == ["Produced by `run.sh`.", "",
                         f"Pretrained encoder: `{grid / 'ssl.pt'}` (hubert, update 150 of its pretraining run)."]
    assert f"The scratch control is the one in `{grid / 'scratch'}`" in lines[3]
    assert "is decoded (CTC prefix beam search of width 8, no language model)." in lines[3]
    assert "word 3-gram LM" in lines[4] and "test 3.26 %" in lines[4] and "without those of dev, test;" in lines[4]
    assert "pretrained on b1 2 / 1, scratch on b1 2 / 1." in lines[4]
    assert lines[6:] == [
        "| labelled data | test set | encoder | CER % | WER % | CER % with LM | WER % with LM | updates "
        "| chosen update | dev CER % |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
        "| b1 | t1 | pretrained | 50.00 | 90.00 | 40.00 | 80.00 | 30 | 20 | 61.25 |",
        "| b1 | t1 | scratch | 60.00 | 90.00 | 50.00 | 80.00 | 30 | 20 | 61.25 |",
        "",
        "Fine-tuning wall time (m:ss, validation and checkpointing included): pretrained on b1 1:15 (fp32), "
        "scratch on b1 1:15 (fp32).",
    ]
    without_lm = ctc_results_lines(grid / "exp", grid / "scratch", ["b1"], ["t1"], grid / "ssl.pt", "run.sh")
    assert "LM" not in "\n".join(without_lm)
    assert without_lm[-4] == "| b1 | t1 | pretrained | 50.00 | 90.00 | 30 | 20 | 61.25 |"



def test_the_text_names_the_search_the_decodes_made(grid):
    """Greedy decodes (asr.sh --beam-size 1) were described as a prefix beam search."""
    for init, exp in (("pretrained", grid / "exp"), ("scratch", grid / "scratch")):
        write_json(exp / f"ctc_{init}_b1" / "decode_t1" / "scores.json", {"cer": 0.5, "wer": 0.9, "beam_size": 1})
    lines = ctc_results_lines(grid / "exp", grid / "scratch", ["b1"], ["t1"], grid / "ssl.pt", "run.sh")
    assert "is decoded (greedy CTC decoding, no language model)." in lines[3]
    write_json(grid / "exp" / "ctc_pretrained_b1" / "decode_t1" / "scores.json", {"cer": 0.5, "wer": 0.9, "beam_size": 4})
    lines = ctc_results_lines(grid / "exp", grid / "scratch", ["b1"], ["t1"], grid / "ssl.pt", "run.sh")
    assert "is decoded (CTC decoding with beam widths 1, 4 (1: greedy), no language model)." in lines[3]

def test_a_decode_with_lm_weights_not_chosen_on_dev_is_refused(grid):
    """The table says the LM weights were chosen on dev: a test decode with others (its own grid) is named."""
    decode = grid / "scratch" / "ctc_scratch_b1" / "decode_t1_lm"
    write_json(decode / "scores.json", {"cer": 0.4, "wer": 0.8, "lm_weight": 0.5, "word_score": 1.0})
    dev = grid / "scratch" / "ctc_scratch_b1" / "decode_dev_lm"
    with pytest.raises(ResultsError, match=re.escape(
            f"{decode}/scores.json: LM weight 0.5 / word score 1, not those chosen on dev (2 / 1, {dev}); decode it "
            f"again with --lm-params-from {dev}/scores.json")):
        ctc_results_lines(grid / "exp", grid / "scratch", ["b1"], ["t1"], grid / "ssl.pt", "run.sh", lm_dir=grid / "lm")


def test_main_writes_the_section_and_prints_it(grid, capsys):
    output = grid / "RESULTS.md"
    output.write_text("# Page\n\n## Grid\n\nold\n\n### Notes\n\nkept\n")
    argv = ["--exp", str(grid / "exp"), "--scratch-exp", str(grid / "scratch"), "--budgets", "b1",
            "--test-sets", "t1", "--pretrained", str(grid / "ssl.pt"), "--command", "run.sh", "--section", "Grid",
            str(output)]
    assert results_table.main(argv) == 0
    printed = capsys.readouterr().out
    assert output.read_text() == "# Page\n\n## Grid\n\n" + printed + "\n### Notes\n\nkept\n"
    broken = grid / "scratch" / "ctc_scratch_b1" / "decode_t1" / "scores.json"
    broken.write_text("{")
    assert results_table.main(argv) == 1
    assert capsys.readouterr().err.startswith(f"error: {broken}: not JSON")


def test_a_grid_naming_a_row_twice_is_refused(tmp_path, capsys):
    argv = ["--grid", "clean=exp/a none=exp/b clean=exp/c", "--budgets", "b1", "--test-sets", "t1", "--command", "c",
            "--section", "s", str(tmp_path / "RESULTS.md")]
    assert results_table.main(argv) == 1
    assert capsys.readouterr().err == "error: --grid names clean more than once: 'clean=exp/a none=exp/b clean=exp/c'\n"
    assert not (tmp_path / "RESULTS.md").exists()
