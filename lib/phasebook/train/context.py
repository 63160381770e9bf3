"""Long-context extension: a pre-trained model's RoPE stretched, then trained briefly on longer sequences.

`extend_context(base, cfg)` loads a model's weights into one whose configuration has the new
context and RoPE settings (`extension_model_config`) and trains it for a few hundred steps at
`new_seq_len` on the base corpus re-packed at that length, with items of the synthetic
retrieval task (`data.longcontext`: a code stated far back, asked for at the end) as an exact
share of the rows. The corpus has no long-range dependencies of its own (its documents are a
few dozen tokens), so the task is what asks the model to use a long context at all.

The methods (the maths is in `model.gpt.rope_frequencies`):

- "none": RoPE unchanged (at new_seq_len = the base's seq_len: the task alone, no extension).
- "abf": a larger RoPE base (default base·s^(d/(d−2)), which slows the slowest pair by exactly
  s; d = head_dim, s = new_seq_len / the base's seq_len).
- "linear": position interpolation by `scale` (default s).
- "yarn": NTK-by-parts interpolation by `scale`, with YaRN's attention temperature.

The fair *before*. The book's base model never saw the task and has no in-context look-up at
all, and a real model being extended has one; learning the look-up takes a tiny model several
hundred steps, the extension far fewer. So the comparison is staged: `before` = the base
trained on the task at its own length (method "none", new_seq_len = the base's seq_len), and
every extension starts from that model (`start_from`), trained on the same data mix for the
same steps. Then, with `retrieval_accuracy` at lengths up to and beyond the new context:

- before, at lengths ≤ the original context: the look-up works; beyond it: what plain RoPE
  does on distances and positions it never trained on.
- each method vs before: the length extension alone — same model, task and mix; only the
  context and RoPE differ.
- "none" at the new length vs the RoPE methods: what training on longer sequences does without
  touching RoPE, against stretching it too.
- `rescaled_model(before, …)`, untrained: what each method does zero-shot.
- `short_context_loss` of each vs the base and before: whether extending cost quality on short
  text (at the base's own length).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from phasebook.data import CorpusConfig, PackedTokens, Tokenizer
from phasebook.data.longcontext import DEFAULT_TASK, RetrievalConfig, RetrievalItem, RetrievalTask
from phasebook.errors import Problem
from phasebook.model import GPT, ModelConfig
from phasebook.store import Store
from phasebook.train.checkpoint import load_weights, save_weights
from phasebook.train.distributed import full_state_dict
from phasebook.train.loop import METRICS_FILE, TrainConfig, TrainResult, train
from phasebook.train.metrics import MetricsLog
from phasebook.train.pretraining import (
    BASE_CORPUS,
    PretrainConfig,
    pretrain,
    token_stream,
    tokenizer_for,
)
from phasebook.train.schedules import ScheduleConfig
from phasebook.validation import Checks, ConfigError, to_mapping

Method = Literal["none", "abf", "linear", "yarn"]
METHODS: tuple[Method, ...] = ("none", "abf", "linear", "yarn")


@dataclass(frozen=True)
class ContextConfig:
    """One context extension of a pre-trained model: how RoPE changes, and the brief training after.

    scale: the stretch s of "linear" and "yarn"; None = new_seq_len / the base's seq_len.
    rope_base: the new RoPE base; None keeps the base's, except for "abf", where it is the
        base's times s^(d/(d−2)). "linear" and "yarn" may raise it too (ABF combined with them).
    yarn_alpha, yarn_beta: YaRN's ramp, in turns within the original context (see ModelConfig).
    task_fraction: the exact share of training rows that are retrieval items (the rest is corpus).
    start_from: the run whose final model this one starts from (see the module doc); None starts
        from the base's pre-trained model.
    """

    method: Method = "yarn"
    new_seq_len: int = 512
    scale: float | None = None
    rope_base: float | None = None
    yarn_alpha: float = 1.0
    yarn_beta: float = 32.0
    steps: int = 200
    batch_size: int = 8
    lr: float = 1e-3
    warmup_steps: int = 20
    task_fraction: float = 0.5
    seed: int = 0
    task: RetrievalConfig = field(default_factory=RetrievalConfig)
    start_from: ContextConfig | None = None  # a "none" run whose model this one starts from; None: the base's

    def __post_init__(self) -> None:
        c = Checks(self)
        c.choice("method", METHODS)
        c.range("new_seq_len", 2, integer=True)
        if self.scale is not None:
            c.range("scale", 1.0)
            c.rule(self.method in ("linear", "yarn"), "scale",
                   f"only 'linear' and 'yarn' stretch positions (method is {self.method!r}); leave it None.")
        if self.rope_base is not None:
            c.range("rope_base", 1.0, lo_open=True)
            c.rule(self.method != "none", "rope_base", "method 'none' keeps RoPE as it is; leave it None.")
        c.range("yarn_alpha", 0.0, lo_open=True)
        c.range("yarn_beta", 0.0, lo_open=True)
        for name in ("steps", "batch_size"):
            c.range(name, 1, integer=True)
        c.range("warmup_steps", 0, integer=True)
        c.range("lr", 0.0, lo_open=True)
        c.range("task_fraction", 0.0, 1.0)
        c.range("seed", 0, integer=True)
        c.rule(isinstance(self.task, RetrievalConfig), "task", "must be a RetrievalConfig.")
        start = self.start_from
        c.rule(start is None or (isinstance(start, ContextConfig) and start.method == "none"
                                 and start.start_from is None), "start_from",
               "must be None or a ContextConfig of method 'none' without a start_from of its own (a model "
               "that learned the task with plain RoPE).")
        if isinstance(self.steps, int) and isinstance(self.warmup_steps, int):
            c.rule(self.warmup_steps <= self.steps, "warmup_steps", f"must not exceed steps ({self.steps}).")
        c.done()


def before_config(base: PretrainConfig, steps: int = 600) -> ContextConfig:
    """The fair *before* for `base`: the task learned at the base's own length with plain RoPE.

    Three rows in four are task items. The book's base model learns the look-up abruptly, as
    induction heads form: at its own length it writes 9 % of the codes after 400 steps of this
    and 98 % after 500 (seed 0); the default of 600 leaves a margin. Pass it as `start_from`.
    """
    return ContextConfig(method="none", new_seq_len=base.train.seq_len, steps=steps, batch_size=16, lr=3e-3,
                         warmup_steps=min(20, steps), task_fraction=0.75)


def _fail(name: str, message: str) -> ConfigError:
    return ConfigError([Problem("ContextConfig", name, message)])


def extension_model_config(base: PretrainConfig, cfg: ContextConfig) -> ModelConfig:
    """The base's model configuration with the new context and RoPE settings (same weights fit it)."""
    original, model = base.train.seq_len, base.model
    if model.rope_scaling != 1.0:
        raise _fail("method", f"the base model's RoPE is already scaled (rope_scaling={model.rope_scaling}); "
                    "extend_context starts from plain RoPE.")
    if cfg.new_seq_len < original:
        raise _fail("new_seq_len", f"is {cfg.new_seq_len}; must be at least the base's seq_len ({original}).")
    stretch = cfg.new_seq_len / original
    changes: dict[str, Any] = {"max_seq_len": max(cfg.new_seq_len, model.max_seq_len)}
    if cfg.method == "abf":
        d = model.head_dim
        if cfg.rope_base is None and stretch == 1:
            raise _fail("rope_base", "is None, and with new_seq_len equal to the base's seq_len the default "
                        "(rope_base × (new_seq_len / seq_len)^(d/(d−2))) does not raise it: give rope_base.")
        changes["rope_base"] = cfg.rope_base or model.rope_base * stretch ** (d / (d - 2))
        if changes["rope_base"] <= model.rope_base:
            raise _fail("rope_base", f"is {cfg.rope_base}; ABF raises the base model's rope_base "
                        f"({model.rope_base}): give a larger one.")
    elif cfg.method in ("linear", "yarn"):
        changes |= {"rope_base": cfg.rope_base or model.rope_base, "rope_scaling": cfg.scale or stretch,
                    "rope_scaling_type": cfg.method}
        if cfg.method == "yarn":
            changes |= {"rope_original_max_seq_len": original, "rope_yarn_alpha": cfg.yarn_alpha,
                        "rope_yarn_beta": cfg.yarn_beta}
    return dataclasses.replace(model, **changes)


