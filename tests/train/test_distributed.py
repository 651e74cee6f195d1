"""Several processes train as one: DDP and FSDP on 2 CPU ranks (gloo, torchrun) against one process with
the same global batch, checkpoints that move between one process and FSDP, and the launcher's modes
(two "nodes" on loopback, Slurm through stand-ins for sbatch, srun and scontrol)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import soundfile
import torch
import yaml

from audiossl.bin import launch as launch_main
from audiossl.checkpoint import build_model, load_checkpoint
from audiossl.data.kaldi_dir import DataDir, merge_tables, write_table
from audiossl.features.kaldi import FeatureConfig, FeatureExtractor
from audiossl.features.store import compute_features
from audiossl.errors import ConfigError
from audiossl.models.hubert import HubertConfig
from audiossl.train.launch import Launch, hostfile_command, launch_training, slurm_script
from conftest import synth_speechlike

# Nothing random but the batches' order: no masking, dropout, layer drop or warping, so that one process
# and two ranks see the same global batch and compute the same gradient (up to summation order).
CONFIG = {
    "model": {"family": "hubert", "size": "tiny", "args": {"frontend": "fbank"},
              "set": {"num_classes": 5, "unmasked_weight": 1.0, "dropout_input": 0.0, "frequency_warp": 0.0,
                      "mask": {"prob": 0.0, "min_masks": 0},
                      "encoder": {"dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0,
                                  "layer_drop": 0.0}}},
    "trainer": {"max_updates": 4, "batch_seconds": 2.5, "lr": 2e-3, "precision": "fp32", "log_interval": 1,
                "valid_interval": 2, "save_interval": 2, "keep_last": 4, "num_workers": 0, "num_threads": 1,
                "schedule": {"warmup_updates": 1}},
}
# Two ranks sum the same per-frame gradients in another order (all-reduce, reduce-scatter) than one
# process: float32 rounding, which four AdamW steps leave at 0 (DDP) and 6e-8 (FSDP) in the weights
# here, where training moves them by 2e-3 (lr) from update 2 to 4; a skipped batch or a wrongly
# scaled gradient would move them by about that much.
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Twelve utterances of 1-2 s with fbank features, labels and a run config."""
    root = tmp_path_factory.mktemp("distributed")
    wav_scp = {}
    for i in range(12):
        path = root / f"u{i:02d}.wav"
        soundfile.write(path, synth_speechlike(1.0 + 0.09 * i, seed=i), 16000)
        wav_scp[f"spk{i % 3}-u{i:02d}"] = str(path)
    data = DataDir({"wav.scp": wav_scp, "utt2spk": {u: u.split("-")[0] for u in wav_scp}})
    data.write(root / "data")
    extractor = FeatureExtractor(FeatureConfig.from_kaldi_args("fbank", ["--num-mel-bins=80"]))
    frames = compute_features(data, extractor, root / "data/fbank/raw.ark")
    write_table(root / "data/feats.scp", merge_tables([root / "data/fbank/raw.scp"]))
    write_table(root / "data/utt2num_frames", {k: str(v) for k, v in frames.items()})
    (root / "run.yaml").write_text(yaml.safe_dump(CONFIG))
    model = build_model("hubert", HubertConfig.tiny(frontend="fbank").to_dict())
    counts = model.num_frames(torch.tensor(list(frames.values())))
    generator = torch.Generator().manual_seed(0)
    write_table(root / "labels", {utt: " ".join(map(str, torch.randint(0, 5, (int(n),), generator=generator).tolist()))
                                  for utt, n in zip(frames, counts)})
    return root


def pretraining(corpus: Path, exp: Path, *settings: str) -> list[str]:
    """python's arguments for bin.pretrain on the corpus into ``exp``."""
    sets = [arg for setting in settings for arg in ("--set", setting)]
    return ["-m", "audiossl.bin.pretrain", "--config", str(corpus / "run.yaml"), *sets,
            "--train-data", str(corpus / "data"), "--train-labels", str(corpus / "labels"),
            "--valid-data", str(corpus / "data"), "--valid-labels", str(corpus / "labels"), str(exp)]


