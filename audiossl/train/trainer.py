"""The training loop shared by every stage: dynamic batches, mixed precision, gradient
accumulation, schedules, clipping, DDP or FSDP, logging, and checkpoints that resume exactly.

A run writes under ``exp_dir``::

    checkpoints/update_<N>.pt   every ``save_interval`` updates (the newest ``keep_last`` kept)
    checkpoints/last.pt         the newest checkpoint (a hard link)
    checkpoints/best.pt         the checkpoint with the best validation score (a hard link; without
                                a finite score, the final checkpoint)
    config.yaml                 the run config and command (when given), written once the run starts
    train.log                   human-readable log;  updates.jsonl: one JSON line per update
    valid.jsonl                 one JSON line per validation
    training_curves.png         every logged figure against the update (train.curves), in runs longer
                                than a minute: redrawn at validations (at most once a minute) and at the end
    tensorboard/                scalars for tensorboard
    train.lock                  held while a trainer writes the dir: a second one is refused

Started again after being killed at any point, a run continues from ``last.pt`` with the
same batches, masks, dropout and therefore the same losses as an uninterrupted run: the
checkpoint holds the optimizer, scheduler, grad scaler, sampler position and every rank's RNGs
(CPU, CUDA and the trainer's generator, which also drives the batch transforms). Checkpoints have
one format whatever the strategy (one process, DDP, FSDP): a run loads another's weights and
optimizer state. A run started again must be the one that wrote ``last.pt``: another model, origin
(``origin``, e.g. the --init checkpoint, by what it holds), run setting (``settings``, e.g. pretraining's mixing)
or trainer setting that shapes the training is refused by name before anything is written (see :data:`RESUMABLE` for the settings that may change).
A file that cannot be written (a full disk) stops the run naming it and the newest checkpoint.

An update whose loss or gradient is not finite is skipped: its batches are consumed, but it
is not counted and does not step the schedule; the log names each and counts them all.
``max_bad_updates`` skipped in a row end the run with a :class:`TrainingError`; in fp16, an
overflowing gradient only lowers the dynamic loss scale, and a scale that stays under
``loss_scale_floor`` for ``loss_scale_patience`` updates (fp16 cannot represent the gradients)
switches the run to bf16 where the device has it natively, or ends it. Otherwise a run ends with
its checkpoint at ``max_updates``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import logging
import math
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from audiossl.atomic import write_text_atomic
from audiossl.checkpoint import content_digest, load_checkpoint, save_checkpoint
from audiossl.config_fields import differences
from audiossl.data.dataset import BucketBatchSampler, LanguageBatchSampler, UtteranceDataset, collate, input_rate
from audiossl.data.transforms import BatchTransform, Compose
from audiossl.errors import UserError
from audiossl.tasks.base import Task
from audiossl.train import sharding
from audiossl.train.curves import plot_curves
from audiossl.train.distributed import (DistInfo, Watchdog, all_gather_objects, all_reduce_sums, barrier, cleanup,
                                        init_distributed)
from audiossl.train.precision import emulation_warning, native_bf16, resolve_precision
from audiossl.train.schedules import ScheduleConfig, build_scheduler, lr_multiplier

logger = logging.getLogger("audiossl.train")


class TrainingError(UserError, RuntimeError):
    """Training cannot go on (e.g. repeated non-finite losses); earlier checkpoints are intact."""


@dataclass
class LanguageStage:
    """A stretch of training whose batches draw their language with ``p_l ∝ weight_l · n_l^alpha``.

    ``updates``: the stage's length (the last stage runs to ``max_updates`` and may leave it out);
    ``weights``: the data mix, a factor per language (default 1; 0 leaves a language out).
    """

    alpha: float = 1.0
    updates: int | None = None
    weights: dict[str, float] | None = None


@dataclass
class TrainerConfig:
    """Optimisation and bookkeeping. ``batch_seconds`` is padded audio per batch per rank."""

    max_updates: int = 1000
    batch_seconds: float = 160.0
    max_batch_size: int | None = None
    language_alpha: float | None = None  # one language per batch, drawn with p ∝ amount^alpha (utt2lang); None: any mix
    language_stages: list[LanguageStage] | None = None  # stage-wise alpha and mix (WavLabLM); language_alpha's stead
    accum_steps: int = 1
    lr: float = 5e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    clip_norm: float = 10.0
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    precision: str = "auto"          # auto (bf16 where native, else fp32) | bf16 | fp16 | fp32
    seed: int = 1
    log_interval: int = 10
    valid_interval: int = 100
    save_interval: int = 100
    keep_last: int = 2
    num_workers: int = 1
    num_threads: int = 0             # intra-op threads per rank; 0: cores / ranks
    max_bad_updates: int = 5         # consecutive non-finite updates before giving up
    loss_scale_floor: float = 1e-4   # fp16: a dynamic loss scale under this (fairseq's min-loss-scale) ...
    loss_scale_patience: int = 20    # ... for this many updates in a row has collapsed
    on_scale_collapse: str = "bf16"  # bf16 (where native; else stop) | stop
    device: str = "auto"             # auto | cpu | cuda
    strategy: str = "ddp"            # with several processes: ddp (replicas) | fsdp (sharded, FSDP2)
    watchdog_seconds: float = 1800.0  # with several processes: a rank without progress this long exits (0: never)
    activation_checkpointing: bool = False  # recompute encoder layers in the backward pass (memory for time)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))


# Trainer settings a resumed run may change: bookkeeping, hardware, and what to do on failures; precision
# changes are warned about. Any other must stay but for ``accum_steps``, which may change with the number
# of processes so long as the batches per update stay, and ``max_updates`` where the learning rates of
# the updates done stay (a constant schedule, or a run still in its warmup). A run resumed with other
# settings goes on, but not bit for bit as it would have: precision, device and where validation falls
# (its loader draws a seed from torch's global generator) move the random trajectory.
RESUMABLE = frozenset({"precision", "device", "strategy", "num_workers", "num_threads", "log_interval",
                       "valid_interval", "save_interval", "keep_last", "max_bad_updates", "loss_scale_floor",
                       "loss_scale_patience", "on_scale_collapse", "watchdog_seconds", "activation_checkpointing"})
LOCK_FILE = "train.lock"
CURVES = "training_curves.png"
CURVES_INTERVAL_SECONDS = 60.0  # drawn at validations at most this often (a drawing takes about 0.5 s)
# torch.save's zip writer turns a failed write (a full disk) into a RuntimeError saying one of these
TORCH_WRITER_FAILURES = ("PytorchStreamWriter", "inline_container")


def run_record(run: dict[str, Any], cli_args) -> dict[str, Any]:
    """What ``config.yaml`` keeps of a run: its effective run config and the command's other arguments."""
    return {**run, "data": {k: v for k, v in vars(cli_args).items() if k not in ("config", "set")}}


