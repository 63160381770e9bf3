"""Mid-training: annealing branches from a WSD run, and domain adaptation with replay.

A warm-up–stable–decay pre-training run keeps the checkpoint where its stable phase ends (its
branch point). `anneal` starts there — weights and optimizer state — and decays the learning
rate over a data mixture of its own choosing: the same corpus generator and the base's own
tokenizer, only the shares of the sources changed. Because the branch reads the data stream
from where the base's decay would have read it, a branch with the base's own mixture and decay
is the base's decay, step for step.

`adapt` continues pre-training from a base's final weights on a domain-heavy mixture, with a
share of the base's general mixture mixed back in ("replay"), and measures what it gained on
the domain and what it forgot of the rest, both on held-out validation documents.

Both are pure functions of (base configuration, branch configuration), stored by that pair's
hash through `Store.artifact`: a killed branch resumes from its own checkpoints, and a failed
one never overwrites a stored result. They train in a single process.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from phasebook.data import (
    CorpusConfig,
    MixtureConfig,
    PackedTokens,
    Tokenizer,
    extract_answer,
    fact_world,
    problems,
)
from phasebook.data.corpus import SOURCES
from phasebook.errors import PhasebookError, Problem
from phasebook.evaluate import fact_recall, score_answers
from phasebook.model import GPT
from phasebook.store import Store
from phasebook.train.checkpoint import load_checkpoint, load_weights, plain_copy, read_state, save_weights
from phasebook.train.distributed import resolve_device
from phasebook.train.loop import (
    METRICS_FILE,
    BatchSource,
    TrainConfig,
    TrainResult,
    data_indices,
    evaluate,
    train,
)
from phasebook.train.metrics import MetricsLog
from phasebook.train.pretraining import BRANCH, PretrainConfig, Pretrained, pretrain, token_stream
from phasebook.train.schedules import DECAY_SHAPES, ScheduleConfig
from phasebook.validation import Checks, ConfigError

# Continued pre-training warms its fresh optimizer up over this share of its steps.
ADAPT_WARMUP_FRACTION = 0.1
# Test word problems per language for the arithmetic accuracy of an adaptation (before/after).
TASK_PROBLEMS = 32
# Shares of a replay mixture are rounded to this many decimals, so that (1 − r)·d + r·g lands on
# the decimal the user meant (0.85, not 0.8499999999999999) and largest-remainder ties break as
# they would in exact arithmetic.
SHARE_DECIMALS = 12


@dataclass(frozen=True)
class AnnealConfig:
    """An annealing branch: `steps` of pure learning-rate decay, from the base's peak rate down
    to `min_lr_ratio` of it along `decay_shape`, on the base corpus with `mixture` instead of
    the base's own; `seed` places the branch's training windows (the base's seed and mixture,
    with the base's decay, reproduce the base's own decay exactly)."""

    steps: int = 200
    mixture: MixtureConfig = field(default_factory=MixtureConfig)
    decay_shape: Literal["linear", "cosine", "sqrt"] = "linear"
    min_lr_ratio: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        c = Checks(self)
        c.range("steps", 1, integer=True)
        c.rule(isinstance(self.mixture, MixtureConfig), "mixture", "must be a MixtureConfig.")
        c.choice("decay_shape", DECAY_SHAPES)
        c.range("min_lr_ratio", 0.0, 1.0)
        c.range("seed", 0, integer=True)
        c.done()

    def schedule(self) -> ScheduleConfig:
        """The decay as one of the loop's schedules: WSD without warm-up whose decay is all of it."""
        return ScheduleConfig(name="wsd", warmup_steps=0, decay_fraction=1.0, decay_shape=self.decay_shape,
                              min_lr_ratio=self.min_lr_ratio)


@dataclass(frozen=True)
class AdaptConfig:
    """Continued pre-training on a domain: `steps` from the base's final weights with a fresh
    optimizer (peak rate `lr`, a short warm-up, cosine decay), on the mixture
    (1 − replay)·domain + replay·(the base's own mixture)."""

    steps: int = 200
    domain: MixtureConfig = field(default_factory=lambda: MixtureConfig(general=0.0, math=1.0, facts=0.0))
    replay: float = 0.2
    lr: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        c = Checks(self)
        c.range("steps", 1, integer=True)
        c.rule(isinstance(self.domain, MixtureConfig), "domain", "must be a MixtureConfig.")
        c.range("replay", 0.0, 1.0, hi_open=True)
        c.range("lr", 0.0, lo_open=True)
        c.range("seed", 0, integer=True)
        c.done()

    def mixture(self, general: MixtureConfig) -> MixtureConfig:
        """The training mixture, given the base's (general) one."""
        return replay_mixture(self.domain, general, self.replay)


