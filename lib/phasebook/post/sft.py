"""Supervised fine-tuning (SFT): teach the pre-trained model the chat template by example.

The data are chat exchanges (`chat.Example`) from the synthetic world: math word problems of the
train split answered with worked steps, and questions about people's attributes answered with
the value. Each exchange is encoded with the template (loss on the response and its closing
<|end|> only), the exchanges are packed into rows of `seq_len` tokens, and the policy is trained
with the ordinary training loop on those rows.

The loss of a packed batch, token by token (as in TRL's SFTTrainer with completion-only loss):

    L = − (1 / |R|) · Σ_{(b, t) ∈ R} log π_θ(y_{b,t} | x_{b,≤t})

where R is the set of positions whose target is a response token or the closing <|end|>
(`chat.pack` writes IGNORE_INDEX everywhere else: prompt, role tokens, padding, and the step from
one exchange into the next). Inside a row, every exchange is its own attention segment with RoPE
positions counting from 0 (`chat.segments_and_positions`), so a packed exchange gets exactly the
per-token losses it would get alone.

With gradient accumulation the loop averages the micro-batches' losses, each a mean over its own
response tokens; that equals the mean over the whole batch when the micro-batches hold equally
many response tokens, and weights tokens slightly differently otherwise.

`lora_rank` > 0 trains LoRA adapters instead of the whole model (see `post.lora`); they are
merged before the result is stored, so every stored policy is a plain GPT.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from phasebook.data import CorpusConfig, Tokenizer
from phasebook.data.facts import ATTRIBUTES
from phasebook.errors import PhasebookError
from phasebook.model import GPT
from phasebook.post.chat import EpochOrder, Example, encode, pack, segments_and_positions
from phasebook.post.lora import apply_lora, merge_lora, trainable_parameters
from phasebook.post.run import PostRun, load_run, write_run
from phasebook.post.tasks import Item, fact_items, math_items
from phasebook.store import Store
from phasebook.train.checkpoint import plain_copy
from phasebook.train.loop import TrainConfig, train
from phasebook.train.optim import OptimizerConfig
from phasebook.train.pretraining import PretrainConfig, pretrain
from phasebook.train.schedules import ScheduleConfig
from phasebook.validation import Checks


@dataclass(frozen=True)
class SFTData:
    """Which exchanges SFT trains on.

    - `math`: the first `math` word problems of the train split, languages alternating,
      answered with worked steps (`cot`, one equation per step) or with the answer sentence only.
    - `present_people`: questions about the first `present_people` present people (pre-training
      read their biographies), one per attribute of `attributes` and language; the remaining
      present people are held out, to test knowledge SFT never showed.
    - `absent_people`: the same for the first `absent_people` absent people, whose facts the
      model can only memorise from the SFT data (0: none, so absent people stay unknown).
    - `extra`: further exchanges, e.g. accepted samples of rejection sampling.
    """

    math: int = 256
    present_people: int = 24
    absent_people: int = 0
    attributes: tuple[str, ...] = ATTRIBUTES
    extra: tuple[Example, ...] = ()
    cot: bool = True

    def __post_init__(self) -> None:
        c = Checks(self)
        for name in ("math", "present_people", "absent_people"):
            c.range(name, 0, integer=True)
        known = isinstance(self.attributes, tuple) and all(a in ATTRIBUTES for a in self.attributes)
        c.rule(known, "attributes", f"must be a tuple of attributes from {', '.join(ATTRIBUTES)}.")
        c.rule(isinstance(self.cot, bool), "cot", "must be True or False.")
        c.rule(isinstance(self.extra, tuple) and all(isinstance(e, Example) for e in self.extra), "extra",
               "must be a tuple of chat.Example.")
        people = (isinstance(self.present_people, int) and self.present_people > 0) or (
            isinstance(self.absent_people, int) and self.absent_people > 0)
        if people and isinstance(self.attributes, tuple) and not self.attributes:
            c.fail("attributes", "is empty; fact questions need at least one attribute.")
        if not c.problems and self.math == 0 and not (people and self.attributes) and not self.extra:
            c.fail("math", "is 0 and there are no fact questions or extra examples; SFT needs some data.")
        c.done()

    def items(self, corpus: CorpusConfig) -> list[Item]:
        """The math and fact items (with their gold responses) this data asks for."""
        out = math_items(corpus, "train", self.math, cot=self.cot) if self.math else []
        if self.attributes:
            for which, n in (("present", self.present_people), ("absent", self.absent_people)):
                if n:
                    out += fact_items(corpus, which, self.attributes, entities=slice(0, n))  # type: ignore[arg-type]
        return out

    def examples(self, corpus: CorpusConfig) -> list[Example]:
        """Every exchange: the items' gold responses, then `extra`."""
        return [it.example() for it in self.items(corpus)] + list(self.extra)