def run_origin(checkpoint: str | None, pretrained: bool) -> dict[str, Any]:
    """What a run's weights start from, as its checkpoints record it: ``init``, the pretrained checkpoint
    (absolute path), ``init_digest``, what it holds (:func:`~audiossl.checkpoint.content_digest`), and
    ``weights``, ``pretrained`` or ``random``. A random start records no checkpoint: the one that lent its
    architecture is judged by the model config (scratch controls share a run)."""
    if pretrained and checkpoint:
        return {"init": os.path.abspath(checkpoint), "init_digest": content_digest(checkpoint), "weights": "pretrained"}
    return {"init": None, "weights": "random"}


def same_origins(then: dict[str, Any], now: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The origins of a checkpoint and of a run resuming it, to compare: without ``init_digest``, and with the
    same ``init`` where the digests agree (the init checkpoint moved, or another copy of it: what it holds decides).
    Checkpoints written before digests were recorded compare by path."""
    then, now = dict(then), dict(now)
    digest_then, digest_now = then.pop("init_digest", None), now.pop("init_digest", None)
    if digest_then is not None and digest_then == digest_now:
        then["init"] = now["init"]
    return then, now


class _TrainLog(logging.FileHandler):
    """``train.log``, whose failed writes (a full disk) stop the run through ``on_error`` where logging would
    print a traceback and go on."""

    on_error: Callable[[Path, OSError], NoReturn]

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            self.on_error(Path(self.baseFilename), error)
        super().handleError(record)


class Trainer:
    """Trains ``model`` on ``task`` until ``config.max_updates``, resuming from ``exp_dir`` if possible.

    ``batch_transform`` maps each collated batch before the task sees it: in training with the
    trainer's generator, in validation (always-applied transforms only) with a fixed-seed one.
    The sampler bounds batches in the dataset's input units (samples for waveform data).

    ``parameter_groups`` (default: every parameter at ``config.lr``) are AdamW's groups, each a
    dict with ``params`` and optionally its own peak ``lr`` and a ``name`` (e.g. an utterance
    model's ``parameter_groups(head_lr, upstream_lr)``); the schedule scales every group's peak
    alike, and ``updates.jsonl`` records each named group's rate as ``lr_<name>``.

    ``best.pt`` is the checkpoint with the lowest ``task.valid_score``, or the highest when the
    task has ``higher_is_better`` true (e.g. accuracy or mean average precision).

    ``origin`` names what the model started from beyond its config (see :func:`run_origin`); the
    checkpoints record it and a resumed run must have the same. So too ``settings``: run settings beyond the
    model and trainer configs that shape the training (pretraining's ``mixing`` section). ``run_config`` (see
    :func:`run_record`) is written to ``config.yaml`` once the run starts, after the checks of a resumed run.
    """

    def __init__(self, task: Task, model: nn.Module, train_set: UtteranceDataset,
                 valid_set: UtteranceDataset | None, config: TrainerConfig, exp_dir: str | os.PathLike,
                 batch_transform: BatchTransform | None = None, parameter_groups: list[dict] | None = None,
                 origin: dict[str, Any] | None = None, run_config: dict[str, Any] | None = None,
                 settings: dict[str, Any] | None = None):
        self.task = task
        self.config = config
        self.origin = dict(origin or {})
        self.settings = dict(settings or {})
        self.started_from: str | None = None  # see start_from
        self.run_config = run_config
        self.exp_dir = Path(exp_dir)
        self.ckpt_dir = self.exp_dir / "checkpoints"
        # with several processes, a watchdog from the start: joining the process group, sharding and
        # resuming can hang on a dead rank as much as an update can
        self.stage: str | None = "start-up (process group, model, checkpoint)"  # None: in the training loop
        self.watchdog = Watchdog(config.watchdog_seconds if int(os.environ.get("WORLD_SIZE", "1")) > 1 else 0.0,
                                 int(os.environ.get("RANK", "0")), self._doing)
        self.watchdog.start()
        self.info: DistInfo = init_distributed(config.device)
        torch.set_num_threads(config.num_threads or max(1, (os.cpu_count() or 1) // self.info.world_size))
        self.model = model.to(self.info.device)
        self.sharded = self.info.world_size > 1 and config.strategy == "fsdp"
        if config.activation_checkpointing:
            logger.info("activation checkpointing in %d encoder layers", sharding.checkpoint_activations(self.model))
        self.ddp_model: nn.Module = self.model
        if self.sharded:
            names = {id(param): name for name, param in self.model.named_parameters()}
            sharding.shard_model(self.model, self.info.device, self.info.world_size)
            sharded = dict(self.model.named_parameters())
            if parameter_groups is not None:
                parameter_groups = [{**group, "params": [sharded[names[id(p)]] for p in group["params"]]}
                                    for group in parameter_groups]
        elif self.info.world_size > 1:
            device_ids = [self.info.local_rank] if self.info.device.type == "cuda" else None
            self.ddp_model = DistributedDataParallel(self.model, device_ids=device_ids,
                                                     find_unused_parameters=task.find_unused_parameters)
        self.train_set = train_set
        self.valid_set = valid_set
        transforms = Compose([] if batch_transform is None else [batch_transform])
        self.train_transform = transforms.active(training=True)
        self.valid_transform = transforms.active(training=False)
        if config.language_alpha is not None:
            self.language_stages = [LanguageStage(config.language_alpha)]
        else:
            self.language_stages = list(config.language_stages or [])
        self.sampler = self._sampler(train_set, shuffle=True)
        for stage in range(1, len(self.language_stages)):  # a later stage's mix that the data cannot draw fails now
            self._sampler(train_set, shuffle=True, stage=stage)
        params = self.model.parameters() if parameter_groups is None else parameter_groups
        self.optimizer = torch.optim.AdamW(params, lr=config.lr, betas=tuple(config.betas),
                                           eps=config.eps, weight_decay=config.weight_decay)
        self.scheduler = build_scheduler(self.optimizer, config.schedule)
        self.precision = resolve_precision(config.precision, self.info.device)
        self.scaler = torch.amp.GradScaler(self.info.device.type, enabled=self.precision == "fp16")
        self.generator = torch.Generator().manual_seed(config.seed * 7919 + self.info.rank)
        torch.manual_seed(config.seed * 104729 + self.info.rank)
        # train_seconds: wall-clock time spent training, summed over resumed runs
        self.higher_is_better = task.higher_is_better
        self.state = {"update": 0, "epoch": 0, "batch_index": 0,
                      "best_score": -math.inf if self.higher_is_better else math.inf, "bad_updates": 0,
                      "skipped_updates": 0, "low_scale_updates": 0,
                      "train_seconds": 0.0, "language_stage": 0}
        self.saved_update: int | None = None  # update of the newest checkpoint in ckpt_dir
        self.curves_due = math.inf  # time.monotonic() from which training_curves.png is drawn at a validation

    def _sampler(self, data: UtteranceDataset, shuffle: bool, stage: int = 0) -> BucketBatchSampler | LanguageBatchSampler:
        """Training batches (shuffled, this rank's share) or validation batches (every one, in order): of one
        language each, when there are language stages; training batches draw their language as stage ``stage``
        says (validation takes every language's batches whatever the mix, so a dev set may lack a language)."""
        config = self.config
        max_frames = int(config.batch_seconds * input_rate(data))
        rank, world_size = (self.info.rank, self.info.world_size) if shuffle else (0, 1)
        if not self.language_stages:
            return BucketBatchSampler(data.lengths, max_frames, config.seed, shuffle, rank, world_size,
                                      config.max_batch_size)
        mix = self.language_stages[stage]
        try:
            return LanguageBatchSampler(data.lengths, data.languages(), max_frames, mix.alpha, config.seed, shuffle,
                                        rank, world_size, config.max_batch_size, mix.weights if shuffle else None)
        except ValueError as err:
            raise TrainingError(f"trainer.language_stages[{stage}]: {err}") from None

    def _language_stage_at(self, update: int) -> int:
        """Index of the language stage that update ``update + 1`` belongs to."""
        end = 0
        for index, stage in enumerate(self.language_stages[:-1]):
            end += stage.updates
            if update < end:
                return index
        return max(len(self.language_stages) - 1, 0)

    def _enter_language_stage(self, stage: int) -> None:
        """Switch the training batches to language stage ``stage``, from a new epoch."""
        self.state.update(language_stage=stage, epoch=self.state["epoch"] + 1, batch_index=0)
        self.sampler = self._sampler(self.train_set, shuffle=True, stage=stage)
        self._log_language_mix()

    def _log_language_mix(self) -> None:
        if isinstance(self.sampler, LanguageBatchSampler):
            hours = {lang: sum(self.train_set.lengths[i] for i in items) / input_rate(self.train_set) / 3600
                     for lang, items in self.sampler.items.items()}
            stage = self.state["language_stage"]
            logger.info("update %d: language stage %d of %d, batches of one language drawn with p ∝ weight · "
                        "amount^%g: %s", self.state["update"], stage + 1, len(self.language_stages),
                        self.language_stages[stage].alpha,
                        ", ".join(f"{lang} {p:.3f} ({hours[lang]:.2f} h)" for lang, p in self.sampler.probabilities.items()))

    # ---------------------------------------------------------------- checkpoints
    def _rng_state(self) -> dict:
        """This rank's random streams."""
        state = {"generator": self.generator.get_state(), "torch_rng": torch.get_rng_state()}
        if self.info.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def _set_rng_state(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and self.info.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["cuda_rng"][:torch.cuda.device_count()])

    def _model_state(self) -> dict[str, torch.Tensor]:
        """The whole model's state dict (gathered on rank 0 when sharded; every rank must call it)."""
        return sharding.gathered_model_state(self.model) if self.sharded else self.model.state_dict()

    def _load_model_state(self, state: dict[str, torch.Tensor]) -> None:
        if self.sharded:
            sharding.load_model_state(self.model, state)
        else:
            self.model.load_state_dict(state)

    def _optimizer_state(self) -> dict:
        """AdamW's one-process ``state_dict()`` (gathered on rank 0 when sharded; every rank must call it)."""
        if self.sharded:
            return sharding.gathered_optimizer_state(self.model, self.optimizer)
        return self.optimizer.state_dict()

    def _load_optimizer_state(self, state: dict) -> int:
        """Load a one-process optimizer state; moments of parameters whose shape changed (a new label table)
        are dropped, to start fresh. Returns how many were dropped."""
        params = [param for group in self.optimizer.param_groups for param in group["params"]]
        kept = {index: value for index, value in state["state"].items()
                if index >= len(params) or "exp_avg" not in value or value["exp_avg"].shape == params[index].shape}
        if self.sharded:
            sharding.load_optimizer_state(self.model, self.optimizer, {**state, "state": kept})
        else:
            self.optimizer.load_state_dict({**state, "state": kept})
        return len(state["state"]) - len(kept)

    def _train_state(self) -> dict:
        """Everything but the weights that resuming needs (every rank must call it: it gathers)."""
        return {**self.state, "optimizer": self._optimizer_state(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "rng": all_gather_objects(self._rng_state(), self.info),
                "trainer_config": self.config.to_dict(), "origin": self.origin, "settings": self.settings,
                "world_size": self.info.world_size,
                "precision": self.precision}

    def save(self, best: bool) -> None:
        """Write ``update_<N>.pt``, point ``best.pt`` (if ``best``) then ``last.pt`` at it, drop old ones.

        In that order, a run killed between the two links resumes from the previous ``last.pt`` and
        makes this update, and its best checkpoint, again; the other order would leave ``best.pt``
        stale for good (the resumed state already counts this update's score as the best)."""
        update = self.state["update"]
        model_state, train_state = self._model_state(), self._train_state()
        if self.info.is_main:
            path = self.ckpt_dir / f"update_{update}.pt"
            try:
                save_checkpoint(path, self.model.config.family, self.model.config.to_dict(), model_state,
                                train_state=train_state)
            except (OSError, RuntimeError) as err:  # e.g. a full disk: the write went to a temporary file, now removed
                if isinstance(err, RuntimeError) and not any(mark in str(err) for mark in TORCH_WRITER_FAILURES):
                    raise
                self._write_failed(path, err)
            for name in (("best.pt",) if best else ()) + ("last.pt",):
                tmp = self.ckpt_dir / f".{name}.link"
                tmp.unlink(missing_ok=True)
                os.link(path, tmp)
                os.replace(tmp, self.ckpt_dir / name)
            kept = sorted(self.ckpt_dir.glob("update_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
            for old in kept[:-self.config.keep_last]:
                old.unlink()
            logger.info("update %d: saved %s%s", update, path, " (best so far)" if best else "")
        self.saved_update = update

    def resume(self) -> bool:
        """Continue from ``checkpoints/last.pt`` when it exists; True if resumed. Without it the run
        starts afresh and forgets the update log lines of a run killed before its first checkpoint."""
        last = self.ckpt_dir / "last.pt"
        if not last.exists():
            self._truncate_update_log(0)
            return False
        payload = load_checkpoint(last)
        self._check_same_run(payload, last)
        train_state = payload["train_state"]
        ranks = train_state["world_size"]
        if ranks != self.info.world_size:
            logger.warning("resumed with a different world size: %s was written by %d rank(s), this run has %d; "
                           "it goes on from the same batch of the epoch, but the ranks' random streams (masks, "
                           "dropout) differ, so the losses will differ from an uninterrupted run", last, ranks,
                           self.info.world_size)
        if train_state.get("precision") == "bf16" and self.precision == "fp16":
            logger.info("%s: the run fell back from fp16 to bf16; it goes on in bf16", last)
            self._fall_back_to_bf16()
        if train_state.get("precision", self.precision) != self.precision:
            logger.warning("%s trained in %s and continues in %s on this machine: the losses will differ from "
                           "an uninterrupted run", last, train_state["precision"], self.precision)
        self._load_model_state(payload["model"])
        self._load_optimizer_state(train_state["optimizer"])
        self.scheduler.load_state_dict(train_state["scheduler"])
        if train_state["scaler"]:  # empty when the run did not train in fp16 (its scaler was off)
            self.scaler.load_state_dict(train_state["scaler"])
        # checkpoints written before every rank's streams were kept hold rank 0's at the top level
        if "rng" not in train_state:
            self._set_rng_state(train_state)
        elif self.info.rank < len(train_state["rng"]):  # a rank the writing run did not have keeps its fresh seed
            self._set_rng_state(train_state["rng"][self.info.rank])
        # train_seconds is unknown (None) for checkpoints written before it was recorded
        self.state = {k: train_state.get(k, None if k == "train_seconds" else self.state[k]) for k in self.state}
        self.saved_update = self.state["update"]
        self.state["batch_index"] = self.state["batch_index"] * ranks // self.info.world_size  # batches per rank
        if self.state["language_stage"]:
            self.sampler = self._sampler(self.train_set, shuffle=True, stage=self.state["language_stage"])
        self._truncate_update_log(self.state["update"])
        logger.info("resumed from %s at update %d (epoch %d, batch %d)", last, self.state["update"],
                    self.state["epoch"], self.state["batch_index"])
        return True

    def _check_same_run(self, payload: dict, path: Path) -> None:
        """Refuse to resume from checkpoint ``payload`` (read from ``path``) a run that differs from the one
        that wrote it in its model, origin, settings or a trainer setting that shapes the training (all but
        :data:`RESUMABLE`): resuming would half-apply the change (the checkpoint's weights, schedule and
        peak learning rates win) or fail on the weights' shapes."""
        state = payload["train_state"]
        then, now = (dict(config) for config in (state["trainer_config"], self.config.to_dict()))
        for config in (then, now):
            config["schedule"] = {k: v for k, v in config["schedule"].items() if k != "total_updates"}  # max_updates
        shaping = [k for k in then if k not in RESUMABLE | {"accum_steps", "max_updates"}]  # those two: below
        changed = [f"{key}: {old!r} then, {new!r} now" for key, old, new in (
            differences({"family": payload["family"], **payload["config"]},
                        {"family": self.model.config.family, **self.model.config.to_dict()}, "model", one_sided=False)
            + differences(*same_origins(state.get("origin", {}), self.origin), one_sided=False)
            + differences(state.get("settings", self.settings), self.settings)  # none recorded: written before them
            + differences({k: then[k] for k in shaping}, {k: now[k] for k in shaping if k in now}, "trainer",
                          one_sided=False))]
        ranks, world_size = state["world_size"], self.info.world_size
        if then["accum_steps"] * ranks != now["accum_steps"] * world_size:  # another number of processes may keep them
            changed.append(f"trainer.accum_steps: {then['accum_steps']} with {ranks} process(es) then, "
                           f"{now['accum_steps']} with {world_size} now (the batches per update must stay)")
        if then["lr"] == now["lr"] and state["scheduler"]["base_lrs"] != self.scheduler.base_lrs:
            changed.append(f"the peak learning rates of the parameter groups: {state['scheduler']['base_lrs']} then, "
                           f"{self.scheduler.base_lrs} now")
        done, schedule = state["update"], self.config.schedule
        old_schedule = dataclasses.replace(schedule, total_updates=then["max_updates"])
        if now["max_updates"] < done:
            changed.append(f"trainer.max_updates: {then['max_updates']} then, {now['max_updates']} now, under the "
                           f"{done} updates done")
        elif then["max_updates"] != now["max_updates"] and any(  # the rates so far, and the next one's (already set)
                lr_multiplier(step, old_schedule) != lr_multiplier(step, schedule)
                for step in range(state["scheduler"]["last_epoch"] + 1)):
            changed.append(f"trainer.max_updates: {then['max_updates']} then, {now['max_updates']} now (the "
                           f"{schedule.name} schedule spans max_updates: the learning rates of the "
                           f"{done} updates done would not be the new value's; it may change only where they stay, "
                           "as in a constant schedule or within the warmup)")
        if changed:
            raise TrainingError(f"{path}: this run differs from the one that wrote the checkpoint: "
                                f"{'; '.join(changed)}. To resume it, put the old values back; to train with the "
                                f"new ones, give another exp dir than {self.exp_dir}")

    def start_from(self, train_state: dict, source: str) -> None:
        """Start with another run's AdamW moments and schedule position (continued pretraining that keeps them).

        This run's hyper-parameters stay; the learning rate follows this run's schedule from the other
        run's update count on (no new warm-up), as fairseq without ``--reset-lr-scheduler``. Parameters
        whose shape changed (a new label table) start with fresh moments. A later :meth:`resume` wins.
        """
        settings = [{k: v for k, v in group.items() if k != "params"} for group in self.optimizer.param_groups]
        try:
            fresh = self._load_optimizer_state(train_state["optimizer"])
        except (ValueError, KeyError) as err:
            raise TrainingError(f"{source}: its optimizer state does not fit this model: {err}") from err
        for group, kept in zip(self.optimizer.param_groups, settings):
            group.update(kept)
        steps = train_state["scheduler"]["last_epoch"]
        self.scheduler.last_epoch = steps
        self.scheduler._last_lr = [base * self.scheduler.lr_lambdas[0](steps) for base in self.scheduler.base_lrs]
        for group, rate in zip(self.optimizer.param_groups, self.scheduler._last_lr):
            group["lr"] = rate
        # logged once the run starts (and holds its exp dir), unless it resumes
        self.started_from = (f"optimizer and schedule from {source}: schedule at update {steps} (learning rate "
                             f"{self.scheduler._last_lr[0]:.3g})"
                             + (f"; {fresh} reshaped parameter(s) with fresh moments" if fresh else ""))

    def _truncate_update_log(self, update: int) -> None:
        """Forget log lines of updates after ``update`` (written by a run that was killed later); atomically,
        so that a full disk or a kill leaves the log as it was."""
        for path in (self.exp_dir / "updates.jsonl", self.exp_dir / "valid.jsonl"):
            if self.info.is_main and path.exists():
                lines = [line for line in path.read_text().splitlines() if json.loads(line)["update"] <= update]
                with self._writing(path):
                    write_text_atomic(path, "".join(line + "\n" for line in lines))

    # ---------------------------------------------------------------- loop
    def _autocast(self):
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        return torch.autocast(self.info.device.type, dtype=dtype, enabled=dtype is not None)

    def _to_device(self, batch):
        if self.info.device.type == "cpu":
            return batch
        return dataclasses.replace(batch, inputs=batch.inputs.to(self.info.device, non_blocking=True),
                                   lengths=batch.lengths.to(self.info.device),
                                   targets=None if batch.targets is None else batch.targets.to(self.info.device))

    def _update(self, micro_batches) -> tuple[dict[str, float], str | None]:
        """One optimizer update over accumulated micro-batches: the metric sums of the global batch (every
        rank's), and why the update was skipped (None when it was done)."""
        self.ddp_model.train()
        self.task.before_update(self.model, self.state["update"])
        sums: dict[str, float] = {}
        finite = True
        for index, batch in enumerate(micro_batches):
            batch = self.train_transform(self._to_device(batch), self.generator)
            with self._gradient_sync(index == len(micro_batches) - 1):
                with self._autocast():
                    out = self.task.train_step(self.ddp_model, batch, self.generator)
                if not torch.isfinite(out.loss):
                    finite = False
                    logger.warning("update %d: non-finite loss %s on utterances %s", self.state["update"] + 1,
                                   out.loss.item(), ", ".join(batch.utterances[:5]))
                self.scaler.scale(out.loss / len(micro_batches)).backward()
            for key, value in out.sums.items():
                sums[key] = sums.get(key, 0.0) + value
        sums = all_reduce_sums({**sums, "bad_ranks": float(not finite)}, self.info)  # figures of the global batch
        skipped = "non-finite loss" if sums.pop("bad_ranks") else None
        self.scaler.unscale_(self.optimizer)  # (every method of a disabled scaler does nothing)
        grad_norm = sharding.full_norm(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm))
        sums["grad_norm"] = float(grad_norm)
        if skipped is None and not torch.isfinite(grad_norm):
            skipped = "fp16 gradient overflow" if self.scaler.is_enabled() else "non-finite gradient"
        if skipped is None:
            self.scaler.step(self.optimizer)
            self.scheduler.step()
        self.scaler.update()  # after an overflow: a lower loss scale
        self.optimizer.zero_grad(set_to_none=True)
        return sums, skipped

    def _gradient_sync(self, sync: bool):
        """A context in which backward passes reduce gradients over ranks (``sync``) or only accumulate."""
        if self.sharded:
            self.model.set_requires_gradient_sync(sync)
            return contextlib.nullcontext()
        if sync or self.info.world_size == 1:
            return contextlib.nullcontext()
        return self.ddp_model.no_sync()

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Summed task metrics over the validation set (same masks every time: fixed seed)."""
        self.ddp_model.eval()
        generator = torch.Generator().manual_seed(self.config.seed)
        every = self._sampler(self.valid_set, shuffle=False).epoch_batches(0)
        batches = every[self.info.rank::self.info.world_size]
        counted = len(batches)
        if self.sharded:  # every rank runs as many forwards (each gathers weights from all); extra ones not counted
            batches += every[:math.ceil(len(every) / self.info.world_size) - counted]
        loader = torch.utils.data.DataLoader(self.valid_set, batch_sampler=batches, collate_fn=collate)
        sums: dict[str, float] = {}
        for index, batch in enumerate(loader):
            batch = self.valid_transform(self._to_device(batch), generator)
            with self._autocast():
                values = self.task.valid_step(self.model, batch, generator)
            if index < counted:
                for key, value in values.items():
                    sums[key] = sums.get(key, 0.0) + value
        return self.task.summarize(all_reduce_sums(sums, self.info))

    def fit(self) -> dict[str, float]:
        """Train to ``max_updates``; returns the last validation summary (empty without a valid set)."""
        self.exp_dir.mkdir(parents=True, exist_ok=True)
        with self._exp_dir_lock():
            self._setup_logging()
            try:
                if not self.resume() and self.started_from:
                    logger.info(self.started_from)
                if self.run_config is not None and self.info.is_main:
                    with self._writing(self.exp_dir / "config.yaml"):
                        write_text_atomic(self.exp_dir / "config.yaml",
                                          yaml.safe_dump(self.run_config, sort_keys=False))
                return self._train()
            finally:  # a later trainer in this process logs to its own train.log only
                for handler in [h for h in logger.handlers if isinstance(h, _TrainLog)]:
                    logger.removeHandler(handler)
                    with contextlib.suppress(OSError):  # a full disk has been reported already
                        handler.close()

    @contextlib.contextmanager
    def _exp_dir_lock(self):
        """Hold ``exp_dir/train.lock`` while training (on rank 0: a job's ranks share the dir); a second trainer
        of the dir is refused, naming the holder. A POSIX lock: the kernel drops it when its process ends, however
        it ends, and the data loader's forked workers do not inherit it."""
        if not self.info.is_main:
            yield
            return
        path = self.exp_dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno not in (errno.EACCES, errno.EAGAIN):  # a file system without locks
                    logger.warning("cannot lock %s (%s): nothing keeps a second trainer from writing %s",
                                   path, err.strerror, self.exp_dir)
                else:
                    holder = os.read(fd, 256).decode(errors="replace").strip() or "a process"
                    raise TrainingError(f"{self.exp_dir}: another trainer is writing this exp dir ({holder} holds "
                                        f"{path}); wait for it to end, or give another exp dir") from None
            with self._writing(path):
                os.ftruncate(fd, 0)
                os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
            yield
        finally:
            os.close(fd)  # (and with it the lock)

    def _train(self) -> dict[str, float]:
        self.curves_due = time.monotonic() + CURVES_INTERVAL_SECONDS
        logger.info("precision %s (configured %s) on %s, %d thread(s) per rank", self.precision,
                    self.config.precision, self.info.device, torch.get_num_threads())
        warning = emulation_warning(self.precision, self.info.device)
        if warning:
            logger.warning(warning)
        logger.info("batch transforms: %s in training, %s in validation", self._describe(self.train_transform),
                    self._describe(self.valid_transform))
        self._log_language_mix()
        writer = self._tensorboard()
        config = self.config
        summary: dict[str, float] = {}
        bar = tqdm(total=config.max_updates, initial=self.state["update"], disable=not self.info.is_main,
                   unit="upd", desc=f"train {self.exp_dir.name}", dynamic_ncols=True, mininterval=5)
        window: dict[str, float] = {}
        started, audio_seconds = time.time(), 0.0
        seconds_before = self.state["train_seconds"]
        micro: list = []
        rate = input_rate(self.train_set)
        watchdog = self.watchdog
        self.stage = None
        watchdog.beat()
        with watchdog:
            while self.state["update"] < config.max_updates:
                stage = self._language_stage_at(self.state["update"])
                if stage != self.state["language_stage"]:
                    self._enter_language_stage(stage)
                batches = self.sampler.epoch_batches(self.state["epoch"])
                loader = torch.utils.data.DataLoader(
                    self.train_set, batch_sampler=batches[self.state["batch_index"]:], collate_fn=collate,
                    num_workers=config.num_workers, generator=torch.Generator().manual_seed(0),
                    persistent_workers=False)
                for batch in loader:
                    self.state["batch_index"] += 1
                    micro.append(batch)
                    if len(micro) < config.accum_steps:
                        continue
                    audio_seconds += sum(int(b.lengths.sum()) for b in micro) / rate
                    sums, skipped = self._update(micro)
                    watchdog.beat()
                    micro = []
                    if seconds_before is not None:
                        self.state["train_seconds"] = seconds_before + time.time() - started
                    if skipped:
                        self._skip_update(skipped)
                    self._watch_loss_scale()
                    if skipped:
                        continue
                    self.state["update"] += 1
                    self.state["bad_updates"] = 0
                    bar.update()
                    for key, value in sums.items():
                        window[key] = window.get(key, 0.0) + value
                    self._log_update(sums, writer, bar)
                    update = self.state["update"]
                    if update % config.log_interval == 0 or update == config.max_updates:
                        self._log_window(window, started, audio_seconds)
                        window = {}
                    is_last = update == config.max_updates
                    best = False
                    if self.valid_set is not None and (update % config.valid_interval == 0 or is_last):
                        summary = self.validate()
                        watchdog.beat()
                        score = self.task.valid_score(summary)
                        if not math.isfinite(score):
                            logger.warning("update %d: the validation score is %s (%s): this checkpoint cannot be "
                                           "best.pt", update, score, " ".join(f"{k}={v}" for k, v in summary.items()
                                                                              if not math.isfinite(v)))
                        previous = self.state["best_score"]
                        best = score > previous if self.higher_is_better else score < previous
                        if best:
                            self.state["best_score"] = score
                        self._log_summary("valid", summary, writer)
                    if is_last and not math.isfinite(self.state["best_score"]):  # no finite score: the final one
                        if self.valid_set is not None:
                            logger.warning("update %d: no validation gave a finite score: best.pt is the final "
                                           "checkpoint", update)
                        best = True
                    if update % config.save_interval == 0 or is_last or best:
                        self.save(best)
                        barrier(self.info)
                        watchdog.beat()
                    if is_last or self._language_stage_at(update) != self.state["language_stage"]:
                        break
                else:
                    self.state["epoch"] += 1
                    self.state["batch_index"] = 0
        bar.close()
        if time.monotonic() >= self.curves_due or (self.exp_dir / CURVES).exists():
            self._draw_curves()
        if summary:
            logger.info("final validation: %s", " ".join(f"{k}={v:.4g}" for k, v in summary.items()))
        if writer is not None:
            with self._writing(self.exp_dir / "tensorboard"):
                writer.close()
        cleanup(self.info)
        return summary

    def _doing(self) -> str:
        """What this rank is at, for the watchdog's message."""
        return self.stage or f"update {self.state['update'] + 1} (epoch {self.state['epoch']})"

    def _skip_update(self, reason: str) -> None:
        """Log and count a skipped update; raise after ``max_bad_updates`` non-finite ones in a row (fp16
        overflows do not count: the loss scale answers them)."""
        self.state["skipped_updates"] += 1
        if reason != "fp16 gradient overflow":
            self.state["bad_updates"] += 1
        scale = f", loss scale now {self.scaler.get_scale():g}" if self.scaler.is_enabled() else ""
        logger.warning("update %d skipped: %s%s; %d update(s) skipped in all", self.state["update"] + 1, reason,
                       scale, self.state["skipped_updates"])
        if self.state["bad_updates"] >= self.config.max_bad_updates:
            raise TrainingError(f"{self.state['bad_updates']} consecutive updates with a non-finite loss or gradient "
                                f"(at update {self.state['update'] + 1}, {self.state['skipped_updates']} skipped in "
                                f"all); see {self.exp_dir / 'train.log'}; {self._newest_checkpoint()}")

    def _draw_curves(self) -> None:
        """Redraw ``training_curves.png`` from the update and validation logs (the main process, once an
        update is logged)."""
        log = self.exp_dir / "updates.jsonl"
        if self.info.is_main and log.exists() and log.stat().st_size:
            with self._writing(self.exp_dir / CURVES):
                plot_curves({self.exp_dir.name: self.exp_dir}, self.exp_dir / CURVES, self.config.log_interval)
        self.curves_due = time.monotonic() + CURVES_INTERVAL_SECONDS

    @contextlib.contextmanager
    def _writing(self, path: Path):
        """A block that writes ``path``: an OSError (a full disk) stops the run, naming it and the newest checkpoint."""
        try:
            yield
        except OSError as err:
            self._write_failed(path, err)

    def _write_failed(self, path: Path, err: Exception) -> NoReturn:
        cause = err if isinstance(err, OSError) else err.__context__  # torch's writer: a RuntimeError after an OSError
        reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else f"{err} (is the disk full?)"
        raise TrainingError(f"cannot write {path} at update {self.state['update']}: {reason}; "
                            f"{self._newest_checkpoint()}, intact; free space and run again to resume") from err

    def _newest_checkpoint(self) -> str:
        if self.saved_update is None:
            return "no checkpoint was saved yet"
        return f"the newest checkpoint is {self.ckpt_dir / 'last.pt'} (update {self.saved_update})"

    def _watch_loss_scale(self) -> None:
        """fp16: count updates with the loss scale under its floor; after ``loss_scale_patience`` in a row,
        go on in bf16 (``on_scale_collapse``, where the device has it natively) or stop."""
        config = self.config
        if not self.scaler.is_enabled():
            return
        scale = self.scaler.get_scale()
        low = self.state["low_scale_updates"] = self.state["low_scale_updates"] + 1 if scale < config.loss_scale_floor else 0
        if low < config.loss_scale_patience:
            return
        collapse = (f"the fp16 loss scale stayed under {config.loss_scale_floor:g} for {low} updates (now {scale:g}, "
                    f"at update {self.state['update'] + 1}): the gradients do not fit in fp16")
        if config.on_scale_collapse == "bf16" and native_bf16(self.info.device):
            logger.warning("%s; training goes on in bf16", collapse)
            self._fall_back_to_bf16()
            return
        remedy = ("bf16, the fallback, is not native on this device; " if config.on_scale_collapse == "bf16" else "")
        raise TrainingError(f"{collapse}; {remedy}train in bf16 or fp32 (trainer.precision); {self._newest_checkpoint()}")

    def _fall_back_to_bf16(self) -> None:
        self.precision = "bf16"
        self.scaler = torch.amp.GradScaler(self.info.device.type, enabled=False)
        self.state["low_scale_updates"] = 0

    # ---------------------------------------------------------------- logging
    @staticmethod
    def _describe(transforms: Compose) -> str:
        return ", ".join(map(repr, transforms.transforms)) or "none"

    def _setup_logging(self) -> None:
        """Log to ``train.log`` too (rank 0); a write that fails there stops this trainer's run."""
        if not self.info.is_main:
            return
        path = (self.exp_dir / "train.log").absolute()
        handler = next((h for h in logger.handlers if isinstance(h, _TrainLog) and Path(h.baseFilename) == path), None)
        if handler is None:
            handler = _TrainLog(path)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
        handler.on_error = self._write_failed

    def _tensorboard(self):
        if not self.info.is_main:
            return None
        from torch.utils.tensorboard import SummaryWriter

        with self._writing(self.exp_dir / "tensorboard"):
            return SummaryWriter(str(self.exp_dir / "tensorboard"))

    def _log_update(self, sums: dict[str, float], writer, bar) -> None:
        if not self.info.is_main:
            return
        figures = self.task.summarize(sums)
        rates = self.scheduler.get_last_lr()
        named = {f"lr_{group['name']}": rate for group, rate in zip(self.optimizer.param_groups, rates)
                 if "name" in group and len(rates) > 1}
        record = {"update": self.state["update"], "lr": rates[0], **named,
                  "grad_norm": sums.get("grad_norm", float("nan")), **figures}
        with self._writing(self.exp_dir / "updates.jsonl"), open(self.exp_dir / "updates.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        with self._writing(self.exp_dir / "tensorboard"):
            for key, value in record.items():
                if key != "update":
                    writer.add_scalar(f"train/{key}", value, self.state["update"])
        bar.set_postfix({k: f"{v:.3g}" for k, v in list(figures.items())[:3]}, refresh=False)

    def _log_window(self, window: dict[str, float], started: float, audio_seconds: float) -> None:
        if not window:
            return
        figures = self.task.summarize(window)
        if self.info.is_main:
            for warning in self.task.health_warnings(figures):
                logger.warning("update %d: %s", self.state["update"], warning)
        elapsed = time.time() - started
        text = " ".join(f"{k}={v:.4g}" for k, v in figures.items())
        skipped = self.state["skipped_updates"]
        logger.info("update %d epoch %d lr %.3g | %s | %.1f s audio/s%s", self.state["update"], self.state["epoch"],
                    self.scheduler.get_last_lr()[0], text, audio_seconds * self.info.world_size / max(elapsed, 1e-9),
                    f" | {skipped} update(s) skipped so far" if skipped else "")

    def _log_summary(self, name: str, summary: dict[str, float], writer) -> None:
        if not self.info.is_main:
            return
        logger.info("update %d %s | %s", self.state["update"], name,
                    " ".join(f"{k}={v:.4g}" for k, v in summary.items()))
        with self._writing(self.exp_dir / f"{name}.jsonl"), open(self.exp_dir / f"{name}.jsonl", "a") as f:
            f.write(json.dumps({"update": self.state["update"], **summary}) + "\n")
        if time.monotonic() >= self.curves_due:
            self._draw_curves()
        with self._writing(self.exp_dir / "tensorboard"):
            for key, value in summary.items():
                writer.add_scalar(f"{name}/{key}", value, self.state["update"])
