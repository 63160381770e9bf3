"""GRPO: advantages, the clipped surrogate, the k3 KL, aggregation, gradients and the training run,
each against values worked out by hand on tiny tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import phasebook.post.grpo as grpo_mod
from phasebook.data import CorpusConfig, train_tokenizer
from phasebook.model import GPT, IGNORE_INDEX, ModelConfig
from phasebook.post.grpo import (
    CHANNELS,
    GRPOConfig,
    GRPOObjective,
    group_advantages,
    grpo_loss,
    kl_k3,
    reward,
    rollout_rows,
    train_grpo,
)
from phasebook.post.sampling import Samples
from phasebook.post.tasks import math_items
from phasebook.validation import ConfigError

CORPUS = CorpusConfig()


@pytest.fixture(scope="module")
def world():
    items = math_items(CORPUS, "train", 12)
    tok = train_tokenizer([it.prompt + " " + it.response for it in items], 300)
    return items, tok


def tiny_gpt(vocab: int, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(ModelConfig(vocab_size=vocab, n_layer=1, n_head=2, d_model=16, max_seq_len=128))


# --- rewards and advantages ------------------------------------------------------------------


def test_reward_is_answer_plus_format(world):
    items, tok = world
    item = items[0]
    gold = [*tok.encode(item.response), tok.end_id]
    assert reward(tok, item, gold, format_weight=0.1) == pytest.approx(1.1)
    assert reward(tok, item, tok.encode(item.response), format_weight=0.1) == pytest.approx(1.0)  # no <|end|>
    wrong_text = item.response.replace(f"is {item.answer}.", f"is {int(item.answer) + 1}.")
    wrong = [*tok.encode(wrong_text), tok.end_id]
    assert reward(tok, item, wrong, format_weight=0.25) == pytest.approx(0.25)  # well formed, wrong
    assert reward(tok, item, [*tok.encode("hello"), tok.end_id]) == 0.0


def test_group_advantages_by_hand():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    group = group_advantages(r, "group", eps=0.0)  # group 0: mean .5, std .5; group 1: all equal
    assert torch.equal(group, torch.tensor([[1.0, -1.0, -1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]))
    batch = group_advantages(r, "batch", eps=0.0)  # all 8 rewards: mean .75, std sqrt(.75·.25)
    assert torch.allclose(batch[0], torch.tensor([0.5, -0.5, -0.5, 0.5]) / math.sqrt(0.1875))
    assert torch.equal(batch[1], torch.zeros(4))
    assert torch.equal(group_advantages(r, "none"), torch.tensor([[0.5, -0.5, -0.5, 0.5], [0.0] * 4]))


def test_equal_rewards_give_zero_not_nan():
    # 0.1 is not a binary fraction: its mean is off by rounding, and / (0 + eps) would blow it up.
    r = torch.tensor([[0.1, 0.1, 0.1], [1.1, 1.1, 1.1], [0.0, 0.0, 0.0]])
    for scale in ("group", "batch", "none"):
        for eps in (0.0, 1e-8):
            adv = group_advantages(r, scale, eps=eps)
            assert torch.equal(adv, torch.zeros_like(r)), (scale, eps)


# --- the clipped surrogate -------------------------------------------------------------------


def one_token_rows(ratios: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    old = torch.log(torch.full((len(ratios), 1), 0.3))
    logp = (old + torch.log(torch.tensor(ratios))[:, None]).requires_grad_(True)
    return logp, old


def test_clipped_surrogate_inside_and_outside_the_range():
    ratios = [1.5, 0.5, 1.1, 0.9] * 2
    adv = torch.tensor([1.0] * 4 + [-1.0] * 4)
    logp, old = one_token_rows(ratios)
    loss, metrics = grpo_loss(logp, old, None, adv, torch.ones(8, 1), eps_low=0.2, eps_high=0.3,
                              aggregation="sequence")
    # Per token: −min(r·A, clip(r, 0.8, 1.3)·A)
    #   A=+1: r=1.5 → −1.3 (clipped), 0.5 → −0.5, 1.1 → −1.1, 0.9 → −0.9
    #   A=−1: r=1.5 → +1.5, 0.5 → +0.8 (clipped), 1.1 → +1.1, 0.9 → +0.9
    per_token = torch.tensor([-1.3, -0.5, -1.1, -0.9, 1.5, 0.8, 1.1, 0.9])
    assert loss.item() == pytest.approx(per_token.mean().item(), abs=1e-6)
    loss.backward()
    # d/dlogp of −r·A is −r·A (dr/dlogp = r); a clipped token has gradient 0. Mean over 8 rows.
    expected = torch.tensor([0.0, -0.5, -1.1, -0.9, 1.5, 0.0, 1.1, 0.9]) / 8
    assert torch.allclose(logp.grad[:, 0], expected, atol=1e-6)
    assert metrics["clip_fraction"].item() == pytest.approx(2 / 8)
    assert metrics["ratio"].item() == pytest.approx(np.mean(ratios), abs=1e-6)


def test_cispo_keeps_the_gradient_of_clipped_tokens():
    logp, old = one_token_rows([1.5, 1.0])
    loss, metrics = grpo_loss(logp, old, None, torch.tensor([1.0, 1.0]), torch.ones(2, 1), eps_low=0.2,
                              eps_high=0.3, aggregation="sequence", cispo=True)
    loss.backward()
    # −sg(clip(r))·A·logp: gradient −clip(r)·A per token, averaged over the 2 rows.
    assert torch.allclose(logp.grad[:, 0], torch.tensor([-1.3, -1.0]) / 2, atol=1e-6)
    assert metrics["clip_fraction"].item() == pytest.approx(0.5)


# --- the k3 KL -------------------------------------------------------------------------------


def test_k3_is_zero_when_policy_is_the_reference():
    logp = torch.log_softmax(torch.randn(3, 5), dim=-1)
    assert torch.equal(kl_k3(logp, logp.clone()), torch.zeros(3, 5))
    _, metrics = grpo_loss(logp, logp, logp.clone(), torch.ones(3), torch.ones(3, 5), beta=0.1)
    assert metrics["kl"].item() == 0.0


def test_k3_expectation_is_the_exact_kl():
    pi = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05], dtype=torch.float64)
    ref = torch.tensor([0.1, 0.3, 0.2, 0.2, 0.2], dtype=torch.float64)
    exact = (pi * (pi / ref).log()).sum()  # KL(π‖ref)
    expected_k3 = (pi * kl_k3(pi.log(), ref.log())).sum()  # E_{x∼π}[k3(x)], by enumeration
    assert expected_k3.item() == pytest.approx(exact.item(), rel=1e-12)
    # …and k3 is non-negative sample by sample, unlike the naive log(π/ref).
    assert (kl_k3(pi.log(), ref.log()) >= 0).all()


def test_beta_adds_the_k3_penalty():
    logp = torch.log(torch.tensor([[0.5, 0.25]]))
    ref = torch.log(torch.tensor([[0.25, 0.25]]))
    loss, metrics = grpo_loss(logp, logp, ref, torch.zeros(1), torch.ones(1, 2), beta=0.5,
                              aggregation="token")
    k3_first = 0.5 - math.log(0.5) - 1  # exp(ref − logp) = 1/2
    assert metrics["kl"].item() == pytest.approx(k3_first / 2)
    assert loss.item() == pytest.approx(0.5 * k3_first / 2)


# --- aggregation with padding ----------------------------------------------------------------


def test_each_aggregation_with_padding():
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    old = torch.zeros(2, 4)
    logp = torch.where(mask.bool(), old, torch.full_like(old, 100.0))  # garbage on padding: ignored
    adv = torch.tensor([1.0, 0.5])  # ratio 1 on response tokens: per-token loss −A
    loss = {agg: grpo_loss(logp, old, None, adv, mask, aggregation=agg, max_len=5)[0].item()
            for agg in ("sequence", "token", "constant")}
    assert loss["sequence"] == pytest.approx((-1.0 + -0.5) / 2)  # mean of each row's mean
    assert loss["token"] == pytest.approx((-2.0 - 2.0) / 6)  # every response token once
    assert loss["constant"] == pytest.approx((-2.0 - 2.0) / (2 * 5))  # ÷ (B · max_len)
    with pytest.raises(ValueError, match="max_len"):
        grpo_loss(logp, old, None, adv, mask, aggregation="constant")
    with pytest.raises(ValueError, match="allowed"):
        grpo_loss(logp, old, None, adv, mask, aggregation="tokens")


# --- gradients through the model -------------------------------------------------------------


def rollout(world, n_rows: int = 4, length: int = 6, seed: int = 0):
    """Rows of chat prompts + random responses, their channels tensor, from a tiny GPT."""
    items, tok = world
    g = torch.Generator().manual_seed(seed)
    responses = [[torch.randint(10, 200, (length,), generator=g).tolist()] for _ in range(n_rows)]
    x, targets = rollout_rows(tok, items[:n_rows], responses, width=110)
    return tok, x, targets


def channels(targets: torch.Tensor, old: torch.Tensor, adv: torch.Tensor, n_micro: int = 1) -> torch.Tensor:
    y = torch.zeros(*targets.shape, CHANNELS)
    y[..., grpo_mod.TARGET], y[..., grpo_mod.OLD_LOGP] = targets.float(), old
    y[..., grpo_mod.ADVANTAGE] = adv[:, None]
    y[..., grpo_mod.N_TOKENS] = (targets != IGNORE_INDEX).sum().float() / n_micro
    return y


def test_gradient_reaches_response_tokens_only(world):
    tok, x, targets = rollout(world)
    model = tiny_gpt(tok.vocab_size)
    logits = model(x).logits
    logits.retain_grad()
    logp = F.log_softmax(logits, -1).gather(-1, targets.clamp(min=0)[..., None])[..., 0]
    mask = (targets != IGNORE_INDEX).float()
    loss, _ = grpo_loss(logp * mask, (logp * mask).detach(), None, torch.tensor([1.0, -1.0, 0.5, -0.5]), mask)
    loss.backward()
    touched = logits.grad.abs().sum(-1) > 0
    assert torch.equal(touched, mask.bool())  # the response's positions, and nothing else
    # the response starts right after <|assistant|>, ends with its last sampled token
    assert mask.sum(1).tolist() == [6.0] * 4


def test_first_step_loss_is_zero_but_gradient_is_not(world):
    tok, x, targets = rollout(world)
    model = tiny_gpt(tok.vocab_size)
    cfg = GRPOConfig(beta=0.0, aggregation="token")
    with torch.no_grad():
        old = grpo_mod._logprobs(model, x, targets)
    adv = group_advantages(torch.tensor([[1.0, 0.0], [0.0, 1.0]])).flatten()  # zero-mean advantages
    out = GRPOObjective(model, cfg)(x, channels(targets, old, adv))
    out.loss.backward()
    assert abs(out.loss.item()) < 1e-6  # ratio = 1, equal lengths: −mean(A) = 0
    assert out.metrics["ratio"].item() == pytest.approx(1.0)
    norm = torch.sqrt(sum((p.grad ** 2).sum() for p in model.parameters() if p.grad is not None))
    assert norm.item() > 1e-3


@pytest.mark.parametrize("aggregation", ["sequence", "token", "constant"])
def test_gradient_accumulation_splits_give_the_same_update(world, aggregation):
    tok, x, targets = rollout(world)
    targets[0, targets[0] != IGNORE_INDEX] = torch.where(  # uneven lengths: cut row 0's last 3 tokens
        torch.arange(int((targets[0] != IGNORE_INDEX).sum())) < 3, targets[0, targets[0] != IGNORE_INDEX],
        torch.tensor(IGNORE_INDEX))
    cfg = GRPOConfig(beta=0.0, aggregation=aggregation, max_new_tokens=8)
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5])
    grads = []
    for n_micro in (1, 2):
        model = tiny_gpt(tok.vocab_size)
        with torch.no_grad():  # old log-probs of a slightly different policy: ratios ≠ 1
            old = grpo_mod._logprobs(tiny_gpt(tok.vocab_size, seed=1), x, targets)
        y = channels(targets, old, adv, n_micro)
        objective = GRPOObjective(model, cfg)
        rows = x.shape[0] // n_micro
        for m in range(n_micro):  # what the loop does: mean of the micro-batch losses
            part = slice(m * rows, (m + 1) * rows)
            (objective(x[part], y[part]).loss / n_micro).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


# --- the training run ------------------------------------------------------------------------


def fake_verifier(monkeypatch):
    """Score a response by the parity of its token sum, so a random tiny model gets mixed rewards."""
    real = grpo_mod.sample

    def scored(*args, **kwargs):
        s = real(*args, **kwargs)
        correct = np.array([[sum(r) % 2 == 0 for r in rows] for rows in s.ids])
        return Samples(s.ids, s.texts, correct, s.well_formed)

    monkeypatch.setattr(grpo_mod, "sample", scored)


def small_cfg(**changes) -> GRPOConfig:
    values = {"steps": 4, "prompts": 2, "group": 3, "updates": 2, "max_new_tokens": 6, "train_items": 12,
              "eval_items": 2, "eval_samples": 2, "eval_every": 2, "lr": 1e-2, "device": "cpu"}
    return GRPOConfig(**{**values, **changes})


def test_reference_not_built_when_beta_is_zero(world, monkeypatch, tmp_path):
    items, tok = world
    copies = []
    real_deepcopy = grpo_mod.copy.deepcopy

    class CountingCopy:
        @staticmethod
        def deepcopy(obj):
            copies.append(obj)
            return real_deepcopy(obj)

    monkeypatch.setattr(grpo_mod, "copy", CountingCopy)
    result, _ = train_grpo(tiny_gpt(tok.vocab_size), tok, items, small_cfg(steps=1, beta=0.0), tmp_path / "a")
    assert copies == [] and "kl" not in result.metrics[-1]
    result, _ = train_grpo(tiny_gpt(tok.vocab_size), tok, items, small_cfg(steps=1, beta=0.1), tmp_path / "b")
    assert len(copies) == 1 and result.metrics[-1]["kl"] == 0.0  # one update: policy = reference


def test_run_logs_metrics_learns_and_resumes_exactly(world, monkeypatch, tmp_path):
    items, tok = world
    fake_verifier(monkeypatch)
    held_items = items[:2]
    cfg = small_cfg()
    straight, held = train_grpo(tiny_gpt(tok.vocab_size), tok, items, cfg, tmp_path / "straight",
                                eval_items=held_items)
    for name in ("reward", "accuracy", "kl", "entropy", "clip_fraction", "response_length", "loss"):
        assert all(name in m for m in straight.metrics), name
    assert sorted(held) == [0, 2, 4]
    assert straight.metrics[0]["grad_norm"] > 0  # the first step learns (ratio 1, gradient ≠ 0)
    assert straight.metrics[1]["ratio"] != 1.0  # the 2nd update on the same rollouts: θ ≠ θ_old
    assert straight.metrics[0]["reward"] == straight.metrics[1]["reward"]  # the same rollout batch
    # Killed after step 2 (a rollout boundary), resumed: the same rollouts and updates.
    train_grpo(tiny_gpt(tok.vocab_size), tok, items, small_cfg(steps=2), tmp_path / "resumed",
               eval_items=held_items)
    resumed, _ = train_grpo(tiny_gpt(tok.vocab_size), tok, items, cfg, tmp_path / "resumed",
                            eval_items=held_items)
    for a, b in zip(straight.metrics, resumed.metrics, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-7) and a["reward"] == b["reward"]


def test_bad_config_names_the_key():
    with pytest.raises(ConfigError, match="group"):
        GRPOConfig(group=1)
    with pytest.raises(ConfigError, match="'token'"):
        GRPOConfig(aggregation="tokens")  # a near miss names the right spelling
    with pytest.raises(ConfigError, match="grad_accum"):
        GRPOConfig(prompts=3, group=3, grad_accum=2)
    with pytest.raises(ConfigError, match="max_ops"):
        GRPOConfig(min_ops=3, max_ops=2)
    with pytest.raises(ConfigError, match="adv_scale"):
        GRPOConfig(adv_scale="std")
    with pytest.raises(ValueError, match="scale"):
        group_advantages(torch.zeros(2, 2), "std")  # type: ignore[arg-type]
