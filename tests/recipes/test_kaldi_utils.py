"""The Kaldi helpers in recipes/utils: option parsing, job launcher, data dir wrappers."""
from __future__ import annotations

import os
import subprocess

import pytest

from audiossl.data.kaldi_dir import DataDir


def bash(script: str, cwd, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, text=True, check=check)


PARSE = """set -e
nj=4
foo_bar=x
use_gpu=false
. utils/parse_options.sh
echo "$nj $foo_bar $use_gpu | $*"
"""


def test_parse_options(recipe_dir):
    (recipe_dir / "s.sh").write_text(PARSE)
    (recipe_dir / "c.conf").write_text("nj=7\nfoo_bar=from_config\n")
    out = bash("bash s.sh --nj 2 --foo-bar=y --use-gpu true a b", recipe_dir, check=True).stdout
    assert out.strip() == "2 y true | a b"
    out = bash("bash s.sh --config c.conf --nj 3 pos", recipe_dir, check=True).stdout
    assert out.strip() == "3 from_config false | pos"
    bad = bash("bash s.sh --no-such 1", recipe_dir)
    assert bad.returncode != 0 and "invalid option --no-such" in bad.stderr
    bad = bash("bash s.sh --use-gpu maybe", recipe_dir)
    assert bad.returncode != 0 and "--use-gpu takes true or false" in bad.stderr
    bad = bash("bash s.sh --nj", recipe_dir)
    assert bad.returncode != 0 and "missing value for --nj" in bad.stderr
    helped = bash("help_message='usage: s.sh'; . utils/parse_options.sh --help", recipe_dir)
    assert helped.returncode == 0 and "usage: s.sh" in helped.stdout


def test_a_value_left_out_before_another_option_is_refused(recipe_dir):
    """--nj --use-gpu true: nj was set to '--use-gpu', and 'true' left as a positional argument."""
    (recipe_dir / "s.sh").write_text(PARSE)
    bad = bash("bash s.sh --nj --use-gpu true pos", recipe_dir)
    assert bad.returncode == 1 and "missing value for --nj (the next word is the option --use-gpu)" in bad.stderr
    out = bash("bash s.sh --foo-bar '--nj 2' --nj=--x pos", recipe_dir, check=True).stdout   # values that only look like one
    assert out.strip() == "--x --nj 2 false | pos"


def test_a_config_with_windows_line_ends_is_refused(recipe_dir):
    """Sourced, nj=7<CR> would set nj to '7\\r', and use_gpu=true<CR> a command that is not found."""
    (recipe_dir / "s.sh").write_text(PARSE)
    (recipe_dir / "c.conf").write_bytes(b"nj=7\r\nuse_gpu=true\r\n")
    bad = bash("bash s.sh --config c.conf pos", recipe_dir)
    assert bad.returncode == 1 and "config file c.conf has Windows line ends (CRLF)" in bad.stderr
    assert bad.stdout == ""


def test_run_jobs_logs_and_failure(recipe_dir):
    ok = bash("utils/run_jobs.sh JOB=1:3 log/echo.JOB.log echo job JOB", recipe_dir)
    assert ok.returncode == 0, ok.stderr
    for job in (1, 2, 3):
        log = (recipe_dir / f"log/echo.{job}.log").read_text()
        assert f"job {job}\n" in log and "# Accounting: status=0" in log
    bad = bash("utils/run_jobs.sh --max-jobs-run 1 JOB=1:3 log/f.JOB.log test JOB != 2", recipe_dir)
    assert bad.returncode == 1
    assert "job 2 failed, see log/f.2.log" in bad.stderr and "1 of 3 jobs failed" in bad.stderr
    assert "status=1" in (recipe_dir / "log/f.2.log").read_text()
    single = bash("utils/run_jobs.sh log/one.log echo single", recipe_dir)
    assert single.returncode == 0 and "single" in (recipe_dir / "log/one.log").read_text()


@pytest.mark.parametrize("args, message", [
    ("--mem", "missing value for --mem"),   # shift 2 of one argument: the loop never ended
    ("--max-jobs-run JOB=1:2 log/x.JOB.log echo JOB", "--max-jobs-run (or AUDIOSSL_MAX_JOBS) takes a positive "
                                                      "integer, not 'JOB=1:2'"),  # ran one job, logged as x.JOB.log
    ("--max-jobs-run 0 JOB=1:2 log/x.JOB.log echo JOB", "takes a positive integer, not '0'"),   # never ended
    ("JOB=3:1 log/x.JOB.log echo JOB", "job range JOB=3:1 holds no job"),   # ran nothing, and succeeded
])
def test_run_jobs_refuses_options_and_ranges_it_cannot_run(recipe_dir, args, message):
    out = subprocess.run(["bash", "-c", f"utils/run_jobs.sh {args}"], cwd=recipe_dir, capture_output=True, text=True,
                         timeout=20)
    assert out.returncode == 1 and message in out.stderr
    assert not (recipe_dir / "log").exists()


RENDEZVOUS = ("touch up.JOB; for i in $(seq 300); do [ -e up.1 ] && [ -e up.2 ] && exit 0; sleep 0.1; done; "
              "echo the other job never started >&2; exit 1")


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_run_jobs_runs_jobs_at_once_whatever_omp_num_threads(recipe_dir):
    """Each job waits for the other to start: run one at a time, job 1 would give up."""
    out = bash(f'OMP_NUM_THREADS=1 utils/run_jobs.sh JOB=1:2 log/r.JOB.log bash -c \'{RENDEZVOUS}\'', recipe_dir)
    assert out.returncode == 0, (recipe_dir / "log/r.1.log").read_text()