def pretrain(corpus: Path, exp: Path, ranks: int, *settings: str, launch: tuple[str, ...] = (),
             env: dict[str, str] | None = None) -> str:
    """bin.pretrain on the corpus, launched locally with ``ranks`` CPU processes; its stderr."""
    done = subprocess.run([sys.executable, "-m", "audiossl.bin.launch", "--ngpu", str(ranks), *launch, str(exp), "--",
                           *pretraining(corpus, exp, *settings)], capture_output=True, text=True, timeout=600,
                          env=None if env is None else {**os.environ, **env})
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stderr


@pytest.fixture(scope="module")
def one_process(corpus, tmp_path_factory) -> Path:
    """The reference: one process, two micro-batches per update (the global batch of two ranks)."""
    exp = tmp_path_factory.mktemp("one") / "exp"
    pretrain(corpus, exp, 1, "trainer.accum_steps=2")
    return exp


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def largest_difference(a: Path, b: Path) -> float:
    first, second = weights(a), weights(b)
    assert first.keys() == second.keys()
    return max(float((first[k] - second[k]).abs().max()) for k in first)


def losses(exp: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (exp / "updates.jsonl").read_text().splitlines()]


def test_two_ranks_train_as_one_process_and_checkpoints_move_between_them(corpus, one_process, tmp_path):
    shutil.copytree(one_process, tmp_path / "one")
    for strategy in ("ddp", "fsdp"):
        pretrain(corpus, tmp_path / strategy, 2, f"trainer.strategy={strategy}")
        assert largest_difference(tmp_path / "one/checkpoints/last.pt", tmp_path / strategy / "checkpoints/last.pt") \
            < TOLERANCE, strategy
        assert losses(tmp_path / strategy) == pytest.approx(losses(tmp_path / "one"), rel=1e-6), strategy
    state = load_checkpoint(tmp_path / "fsdp/checkpoints/last.pt")["train_state"]
    assert state["world_size"] == 2 and state["update"] == 4 and len(state["rng"]) == 2
    one_state = load_checkpoint(tmp_path / "one/checkpoints/last.pt")["train_state"]["optimizer"]
    assert state["optimizer"]["state"].keys() == one_state["state"].keys()  # the same (one-process) layout

    # one process's checkpoint at update 2 resumes under FSDP, and FSDP's under one process
    for source, target, ranks, settings in (("one", "to_fsdp", 2, ["trainer.strategy=fsdp"]),
                                            ("fsdp", "from_fsdp", 1, ["trainer.accum_steps=2"])):
        (tmp_path / target / "checkpoints").mkdir(parents=True)
        shutil.copy(tmp_path / source / "checkpoints/update_2.pt", tmp_path / target / "checkpoints/last.pt")
        pretrain(corpus, tmp_path / target, ranks, *settings)
        assert "resumed with a different world size" in (tmp_path / target / "train.log").read_text()
        assert largest_difference(tmp_path / "one/checkpoints/last.pt", tmp_path / target / "checkpoints/last.pt") \
            < TOLERANCE, target


def test_fsdp_refuses_layer_drop(corpus, tmp_path):
    done = subprocess.run([sys.executable, "-m", "audiossl.bin.launch", "--ngpu", "2", str(tmp_path), "--",
                           *pretraining(corpus, tmp_path / "exp", "trainer.strategy=fsdp",
                                        "model.set.encoder.layer_drop=0.1")], capture_output=True, text=True)
    assert done.returncode != 0
    assert "trainer.strategy fsdp cannot train with layer drop (TransformerEncoder.layer_drop=0.1)" in done.stderr


@pytest.mark.parametrize("fault", ["kill", "stall"])
def test_a_dead_or_stalled_rank_restarts_the_job_from_its_last_checkpoint(corpus, one_process, tmp_path, fault):
    """Rank 1 is killed (or hangs) before update 3; torchrun restarts both ranks (after the watchdog ends
    the stalled ones), which resume from update 2 and end where an uninterrupted run ends. (A second
    restart is allowed: the watchdog also ends a restarted rank that hangs in its start-up.)"""
    stderr = pretrain(corpus, tmp_path / "exp", 2, "trainer.watchdog_seconds=4", launch=("--max-restarts", "2"),
                      env={"AUDIOSSL_FAULT": f"{fault} 1 3",
                           "PYTHONPATH": f"{Path(__file__).parent / 'faults'}:{os.environ.get('PYTHONPATH', '')}"})
    if fault == "stall":
        assert re.search(r"rank [01]: no progress for \d+ s in update 3 \(epoch 0\): a collective is waiting", stderr)
    log = (tmp_path / "exp/train.log").read_text()
    assert "resumed from" in log and "at update 2 (epoch 0, batch 2)" in log
    assert largest_difference(one_process / "checkpoints/last.pt", tmp_path / "exp/checkpoints/last.pt") < TOLERANCE
    assert [json.loads(line)["update"] for line in (tmp_path / "exp/updates.jsonl").read_text().splitlines()] \
        == [1, 2, 3, 4]


