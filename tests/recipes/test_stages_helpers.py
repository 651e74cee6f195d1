"""recipes/utils/stages.sh: background jobs end with the recipe; markers that record a stage's settings."""
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


@pytest.mark.parametrize("end", ["error", "SIGTERM", "SIGINT"])
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
{'false' if end == 'error' else 'wait_background'}
""")
    recipe = subprocess.Popen(["bash", str(script)], stdout=subprocess.PIPE, text=True)
    assert recipe.stdout.readline() == "started\n"
    pid = int((tmp_path / "train.pid").read_text())
    assert alive(pid)
    if end != "error":
        recipe.send_signal(getattr(signal, end))
    assert recipe.wait(timeout=10) != 0
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid)