def replay_mixture(domain: MixtureConfig, general: MixtureConfig, replay: float) -> MixtureConfig:
    """(1 − replay)·domain + replay·general, source by source. The corpus apportions every
    split's documents among the sources by largest remainder, so the counts are exact."""
    if not 0.0 <= replay < 1.0:
        raise ConfigError([Problem("replay_mixture", "replay", f"is {replay!r}; allowed: a number in "
                                   "[0, 1).")])
    shares = {s: round((1 - replay) * getattr(domain, s) + replay * getattr(general, s), SHARE_DECIMALS)
              for s in SOURCES}
    return MixtureConfig(**shares)


class _Continued:
    """A batch source read from batch `offset` on: a branch continues its data stream where the
    base stopped (or would have gone on), rather than repeating the base's first batches."""

    def __init__(self, data: PackedTokens, offset: int):
        self.data, self.offset = data, offset

    def batch(self, index: int, batch_size: int, seq_len: int, rank: int = 0,
              world_size: int = 1) -> tuple[Tensor, Tensor]:
        return self.data.batch(index + self.offset, batch_size, seq_len, rank, world_size)


@dataclass
class MidtrainingRun:
    """A stored annealing branch or continued pre-training run, loaded: the trained model (eval
    mode, on CPU), the metrics of its logged steps, its summary (see `anneal` and `adapt`) and the
    base it started from. An annealing branch counts its steps from the branch point: its step k is
    the base's step `summary["branch_step"]` + k."""

    config: AnnealConfig | AdaptConfig
    base: Pretrained
    path: Path
    model: GPT
    metrics: list[dict[str, Any]]
    summary: dict[str, Any]

    @property
    def tokenizer(self) -> Tokenizer:
        return self.base.tokenizer


def _single_process(what: str) -> None:
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        raise PhasebookError(f"{what} trains in a single process; run it without torchrun (pre-train "
                             "the base with torchrun first: the branch then loads it from the store).")


def _with_mixture(corpus: CorpusConfig, mixture: MixtureConfig) -> CorpusConfig:
    return dataclasses.replace(corpus, mixture=mixture)


def _packed(corpus: CorpusConfig, split: str, tokenizer: Tokenizer, seed: int, store: Store) -> PackedTokens:
    return PackedTokens(token_stream(corpus, split, tokenizer, store), seed=seed)


def _plain_copy(model: GPT, device: torch.device) -> GPT:
    return copy.deepcopy(model).to(device).eval()


def _held_out(model: GPT, data: BatchSource, cfg: TrainConfig) -> float:
    """Mean cross-entropy of `model` over the first `cfg.eval_batches` batches of `data`."""
    return evaluate(model, data, cfg, next(model.parameters()).device)


def _load_run(path: Path, base: Pretrained) -> tuple[GPT, list[dict[str, Any]], dict[str, Any]]:
    model = GPT(base.config.model)
    load_weights(model, path / "model.safetensors")
    summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    return model.eval(), MetricsLog(path / METRICS_FILE).read(), summary