def trained_by_two_ranks(exp: Path) -> None:
    state = load_checkpoint(exp / "checkpoints/last.pt")["train_state"]
    assert state["world_size"] == 2 and state["update"] == 4


def test_two_nodes_of_a_hostfile_meet_on_loopback(corpus, tmp_path):
    """The hostfile mode as a cluster would use it: the same command started on each of two "hosts"."""
    (tmp_path / "hosts").write_text("# two nodes, one process each\n127.0.0.1\n127.0.0.1\n")
    exp = tmp_path / "exp"
    command = [sys.executable, "-m", "audiossl.bin.launch", "--mode", "hostfile", "--hostfile", str(tmp_path / "hosts"),
               "--port", "29561", str(exp), "--", *pretraining(corpus, exp)]
    nodes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert "--nnodes 2 --nproc-per-node 1 --max-restarts 0 --rdzv-backend c10d --rdzv-endpoint 127.0.0.1:29561" \
        in outputs[0]
    trained_by_two_ranks(exp)


STAND_INS = {  # Slurm's commands on one machine: every "node" is this one
    "sbatch": """
        [ "$1" = --wait ] && shift
        export SLURM_JOB_ID=4242 SLURM_JOB_NODELIST="node[1-2]"
        log=$(sed -n 's/^#SBATCH --output=//p' "$1" | sed "s/%j/$SLURM_JOB_ID/")
        bash "$1" > "$log" 2>&1""",
    "scontrol": 'echo 127.0.0.1; echo 127.0.0.2',
    "srun": """
        nodes=$(echo "$1" | sed 's/--nodes=//'); shift 2
        for node in $(seq $nodes); do "$@" & done
        for node in $(seq $nodes); do wait -n || exit 1; done""",
}


