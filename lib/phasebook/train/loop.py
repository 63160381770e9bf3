"""The training loop: one code path from a 0.2M-parameter CPU run to a 100M+ GPU run.

A run lives in `run_dir` (checkpoints/ and metrics.jsonl) and is a pure function of its
configuration, model initialisation and data: killed at any moment and started again, it
resumes from its last checkpoint and produces the same losses, bit for bit on CPU. A
non-finite loss or gradient, or a loss spike, rewinds to the last checkpoint and skips the
offending data, recorded in the checkpoint state, so the skip is itself reproducible.

Data indexing: optimizer step `s` consumes data slot `p` (the s-th slot not skipped), whose
micro-batches are batch indices p·grad_accum + m. A data source whose batch `i` of size `b`
holds samples i·b ... (i+1)·b - 1 therefore gives the same samples for any grad_accum.

Data parallelism (torchrun; `parallel` "ddp" or "fsdp"): every rank runs this loop on the same
run_dir. Micro-batch index i is one global batch of batch_size / grad_accum sequences, of which
rank r reads rows r, r + W, r + 2W, ... (`BatchSource.batch(i, rows, seq_len, r, W)`), so any
world size sees the same samples per step, and a run resumes on another world size. Gradients
are averaged over ranks once per step, in the last micro-batch's backward; the logged loss and
the evaluation loss are means over all ranks; rank 0 alone writes metrics.jsonl.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributed.checkpoint import CheckpointException
from tqdm import tqdm

from phasebook.errors import PhasebookError, Problem
from phasebook.train.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    read_state,
    save_checkpoint,
    verify_checkpoint,
)
from phasebook.train.distributed import (
    STRATEGIES,
    World,
    broadcast_object,
    full_tensor,
    gradient_sync,
    init_world,
    lost_peer,
    mean_over_ranks,
    wrap_model,
)
from phasebook.train.distributed import resolve_device as resolve_device  # re-exported: bench.train uses it
from phasebook.train.metrics import MetricsLog, mfu, peak_flops
from phasebook.train.optim import OptimizerConfig, build_optimizer
from phasebook.train.precision import PRECISIONS, autocast, prepare_model
from phasebook.train.schedules import ScheduleConfig, lr_multiplier, stable_end
from phasebook.validation import Checks, ConfigError, to_mapping

METRICS_FILE = "metrics.jsonl"
# Fields a resumed run may change without invalidating what its checkpoints computed.
RESUMABLE_CHANGES = frozenset({"steps", "eval_interval", "eval_batches", "checkpoint_interval",
                               "keep_checkpoints", "max_rewinds", "log_interval", "device", "compile",
                               "progress", "parallel"})


class BatchSource(Protocol):
    def batch(self, index: int, batch_size: int, seq_len: int, rank: int = 0,
              world_size: int = 1) -> tuple[Tensor, Tensor]: ...


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000  # optimizer steps
    batch_size: int = 32  # sequences per optimizer step (over all ranks), in grad_accum micro-batches
    seq_len: int = 128
    grad_accum: int = 1
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    clip: float = 1.0  # max gradient norm; 0 disables clipping (the norm is still reported)
    precision: Literal["fp32", "bf16", "fp8"] = "fp32"
    seed: int = 0
    eval_interval: int = 100  # steps between evaluations; 0: only at the end
    eval_batches: int = 8  # evaluation batches of batch_size sequences: the same ones every time
    checkpoint_interval: int = 250
    keep_checkpoints: int = 2  # newest ordinary checkpoints kept (WSD branch points are kept too)
    spike_factor: float = 3.0  # loss > factor x mean of recent losses is a spike (after warm-up); 0: off
    spike_margin: float = 0.5  # ... and exceeds that mean by this many nats, so tiny losses don't trip it
    spike_window: int = 50  # recent losses in that mean
    max_rewinds: int = 5
    log_interval: int = 10
    device: str = "auto"  # "auto" (cuda if available, else cpu), "cpu", "cuda", "cuda:1", ...
    compile: bool = False
    progress: bool = True
    parallel: Literal["none", "ddp", "fsdp"] = "none"  # how torchrun's ranks share the work (see module doc)

    def __post_init__(self) -> None:
        c = Checks(self)
        for name in ("steps", "batch_size", "seq_len", "grad_accum", "eval_batches", "checkpoint_interval",
                     "keep_checkpoints", "spike_window", "log_interval"):
            c.range(name, 1, integer=True)
        for name in ("seed", "eval_interval", "max_rewinds"):
            c.range(name, 0, integer=True)
        if isinstance(self.batch_size, int) and isinstance(self.grad_accum, int) and self.grad_accum > 0:
            c.rule(self.batch_size % self.grad_accum == 0, "batch_size",
                   f"must be a multiple of grad_accum ({self.grad_accum}).")
        c.rule(isinstance(self.optimizer, OptimizerConfig), "optimizer", "must be an OptimizerConfig.")
        c.rule(isinstance(self.schedule, ScheduleConfig), "schedule", "must be a ScheduleConfig.")
        if (isinstance(self.schedule, ScheduleConfig) and isinstance(self.steps, int)
                and self.schedule.warmup_steps > self.steps):
            c.fail("schedule", f"warmup_steps is {self.schedule.warmup_steps}; must not exceed steps "
                   f"({self.steps}).")
        c.range("clip", 0.0)
        c.choice("precision", PRECISIONS)
        c.range("spike_factor", 0.0)
        if isinstance(self.spike_factor, int | float) and self.spike_factor > 0:
            c.rule(self.spike_factor > 1, "spike_factor", "must be above 1 (or 0 to turn detection off).")
        c.range("spike_margin", 0.0)
        c.rule(isinstance(self.device, str)
               and (self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda", "mps")),
               "device", "allowed: 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'.")
        c.rule(isinstance(self.compile, bool), "compile", "must be true or false.")
        c.rule(isinstance(self.progress, bool), "progress", "must be true or false.")
        c.choice("parallel", STRATEGIES)
        if self.parallel == "fsdp" and isinstance(self.optimizer, OptimizerConfig):
            c.rule(self.optimizer.name != "muon", "parallel",
                   "FSDP splits every matrix over the ranks, but optimizer 'muon' orthogonalises whole "
                   "matrices; use parallel 'ddp' with muon, or optimizer 'adamw' with fsdp.")
        c.done()


@dataclass(frozen=True)
class TrainResult:
    steps: int
    final_loss: float | None
    final_val_loss: float | None
    tokens_seen: int
    tokens_per_s: float  # over the whole run's training time (evaluation and checkpoints excluded)
    mfu: float | None  # None where the device's peak is unknown (CPUs)
    wall_s: float
    rewinds: int
    skipped: list[int]  # data indices never trained on
    metrics: list[dict[str, Any]]
    run_dir: Path

    def summary(self) -> dict[str, Any]:
        """The figures a stored run's summary starts with (all but the metrics and the folder)."""
        return {"steps": self.steps, "final_loss": self.final_loss, "final_val_loss": self.final_val_loss,
                "tokens_seen": self.tokens_seen, "tokens_per_s": self.tokens_per_s, "wall_s": self.wall_s,
                "rewinds": self.rewinds, "skipped": self.skipped}