def _write_run(out: Path, scratch: Path, model: GPT, summary: dict[str, Any]) -> None:
    save_weights(model, out / "model.safetensors")
    shutil.copy(scratch / METRICS_FILE, out / METRICS_FILE)
    (out / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")


def anneal(base: PretrainConfig, cfg: AnnealConfig, store: Store | None = None) -> MidtrainingRun:
    """Pre-train `base` (a WSD run; stored), then branch from its end-of-stable checkpoint and
    decay on `cfg.mixture`; stored by the hash of (base, cfg), resuming a killed branch.

    The summary holds the run's figures (steps, final_loss, final_val_loss on the branch
    mixture's validation split, tokens_seen, tokens_per_s, wall_s, rewinds, skipped), the
    `branch_step`, and:
    - `val_loss`: held-out cross-entropy of the models "branch_point", "base_final" and
      "annealed" on the validation split of the "base_mix" and of the "anneal_mix";
    - `decay`: the loss drop of each decay phase, "base" (the base's own decay: branch point →
      base final, on the base mixture) and "branch" (branch point → annealed, on the branch
      mixture), each with steps, train_loss_before/after (cross-entropy of the first and last
      training batch of that phase), val_loss_before/after and val_drop = before − after.
    """
    schedule = base.train.schedule
    if schedule.name != "wsd":
        raise ConfigError([Problem("PretrainConfig", "train.schedule.name", (
            f"is {schedule.name!r}; annealing branches from the end of a warm-up–stable–decay run's stable "
            "phase, so the base must use schedule 'wsd'."))])
    _single_process("anneal")
    store = store or Store()
    corpus = _with_mixture(base.corpus, cfg.mixture)
    run_cfg = dataclasses.replace(base.train, steps=cfg.steps, seed=cfg.seed, schedule=cfg.schedule(),
                                  parallel="none")
    pretrained = pretrain(base, store)
    branch = pretrained.branch_checkpoint
    if branch is None:
        raise PhasebookError(f"{pretrained.path} holds no WSD branch checkpoint (folder {BRANCH!r}); "
                             "delete it to pre-train the base again.")
    tokenizer = pretrained.tokenizer  # the base corpus's tokenizer, never one of the new mixture
    state = read_state(branch)
    offset = data_indices(state["step"], base.train.grad_accum, state.get("skipped", []))[0]

    def produce(out: Path, scratch: Path) -> None:
        streams = {"base_mix": (base.corpus, base.train.seed), "anneal_mix": (corpus, cfg.seed)}
        # Each mixture's training stream read from the branch point on, and its validation split
        # with the windows its own run evaluates (the base's evaluation, the branch's).
        train_data = {mix: _Continued(_packed(c, "train", tokenizer, seed, store), offset)
                      for mix, (c, seed) in streams.items()}
        val_data = {mix: _packed(c, "validation", tokenizer, seed + 1, store)
                    for mix, (c, seed) in streams.items()}
        model = GPT(base.model)  # its weights come from the branch point
        result = train(model, train_data["anneal_mix"], run_cfg, scratch, eval_data=val_data["anneal_mix"],
                       init_from=branch)
        annealed = plain_copy(model, pretrained.config.model)
        summary = {**result.summary(), "branch_step": state["step"],
                   **_decay_summary(pretrained, branch, annealed, result, run_cfg, train_data, val_data)}
        _write_run(out, scratch, annealed, summary)

    path = store.artifact("anneal", {"base": base.key(), "anneal": dataclasses.asdict(cfg)}, produce)
    model, metrics, summary = _load_run(path, pretrained)
    return MidtrainingRun(cfg, pretrained, path, model, metrics, summary)


def _decay_summary(base: Pretrained, branch: Path, annealed: GPT, result: TrainResult, run_cfg: TrainConfig,
                   train_data: dict[str, BatchSource], val_data: dict[str, BatchSource]) -> dict[str, Any]:
    """The `val_loss` table and the `decay` phases of an annealing branch (see `anneal`)."""
    device = resolve_device(run_cfg.device)
    branch_point = GPT(base.config.model)
    load_checkpoint(branch, branch_point)
    models = {name: _plain_copy(m, device) for name, m in
              {"branch_point": branch_point, "base_final": base.model, "annealed": annealed}.items()}
    val = {name: {mix: _held_out(m, data, run_cfg) for mix, data in val_data.items()}
           for name, m in models.items()}
    one_batch = dataclasses.replace(run_cfg, eval_batches=1)

    def phase(steps: int, mix: str, end: str, last_loss: float) -> dict[str, Any]:
        # A phase's first step reports the branch-point weights on its first batch: computed here,
        # as the base may not have logged that step.
        first = _held_out(models["branch_point"], train_data[mix], one_batch)
        v0, v1 = val["branch_point"][mix], val[end][mix]
        return {"steps": steps, "train_loss_before": first, "train_loss_after": last_loss,
                "val_loss_before": v0, "val_loss_after": v1, "val_drop": v0 - v1}

    return {"val_loss": val, "decay": {
        "base": phase(base.summary["steps"] - read_state(branch)["step"], "base_mix", "base_final",
                      base.metrics[-1]["ce_loss"]),
        "branch": phase(result.steps, "anneal_mix", "annealed", result.metrics[-1]["ce_loss"])}}


def adapt(base: PretrainConfig, cfg: AdaptConfig, store: Store | None = None) -> MidtrainingRun:
    """Pre-train `base` (stored), then continue from its final weights on
    `cfg.mixture(base mixture)` with a fresh optimizer; stored by the hash of (base, cfg).

    The summary holds the run's figures (as `anneal`'s), the training `mixture` (shares by
    source), and what changed, before (base final) → after (adapted), on held-out validation
    documents: `general` (the base mixture) with before/after/forgetting = after − before, and
    `domain` (the domain mixture) with before/after/gain = before − after; `forgetting` and
    `gain` again at the top level; `tasks`: "arithmetic" (exact answers on TASK_PROBLEMS test
    word problems per corpus language) and, when the world has present entities, "fact_recall"
    (mean over attributes and languages), each with before/after.
    """
    _single_process("adapt")
    store = store or Store()
    mixture = cfg.mixture(base.corpus.mixture)
    corpus = _with_mixture(base.corpus, mixture)
    opt = base.train.optimizer
    optimizer = dataclasses.replace(opt, lr=cfg.lr, muon_lr=opt.muon_lr * cfg.lr / opt.lr)  # same ratio
    schedule = ScheduleConfig(name="cosine", warmup_steps=max(1, round(ADAPT_WARMUP_FRACTION * cfg.steps)),
                              min_lr_ratio=base.train.schedule.min_lr_ratio)
    run_cfg = dataclasses.replace(base.train, steps=cfg.steps, seed=cfg.seed, optimizer=optimizer,
                                  schedule=schedule, parallel="none")
    held_out = {"general": base.corpus, "domain": _with_mixture(base.corpus, cfg.domain)}
    pretrained = pretrain(base, store)
    tokenizer = pretrained.tokenizer  # the base corpus's tokenizer, never one of the new mixture
    # The base read its data up to here; continuing the stream reads what it has not.
    offset = data_indices(base.train.steps, base.train.grad_accum, pretrained.summary["skipped"])[0]

    def produce(out: Path, scratch: Path) -> None:
        train_data = _Continued(_packed(corpus, "train", tokenizer, cfg.seed, store), offset)
        val_data = _packed(corpus, "validation", tokenizer, cfg.seed + 1, store)
        model = GPT(base.model)
        model.load_state_dict(pretrained.model.state_dict())  # a killed run's checkpoint replaces these
        result = train(model, train_data, run_cfg, scratch, eval_data=val_data)
        adapted = plain_copy(model, pretrained.config.model)
        summary = {**result.summary(), "mixture": mixture.shares(),
                   **_adapt_summary(pretrained, adapted, run_cfg, held_out, store)}
        _write_run(out, scratch, adapted, summary)

    path = store.artifact("adapt", {"base": base.key(), "adapt": dataclasses.asdict(cfg)}, produce)
    model, metrics, summary = _load_run(path, pretrained)
    return MidtrainingRun(cfg, pretrained, path, model, metrics, summary)


def _adapt_summary(base: Pretrained, adapted: GPT, run_cfg: TrainConfig, held_out: dict[str, CorpusConfig],
                   store: Store) -> dict[str, Any]:
    """Held-out losses and task scores of the base's final model (before) and the adapted one."""
    device = resolve_device(run_cfg.device)
    models = {"before": _plain_copy(base.model, device), "after": _plain_copy(adapted, device)}
    seed = base.config.train.seed + 1  # the windows the base's own evaluation used
    out: dict[str, Any] = {}
    for name, corpus in held_out.items():
        data = _packed(corpus, "validation", base.tokenizer, seed, store)
        out[name] = {when: _held_out(model, data, run_cfg) for when, model in models.items()}
    out["general"]["forgetting"] = out["forgetting"] = out["general"]["after"] - out["general"]["before"]
    out["domain"]["gain"] = out["gain"] = out["domain"]["before"] - out["domain"]["after"]
    out["tasks"] = {task: {when: score(model) for when, model in models.items()}
                    for task, score in _tasks(base).items()}
    return out


def _tasks(base: Pretrained) -> dict[str, Callable[[GPT], float]]:
    """Cheap skill probes of a model of `base`'s world, by name: model -> score in [0, 1]."""
    corpus, tokenizer = base.config.corpus, base.tokenizer
    items = problems(corpus, "math", "test", TASK_PROBLEMS)

    def arithmetic(model: GPT) -> float:
        return float(np.mean([score_answers(model, tokenizer, items, lang, extract_answer)["accuracy"]
                              for lang in corpus.languages]))

    tasks: dict[str, Callable[[GPT], float]] = {"arithmetic": arithmetic}
    present = fact_world(corpus).present
    if present:
        def facts(model: GPT) -> float:
            return float(np.mean([v for lang in corpus.languages
                                  for v in fact_recall(model, tokenizer, present, lang).values()]))
        tasks["fact_recall"] = facts
    return tasks