def test_slurm_job_script_runs_torchrun_on_each_node(corpus, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in STAND_INS.items():
        (bin_dir / name).write_text("#!/bin/bash\nset -u" + textwrap.dedent(body) + "\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    exp = tmp_path / "exp"
    launch = Launch("slurm", procs_per_node=1, num_nodes=2, port=29562, slurm_args=["--partition=gpu", "--gpus-per-node={ngpu}"])
    assert launch_training(launch, pretraining(corpus, exp), exp) == 0, (exp / "slurm-4242.log").read_text()[-3000:]
    script = (exp / "train.sbatch").read_text()
    assert "#SBATCH --nodes=2\n#SBATCH --ntasks-per-node=1\n" in script
    assert "#SBATCH --partition=gpu\n#SBATCH --gpus-per-node=1\n" in script
    assert '--rdzv-endpoint "$head:29562" --rdzv-id "$SLURM_JOB_ID" -m audiossl.bin.pretrain' in script
    trained_by_two_ranks(exp)
    failing = tmp_path / "failing"  # a training that fails fails the sbatch --wait, and so the recipe's stage
    assert launch_training(launch, pretraining(corpus, failing, "trainer.strategy=zero"), failing) != 0
    assert "trainer.strategy is 'zero'; it must be ddp or fsdp" in (failing / "slurm-4242.log").read_text()


def test_launch_refuses_what_it_cannot_run(tmp_path):
    with pytest.raises(ConfigError, match="--num-nodes 2 needs the slurm or hostfile launch mode"):
        Launch("local", num_nodes=2)
    with pytest.raises(ConfigError, match="--max-restarts takes 0 or more, not -1"):
        Launch("local", max_restarts=-1)
    with pytest.raises(ConfigError, match="the hostfile launch mode needs --hostfile"):
        Launch("hostfile")
    (tmp_path / "hosts").write_bytes(b"\xef\xbb\xbfa\r\n\n# b is down\nc slots=2\n")
    command = hostfile_command(Launch("hostfile", hostfile=str(tmp_path / "hosts")), ["x"], tmp_path)
    assert command[command.index("--nnodes") + 1] == "2" and command[command.index("--rdzv-endpoint") + 1] == "a:29500"
    (tmp_path / "slots").write_text("# hosts\na:4\nb:4\n")   # another launcher's host:slots
    with pytest.raises(ConfigError, match="hostfile .*slots:2: 'a:4' is not a host name or IPv4 address"):
        launch_training(Launch("hostfile", hostfile=str(tmp_path / "slots")), ["x"], tmp_path, dry_run=True)
    with pytest.raises(ConfigError, match="--port takes 1 to 65535, not 95000"):
        Launch("local", port=95000)
    (tmp_path / "hosts").write_text("a\nb\nc\n")
    with pytest.raises(ConfigError, match="--num-nodes 4, but hostfile .*hosts lists only 3 hosts"):
        launch_training(Launch("hostfile", num_nodes=4, hostfile=str(tmp_path / "hosts")), ["x"], tmp_path, dry_run=True)
    with pytest.raises(ConfigError, match="hostfile .*missing: No such file"):
        launch_training(Launch("hostfile", hostfile=str(tmp_path / "missing")), ["x"], tmp_path, dry_run=True)
    assert "srun --nodes=3 --ntasks-per-node=1" in slurm_script(Launch("slurm", num_nodes=3), ["x"], tmp_path)


def test_num_nodes_takes_the_first_hosts_of_a_hostfile(tmp_path, capsys):
    (tmp_path / "hosts").write_text("a\nb\nc\n")

    def torchrun_nodes(*num_nodes: str) -> tuple[str, str]:
        """--nnodes and --rdzv-endpoint of a dry run of ``launch --num-nodes``, or of its default."""
        argv = ["--mode", "hostfile", "--hostfile", str(tmp_path / "hosts"), *num_nodes, "--dry-run", str(tmp_path),
                "--", "-m", "x"]
        assert launch_main.main(argv) == 0
        command = capsys.readouterr().out.split()
        return command[command.index("--nnodes") + 1], command[command.index("--rdzv-endpoint") + 1]

    assert torchrun_nodes() == ("3", "a:29500")
    assert torchrun_nodes("--num-nodes", "1") == ("1", "a:29500")
    assert torchrun_nodes("--num-nodes", "2") == ("2", "a:29500")
    assert launch_main.main(["--mode", "hostfile", "--hostfile", str(tmp_path / "hosts"), "--num-nodes", "4",
                             "--dry-run", str(tmp_path), "--", "-m", "x"]) == 1
    assert f"error: --num-nodes 4, but hostfile {tmp_path / 'hosts'} lists only 3 hosts" in capsys.readouterr().err
    assert Launch("slurm").num_nodes == 1 and Launch("local").num_nodes == 1


def sbatch_options(script: str) -> list[str]:
    """The options of a job script's #SBATCH lines, read as sbatch does: double quotes keep white space and
    #, a backslash escapes the next character, an unquoted # starts a comment."""
    options = []
    for line in script.splitlines():
        if line.startswith("#SBATCH "):
            word, quoted, escaped = "", False, False
            for char in line[len("#SBATCH "):]:
                if escaped:
                    word, escaped = word + char, False
                elif char == "\\":
                    escaped = True
                elif char == '"':
                    quoted = not quoted
                elif (char == "#" or char.isspace()) and not quoted:
                    break
                else:
                    word += char
            options.append(word)
    return options


def test_slurm_options_with_spaces_quotes_or_hashes_reach_sbatch_whole(tmp_path, capsys):
    job_dir = tmp_path / "exp dir" / "run 1"
    script = slurm_script(Launch("slurm", slurm_args=['--comment=run "a" #2', "--partition=gpu"]), ["x"], job_dir)
    assert sbatch_options(script) == ["--job-name=run 1", "--nodes=1", "--ntasks-per-node=1",
                                      f"--output={job_dir}/slurm-%j.log", '--comment=run "a" #2', "--partition=gpu"]
    with pytest.raises(SystemExit) as exited:
        launch_main.main(["--mode", "slurm", "--slurm-args=--comment='a b", "--dry-run", str(job_dir), "--", "x"])
    assert exited.value.code == 2
    assert "argument --slurm-args: no closing quotation in \"--comment='a b\"" in capsys.readouterr().err
    assert not job_dir.exists()
