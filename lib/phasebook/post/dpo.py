"""Direct preference optimisation (DPO) and its variants, on pairs of responses the model wrote.

DPO (Rafailov et al. 2023) turns a preference — response y_c is better than y_r for prompt x —
into a classification loss on the policy π_θ, measured against a frozen reference π_ref (the
model DPO starts from):

    L = −log σ( β·[ (log π_θ(y_c|x) − log π_ref(y_c|x)) − (log π_θ(y_r|x) − log π_ref(y_r|x)) ] )

β·(log π_θ(y|x) − log π_ref(y|x)) is the *implicit reward* of y: the reward under which the
KL-regularised RL optimum would be exactly π_θ. The loss pushes the chosen response's reward
above the rejected one's; it never samples, so it can only re-rank responses that are in its
pairs (the claim the *dpo* notebook tests: it works inside the data's support).

Two variants (`dpo_loss`):
- length-normalised (Tülu 3): each log-ratio divided by its response's length, so a long
  rejected response cannot win the margin by its length alone;
- IPO (Azar et al. 2023): a squared loss that pulls the log-ratio difference to 1/(2β) instead
  of pushing it to infinity, computed on length-averaged log-probabilities (as in the IPO
  implementations; see `dpo_loss`).

Pairs come from two sources: the verifier (a correct and an incorrect sample of the model's own,
`verifier_pairs`) and format (the gold response and a malformed copy, `format_pairs`).
`dpo` trains a stored SFT model on them with the book's training loop, through `DPOObjective`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from phasebook.data import Tokenizer
from phasebook.errors import PhasebookError
from phasebook.model import GPT, IGNORE_INDEX, token_logprobs
from phasebook.post.chat import EpochOrder, encode
from phasebook.post.run import PostRun, load_run, write_run
from phasebook.post.sampling import sample
from phasebook.post.sft import SFTConfig, sft
from phasebook.post.tasks import Item, is_well_formed, math_items
from phasebook.store import Store
from phasebook.train.checkpoint import plain_copy
from phasebook.train.loop import TrainConfig, train
from phasebook.train.optim import OptimizerConfig
from phasebook.train.pretraining import PretrainConfig
from phasebook.train.schedules import ScheduleConfig
from phasebook.validation import Checks

Variant = Literal["sigmoid", "ipo"]
VARIANTS = ("sigmoid", "ipo")
HELDOUT_FILE = "heldout.jsonl"  # held-out pair metrics over training, one record per evaluation
PAIRS_FILE = "pairs.json"


# ---- the loss ------------------------------------------------------------------------------------

def sequence_logprobs(model: nn.Module, ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """(Σ log π(y_t | y_<t, x), number of tokens) over the masked tokens of each row.

    ids: (N, L) whole exchanges (prompt and response, right-padded); mask: (N, L), 1 on the
    tokens that count (the response and its closing <|end|>, as `chat.encode` marks them), 0 on
    the prompt and the padding. Token t is predicted from the tokens before it, so the input is
    ids[:, :-1] and the target ids[:, 1:] where the mask is 1. Padding sits after each exchange
    and attention is causal, so it changes no log-probability of the tokens before it.

    The one function for the policy (with gradients) and the reference (under `torch.no_grad`).
    """
    targets = torch.where(mask[:, 1:].bool(), ids[:, 1:], torch.full_like(ids[:, 1:], IGNORE_INDEX))
    logps = token_logprobs(model, ids[:, :-1], targets)  # (N, L − 1), 0 where the target is ignored
    return logps.sum(dim=1), (targets != IGNORE_INDEX).sum(dim=1)


def dpo_loss(policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor,
             beta: float, *, variant: Variant = "sigmoid", chosen_len: Tensor | None = None,
             rejected_len: Tensor | None = None, length_normalised: bool = False,
             ) -> tuple[Tensor, dict[str, Tensor]]:
    """The preference loss, averaged over pairs, and its metrics.

    Inputs are summed response log-probabilities (B,) of the policy and of the reference, for
    the chosen and the rejected response of each pair; `chosen_len` / `rejected_len` (B,) their
    token counts.

    - "sigmoid", DPO (Rafailov et al. 2023, eq. 7):
      −log σ(β·[(π_c − r_c) − (π_r − r_r)]), π = log π_θ(y|x), r = log π_ref(y|x).
    - "sigmoid" with `length_normalised` (Tülu 3, "length-normalised DPO"): every log-ratio
      divided by its response's length, (π_c − r_c)/|y_c| − (π_r − r_r)/|y_r|, inside the same
      −log σ(β·…).
    - "ipo" (Azar et al. 2023, eq. 17): (h − 1/(2β))², h the log-ratio difference. Our choice:
      h is computed on length-averaged log-probabilities, h = (π_c − r_c)/|y_c| − (π_r − r_r)/|y_r|,
      as the IPO implementations do (TRL's "ipo" loss), so 1/(2β) is a target per token; the
      lengths are therefore required, and `length_normalised` is not an option of IPO (it
      already is).

    Metrics (detached): the implicit rewards β·(log-ratio, as the loss sees it) of the chosen
    and rejected responses, their mean `margin`, and `accuracy`, the share of pairs whose chosen
    reward is strictly above the rejected one's (0 when policy = reference: no pair is ranked).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant is {variant!r}; allowed: {', '.join(VARIANTS)}.")
    averaged = length_normalised or variant == "ipo"
    if variant == "ipo" and length_normalised:
        raise ValueError("variant 'ipo' already averages log-probabilities over the response; "
                         "leave length_normalised False.")
    if averaged and (chosen_len is None or rejected_len is None):
        raise ValueError(f"variant {variant!r}{' with length_normalised' if length_normalised else ''} "
                         "divides by response lengths: pass chosen_len and rejected_len.")
    # The log-ratios log π_θ(y|x) − log π_ref(y|x), the policy's implicit reward of y over β.
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    if averaged:
        # Per-token log-ratios: a response's length no longer scales its reward.
        chosen_ratio = chosen_ratio / chosen_len.clamp(min=1)
        rejected_ratio = rejected_ratio / rejected_len.clamp(min=1)
    h = chosen_ratio - rejected_ratio  # how much more the policy prefers y_c over y_r than π_ref does
    # sigmoid: −log σ(βh) = softplus(−βh), computed without overflow for large |βh|.
    # ipo: regress h onto 1/(2β), so the margin stops growing once it is reached.
    losses = F.softplus(-beta * h) if variant == "sigmoid" else (h - 1.0 / (2.0 * beta)) ** 2
    chosen_reward = beta * chosen_ratio.detach()
    rejected_reward = beta * rejected_ratio.detach()
    metrics = {"reward_chosen": chosen_reward.mean(), "reward_rejected": rejected_reward.mean(),
               "margin": (chosen_reward - rejected_reward).mean(),
               "accuracy": (chosen_reward > rejected_reward).float().mean()}
    return losses.mean(), metrics


# ---- the frozen reference and the objective ------------------------------------------------------

def frozen_reference(model: GPT) -> GPT:
    """A frozen copy of `model`: its own weights (a deep copy, no Parameter shared with the
    policy, so training the policy cannot move it), eval mode, no gradients."""
    reference = copy.deepcopy(model).eval()
    reference.requires_grad_(False)
    return reference


@dataclass
class DPOOutput:
    """What `train()` reads: `loss` (minimised), `ce_loss` (reported: the policy's mean
    cross-entropy per token of the chosen responses) and `metrics` (scalars, logged)."""

    loss: Tensor
    ce_loss: Tensor
    metrics: dict[str, Tensor]


class DPOObjective(nn.Module):
    """The policy with its frozen reference, as a model `train()` can optimise.

    forward(x, y): x (B, 2, L) token ids of each pair's exchanges (chosen, rejected), y (B, 2, L)
    their loss masks (see `PairBatches`). Chosen and rejected go through the policy in one
    batch. The reference's log-probabilities are computed in the same step under no_grad: the
    reference never changes, so they could equally be computed once per pair beforehand; here
    it costs one forward pass per step and keeps every batch self-contained. Only the policy's
    parameters train: the reference has requires_grad False, so the optimizer never sees it.

    `nll_weight` α > 0 adds α times the policy's mean cross-entropy per token of the chosen
    responses to the loss (the NLL term of iterative RPO, Pang et al. 2024, also used by Llama 3):
    plain DPO may lower the likelihood of the chosen responses as long as the rejected ones fall
    faster; the NLL term holds the chosen ones up.
    """

    def __init__(self, policy: GPT, reference: GPT, beta: float, variant: Variant = "sigmoid",
                 length_normalised: bool = False, nll_weight: float = 0.0):
        super().__init__()
        if any(p.requires_grad for p in reference.parameters()):
            raise ValueError("the reference must be frozen: build it with frozen_reference(model).")
        shared = {id(p) for p in policy.parameters()} & {id(p) for p in reference.parameters()}
        if shared:
            raise ValueError("policy and reference share parameters; the reference needs its own weights.")
        self.policy, self.reference = policy, reference
        self.beta, self.variant, self.length_normalised = beta, variant, length_normalised
        self.nll_weight = nll_weight

    def train(self, mode: bool = True) -> DPOObjective:
        """Train mode for the policy only: the reference stays in eval mode."""
        super().train(mode)
        self.reference.eval()
        return self

    def forward(self, x: Tensor, y: Tensor) -> DPOOutput:
        b = x.shape[0]
        ids, mask = x.reshape(2 * b, -1), y.reshape(2 * b, -1)  # rows: pair 0 chosen, pair 0 rejected, …
        policy, counts = sequence_logprobs(self.policy, ids, mask)
        with torch.no_grad():
            reference, _ = sequence_logprobs(self.reference, ids, mask)
        lengths = counts.to(policy.dtype)
        loss, metrics = dpo_loss(policy[0::2], policy[1::2], reference[0::2], reference[1::2], self.beta,
                                 variant=self.variant, chosen_len=lengths[0::2], rejected_len=lengths[1::2],
                                 length_normalised=self.length_normalised)
        chosen_nll = -policy[0::2].sum() / lengths[0::2].sum().clamp(min=1)
        metrics["dpo_loss"] = loss.detach()
        metrics["logp_chosen"] = (-chosen_nll).detach()  # mean log-prob per chosen token
        metrics["logp_rejected"] = (policy[1::2].sum() / lengths[1::2].sum().clamp(min=1)).detach()
        if self.nll_weight > 0:
            loss = loss + self.nll_weight * chosen_nll
        return DPOOutput(loss, chosen_nll.detach(), metrics)


# ---- preference pairs ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Pair:
    """A prompt with a preferred (chosen) and a dispreferred (rejected) response, as text;
    `source` says where the preference comes from ("verifier" or "format")."""

    item: Item
    chosen: str
    rejected: str
    source: str

    def to_json(self) -> dict[str, Any]:
        return {"lang": self.item.lang, "prompt": self.item.prompt, "answer": self.item.answer,
                "chosen": self.chosen, "rejected": self.rejected, "source": self.source}


def verifier_pairs(model: GPT, tokenizer: Tokenizer, items: Sequence[Item], n: int, *,
                   temperature: float = 1.0, max_new_tokens: int = 48, seed: int = 0) -> list[Pair]:
    """Pairs from the model's own samples: `n` responses per item (`sampling.sample`); an item
    with both a correct, well-formed response and an incorrect one gives one pair (the first
    of each). Items whose samples are all right or all wrong give none: the verifier has no
    preference to teach there."""
    samples = sample(model, tokenizer, items, n, temperature=temperature, max_new_tokens=max_new_tokens,
                     seed=seed)
    pairs = []
    for i, item in enumerate(items):
        good = [j for j in range(n) if samples.correct[i, j] and samples.well_formed[i, j]]
        bad = [j for j in range(n) if not samples.correct[i, j]]
        if good and bad:
            pairs.append(Pair(item, samples.texts[i][good[0]], samples.texts[i][bad[0]], "verifier"))
    return pairs


_ANSWER_SENTENCE = {"en": re.compile(r"\s*The answer is -?\d+\.$"), "zh": re.compile(r"答案是-?\d+。$")}
# Chatter after the answer: words, never arithmetic, so that pushing it down cannot teach the
# model to avoid a correct equation (a repeated step as the rambling did exactly that).
_RAMBLING = {"en": " I hope this helps.", "zh": "希望对你有帮助。"}


def malformed(item: Item, variant: int) -> str:
    """A malformed copy of a math item's gold response: variant 0 stops before the answer
    sentence (the working without the conclusion: no answer to read off); variant 1 goes on
    after it with a pleasantry (the right answer, but the turn does not end there)."""
    if item.kind != "math":
        raise ValueError(f"format pairs are built for math items; this item is {item.kind!r}.")
    if variant % 2 == 0:
        return _ANSWER_SENTENCE[item.lang].sub("", item.response).strip()
    return item.response + _RAMBLING[item.lang]


def format_pairs(items: Sequence[Item]) -> list[Pair]:
    """Format preferences: item i's gold response (well-formed: steps, the answer sentence,
    nothing after) against `malformed(item, i)`, the two kinds of malformation alternating."""
    pairs = []
    for i, item in enumerate(items):
        bad = malformed(item, i)
        if not bad or is_well_formed(item, bad):
            raise ValueError(f"no malformed response for {item.response!r}.")
        pairs.append(Pair(item, item.response, bad, "format"))
    return pairs


def encode_pairs(tokenizer: Tokenizer, pairs: Sequence[Pair], length: int) -> tuple[Tensor, Tensor]:
    """(ids, masks), each (P, 2, length): the chosen and rejected exchange of every pair, encoded
    like SFT data (`chat.encode`) and right-padded with the pad token (mask 0)."""
    ids = torch.full((len(pairs), 2, length), tokenizer.pad_id, dtype=torch.long)
    masks = torch.zeros((len(pairs), 2, length), dtype=torch.long)
    for p, pair in enumerate(pairs):
        for s, response in enumerate((pair.chosen, pair.rejected)):
            seq, mask = encode(tokenizer, pair.item.example(response))
            if len(seq) > length:
                raise PhasebookError(f"pair {p} has an exchange of {len(seq)} tokens; the pairs are padded "
                                     f"to {length}.")
            ids[p, s, :len(seq)] = torch.tensor(seq)
            masks[p, s, :len(seq)] = torch.tensor(mask)
    return ids, masks


def pair_length(tokenizer: Tokenizer, pairs: Sequence[Pair]) -> int:
    """The longest exchange among the pairs, in tokens: the length they are padded to."""
    return max(len(encode(tokenizer, pair.item.example(r))[0]) for pair in pairs
               for r in (pair.chosen, pair.rejected))


class PairBatches:
    """A BatchSource of encoded pairs, shuffled once per epoch with `seed`.

    Global row k of micro-batch `index` (world_size · batch_size rows; rank r reads rows
    r, r + W, …) is pair number index·G + k of an endless stream of epochs, so a step sees the
    same pairs whatever grad_accum and world size. `seq_len` must be the pairs' padded length.
    """

    def __init__(self, ids: Tensor, masks: Tensor, seed: int = 0):
        if len(ids) == 0:
            raise PhasebookError("no preference pairs to train on.")
        self.ids, self.masks = ids, masks
        self.order = EpochOrder(len(ids), seed)

    def batch(self, index: int, batch_size: int, seq_len: int, rank: int = 0,
              world_size: int = 1) -> tuple[Tensor, Tensor]:
        if seq_len != self.ids.shape[-1]:
            raise PhasebookError(f"seq_len is {seq_len}; these pairs are padded to {self.ids.shape[-1]}.")
        rows = self.order.rows(index, batch_size, rank, world_size)
        return self.ids[rows], self.masks[rows]


@torch.no_grad()
def pair_metrics(objective: DPOObjective, ids: Tensor, masks: Tensor, batch_size: int = 64,
                 ) -> dict[str, float]:
    """The objective's loss and metrics over all the given pairs (e.g. held-out ones), pair-weighted."""
    device = next(objective.policy.parameters()).device
    was_training = objective.policy.training
    objective.policy.eval()
    totals: dict[str, float] = {}
    for start in range(0, len(ids), batch_size):
        x, y = ids[start:start + batch_size].to(device), masks[start:start + batch_size].to(device)
        out = objective(x, y)
        for name, value in {"loss": out.loss, **out.metrics}.items():
            totals[name] = totals.get(name, 0.0) + float(value) * len(x)
    objective.policy.train(was_training)
    return {name: value / len(ids) for name, value in totals.items()}


# ---- the stored stage ----------------------------------------------------------------------------

@dataclass(frozen=True)
class PairsConfig:
    """Where the pairs come from: `items` train-split math items, `samples` responses each from
    the SFT model at `temperature` (verifier pairs), the first `format_items` of those items as
    format pairs, and `heldout_items` test-split items built the same way for evaluation."""

    items: int = 256
    samples: int = 4
    temperature: float = 1.0
    max_new_tokens: int = 48
    format_items: int = 64
    heldout_items: int = 64

    def __post_init__(self) -> None:
        c = Checks(self)
        c.range("items", 1, integer=True)
        c.range("samples", 2, integer=True)
        c.range("temperature", 0.0, lo_open=True)
        c.range("max_new_tokens", 1, integer=True)
        c.range("format_items", 0, integer=True)
        c.range("heldout_items", 1, integer=True)
        if isinstance(self.format_items, int) and isinstance(self.items, int):
            c.rule(self.format_items <= self.items, "format_items", f"must not exceed items ({self.items}).")
        c.done()


@dataclass(frozen=True)
class DPOConfig:
    """A DPO run: `variant` ("sigmoid" or "ipo") with strength `beta`, optionally length-normalised
    (sigmoid only), `steps` AdamW steps of `batch_size` pairs (in `grad_accum` micro-batches) at
    peak rate `lr` (short warm-up, cosine decay), plus `nll_weight` times the chosen responses'
    cross-entropy (see `DPOObjective`), on the pairs of `pairs`, with the held-out
    pairs scored every `eval_interval` steps; `seed` draws the samples and the pair order."""

    beta: float = 0.1
    variant: Variant = "sigmoid"
    length_normalised: bool = False
    steps: int = 100
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 1e-4
    nll_weight: float = 0.0
    pairs: PairsConfig = field(default_factory=PairsConfig)
    eval_interval: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        c = Checks(self)
        c.range("beta", 0.0, lo_open=True)
        c.choice("variant", VARIANTS)
        c.rule(isinstance(self.length_normalised, bool), "length_normalised", "must be true or false.")
        if self.variant == "ipo":
            c.rule(not self.length_normalised, "length_normalised",
                   "must be false with variant 'ipo', which already averages log-probabilities per token.")
        for name in ("steps", "batch_size", "grad_accum", "eval_interval"):
            c.range(name, 1, integer=True)
        if isinstance(self.batch_size, int) and isinstance(self.grad_accum, int) and self.grad_accum > 0:
            c.rule(self.batch_size % self.grad_accum == 0, "batch_size",
                   f"must be a multiple of grad_accum ({self.grad_accum}).")
        c.range("lr", 0.0, lo_open=True)
        c.range("nll_weight", 0.0)
        c.rule(isinstance(self.pairs, PairsConfig), "pairs", "must be a PairsConfig.")
        c.range("seed", 0, integer=True)
        c.done()

    def train_config(self, seq_len: int) -> TrainConfig:
        """The training loop's settings: no weight decay, no spike detection (DPO's loss has no
        fixed scale to spike against), a checkpoint halfway so a killed run resumes."""
        return TrainConfig(steps=self.steps, batch_size=self.batch_size, seq_len=seq_len,
                           grad_accum=self.grad_accum, seed=self.seed,
                           optimizer=OptimizerConfig(lr=self.lr, weight_decay=0.0),
                           schedule=ScheduleConfig(name="cosine", warmup_steps=max(1, self.steps // 10)),
                           eval_interval=0,
                           checkpoint_interval=max(1, self.steps // 2), spike_factor=0.0,
                           log_interval=1, progress=False)


def build_pairs(model: GPT, tokenizer: Tokenizer, items: Sequence[Item], cfg: PairsConfig, seed: int,
                ) -> list[Pair]:
    """Verifier pairs from the model's samples on `items`, then format pairs on the first
    `cfg.format_items` of them."""
    verified = verifier_pairs(model, tokenizer, items, cfg.samples, temperature=cfg.temperature,
                              max_new_tokens=cfg.max_new_tokens, seed=seed)
    return verified + format_pairs(items[:cfg.format_items])


def dpo(base: PretrainConfig, sft_cfg: SFTConfig, cfg: DPOConfig, store: Store | None = None) -> PostRun:
    """Pre-train `base` and fine-tune it with `sft_cfg` (both stored), then train the SFT model
    with DPO on pairs from its own samples; stored as "post-dpo" keyed by the chain
    {"base", "sft", "dpo"}. The policy and the frozen reference both start as the SFT model.

    The summary holds the training figures (`TrainResult.summary`), `pairs` (how many of each source,
    train and held-out, and the padded length) and `heldout`: the held-out pairs' loss, rewards,
    margin, accuracy and chosen/rejected log-probabilities per token at step 0 and at every
    evaluation (also written to heldout.jsonl); the pairs themselves are in pairs.json.
    """
    store = store or Store()
    start = sft(base, sft_cfg, store)
    key = {**start.key, "dpo": dataclasses.asdict(cfg)}

    def produce(out: Path, scratch: Path) -> None:
        torch.manual_seed(cfg.seed)
        tokenizer, spec = start.tokenizer, cfg.pairs
        train_pairs = build_pairs(start.model, tokenizer, math_items(base.corpus, "train", spec.items), spec,
                                  cfg.seed)
        heldout = build_pairs(start.model, tokenizer, math_items(base.corpus, "test", spec.heldout_items),
                              dataclasses.replace(spec, format_items=spec.heldout_items), cfg.seed + 1)
        length = pair_length(tokenizer, train_pairs + heldout)
        train_data = PairBatches(*encode_pairs(tokenizer, train_pairs, length), seed=cfg.seed)
        held_ids, held_masks = encode_pairs(tokenizer, heldout, length)
        objective = DPOObjective(copy.deepcopy(start.model), frozen_reference(start.model), cfg.beta,
                                 cfg.variant, cfg.length_normalised, cfg.nll_weight)
        log_path = scratch / HELDOUT_FILE

        def on_log(record: dict[str, Any]) -> None:
            if record["step"] % cfg.eval_interval == 0 or record["step"] == cfg.steps:
                _append(log_path, {"step": record["step"], **pair_metrics(objective, held_ids, held_masks)})

        _append(log_path, {"step": 0, **pair_metrics(objective, held_ids, held_masks)})
        result = train(objective, train_data, cfg.train_config(length), scratch, on_log=on_log)
        policy = plain_copy(objective.policy, start.model.cfg)
        heldout_log = _read_by_step(log_path)
        (out / HELDOUT_FILE).write_text("".join(json.dumps(r) + "\n" for r in heldout_log), encoding="utf-8")
        (out / PAIRS_FILE).write_text(json.dumps({"train": [p.to_json() for p in train_pairs],
                                                  "heldout": [p.to_json() for p in heldout]},
                                                 ensure_ascii=False, indent=0), encoding="utf-8")
        counts = {f"{split}_{source}": sum(p.source == source for p in pairs)
                  for split, pairs in (("train", train_pairs), ("heldout", heldout))
                  for source in ("verifier", "format")}
        summary = {**result.summary(), "pairs": {**counts, "length": length}, "heldout": heldout_log}
        write_run(out, policy, tokenizer, summary, metrics_from=scratch)

    path = store.artifact("post-dpo", key, produce)
    return load_run(path, "dpo", key)


def _append(path: Path, record: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _read_by_step(path: Path) -> list[dict[str, Any]]:
    """The records of a log a resumed run may have appended to twice: the latest one per step."""
    latest: dict[int, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        latest[record["step"]] = record
    return [latest[s] for s in sorted(latest)]


def load_pairs(run: PostRun) -> dict[str, list[dict[str, Any]]]:
    """The train and held-out pairs of a stored DPO run, as written (text and source)."""
    return json.loads((run.path / PAIRS_FILE).read_text(encoding="utf-8"))