def test_data_dir_wrappers(recipe_dir, data_dir, tmp_path):
    assert bash(f"utils/validate_data_dir.sh {data_dir}", recipe_dir).returncode == 0
    (data_dir / "text").write_text("spkA-u1 HELLO\n")
    bad = bash(f"utils/validate_data_dir.sh {data_dir}", recipe_dir)
    assert bad.returncode == 1 and f"{data_dir}/text: utterance 'spkA-u2' is in utt2spk but not here" in bad.stderr
    assert bash(f"utils/validate_data_dir.sh --no-text {data_dir}", recipe_dir).returncode == 1  # text still checked if present
    bash(f"utils/fix_data_dir.sh {data_dir}", recipe_dir, check=True)
    assert DataDir.read(data_dir).utterances == ["spkA-u1"]


def test_subset_split_combine_spk2utt(recipe_dir, data_dir, tmp_path):
    bash(f"utils/subset_data_dir.sh --first {data_dir} 2 {tmp_path}/first", recipe_dir, check=True)
    assert DataDir.read(tmp_path / "first").utterances == ["spkA-u1", "spkA-u2"]
    bash(f"utils/subset_data_dir.sh {data_dir} 3 {tmp_path}/rand", recipe_dir, check=True)
    assert len(DataDir.read(tmp_path / "rand").utterances) == 3
    (tmp_path / "spk").write_text("spkB\n")
    bash(f"utils/subset_data_dir.sh --spk-list {tmp_path}/spk {data_dir} {tmp_path}/b", recipe_dir, check=True)
    assert DataDir.read(tmp_path / "b").utterances == ["spkB-u3", "spkB-u4"]
    bash(f"utils/combine_data.sh {tmp_path}/all {tmp_path}/first {tmp_path}/b", recipe_dir, check=True)
    assert DataDir.read(tmp_path / "all").utterances == DataDir.read(data_dir).utterances
    bash(f"utils/split_data.sh {data_dir} 2", recipe_dir, check=True)
    assert DataDir.read(data_dir / "split2/2").utterances == ["spkB-u3", "spkB-u4"]
    bash(f"utils/split_data.sh --per-utt {data_dir} 4", recipe_dir, check=True)
    assert DataDir.read(data_dir / "split4utt/3").utterances == ["spkB-u3"]
    out = bash(f"utils/utt2spk_to_spk2utt.sh {data_dir}/utt2spk", recipe_dir, check=True).stdout
    assert out == "spkA spkA-u1 spkA-u2\nspkB spkB-u3 spkB-u4\n"


def test_a_data_dir_written_over_another_keeps_none_of_its_tables(recipe_dir, data_dir, segments_dir, tmp_path):
    """copy_data_dir.sh into the dir of other features or utterances: its feats.scp and segments would not match."""
    dest = tmp_path / "dest"
    bash(f"utils/copy_data_dir.sh {segments_dir} {dest}", recipe_dir, check=True)
    (dest / "feats.scp").write_text("spk1-s1 old.ark:8\n")
    bash(f"utils/copy_data_dir.sh {data_dir} {dest}", recipe_dir, check=True)
    assert sorted(p.name for p in dest.iterdir()) == ["spk2utt", "text", "utt2spk", "wav.scp"]
    assert bash(f"utils/validate_data_dir.sh --no-decode {dest}", recipe_dir).returncode == 0


def test_a_data_dir_copied_subset_or_combined_onto_a_source_is_refused(recipe_dir, data_dir):
    """Written over, the source would lose its features (copy) or its other utterances (subset)."""
    (data_dir / "feats.scp").write_text("spkA-u1 a.ark:8\n")
    before = {p.name: p.read_text() for p in data_dir.iterdir()}
    for command in (f"utils/copy_data_dir.sh {data_dir} {data_dir}/../data/",
                    f"utils/subset_data_dir.sh --first {data_dir} 2 {data_dir}",
                    f"utils/combine_data.sh {data_dir} {data_dir}"):
        out = bash(command, recipe_dir)
        assert out.returncode == 1 and "the data dir written is the source" in out.stderr, command
    assert {p.name: p.read_text() for p in data_dir.iterdir()} == before


def test_subset_data_dir_sh_refuses_a_missing_value(recipe_dir, data_dir, tmp_path):
    for args, message in (("--first --seed", "missing value for --seed"),   # looped for ever
                          (f"--utt-list {tmp_path}/list {data_dir}", "Usage: utils/subset_data_dir.sh")):
        out = subprocess.run(["bash", "-c", f"utils/subset_data_dir.sh {args}"], cwd=recipe_dir, capture_output=True,
                             text=True, timeout=20)
        assert out.returncode == 1 and message in out.stderr


def test_a_split_is_made_again_for_other_tables_whatever_their_times(recipe_dir, data_dir):
    """A data dir restored with cp -p (or rsync -a, tar) is older than its split: it was taken as fresh."""
    bash(f"utils/split_data.sh --per-utt {data_dir} 2", recipe_dir, check=True)
    part = data_dir / "split2utt/1/wav.scp"
    made = part.stat().st_mtime_ns
    bash(f"utils/split_data.sh --per-utt {data_dir} 2", recipe_dir, check=True)
    assert part.stat().st_mtime_ns == made   # the same tables: kept as it is
    wav_scp = data_dir / "wav.scp"
    wav_scp.write_text(wav_scp.read_text().replace("rec0.wav", "rec2.wav"))
    os.utime(wav_scp, ns=(made - 10**9, made - 10**9))
    bash(f"utils/split_data.sh --per-utt {data_dir} 2", recipe_dir, check=True)
    assert "rec2.wav" in part.read_text() and "rec0.wav" not in part.read_text()