@dataclass(frozen=True)
class SFTConfig:
    """An SFT run: `steps` optimizer steps of `batch_size` packed rows of `seq_len` tokens (in
    `grad_accum` micro-batches), AdamW at peak rate `lr` with `warmup` linear warm-up steps and
    cosine decay; `lora_rank` 0 trains every weight, > 0 only LoRA adapters of that rank (scaled
    by `lora_alpha` / rank); `seed` orders the exchanges and the rows of every epoch."""

    data: SFTData = field(default_factory=SFTData)
    steps: int = 150
    batch_size: int = 16
    seq_len: int = 128
    grad_accum: int = 1
    lr: float = 1e-3
    warmup: int = 10
    lora_rank: int = 0
    lora_alpha: float = 16.0
    seed: int = 0

    def __post_init__(self) -> None:
        c = Checks(self)
        c.rule(isinstance(self.data, SFTData), "data", "must be an SFTData.")
        for name in ("steps", "batch_size", "seq_len", "grad_accum"):
            c.range(name, 1, integer=True)
        c.range("lr", 0.0, lo_open=True)
        c.range("warmup", 0, integer=True)
        c.range("lora_rank", 0, integer=True)
        c.range("lora_alpha", 0.0, lo_open=True)
        c.range("seed", 0, integer=True)
        if not c.problems:
            c.rule(self.warmup <= self.steps, "warmup", f"must not exceed steps ({self.steps}).")
            c.rule(self.batch_size % self.grad_accum == 0, "batch_size",
                   f"must be a multiple of grad_accum ({self.grad_accum}).")
        c.done()


class SFTOutput(NamedTuple):
    loss: Tensor  # what is minimised
    ce_loss: Tensor  # the same: mean cross-entropy over response tokens
    metrics: dict[str, Tensor]


class SFTObjective(nn.Module):
    """The SFT loss of a policy on packed rows: forward(x, y) with x the inputs and y the targets
    of `chat.pack` (IGNORE_INDEX outside responses). Segments and positions come from the EOS
    that opens every exchange, so exchanges in a row neither attend to nor shift each other."""

    def __init__(self, policy: GPT, eos_id: int):
        super().__init__()
        self.policy, self.eos_id = policy, eos_id

    def forward(self, x: Tensor, y: Tensor) -> SFTOutput:
        segments, positions = segments_and_positions(x, self.eos_id)
        out = self.policy(x, y, positions=positions, segment_ids=segments)
        # The policy's loss is Σ −log π(y_t | x_≤t) over targets ≠ IGNORE_INDEX, divided by their
        # count: exactly L above (plus the model's z-loss, if it has one).
        tokens = (y != -100).sum().float()
        return SFTOutput(out.loss, out.ce_loss, {"response_tokens": tokens})