def rescaled_model(model: GPT, base: PretrainConfig, cfg: ContextConfig) -> GPT:
    """`model`'s weights (the base's, or those of a run on it) under the extension's context and
    RoPE, untrained: what the method does zero-shot."""
    rescaled = GPT(extension_model_config(base, cfg))
    rescaled.load_state_dict(model.state_dict())
    return rescaled.eval()


class ExtensionData:
    """Training rows at the new length: windows of the packed corpus, and retrieval items in the
    rows whose sample number j has ⌊(j+1)·f⌋ > ⌊j·f⌋ — exactly ⌊n·f⌋ of any first n samples.

    A `BatchSource` for `train`: batch `index` holds samples index·G … (index+1)·G − 1 (G = the
    global batch), so rows do not depend on micro-batching, ranks or resumption.
    """

    def __init__(self, corpus: PackedTokens, task: RetrievalTask, task_fraction: float, seed: int):
        self.corpus, self.task, self.task_fraction, self.seed = corpus, task, task_fraction, seed

    def is_task(self, sample: int) -> bool:
        f = self.task_fraction
        return math.floor((sample + 1) * f) > math.floor(sample * f)

    def row(self, sample: int, seq_len: int) -> np.ndarray:
        """The seq_len + 1 tokens of training sample `sample` (inputs and shifted targets)."""
        if self.is_task(sample):
            # Item k for the k-th item row (k = ⌊sample·f⌋ rows before it), so that consecutive items,
            # which alternate languages, fill the item rows whatever pattern f gives them.
            item = self.task.random_item(math.floor(sample * self.task_fraction), seq_len + 1, self.seed)
            return np.asarray(item.tokens, dtype=np.int64)
        start = int(self.corpus.window_starts(np.array([sample]), seq_len)[0])
        return self.corpus.tokens[start:start + seq_len + 1].astype(np.int64)

    def batch(self, index: int, batch_size: int, seq_len: int, rank: int = 0,
              world_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        size = batch_size * world_size
        samples = range(index * size, (index + 1) * size)[rank::world_size]
        rows = np.stack([self.row(j, seq_len) for j in samples])
        tokens = torch.from_numpy(rows)
        return tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()


@dataclass
class Extended:
    """A stored context extension, loaded: the model (eval mode, on CPU, with the new RoPE), its
    tokenizer, the metrics of every logged step and a summary of the run."""

    base: PretrainConfig
    config: ContextConfig
    path: Path
    model: GPT
    tokenizer: Tokenizer
    metrics: list[dict[str, Any]]
    summary: dict[str, Any]


def extension_train_config(base: PretrainConfig, cfg: ContextConfig) -> TrainConfig:
    """The brief training: the base's optimizer, precision and device at the extension's rate, with
    warm-up then cosine decay, a fresh optimizer state, and one checkpoint midway to resume from."""
    return dataclasses.replace(
        base.train, steps=cfg.steps, batch_size=cfg.batch_size, seq_len=cfg.new_seq_len, grad_accum=1,
        optimizer=dataclasses.replace(base.train.optimizer, lr=cfg.lr),
        schedule=ScheduleConfig(name="cosine", warmup_steps=cfg.warmup_steps), seed=cfg.seed,
        eval_interval=0, eval_batches=2, checkpoint_interval=max(1, cfg.steps // 2), keep_checkpoints=1,
        parallel="none")


def extension_key(base: PretrainConfig, cfg: ContextConfig) -> dict[str, Any]:
    """What identifies a stored extension: the base run's key and the extension's configuration."""
    return {"base": base.key(), "context": to_mapping(cfg)}


def extend_context(base: PretrainConfig, cfg: ContextConfig, store: Store | None = None) -> Extended:
    """Extend the context of `pretrain(base)`'s model (or of `cfg.start_from`'s) as `cfg` says;
    trained once per (base, cfg, code version) and stored, a run killed halfway resuming from
    its checkpoint. Single process, on the base's device and precision."""
    store = store or Store()
    pretrained = pretrain(base, store)
    model_cfg = extension_model_config(base, cfg)

    def produce(out: Path, scratch: Path) -> None:
        start = pretrained if cfg.start_from is None else extend_context(base, cfg.start_from, store)
        model = rescaled_model(start.model, base, cfg)
        result = _train_extension(model, base, pretrained.tokenizer, cfg, scratch, store)
        final = GPT(model_cfg)
        final.load_state_dict(full_state_dict(model))
        save_weights(final, out / "model.safetensors")
        (out / "tokenizer.json").write_text(pretrained.tokenizer.to_json(), encoding="utf-8")
        shutil.copy(scratch / METRICS_FILE, out / METRICS_FILE)
        summary = {"steps": result.steps, "final_loss": result.final_loss,
                   "final_val_loss": result.final_val_loss, "tokens_seen": result.tokens_seen,
                   "tokens_per_s": result.tokens_per_s, "wall_s": result.wall_s, "rewinds": result.rewinds,
                   "model": to_mapping(model_cfg)}
        (out / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")

    path = store.artifact("context-extension", extension_key(base, cfg), produce)
    model = GPT(model_cfg)
    load_weights(model, path / "model.safetensors")
    tokenizer = Tokenizer.from_json((path / "tokenizer.json").read_text(encoding="utf-8"))
    summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    return Extended(base, cfg, path, model.eval(), tokenizer, MetricsLog(path / METRICS_FILE).read(), summary)


def _train_extension(model: GPT, base: PretrainConfig, tokenizer: Tokenizer, cfg: ContextConfig,
                     run_dir: Path, store: Store) -> TrainResult:
    """Train `model` (already in the extension's configuration) in place in `run_dir`."""
    corpus = PackedTokens(token_stream(base.corpus, "train", tokenizer, store), seed=cfg.seed)
    task = RetrievalTask(base.corpus, tokenizer, "train", cfg.task)
    data = ExtensionData(corpus, task, cfg.task_fraction, cfg.seed)
    val = PackedTokens(token_stream(base.corpus, "validation", tokenizer, store), seed=cfg.seed + 1)
    return train(model.train(), data, extension_train_config(base, cfg), run_dir, eval_data=val)


@torch.no_grad()
def answers_correct(model: GPT, items: list[RetrievalItem], batch_size: int = 16) -> np.ndarray:
    """Whether greedy decoding would write each item's answer: one forward pass per batch.

    Greedy decoding writes the answer exactly when, at every answer position, the most likely
    next token given the true tokens before it is the answer's token: up to the first miss the
    two see the same tokens, and a miss is a wrong answer either way. So this scores exact match
    without generating (items of one length make rectangular batches).
    """
    model.eval()
    device = next(model.parameters()).device
    correct = np.zeros(len(items), dtype=bool)
    for lo in range(0, len(items), batch_size):
        chunk = items[lo:lo + batch_size]
        width = max(len(it.tokens) for it in chunk)
        idx = torch.full((len(chunk), width), 0, dtype=torch.long)
        for r, it in enumerate(chunk):
            idx[r, :len(it.tokens)] = torch.tensor(it.tokens)
        logits = model(idx.to(device)).logits.argmax(dim=-1).cpu()
        for r, it in enumerate(chunk):
            predicted = logits[r, it.answer_start - 1:len(it.tokens) - 1]
            correct[lo + r] = bool((predicted == torch.tensor(it.answer)).all())
    return correct


def retrieval_accuracy(model: GPT, tokenizer: Tokenizer, lengths: list[int], n_items: int = 100,
                       seed: int = 0, *, corpus: CorpusConfig = BASE_CORPUS,
                       task: RetrievalConfig = DEFAULT_TASK, batch_size: int = 16) -> dict[int, float]:
    """Exact-match accuracy on `n_items` evaluation items of each total length, the fact as far
    back as it goes (right after the leading EOS): {length: share of codes written exactly}.

    Evaluation items use names, codes and filler text no training item has (see data.longcontext).
    """
    items = RetrievalTask(corpus, tokenizer, "eval", task)
    return {length: float(answers_correct(model, [items.item(i, length, seed=seed) for i in range(n_items)],
                                          batch_size).mean())
            for length in lengths}


@torch.no_grad()
def short_context_loss(model: GPT, base: PretrainConfig, store: Store | None = None, *, n_batches: int = 16,
                       batch_size: int = 16) -> float:
    """Mean cross-entropy on the base corpus's validation text in windows of the base's own seq_len:
    the same numbers for the base model and for any extension of it, so a rise means the
    extension cost quality on short contexts."""
    tokenizer = tokenizer_for(base.corpus, base.model.vocab_size, store)
    val = PackedTokens(token_stream(base.corpus, "validation", tokenizer, store), seed=0)
    model.eval()
    device = next(model.parameters()).device
    losses = []
    for x, y in val.sequential(batch_size, base.train.seq_len):
        if len(losses) == n_batches or len(x) < batch_size:
            break
        losses.append(float(model(x.to(device), y.to(device)).ce_loss))
    return float(np.mean(losses))
