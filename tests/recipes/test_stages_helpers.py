"""recipes/utils/stages.sh: background jobs, and recipes a recipe runs, end with the recipe."""
from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def alive(pid: int) -> bool:
    """True while pid runs (a zombie left to an init that does not reap counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("end", ["error", "SIGTERM", "SIGINT", "SIGHUP"])
def test_a_recipe_that_ends_ends_its_jobs_training_processes(tmp_path, end):
    """A job that is a shell function starting a long process (as asr.sh's fine-tunes start training):
    when the recipe fails or is signalled, that grandchild ends too, not only the job's subshell."""
    script = tmp_path / "recipe.sh"
    script.write_text(f"""set -euo pipefail
. {ROOT}/recipes/utils/stages.sh
train() {{ sh -c 'echo $$ > {tmp_path}/train.pid; exec sleep 300'; }}
in_background 2 {tmp_path}/log/train.log train
while [ ! -s {tmp_path}/train.pid ]; do sleep 0.05; done
echo started
{'read -r go; false' if end == 'error' else 'wait_background'}
""")
    recipe = subprocess.Popen(["bash", str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert recipe.stdout.readline() == "started\n"
    pid = int((tmp_path / "train.pid").read_text())
    assert alive(pid)
    if end == "error":   # the recipe fails only now, once the job is seen running
        recipe.stdin.write("go\n")
        recipe.stdin.flush()
    else:
        recipe.send_signal(getattr(signal, end))
    assert recipe.wait(timeout=10) != 0
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid)


def wait_ended(*pids: int) -> None:
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in pids)


@pytest.mark.parametrize("end", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_signal_to_a_recipe_ends_the_recipe_it_runs(tmp_path, end):
    """egs/mini_tts/domain/run.sh runs ssl.sh (here a stand-in whose training is a long process): a signal to
    the outer recipe ends it, the inner recipe and that process, rather than leaving them to run on."""
    domain = tmp_path / "egs/mini_tts/domain"
    domain.mkdir(parents=True)
    domain.joinpath("run.sh").write_text((ROOT / "egs/mini_tts/domain/run.sh").read_text())
    domain.joinpath("path.sh").write_text("")
    domain.joinpath("utils").symlink_to(ROOT / "recipes/utils")
    inner = tmp_path / "recipes/ssl.sh"
    inner.parent.mkdir()
    inner.write_text(f"#!/bin/bash\necho $$ > {tmp_path}/inner.pid\nsh -c 'echo $$ > {tmp_path}/train.pid; exec sleep 300'\n")
    inner.chmod(0o755)
    outer = subprocess.Popen(["bash", str(domain / "run.sh"), "--stop-stage", "0", "--pretrain-domains", "clean"],
                             stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not (tmp_path / "train.pid").exists() or not (tmp_path / "train.pid").read_text():
        assert time.monotonic() < deadline and outer.poll() is None
        time.sleep(0.05)
    pids = [int((tmp_path / name).read_text()) for name in ("inner.pid", "train.pid")]
    outer.send_signal(getattr(signal, end))
    assert outer.wait(timeout=10) != 0
    wait_ended(*pids)


def stages(tmp_path: Path, commands: str) -> str:
    """The output of ``commands`` run in tmp_path after sourcing stages.sh."""
    return subprocess.run(["bash", "-c", f"set -euo pipefail; . {ROOT}/recipes/utils/stages.sh; {commands}"],
                          cwd=tmp_path, check=True, capture_output=True, text=True).stdout


def test_a_path_gives_the_same_settings_however_it_is_spelt(tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "ft.yaml").write_text("trainer: {}\n")
    (tmp_path / "link.yaml").symlink_to(tmp_path / "conf" / "ft.yaml")
    lines = stages(tmp_path, f"for p in conf/ft.yaml ./conf/ft.yaml {tmp_path}/conf/ft.yaml link.yaml; do "
                             "with_digests --config $p; done").splitlines()
    assert len(set(lines)) == 1 and lines[0].startswith("--config conf/ft.yaml@")


def test_an_empty_marker_from_before_settings_were_recorded_counts_as_done(tmp_path):
    (tmp_path / "old.done").touch()
    (tmp_path / "other.done").write_text("k=1\n")
    out = stages(tmp_path, "done_with_settings old.done k=2 old && echo skipped; "
                           "done_with_settings other.done k=2 other || echo redo")
    assert "old: already done (old.done, which records no settings)\nskipped" in out
    assert "other: doing it again: other.done records other settings (k=1), not k=2\nredo" in out
    assert (tmp_path / "old.done").exists() and not (tmp_path / "other.done").exists()


def test_a_dir_digest_covers_its_files_and_the_model_weights_below_it(tmp_path):
    """A data dir's split<N> tables do not count; a fairseq2 checkpoint dir's step_<N>/model weights do."""
    data, checkpoint = tmp_path / "data", tmp_path / "ckpt"
    (data / "split2" / "1").mkdir(parents=True)
    (data / "wav.scp").write_text("a a.wav\n")
    (checkpoint / "step_3" / "model" / "pp_00" / "tp_00").mkdir(parents=True)
    (checkpoint / "model.yaml").write_text("model_family: wav2vec2\n")
    weights = checkpoint / "step_3" / "model" / "pp_00" / "tp_00" / "sdp_00.pt"
    weights.write_bytes(b"weights 1")

    def digests() -> list[str]:
        return stages(tmp_path, "file_digest data; file_digest ckpt").split()

    before = digests()
    (data / "split2" / "1" / "wav.scp").write_text("a a.wav\n")
    weights.write_bytes(b"weights 2")
    after = digests()
    assert after[0] == before[0] and after[1] != before[1]
    (data / "wav.scp").write_text("b b.wav\n")
    assert digests()[0] != before[0]


def test_an_exp_tree_moved_elsewhere_is_done_or_resumes_where_its_inputs_hold_the_same(tmp_path):
    """Settings name inputs as PATH@DIGEST: a moved tree changes the paths, not what they hold."""
    (tmp_path / "exp" / "kmeans").mkdir(parents=True)
    (tmp_path / "exp" / "kmeans" / "train.labels").write_text("u1 1 2\n")

    def run(exp: str, *check: str) -> subprocess.CompletedProcess:
        settings = f'"$(with_digests --train-labels {exp}/kmeans/train.labels)"'
        return subprocess.run(["bash", "-c", f"set -euo pipefail; . {ROOT}/recipes/utils/stages.sh; "
                               f". {ROOT}/recipes/utils/launch.sh; launcher=; "
                               f"if trained {exp}/pretrain {settings} train; then echo skipped; else echo trains; fi; "
                               f"done_with_settings {exp}/kmeans/.done {settings} label || echo labels"],
                              cwd=tmp_path, capture_output=True, text=True)

    first = run("exp")
    assert first.returncode == 0 and "trains" in first.stdout and "labels" in first.stdout
    (tmp_path / "exp" / "kmeans" / ".done").write_text((tmp_path / "exp" / "pretrain" / ".settings").read_text())
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "exp").rename(tmp_path / "elsewhere" / "exp")
    moved = run("elsewhere/exp")   # an interrupted run: resumes, not refused; the labels are done
    assert moved.returncode == 0 and "trains" in moved.stdout and "label: already done" in moved.stdout
    assert "elsewhere/exp/kmeans/train.labels@" in (tmp_path / "elsewhere" / "exp" / "pretrain" / ".settings").read_text()
    (tmp_path / "elsewhere" / "exp" / "kmeans" / "train.labels").write_text("u1 2 2\n")
    changed = run("elsewhere/exp")
    assert changed.returncode == 1 and "was trained (or started) with other settings or inputs" in changed.stderr