class PackedRows:
    """A `BatchSource` over packed rows, read in `EpochOrder`: any batch size and grad_accum read
    the same rows in the same order."""

    def __init__(self, inputs: np.ndarray, targets: np.ndarray, seed: int = 0):
        if len(inputs) == 0:
            raise PhasebookError("no packed rows: SFT data is empty.")
        self.inputs, self.targets = inputs, targets
        self.order = EpochOrder(len(inputs), seed)

    def __len__(self) -> int:
        return len(self.inputs)

    def batch(self, index: int, batch_size: int, seq_len: int, rank: int = 0,
              world_size: int = 1) -> tuple[Tensor, Tensor]:
        if seq_len != self.inputs.shape[1]:
            raise PhasebookError(f"rows were packed to {self.inputs.shape[1]} tokens; asked for {seq_len}.")
        rows = self.order.rows(index, batch_size, rank, world_size)
        return torch.from_numpy(self.inputs[rows]), torch.from_numpy(self.targets[rows])


def packed_rows(tokenizer: Tokenizer, examples: Sequence[Example], seq_len: int, seed: int = 0) -> PackedRows:
    """The examples, in an order shuffled by `seed`, encoded with the chat template and packed."""
    order = np.random.default_rng(seed).permutation(len(examples))
    inputs, targets = pack([encode(tokenizer, examples[i]) for i in order], seq_len, tokenizer.pad_id)
    return PackedRows(inputs, targets, seed)


def train_config(cfg: SFTConfig, base: PretrainConfig) -> TrainConfig:
    """The training loop's configuration for an SFT run (the base's device and precision)."""
    return TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, seq_len=cfg.seq_len,
                       grad_accum=cfg.grad_accum,
                       optimizer=OptimizerConfig(name="adamw", lr=cfg.lr, weight_decay=0.0),
                       schedule=ScheduleConfig(name="cosine", warmup_steps=cfg.warmup), seed=cfg.seed,
                       eval_interval=0, checkpoint_interval=max(1, min(100, cfg.steps)), log_interval=5,
                       precision=base.train.precision, device=base.train.device, progress=False)


def sft(base: PretrainConfig, cfg: SFTConfig, store: Store | None = None,
        start: PostRun | None = None) -> PostRun:
    """Fine-tune the pre-trained `base` (or the policy of an earlier stage, `start`) on `cfg.data`;
    stored under kind "post-sft", keyed by the base, the start's key and `cfg`; a killed run
    resumes from its checkpoints.

    The summary holds the training figures (`TrainResult.summary`), `trainable_parameters` and
    `total_parameters` (of the policy during training), `examples`, `rows` (packed),
    `response_tokens` (loss-carrying tokens over all rows) and `epochs` (rows read / rows).
    """
    store = store or Store()
    if cfg.seq_len > base.model.max_seq_len:
        raise PhasebookError(f"SFTConfig.seq_len is {cfg.seq_len}; the model holds {base.model.max_seq_len} "
                             "positions (model.max_seq_len).")
    pretrained = pretrain(base, store)
    tokenizer = pretrained.tokenizer
    start_model = start.model if start is not None else pretrained.model
    key = {"base": base.key(), "start": start.key if start is not None else None,
           "sft": dataclasses.asdict(cfg)}

    def produce(out: Path, scratch: Path) -> None:
        data = packed_rows(tokenizer, cfg.data.examples(base.corpus), cfg.seq_len, cfg.seed)
        policy = copy.deepcopy(start_model).train()  # a killed run's checkpoint replaces these weights
        for p in policy.parameters():
            p.requires_grad_(True)
        if cfg.lora_rank > 0:
            apply_lora(policy, cfg.lora_rank, cfg.lora_alpha)
        trainable = trainable_parameters(policy)
        total = sum(p.numel() for p in policy.parameters())
        result = train(SFTObjective(policy, tokenizer.eos_id), data, train_config(cfg, base), scratch)
        trained = merge_lora(policy) if cfg.lora_rank > 0 else policy
        summary = {**result.summary(), "trainable_parameters": trainable, "total_parameters": total,
                   "examples": len(cfg.data.examples(base.corpus)), "rows": len(data),
                   "response_tokens": int((data.targets != -100).sum()),
                   "epochs": cfg.steps * cfg.batch_size / len(data)}
        write_run(out, plain_copy(trained, base.model), tokenizer, summary, metrics_from=scratch)

    path = store.artifact("post-sft", key, produce)
    return load_run(path, "sft", key)