@dataclass
class _Progress:
    """What the loop carries from step to step; saved in every checkpoint's state.json."""

    step: int = 0
    skipped: list[int] = field(default_factory=list)
    recent_losses: list[float] = field(default_factory=list)
    rewinds: int = 0
    tokens: int = 0
    train_s: float = 0.0
    elapsed_s: float = 0.0
    loss: float | None = None
    ce_loss: float | None = None
    val_loss: float | None = None

    def to_state(self, config: dict[str, Any]) -> dict[str, Any]:
        state = {k: v for k, v in vars(self).items() if k != "step"}
        return {**state, "config": config}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> _Progress:
        return cls(**{k: v for k, v in state.items() if k in cls.__dataclass_fields__})


def rows_per_rank(cfg: TrainConfig, world_size: int) -> int:
    """Sequences each rank reads per micro-batch: batch_size / (grad_accum · world_size)."""
    share = cfg.grad_accum * world_size
    if cfg.batch_size % share:
        raise ConfigError([Problem("TrainConfig", "batch_size", (
            f"is {cfg.batch_size}; with grad_accum {cfg.grad_accum} on {world_size} ranks it must be a "
            f"multiple of grad_accum × world size = {share}, so that every rank reads the same number of "
            "sequences per micro-batch."))])
    return cfg.batch_size // share


