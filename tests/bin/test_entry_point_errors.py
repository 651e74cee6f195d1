"""The entry points print a user's error as one line and exit 1; any other error keeps its traceback."""
from __future__ import annotations

import io

import pytest

from audiossl.bin import compute_feats, data_dir, decode_ctc, kmeans, results_table, train_lm
from audiossl.bin import prepare_mini_tts as prepare_mini_tts_main
from audiossl.bin import attention_stats, convert, eval_utterance, launch, prepare_mini_music, prepare_tasks, pseudo_label
from audiossl.bin import rvq, superb
from audiossl.errors import ConfigError

MAINS = {  # module: (a function its main calls, the main's arguments under a tmp dir)
    compute_feats: ("merge_tables", lambda tmp: ["merge", str(tmp), str(tmp / "job1.scp")]),
    data_dir: ("combine_data_dirs", lambda tmp: ["combine", str(tmp / "out"), str(tmp)]),
    decode_ctc: ("load_model", lambda tmp: [str(tmp / "model.pt"), str(tmp), str(tmp / "decode")]),
    kmeans: ("merge_label_files", lambda tmp: ["merge", str(tmp / "labels.txt"), str(tmp / "job1.txt")]),
    prepare_mini_tts_main: ("prepare_mini_tts", lambda tmp: [str(tmp / "corpus"), str(tmp / "data")]),
    prepare_tasks: ("prepare_phoneme_dirs", lambda tmp: ["--tasks", "pr"] + [str(tmp / d) for d in "cdao"]),
    results_table: ("ctc_results_lines", lambda tmp: ["--budgets", "b", "--test-sets", "t", "--pretrained", "p.pt",
                                                      "--command", "c", "--section", "s", str(tmp / "RESULTS.md")]),
    superb: ("write_table", lambda tmp: ["table", "--section", "s", "--command", "c", str(tmp), str(tmp / "R.md"),
                                         str(tmp / "r.csv")]),
    train_lm: ("build_lm_dir", lambda tmp: ["--exclude-data", str(tmp), str(tmp / "text.txt"), str(tmp / "lm")]),
}


def raising(error: Exception):
    def fail(*args, **kwargs):
        raise error
    return fail


@pytest.mark.parametrize("main", MAINS, ids=lambda m: m.__name__.rsplit(".", 1)[1])
@pytest.mark.parametrize("error", [ConfigError("bad.conf: bad value"), FileNotFoundError("bad.conf: missing")])
def test_a_user_error_is_one_line(main, error, tmp_path, monkeypatch, capsys):
    name, argv = MAINS[main]
    monkeypatch.setattr(main, name, raising(error))
    assert main.main(argv(tmp_path)) == 1
    assert capsys.readouterr().err == f"error: {error}\n"


@pytest.mark.parametrize("main", MAINS, ids=lambda m: m.__name__.rsplit(".", 1)[1])
@pytest.mark.parametrize("error", [RuntimeError("bug"), KeyError("bug"), ValueError("bug"), MemoryError()])
def test_a_bug_keeps_its_traceback(main, error, tmp_path, monkeypatch):
    name, argv = MAINS[main]
    monkeypatch.setattr(main, name, raising(error))
    with pytest.raises(type(error)) as raised:
        main.main(argv(tmp_path))
    assert raised.value is error


def test_malformed_inputs_are_user_errors(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("u1 s1\nu2\n"))
    assert data_dir.main(["spk2utt"]) == 1
    assert capsys.readouterr().err == "error: <stdin>:2: expected 'utterance speaker', got 'u2'\n"


