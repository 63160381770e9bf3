"""GRPO / RLVR: reinforcement learning from verifiable rewards on the book's own model.

One step of Group Relative Policy Optimisation (Shao et al. 2024, DeepSeekMath §4.1):

1. Rollouts. Draw P prompts; sample G responses to each from the current policy, with the KV
   cache (`sampling.sample`). Score each with a verifiable reward: 1 for the exact answer, plus
   a small bonus for the format (`reward`).
2. Advantages. Within each group of G, a response's advantage is its reward minus the group's
   mean, divided by the group's standard deviation (`group_advantages`): no value network, the
   group is the baseline. A group whose responses all score the same teaches nothing, and gets
   advantage 0.
3. Old and reference log-probabilities. The policy's log-probability of every sampled token is
   computed once, without gradients, right after sampling ("old"): the μ updates that follow all
   measure their importance ratio against it. A frozen copy of the starting model (the
   "reference") gives the log-probabilities the KL penalty pulls towards; with β = 0 it is never
   built.
4. μ updates of the clipped surrogate (`grpo_loss`) on that same rollout batch.

The training itself is the book's `train()` loop: `GRPOObjective` wraps the policy so that
`objective(x, y)` returns the GRPO loss, and `Rollouts` is the loop's batch source, which
generates the rollouts of step i from the current policy, seeded by i. Reusing the loop gives
checkpoints, resumption, gradient clipping, gradient accumulation and metrics.jsonl for free.
A resumed run reproduces the same rollouts because checkpoints fall only between rollout
batches (`checkpoint_interval` is a multiple of μ): the policy that generates rollout batch r
after a resume is the one that generated it before, and the sampler is seeded by r.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from phasebook.data import ArithmeticConfig, Tokenizer
from phasebook.model import GPT, IGNORE_INDEX
from phasebook.post.chat import finished, prompt_ids, response_text
from phasebook.post.run import PostRun, load_run, write_run
from phasebook.post.sampling import sample
from phasebook.post.sft import SFTConfig, sft
from phasebook.post.tasks import Item, is_correct, is_well_formed, math_items
from phasebook.store import Store
from phasebook.train.checkpoint import plain_copy
from phasebook.train.distributed import resolve_device
from phasebook.train.loop import TrainConfig, TrainResult, train
from phasebook.train.optim import OptimizerConfig
from phasebook.train.pretraining import PretrainConfig, pretrain
from phasebook.train.schedules import ScheduleConfig
from phasebook.validation import Checks

ADV_SCALES = ("group", "batch", "none")
AGGREGATIONS = ("sequence", "token", "constant")
LAST_STEP = ("reward", "accuracy", "kl", "entropy", "clip_fraction", "response_length")  # in the summary
HELD_OUT_FILE = "heldout.json"  # held-out pass@1 by step, written next to metrics.jsonl
# Checkpoints every this many steps, rounded up to a multiple of μ (they must fall between
# rollout batches for a resumed run to regenerate the same rollouts).
CHECKPOINT_EVERY = 20


# ---------------------------------------------------------------------------------------------
# Rewards and advantages


def reward(tokenizer: Tokenizer, item: Item, response: Sequence[int], format_weight: float = 0.1) -> float:
    """The verifiable reward of one response (its generated token ids): 1 if the answer is
    exactly right (`tasks.is_correct`), plus `format_weight` if it is well formed and closes its
    turn with <|end|> (`tasks.is_well_formed`, `chat.finished`). Nothing is learned, nothing
    judged by a model: the reward is a program."""
    text = response_text(tokenizer, response)
    formed = is_well_formed(item, text) and finished(tokenizer, response)
    return float(is_correct(item, text)) + format_weight * float(formed)


def group_advantages(rewards: Tensor, scale: Literal["group", "batch", "none"] = "group",
                     eps: float = 1e-4) -> Tensor:
    """Advantages (P, G) from rewards (P, G) of G responses to each of P prompts.

    A_i = r_i − mean(group), then divided by
    - "group": the group's standard deviation + eps (DeepSeekMath's GRPO);
    - "batch": the standard deviation of all P·G rewards + eps (a batch-level scale, as in
      REINFORCE++; it does not up-weight groups that are nearly all right or all wrong);
    - "none": nothing (Dr. GRPO, Liu et al. 2025: the group std biases updates towards
      questions that are too easy or too hard).
    Standard deviations are the population ones (divisor G, not G − 1). A group whose rewards
    are all equal gets exactly 0, never NaN or rounding noise divided by eps.
    """
    if scale not in ADV_SCALES:
        raise ValueError(f"scale is {scale!r}; allowed: {', '.join(map(repr, ADV_SCALES))}.")
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be (prompts, group); got shape {tuple(rewards.shape)}.")
    rewards = rewards.float()
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if scale == "group":
        adv = centred / (rewards.std(dim=1, correction=0, keepdim=True) + eps)
    elif scale == "batch":
        adv = centred / (rewards.std(correction=0) + eps)
    else:
        adv = centred
    same = rewards.amax(dim=1, keepdim=True) == rewards.amin(dim=1, keepdim=True)
    return torch.where(same, torch.zeros_like(adv), adv)


# ---------------------------------------------------------------------------------------------
# The loss


def grpo_loss(logp: Tensor, old_logp: Tensor, ref_logp: Tensor | None, advantages: Tensor, mask: Tensor, *,
              eps_low: float = 0.2, eps_high: float = 0.2, beta: float = 0.0,
              aggregation: Literal["sequence", "token", "constant"] = "sequence", max_len: int | None = None,
              cispo: bool = False, n_tokens: Tensor | float | None = None,
              entropy: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """The GRPO objective to minimise, and its metrics (detached scalars).

    logp (B, T): log π_θ(o_t | q, o_<t) of the sampled tokens, with gradient.
    old_logp (B, T): the same under π_θ_old, the policy that sampled them (no gradient).
    ref_logp (B, T) or None: the same under the frozen reference π_ref (needed when beta > 0).
    advantages (B,) or (B, T): Â_i of each response (GRPO gives every token of a response the
        response's advantage).
    mask (B, T): 1 on response tokens, 0 on prompt and padding.
    aggregation: how token terms become one number, the choice that separates the papers:
        "sequence"  DeepSeekMath: (1/G) Σ_i (1/|o_i|) Σ_t ℓ_i,t, each response's mean, then the
                    mean over responses; a token of a long response weighs less.
        "token"     DAPO (Yu et al. 2025): Σ_i Σ_t ℓ_i,t / Σ_i |o_i|, every token weighs the same.
                    `n_tokens` replaces Σ_i |o_i| when this batch is a micro-batch of a larger one
                    (pass the whole batch's count ÷ the number of micro-batches).
        "constant"  Dr. GRPO (Liu et al. 2025): Σ_i Σ_t ℓ_i,t / (B · max_len), a constant
                    normaliser, so neither length nor batch content rescales the gradient.
    cispo: MiniMax-M1's CISPO instead of the clipped surrogate (see below).
    entropy (B, T) or None: per-token entropies of the policy, only reported.

    Metrics: "kl" (mean k3 over response tokens, when ref_logp is given), "clip_fraction"
    (share of response tokens whose gradient the clip removes), "ratio" (mean importance ratio)
    and "entropy" (when given).
    """
    mask = mask.to(logp.dtype)
    adv = advantages if advantages.dim() == 2 else advantages[:, None]  # (B, 1): one Â per response

    # Importance ratio r_t = π_θ(o_t) / π_θ_old(o_t), in log space for stability. On the first
    # of the μ updates θ = θ_old, so r_t = 1 exactly — yet its gradient, ∇r_t = ∇log π_θ, is not 0.
    log_ratio = logp - old_logp.detach()
    ratio = torch.exp(log_ratio)
    clipped_ratio = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)
    if not cispo:
        # PPO's clipped surrogate (DeepSeekMath eq. 3), per token:
        #   min( r_t · Â,  clip(r_t, 1 − ε_low, 1 + ε_high) · Â )
        # The min is pessimistic: once a token's probability has moved ε beyond θ_old in the
        # direction Â favours, its gradient is 0. DAPO's "clip-higher" sets ε_high > ε_low so that
        # unlikely tokens with Â > 0 can still grow (keeping entropy from collapsing).
        surrogate = torch.minimum(ratio * adv, clipped_ratio * adv)
        # Tokens whose gradient the clip removes: pushed beyond the range in Â's direction.
        clipped = ((ratio < 1.0 - eps_low) & (adv < 0)) | ((ratio > 1.0 + eps_high) & (adv > 0))
    else:
        # CISPO (MiniMax-M1, 2025): clip the importance weight, not the update. The clipped ratio
        # is a constant (stop-gradient) weight on REINFORCE's Â · log π_θ, so every token keeps a
        # gradient, however far its ratio has moved; M1 bounds the weight above only (a large
        # ε_low switches the lower bound off).
        surrogate = clipped_ratio.detach() * adv * logp
        clipped = (ratio < 1.0 - eps_low) | (ratio > 1.0 + eps_high)
    per_token = -surrogate  # the objective is maximised; the loss is its negative

    metrics: dict[str, Tensor] = {}
    if ref_logp is not None:
        # KL(π_θ ‖ π_ref) by Schulman's k3 estimator (DeepSeekMath eq. 4), per sampled token:
        #   π_ref/π_θ − log(π_ref/π_θ) − 1 = exp(ref − logp) − (ref − logp) − 1
        # It is ≥ 0 for every sample, 0 where the two agree, and its mean over tokens sampled from
        # π_θ is an unbiased estimate of KL(π_θ ‖ π_ref). DeepSeekMath adds it to the loss with
        # weight β rather than folding it into the reward.
        kl = kl_k3(logp, ref_logp.detach())
        if beta > 0:
            per_token = per_token + beta * kl
        metrics["kl"] = _masked_mean(kl, mask).detach()
    elif beta > 0:
        raise ValueError(f"beta is {beta}: the KL penalty needs ref_logp (the reference model's log-probs).")

    if aggregation == "sequence":
        # Each response's token mean, then the mean over responses (DeepSeekMath eq. 3).
        per_seq = (per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        loss = per_seq.mean()
    elif aggregation == "token":
        # One mean over every response token of the batch (DAPO eq. 8).
        count = mask.sum() if n_tokens is None else torch.as_tensor(n_tokens, dtype=logp.dtype)
        loss = (per_token * mask).sum() / count.clamp(min=1.0)
    elif aggregation == "constant":
        # The sum divided by a constant, B · max_len (Dr. GRPO; max_len: the generation limit).
        if max_len is None or max_len < 1:
            raise ValueError("aggregation 'constant' needs max_len, the generation limit (≥ 1).")
        loss = (per_token * mask).sum() / (mask.shape[0] * max_len)
    else:
        raise ValueError(f"aggregation is {aggregation!r}; allowed: {', '.join(map(repr, AGGREGATIONS))}.")

    metrics["clip_fraction"] = _masked_mean(clipped.to(mask.dtype), mask).detach()
    metrics["ratio"] = _masked_mean(ratio, mask).detach()
    if entropy is not None:
        metrics["entropy"] = _masked_mean(entropy, mask).detach()
    return loss, metrics


def kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Schulman's k3 estimate of KL(π ‖ π_ref) per sampled token: exp(ref − logp) − (ref − logp) − 1.

    Non-negative, 0 where π and π_ref agree; its expectation over tokens drawn from π is exactly
    KL(π ‖ π_ref), since E_π[π_ref/π] = 1 and E_π[−log(π_ref/π)] = KL.
    """
    log_ratio = ref_logp - logp
    return torch.exp(log_ratio) - log_ratio - 1.0


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


# ---------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class GRPOConfig:
    """A GRPO run on math word problems: `steps` optimizer steps, each on P = `prompts` prompts
    × G = `group` samples, μ = `updates` steps per rollout batch (μ > 1 reuses the rollouts, and
    the clip starts to matter); the task is `train_items` training-split problems with
    `min_ops`–`max_ops` operations."""

    steps: int = 60
    prompts: int = 8  # P: prompts per rollout batch
    group: int = 8  # G: samples per prompt
    updates: int = 1  # μ: optimizer steps on each rollout batch
    grad_accum: int = 1  # micro-batches per optimizer step (P·G must be a multiple of it)
    lr: float = 1e-4
    eps_low: float = 0.2  # ε_low: ratios below 1 − ε_low stop pushing down (Â < 0)
    eps_high: float = 0.28  # ε_high: ratios above 1 + ε_high stop pushing up (Â > 0); DAPO's 0.28
    beta: float = 0.04  # KL weight; 0: no KL term and no reference model
    adv_scale: Literal["group", "batch", "none"] = "group"
    aggregation: Literal["sequence", "token", "constant"] = "token"
    cispo: bool = False
    temperature: float = 1.0  # sampling temperature of the rollouts
    max_new_tokens: int = 48  # generation limit of a rollout (Dr. GRPO's constant normaliser)
    format_weight: float = 0.1  # reward for a well-formed, finished response (the answer scores 1)
    min_ops: int = 2  # the task: word problems with min_ops–max_ops operations
    max_ops: int = 3
    train_items: int = 2000  # training-split problems the prompts are drawn from
    eval_every: int = 10  # steps between held-out pass@1 measurements; 0: only before and after
    eval_items: int = 64  # held-out (test-split) problems of that measurement
    eval_samples: int = 4  # samples per held-out problem (temperature `temperature`)
    clip: float = 1.0  # gradient-norm clipping
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        c = Checks(self)
        for name in ("steps", "prompts", "updates", "grad_accum", "max_new_tokens", "train_items",
                     "eval_items", "eval_samples"):
            c.range(name, 1, integer=True)
        c.range("group", 2, integer=True)  # one sample has no group to compare with
        for name in ("eval_every", "seed"):
            c.range(name, 0, integer=True)
        c.range("lr", 0.0, lo_open=True)
        c.range("eps_low", 0.0, lo_open=True)
        c.range("eps_high", 0.0, lo_open=True)
        c.range("beta", 0.0)
        c.range("temperature", 0.0, lo_open=True)
        c.range("format_weight", 0.0)
        c.range("clip", 0.0)
        c.range("min_ops", 1, 8, integer=True)
        c.range("max_ops", 1, 8, integer=True)
        c.choice("adv_scale", ADV_SCALES)
        c.choice("aggregation", AGGREGATIONS)
        c.rule(isinstance(self.cispo, bool), "cispo", "must be true or false.")
        if isinstance(self.min_ops, int) and isinstance(self.max_ops, int):
            c.rule(self.min_ops <= self.max_ops, "max_ops", f"must be >= min_ops ({self.min_ops}).")
        if isinstance(self.prompts, int) and isinstance(self.group, int) and isinstance(self.grad_accum, int):
            c.rule(self.grad_accum > 0 and (self.prompts * self.group) % self.grad_accum == 0, "grad_accum",
                   f"must divide prompts × group ({self.prompts} × {self.group}).")
        if isinstance(self.prompts, int) and isinstance(self.train_items, int):
            c.rule(self.train_items >= self.prompts, "train_items", f"must be >= prompts ({self.prompts}).")
        c.rule(isinstance(self.device, str), "device", "must be a string ('auto', 'cpu', 'cuda', ...).")
        c.done()

    @property
    def arithmetic(self) -> ArithmeticConfig:
        return ArithmeticConfig(min_ops=self.min_ops, max_ops=self.max_ops)

    def train_config(self, seq_len: int) -> TrainConfig:
        """The loop's configuration: one rollout batch of P·G rows per step, a constant learning
        rate (no warm-up: `steps` may grow on resume), checkpoints only between rollout batches, no spike
        detection (a policy-gradient loss is not a cross-entropy: its size says little)."""
        every = self.updates * math.ceil(CHECKPOINT_EVERY / self.updates)
        return TrainConfig(
            steps=self.steps, batch_size=self.prompts * self.group, seq_len=seq_len,
            grad_accum=self.grad_accum,
            optimizer=OptimizerConfig(lr=self.lr, weight_decay=0.0),
            schedule=ScheduleConfig(name="constant", warmup_steps=0),
            clip=self.clip, seed=self.seed, eval_interval=0, checkpoint_interval=every, spike_factor=0.0,
            log_interval=1, device=self.device, progress=False)


# ---------------------------------------------------------------------------------------------
# The policy as a training objective, and rollouts as its data

# Channels of the per-token rollout tensor `y` (B, T, C) that `Rollouts` hands the loop.
TARGET, OLD_LOGP, REF_LOGP, ADVANTAGE, REWARD, CORRECT, FORMED, N_TOKENS = range(8)
CHANNELS = 8


class GRPOOutput(NamedTuple):
    loss: Tensor
    ce_loss: Tensor  # mean negative log-likelihood of the response tokens (reported only)
    metrics: dict[str, Tensor]


class GRPOObjective(nn.Module):
    """The policy wrapped so that `train()` minimises the GRPO loss: forward(ids, rollout)."""

    def __init__(self, policy: GPT, cfg: GRPOConfig):
        super().__init__()
        self.policy, self.cfg = policy, cfg

    def forward(self, x: Tensor, y: Tensor) -> GRPOOutput:
        cfg = self.cfg
        targets = y[..., TARGET].long()
        mask = (targets != IGNORE_INDEX).float()
        logits = self.policy(x).logits
        log_probs = F.log_softmax(logits, dim=-1)
        logp = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
        entropy = -(log_probs.exp() * log_probs).sum(dim=-1).detach()
        loss, metrics = grpo_loss(
            logp, y[..., OLD_LOGP], y[..., REF_LOGP] if cfg.beta > 0 else None, y[:, 0, ADVANTAGE], mask,
            eps_low=cfg.eps_low, eps_high=cfg.eps_high, beta=cfg.beta, aggregation=cfg.aggregation,
            max_len=cfg.max_new_tokens, cispo=cfg.cispo, n_tokens=y[0, 0, N_TOKENS], entropy=entropy)
        lengths = mask.sum(dim=1)
        metrics.update(reward=y[:, 0, REWARD].mean(), accuracy=y[:, 0, CORRECT].mean(),
                       well_formed=y[:, 0, FORMED].mean(), response_length=lengths.mean())
        nll = -(logp * mask).sum() / mask.sum().clamp(min=1.0)
        return GRPOOutput(loss, nll.detach(), metrics)


@dataclass
class RolloutBatch:
    """The rows of one rollout batch, ready for the loop: ids (B, T) and channels (B, T, C)."""

    index: int
    x: Tensor
    y: Tensor


class Rollouts:
    """The loop's batch source: data index i (micro-batch m of optimizer step s) reads rollout
    batch r = s // μ, generated from the current policy the first time it is asked for.

    Rollout batch r draws P training items and samples G responses each (seeded by (seed, r)),
    scores them, and computes, once and without gradients, the policy's log-probabilities of
    the sampled tokens (old_logp) and the reference's (ref_logp, when there is a reference).
    """

    def __init__(self, policy: GPT, reference: GPT | None, tokenizer: Tokenizer, items: Sequence[Item],
                 cfg: GRPOConfig, width: int):
        self.policy, self.reference, self.tokenizer = policy, reference, tokenizer
        self.items, self.cfg, self.width = list(items), cfg, width
        self.current: RolloutBatch | None = None

    def batch(self, index: int, batch_size: int, seq_len: int, rank: int = 0,
              world_size: int = 1) -> tuple[Tensor, Tensor]:
        if world_size != 1:
            raise ValueError("GRPO rollouts run in a single process.")
        slot, micro = divmod(index, self.cfg.grad_accum)
        r = slot // self.cfg.updates
        if self.current is None or self.current.index != r:
            self.current = self.rollout(r)
        rows = slice(micro * batch_size, (micro + 1) * batch_size)
        return self.current.x[rows], self.current.y[rows]

    def rollout(self, r: int) -> RolloutBatch:
        cfg, tok = self.cfg, self.tokenizer
        rng = np.random.default_rng([cfg.seed, r])
        chosen = [self.items[i] for i in rng.choice(len(self.items), cfg.prompts, replace=False)]
        samples = sample(self.policy, tok, chosen, cfg.group, temperature=cfg.temperature,
                         max_new_tokens=cfg.max_new_tokens, seed=cfg.seed * 1_000_003 + r)
        rewards = torch.tensor(samples.correct, dtype=torch.float32) \
            + cfg.format_weight * torch.tensor(samples.well_formed, dtype=torch.float32)
        advantages = group_advantages(rewards, cfg.adv_scale)
        x, targets = rollout_rows(tok, chosen, samples.ids, self.width)
        device = next(self.policy.parameters()).device
        x, targets = x.to(device), targets.to(device)
        with torch.no_grad():
            old = _logprobs(self.policy, x, targets)
            ref = torch.zeros_like(old) if self.reference is None else _logprobs(self.reference, x, targets)
        per_row = torch.stack([advantages.flatten(), rewards.flatten(),
                               torch.tensor(samples.correct, dtype=torch.float32).flatten(),
                               torch.tensor(samples.well_formed, dtype=torch.float32).flatten()], dim=1)
        n_tokens = (targets != IGNORE_INDEX).sum().float() / cfg.grad_accum
        y = torch.zeros(*x.shape, CHANNELS, device=device)
        y[..., TARGET], y[..., OLD_LOGP], y[..., REF_LOGP] = targets.float(), old, ref
        y[..., ADVANTAGE:FORMED + 1] = per_row.to(device)[:, None, :]
        y[..., N_TOKENS] = n_tokens
        return RolloutBatch(r, x, y)


def _logprobs(model: GPT, x: Tensor, targets: Tensor) -> Tensor:
    logits = model(x).logits
    return torch.log_softmax(logits, dim=-1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1) \
        * (targets != IGNORE_INDEX)


def rollout_rows(tokenizer: Tokenizer, items: Sequence[Item], responses: Sequence[Sequence[Sequence[int]]],
                 width: int) -> tuple[Tensor, Tensor]:
    """Inputs and targets (rows, width) of sampled responses, item-major (item 0's G rows, …).

    A row is the chat prompt followed by the response, right-padded; input t predicts token
    t + 1, and targets are IGNORE_INDEX except on the response's tokens (its <|end|> included,
    when it wrote one), so only sampled tokens carry a loss.
    """
    rows = [(prompt_ids(tokenizer, it.prompt), list(resp)) for it, group in zip(items, responses, strict=True)
            for resp in group]
    x = torch.full((len(rows), width), tokenizer.pad_id, dtype=torch.long)
    y = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for i, (prompt, resp) in enumerate(rows):
        seq = prompt + resp
        if len(seq) - 1 > width:
            raise ValueError(f"a rollout of {len(seq)} tokens does not fit width {width} + 1.")
        x[i, :len(seq) - 1] = torch.tensor(seq[:-1])
        y[i, len(prompt) - 1:len(seq) - 1] = torch.tensor(resp, dtype=torch.long)
    return x, y


# ---------------------------------------------------------------------------------------------
# Training and the stored run


def heldout_pass1(policy: GPT, tokenizer: Tokenizer, items: Sequence[Item], cfg: GRPOConfig) -> float:
    """Share of correct samples (pass@1) on held-out items at the rollout temperature."""
    return sample(policy, tokenizer, items, cfg.eval_samples, temperature=cfg.temperature,
                  max_new_tokens=cfg.max_new_tokens, seed=cfg.seed + 7).accuracy


def rollout_width(tokenizer: Tokenizer, items: Sequence[Item], max_new_tokens: int) -> int:
    """Padded row width: the longest chat prompt plus the generation limit."""
    return max(len(prompt_ids(tokenizer, it.prompt)) for it in items) + max_new_tokens


def train_grpo(policy: GPT, tokenizer: Tokenizer, items: Sequence[Item], cfg: GRPOConfig, run_dir: Path, *,
               eval_items: Sequence[Item] = (), on_log: Callable[[dict[str, Any]], None] | None = None,
               ) -> tuple[TrainResult, dict[int, float]]:
    """Train `policy` in place with GRPO on `items`, in `run_dir` (resuming from its checkpoints).

    Returns the loop's result and the held-out pass@1 on `eval_items` by step (step 0 = before,
    every `eval_every` steps and at the end; also written to run_dir/heldout.json).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    policy.to(device).train().requires_grad_(True)
    # The reference: a frozen copy of the starting weights (taken before the loop loads any
    # checkpoint, so a resumed run gets the same one), in eval mode, with its own weights. Not
    # built at all without a KL term.
    reference = copy.deepcopy(policy).eval().requires_grad_(False) if cfg.beta > 0 else None
    width = rollout_width(tokenizer, items, cfg.max_new_tokens)
    source = Rollouts(policy, reference, tokenizer, items, cfg, width)
    objective = GRPOObjective(policy, cfg)
    held_path = run_dir / HELD_OUT_FILE
    held: dict[int, float] = ({int(k): v for k, v in json.loads(held_path.read_text()).items()}
                              if held_path.exists() else {})

    def measure(step: int) -> None:
        if eval_items:
            held[step] = heldout_pass1(policy, tokenizer, eval_items, cfg)
            held_path.write_text(json.dumps(held), encoding="utf-8")

    if 0 not in held:
        measure(0)

    def logged(record: dict[str, Any]) -> None:
        step = record["step"]
        if step == cfg.steps or (cfg.eval_every and step % cfg.eval_every == 0):
            measure(step)
        if on_log is not None:
            on_log(record)

    result = train(objective, source, cfg.train_config(width), run_dir, on_log=logged)
    return result, dict(sorted(held.items()))


def grpo(base: PretrainConfig, sft_cfg: SFTConfig | None, cfg: GRPOConfig,
         store: Store | None = None) -> PostRun:
    """GRPO from the SFT model of (`base`, `sft_cfg`) — or from the pre-trained `base` itself when
    `sft_cfg` is None — on math word problems; stored as kind "post-grpo", keyed by the chain
    (base, SFT, GRPO), resuming a killed run from its checkpoints.

    The summary holds the loop's figures, `heldout_pass1` {step: pass@1 on `eval_items` test
    problems}, and the last step's reward, accuracy, KL, entropy and clip fraction.
    """
    store = store or Store()
    if sft_cfg is None:
        start = pretrain(base, store)
        start_model, tokenizer = start.model, start.tokenizer
        chain: dict[str, Any] = {"base": base.key(), "sft": None}
    else:
        start = sft(base, sft_cfg, store)
        start_model, tokenizer = start.model, start.tokenizer
        chain = dict(start.key)
    key = {**chain, "grpo": dataclasses.asdict(cfg)}
    corpus = base.corpus

    def produce(out: Path, scratch: Path) -> None:
        items = math_items(corpus, "train", cfg.train_items, arithmetic=cfg.arithmetic)
        eval_items = math_items(corpus, "test", cfg.eval_items, arithmetic=cfg.arithmetic)
        policy = copy.deepcopy(start_model)
        result, held = train_grpo(policy, tokenizer, items, cfg, scratch, eval_items=eval_items)
        last = result.metrics[-1]
        summary = {**result.summary(), "heldout_pass1": {str(k): v for k, v in held.items()},
                   **{name: last.get(name) for name in LAST_STEP}}
        write_run(out, plain_copy(policy, start_model.cfg), tokenizer, summary, metrics_from=scratch)

    path = store.artifact("post-grpo", key, produce)
    return load_run(path, "grpo", key)