def data_indices(step: int, grad_accum: int, skipped: Iterable[int]) -> list[int]:
    """The micro-batch data indices of optimizer step `step`, given the skipped data indices."""
    slot = step
    for bad in sorted({i // grad_accum for i in skipped}):
        if bad > slot:
            break
        slot += 1
    return [slot * grad_accum + m for m in range(grad_accum)]


def micro_step(model: nn.Module, x: Tensor, y: Tensor, *, precision: str, device: torch.device,
               loss_scale: float) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """Forward and backward of one micro-batch; returns its (detached) loss, CE loss and the
    output's extra `metrics` (post-training objectives report reward, KL, … there; may be absent)."""
    with autocast(precision, device):
        out = model(x, y)
    (out.loss * loss_scale).backward()
    extra = {name: value.detach().float() for name, value in (getattr(out, "metrics", None) or {}).items()}
    return out.loss.detach().float(), out.ce_loss.detach().float(), extra


def accumulate_gradients(model: nn.Module, batches: Sequence[tuple[Tensor, Tensor]], *, precision: str,
                         device: torch.device, sync_module: nn.Module | None = None,
                         ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """Gradients of the mean loss over equal-sized micro-batches; returns the mean (loss, CE loss,
    extra metrics by name).

    `sync_module` (default `model`): the DDP or FSDP module whose gradients are averaged over
    ranks; only the last micro-batch's backward does that, the others accumulate locally.
    """
    losses, ces, extras = [], [], []
    last = len(batches) - 1
    for m, (x, y) in enumerate(batches):
        with gradient_sync(model if sync_module is None else sync_module, enabled=m == last):
            loss, ce, extra = micro_step(model, x, y, precision=precision, device=device,
                                         loss_scale=1.0 / len(batches))
        losses.append(loss)
        ces.append(ce)
        extras.append(extra)
    means = {name: torch.stack([e[name] for e in extras]).mean() for name in extras[0]}
    return torch.stack(losses).mean(), torch.stack(ces).mean(), means


def gradient_norm(params: Sequence[nn.Parameter]) -> Tensor:
    """The global L2 norm of the gradients, before any clipping (of all ranks' shards under FSDP)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return full_tensor(torch.nn.utils.get_total_norm(grads, 2.0))


def optimizer_step(optimizer: torch.optim.Optimizer, params: Sequence[nn.Parameter], norm: Tensor,
                   clip: float) -> None:
    """Clip the gradients to norm `clip` (when > 0), step, and clear the gradients."""
    if clip > 0:
        torch.nn.utils.clip_grads_with_norm_([p for p in params if p.grad is not None], clip, norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def set_learning_rates(optimizer: torch.optim.Optimizer, multiplier: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * multiplier


@torch.no_grad()
def evaluate(model: nn.Module, data: BatchSource, cfg: TrainConfig, device: torch.device,
             world: World | None = None) -> float:
    """Mean cross-entropy over the first `eval_batches` batches of `data` (of `batch_size` sequences,
    read in micro-batches: the same sequences whatever grad_accum and world size are). With a
    `world` of several ranks (every rank calls it) each rank evaluates its rows of every batch."""
    rank, world_size = (world.rank, world.world_size) if world is not None else (0, 1)
    rows = rows_per_rank(cfg, world_size)
    was_training = model.training
    model.eval()
    losses = []
    for i in range(cfg.eval_batches * cfg.grad_accum):
        x, y = data.batch(i, rows, cfg.seq_len, rank, world_size)
        with autocast(cfg.precision, device):
            out = model(x.to(device, non_blocking=True), y.to(device, non_blocking=True))
        losses.append(out.ce_loss.detach().float())
    model.train(was_training)
    local = torch.stack(losses).mean()
    return (mean_over_ranks(world, local) if world is not None else local).item()


def _plain(obj: Any) -> Any:
    """JSON-ready copy (tuples become lists), so saved and current configs compare equal."""
    return json.loads(json.dumps(obj))


def _check_resumable(saved: dict[str, Any], current: dict[str, Any], ckpt: Path) -> None:
    changed = sorted(k for k in current.keys() | saved.keys()
                     if k not in RESUMABLE_CHANGES and saved.get(k) != current.get(k))
    if changed:
        details = "; ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in changed)
        raise PhasebookError(f"{ckpt} was written by a run with another configuration ({details}). "
                             "Use a new run_dir for the new configuration, or restore the old values.")


class _Run:
    """One call of `train`: the objects and bookkeeping shared by its steps."""

    def __init__(self, model: nn.Module, data: BatchSource, cfg: TrainConfig, run_dir: Path,
                 eval_data: BatchSource | None, on_log: Callable[[dict[str, Any]], None] | None,
                 init_from: Path | None = None):
        self.cfg, self.data, self.eval_data, self.on_log = cfg, data, eval_data, on_log
        self.run_dir, self.init_from = run_dir, init_from
        self.world = init_world(cfg.parallel, cfg.device)
        self.rows = rows_per_rank(cfg, self.world.world_size)
        self.device = self.world.device
        prepare_model(model, cfg.precision)  # fp8: block linears become Fp8Linear (same parameters)
        self.model = model.to(self.device)  # what checkpoints hold: plain, or sharded in place by FSDP
        self.model.train()
        self.wrapped = wrap_model(self.model, self.world, cfg.precision)  # DDP: a wrapper around it
        self.forward = torch.compile(self.wrapped) if cfg.compile else self.wrapped
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.model, cfg.optimizer)
        self.metrics = MetricsLog(run_dir / METRICS_FILE)  # written by rank 0 only
        self.config = _plain(to_mapping(cfg))
        self.wsd_branch = stable_end(cfg.steps, cfg.schedule) if cfg.schedule.name == "wsd" else None
        flops = getattr(model, "flops_per_token", None)
        self.flops_per_token = float(flops(cfg.seq_len)) if callable(flops) else None
        self.peak = peak_flops(self.device, cfg.precision)
        self.session_start = time.perf_counter()
        self.elapsed_base = 0.0
        self.window_tokens, self.window_s = 0, 0.0
        self.current_step: int | None = None  # the step being trained, for error messages

    def elapsed(self) -> float:
        return self.elapsed_base + time.perf_counter() - self.session_start

    def latest(self) -> Path | None:
        """Rank 0's latest checkpoint, on every rank: the ranks must agree on what they load."""
        return broadcast_object(self.world, latest_checkpoint(self.run_dir) if self.world.is_main else None)

    def start(self) -> _Progress:
        """Resume from the latest checkpoint, or start afresh with a step-0 checkpoint (from the
        weights and optimizer state of `init_from`, when given)."""
        ckpt = self.latest()
        if ckpt is None:
            if self.init_from is not None:
                self.initialise_from(self.init_from)
            seed = self.cfg.seed + self.world.rank  # dropout and the like differ between ranks
            torch.manual_seed(seed)
            np.random.seed(seed)
            random.seed(seed)
            progress = _Progress()
            if self.world.is_main:
                self.metrics.truncate_after(0)
            self.checkpoint(progress)
            return progress
        verify_checkpoint(ckpt, world=self.world)
        _check_resumable(read_state(ckpt).get("config", {}), self.config, ckpt)
        state = load_checkpoint(ckpt, self.model, self.optimizer, restore_rng=True, verify=False,
                                world=self.world)
        progress = _Progress.from_state(state)
        if progress.step > self.cfg.steps:
            raise PhasebookError(f"{ckpt} is at step {progress.step}, past steps={self.cfg.steps}; "
                                 "raise steps or use a new run_dir.")
        self.elapsed_base = progress.elapsed_s
        if self.world.is_main:
            self.metrics.truncate_after(progress.step)
        return progress

    def initialise_from(self, ckpt: Path) -> None:
        """Load another run's checkpoint as this run's starting point: its weights and optimizer
        state (moments, per-parameter step counts), nothing else. Its step, random generators and
        skipped data stay with it, and so do its optimizer hyperparameters: the param groups keep
        this run's peak rates and weight decay. Verified before anything is written."""
        verify_checkpoint(ckpt, world=self.world)
        own_settings = [{k: v for k, v in group.items() if k != "params"}
                        for group in self.optimizer.param_groups]
        load_checkpoint(ckpt, self.model, self.optimizer, verify=False, world=self.world)
        for group, settings in zip(self.optimizer.param_groups, own_settings, strict=True):
            group.update(settings)

    def checkpoint(self, progress: _Progress) -> None:
        progress.elapsed_s = self.elapsed()
        save_checkpoint(self.run_dir, progress.step, self.model, self.optimizer,
                        progress.to_state(self.config), keep=self.cfg.keep_checkpoints,
                        keep_forever=progress.step == self.wsd_branch, world=self.world)

    def rewind(self, progress: _Progress, bad: list[int], reason: str) -> _Progress:
        """Back to the latest checkpoint, with the offending data indices added to the skipped ones."""
        rewinds = progress.rewinds + 1
        skipped = sorted({*progress.skipped, *bad})
        if rewinds > self.cfg.max_rewinds:
            raise PhasebookError(
                f"training in {self.run_dir} is unstable: step {progress.step + 1} had {reason} after "
                f"{self.cfg.max_rewinds} rewinds already (skipped data indices: {skipped}). Lower the "
                "learning rate, raise warmup_steps or clip, or raise max_rewinds.")
        ckpt = self.latest()
        if ckpt is None:
            raise PhasebookError(f"{self.run_dir}: no checkpoint to rewind to (deleted during the run?).")
        state = load_checkpoint(ckpt, self.model, self.optimizer, restore_rng=True, world=self.world)
        restored = _Progress.from_state(state)
        restored.skipped, restored.rewinds = skipped, rewinds
        if self.world.is_main:
            self.metrics.truncate_after(restored.step)
        self.window_tokens, self.window_s = 0, 0.0
        return restored

    def is_spike(self, progress: _Progress, loss: float) -> bool:
        cfg = self.cfg
        if cfg.spike_factor == 0 or progress.step < cfg.schedule.warmup_steps or not progress.recent_losses:
            return False
        mean = sum(progress.recent_losses) / len(progress.recent_losses)
        return loss > cfg.spike_factor * mean and loss > mean + cfg.spike_margin

    def step(self, progress: _Progress) -> tuple[_Progress, dict[str, Any] | None]:
        """One optimizer step (or a rewind); returns the new progress and the step's values.

        Every rank reaches the same verdict (finite, spike): loss and gradient norm are global.
        """
        cfg, world = self.cfg, self.world
        t0 = time.perf_counter()
        multiplier = lr_multiplier(progress.step, cfg.steps, cfg.schedule)
        set_learning_rates(self.optimizer, multiplier)
        indices = data_indices(progress.step, cfg.grad_accum, progress.skipped)
        batches = []
        for index in indices:
            x, y = self.data.batch(index, self.rows, cfg.seq_len, world.rank, world.world_size)
            batches.append((x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)))
        self.optimizer.zero_grad(set_to_none=True)
        loss_t, ce_t, extra_t = accumulate_gradients(self.forward, batches, precision=cfg.precision,
                                                     device=self.device, sync_module=self.wrapped)
        norm_t = gradient_norm(self.params)
        means = mean_over_ranks(world, torch.stack([loss_t, ce_t, *extra_t.values()]))
        norm_1 = norm_t.float().reshape(1).to(means.device)
        loss, ce, *extra_values, norm = torch.cat([means, norm_1]).tolist()
        extra = dict(zip(extra_t, extra_values, strict=True))
        if not (math.isfinite(loss) and math.isfinite(norm)):
            reason = f"a non-finite loss ({loss}) or gradient norm ({norm})"
            return self.rewind(progress, indices, reason), None
        if self.is_spike(progress, loss):
            return self.rewind(progress, indices, f"a loss spike ({loss:.4g})"), None
        optimizer_step(self.optimizer, self.params, norm_t, cfg.clip)
        progress.step += 1
        progress.tokens += cfg.batch_size * cfg.seq_len
        progress.recent_losses = [*progress.recent_losses, loss][-cfg.spike_window:]
        progress.loss, progress.ce_loss = loss, ce
        seconds = time.perf_counter() - t0
        progress.train_s += seconds
        self.window_tokens += cfg.batch_size * cfg.seq_len
        self.window_s += seconds
        return progress, {"loss": loss, "ce_loss": ce, "grad_norm": norm, "multiplier": multiplier,
                          "extra": extra}

    def log(self, progress: _Progress, values: dict[str, Any], val_loss: float | None) -> dict[str, Any]:
        tokens_per_s = self.window_tokens / self.window_s if self.window_s > 0 else 0.0
        self.window_tokens, self.window_s = 0, 0.0
        record: dict[str, Any] = {
            "step": progress.step, "loss": values["loss"], "ce_loss": values["ce_loss"],
            "lr": self.cfg.optimizer.lr * values["multiplier"], "grad_norm": values["grad_norm"],
            "tokens": progress.tokens, "tokens_per_s": tokens_per_s,
            "mfu": mfu(tokens_per_s, self.flops_per_token, self.peak), "elapsed_s": self.elapsed()}
        record.update(values["extra"])  # an objective's own metrics (see micro_step)
        if self.cfg.optimizer.name == "muon":
            record["muon_lr"] = self.cfg.optimizer.muon_lr * values["multiplier"]
        if val_loss is not None:
            record["val_loss"] = val_loss
        if self.world.is_main:
            self.metrics.append(record)
        if self.on_log is not None:
            self.on_log(dict(record))
        return record

    def lost_contact(self) -> PhasebookError:
        ckpt = latest_checkpoint(self.run_dir)
        when = f"in step {self.current_step}" if self.current_step is not None else "while starting"
        where = (f"the last good checkpoint is {ckpt}" if ckpt is not None
                 else f"there is no checkpoint in {self.run_dir} yet")
        return PhasebookError(
            f"rank {self.world.rank} lost contact with the other ranks {when} (did another rank die?); "
            f"{where} — run the same command again, or launch with torchrun --max-restarts N, to "
            "resume from it.")

    def run(self) -> TrainResult:
        """Train to the end; a collective that fails because another rank died or stopped
        answering becomes an error naming this rank, the step and the checkpoint to resume from."""
        try:
            return self.train_steps()
        except (RuntimeError, CheckpointException) as exc:
            if self.world.world_size > 1 and lost_peer(exc):
                raise self.lost_contact() from exc
            raise

    def train_steps(self) -> TrainResult:
        cfg, world = self.cfg, self.world
        progress = self.start()
        interactive = sys.stderr.isatty()
        bar = tqdm(total=cfg.steps, initial=progress.step, disable=not (cfg.progress and world.is_main),
                   file=sys.stderr, mininterval=0.5 if interactive else 10.0, desc="train", unit="step",
                   dynamic_ncols=interactive)
        try:
            while progress.step < cfg.steps:
                self.current_step = progress.step + 1
                progress, values = self.step(progress)
                if values is None:  # rewound
                    bar.n = progress.step
                    bar.refresh()
                    continue
                n = progress.step
                last = n == cfg.steps
                val_loss = None
                eval_due = last or (cfg.eval_interval > 0 and n % cfg.eval_interval == 0)
                if self.eval_data is not None and eval_due:
                    val_loss = progress.val_loss = evaluate(self.forward, self.eval_data, cfg, self.device,
                                                            world)
                if last or val_loss is not None or n % cfg.log_interval == 0:
                    record = self.log(progress, values, val_loss)
                    bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}", refresh=False)
                if last or n % cfg.checkpoint_interval == 0 or n == self.wsd_branch:
                    self.checkpoint(progress)
                bar.update(1)
        finally:
            bar.close()
        result = None
        if world.is_main:  # rank 0's figures and metrics file, the same on every rank
            tokens_per_s = progress.tokens / progress.train_s if progress.train_s > 0 else 0.0
            result = TrainResult(
                steps=progress.step, final_loss=progress.loss, final_val_loss=progress.val_loss,
                tokens_seen=progress.tokens, tokens_per_s=tokens_per_s,
                mfu=mfu(tokens_per_s, self.flops_per_token, self.peak), wall_s=self.elapsed(),
                rewinds=progress.rewinds, skipped=[*progress.skipped], metrics=self.metrics.read(),
                run_dir=self.run_dir)
        return broadcast_object(world, result)


def train(model: nn.Module, data: BatchSource, cfg: TrainConfig, run_dir: Path | str, *,
          eval_data: BatchSource | None = None,
          on_log: Callable[[dict[str, Any]], None] | None = None,
          init_from: Path | str | None = None) -> TrainResult:
    """Train `model` on `data` for `cfg.steps` optimizer steps in `run_dir`, resuming if it holds
    a checkpoint. `on_log` receives every record written to the metrics log.

    `init_from`: a checkpoint of another run (an annealing branch's WSD branch point, say) whose
    weights and optimizer state a fresh run starts from, after verifying it (CheckpointError
    naming the bad file, with nothing written). The new run counts its own steps from 0 with its
    own seed and data; once it has checkpoints of its own, it resumes from those instead.

    The model is moved to the configured device and trained in place; `model(x, y)` must return
    an object with `.loss` (what is minimised) and `.ce_loss` (what is reported and evaluated),
    and may carry `.metrics`, a dict of scalar tensors averaged over micro-batches and ranks and
    logged with each record (how the post-training objectives report rewards, margins, KL).

    Under torchrun every rank calls this with the same arguments and the same run_dir (on a
    filesystem they share): the loop joins the process group, wraps the model (DDP, or FSDP
    sharding `model` in place) and writes checkpoints together; `on_log` runs on every rank;
    every rank returns rank 0's result. Afterwards `distributed.full_state_dict(model)` gives
    rank 0 the whole weights.
    """
    return _Run(model, data, cfg, Path(run_dir), eval_data, on_log,
                None if init_from is None else Path(init_from)).run()