@pytest.mark.parametrize("main, argv, option", [
    (data_dir, ["subset", "--first", "0", "src", "dest"], "--first"),
    (data_dir, ["subset", "--first", "-2", "src", "dest"], "--first"),
    (data_dir, ["subset", "--random", "-1", "src", "dest"], "--random"),
    (data_dir, ["split", "src", "0"], "num_parts"),
    (decode_ctc, ["--beam-size", "0", "m.pt", "d", "out"], "--beam-size"),
    (decode_ctc, ["--batch-seconds", "0", "m.pt", "d", "out"], "--batch-seconds"),
    (decode_ctc, ["--batch-seconds", "nan", "m.pt", "d", "out"], "--batch-seconds"),
    (prepare_mini_tts_main, ["--num-workers", "0", "corpus", "data"], "--num-workers"),
    (attention_stats, ["--num-utts", "0", "d", "m.pt"], "--num-utts"),
    (convert, ["from-hf", "--num-classes", "0", "hf", "m.pt"], "--num-classes"),
    (eval_utterance, ["classify", "--label-table", "t", "--batch-seconds", "-1", "m.pt", "d", "out"], "--batch-seconds"),
    (launch, ["--ngpu", "0", "--", "true"], "--ngpu"),
    (prepare_mini_music, ["--num-workers", "0", "corpus", "data"], "--num-workers"),
    (prepare_tasks, ["--num-workers", "0", "c", "d", "a", "o"], "--num-workers"),
    (pseudo_label, ["--lm-dir", "l", "--lm-params-from", "s", "--keep-fraction", "0", "m.pt", "d", "out"],
     "--keep-fraction"),
    (rvq, ["fit", "--codebooks", "0", "d", "out"], "--codebooks"),
    (train_lm, ["--order", "0", "text", "lm"], "--order"),
    (kmeans, ["fit", "--num-clusters", "0", "d", "km.safetensors"], "--num-clusters"),
    (kmeans, ["fit", "--num-clusters", "4", "--max-frames", "-1", "d", "km.safetensors"], "--max-frames"),
    (results_table, ["--budgets", "b", "--test-sets", "t", "--pretrained", "p.pt", "--command", "c", "--section", "s",
                     "--chunk-frames", "8 abc", "R.md"], "--chunk-frames"),
    (results_table, ["--budgets", "b", "--test-sets", "t", "--pretrained", "p.pt", "--command", "c", "--section", "s",
                     "--chunk-frames", "8 0", "R.md"], "--chunk-frames"),
])
def test_a_count_or_size_below_one_is_a_usage_error_naming_the_option(main, argv, option, tmp_path, monkeypatch,
                                                                      capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main.main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: expected a positive" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []   # nothing made before the arguments are checked


@pytest.mark.parametrize("option", ["--budgets", "--test-sets"])
def test_a_results_table_of_no_budget_or_test_set_is_a_usage_error(option, tmp_path, capsys):
    """An empty list (an unset shell variable) would replace the section's table with an empty one."""
    (tmp_path / "RESULTS.md").write_text("## s\n\nkept\n")
    argv = {"--budgets": "b", "--test-sets": "t", option: " "}
    with pytest.raises(SystemExit) as exited:
        results_table.main([*(word for pair in argv.items() for word in pair), "--pretrained", "p.pt", "--command",
                            "c", "--section", "s", str(tmp_path / "RESULTS.md")])
    assert exited.value.code == 2
    assert f"argument {option}: expected one or more space-separated names, got none" in capsys.readouterr().err
    assert (tmp_path / "RESULTS.md").read_text() == "## s\n\nkept\n"


def test_subset_of_more_utterances_than_the_data_dir_has_is_refused(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "utt2spk").write_text("u1 s\nu2 s\n")
    assert data_dir.main(["subset", "--first", "3", str(tmp_path / "src"), str(tmp_path / "dest")]) == 1
    assert capsys.readouterr().err == "error: asked for 3 utterances, the data dir has 2\n"
    assert not (tmp_path / "dest").exists()


def test_a_split_or_subset_by_speaker_of_a_dir_without_utt2spk_names_it(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "wav.scp").write_text("u1 a.wav\nu2 b.wav\n")
    (tmp_path / "spk").write_text("s\n")
    assert data_dir.main(["split", str(tmp_path / "src"), "2"]) == 1
    assert capsys.readouterr().err == f"error: {tmp_path}/src/utt2spk: missing\n"
    assert data_dir.main(["subset", "--spk-list", str(tmp_path / "spk"), str(tmp_path / "src"), str(tmp_path / "d")]) == 1
    assert capsys.readouterr().err == f"error: {tmp_path}/src/utt2spk: missing\n"
    assert data_dir.main(["split", "--per-utt", str(tmp_path / "src"), "2"]) == 0
    assert (tmp_path / "src/split2utt/2/wav.scp").read_text() == "u2 b.wav\n"


def test_a_subset_list_of_no_utterance_or_speaker_of_the_dir_is_refused(tmp_path, capsys):
    """Of other ids (another corpus, another naming), it made an empty data dir and succeeded."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "utt2spk").write_text("u1 s\nu2 s\n")
    (tmp_path / "list").write_text("U1\nU2\n")
    for option in ("--utt-list", "--spk-list"):
        assert data_dir.main(["subset", option, str(tmp_path / "list"), str(tmp_path / "src"), str(tmp_path / "dest")]) == 1
        kind = "utterances" if option == "--utt-list" else "speakers"
        assert capsys.readouterr().err == f"error: none of the 2 {kind} listed is in the data dir (the first: 'U1')\n"
    assert not (tmp_path / "dest").exists()
    (tmp_path / "list").write_bytes(b"\xef\xbb\xbfu1\r\n")   # saved by a Windows editor
    assert data_dir.main(["subset", "--utt-list", str(tmp_path / "list"), str(tmp_path / "src"), str(tmp_path / "d")]) == 0
    assert (tmp_path / "d" / "utt2spk").read_text() == "u1 s\n"


def test_cmvn_or_features_of_a_dir_without_their_tables_name_the_missing_one(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "utt2spk").write_text("u1 s\n")
    assert compute_feats.main(["cmvn", str(tmp_path / "src"), str(tmp_path / "cmvn.ark")]) == 1
    assert capsys.readouterr().err == f"error: {tmp_path}/src/feats.scp: missing\n"   # was a KeyError
    (tmp_path / "src" / "feats.scp").write_text("u1 a.ark:8\n")
    (tmp_path / "src" / "utt2spk").unlink()
    assert compute_feats.main(["cmvn", str(tmp_path / "src"), str(tmp_path / "cmvn.ark")]) == 1
    assert capsys.readouterr().err == f"error: {tmp_path}/src/utt2spk: missing\n"
    assert compute_feats.main(["extract", "--kind", "fbank", str(tmp_path / "src"), str(tmp_path / "f.ark")]) == 1
    assert capsys.readouterr().err == f"error: {tmp_path}/src/wav.scp: missing\n"
    assert not list(tmp_path.glob("*.ark"))
