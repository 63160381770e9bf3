"""DPO: the losses against values worked out by hand, the masking, the frozen reference, the
pairs and their batches, and the configuration's errors."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from phasebook.data import train_tokenizer
from phasebook.model import GPT, ModelConfig
from phasebook.post import dpo as dpo_module
from phasebook.post.chat import encode
from phasebook.post.dpo import (
    DPOConfig,
    DPOObjective,
    PairBatches,
    PairsConfig,
    dpo_loss,
    encode_pairs,
    format_pairs,
    frozen_reference,
    pair_length,
    sequence_logprobs,
    verifier_pairs,
)
from phasebook.post.sampling import Samples
from phasebook.post.tasks import is_correct, is_well_formed, math_items
from phasebook.train.loop import TrainConfig, accumulate_gradients, train
from phasebook.train.pretraining import PRESETS
from phasebook.train.schedules import ScheduleConfig
from phasebook.validation import ConfigError

CORPUS = PRESETS["base"].corpus


@pytest.fixture(scope="module")
def tok():
    texts = ["Mia has 4 apples and gets 9 more. 4+9=13. 13-6=7. The answer is 7.",
             "米娅有4个苹果，又得到9个。4+9=13。13-6=7。答案是7。"] * 4
    return train_tokenizer(texts, vocab_size=300)


def tiny_gpt(vocab: int, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(ModelConfig(vocab_size=vocab, n_layer=1, n_head=2, d_model=16, max_seq_len=256))


@pytest.fixture(scope="module")
def items():
    return math_items(CORPUS, "train", 6)


def objective_for(tok, seed: int = 0, **kwargs) -> DPOObjective:
    policy = tiny_gpt(tok.vocab_size, seed)
    return DPOObjective(policy, frozen_reference(tiny_gpt(tok.vocab_size, 0)), 0.5, **kwargs)


def pair_tensors(tok, items):
    pairs = format_pairs(items)
    return encode_pairs(tok, pairs, pair_length(tok, pairs))


# ---- sequence log-probabilities ----------------------------------------------------------------

def test_sequence_logprobs_sum_masked_tokens_by_hand_and_ignore_padding():
    model = tiny_gpt(11)
    ids = torch.tensor([[1, 3, 7, 4, 8, 9, 2, 2], [1, 3, 6, 4, 5, 9, 10, 2]])
    mask = torch.tensor([[0, 0, 0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1, 1, 0]])
    total, count = sequence_logprobs(model, ids, mask)
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits, dim=-1)
    # Row 0: tokens 8 (position 4, predicted at 3) and 9 (position 5, predicted at 4).
    row0 = logp[0, 3, 8] + logp[0, 4, 9]
    row1 = logp[1, 3, 5] + logp[1, 4, 9] + logp[1, 5, 10]
    assert torch.allclose(total, torch.stack([row0, row1]), atol=1e-5)
    assert count.tolist() == [2, 3]
    # Padding after the exchange (whatever its ids) leaves the sum unchanged: attention is causal.
    alone, _ = sequence_logprobs(model, ids[:1, :6], mask[:1, :6])
    repadded = ids.clone()
    repadded[0, 6:] = 5
    again, _ = sequence_logprobs(model, repadded, mask)
    assert torch.allclose(alone[0], total[0], atol=1e-5) and torch.allclose(again[0], total[0], atol=1e-5)


# ---- the loss, by hand ---------------------------------------------------------------------------

PC, PR = torch.tensor([-1.0, -4.0]), torch.tensor([-3.0, -2.0])  # policy: chosen, rejected
RC, RR = torch.tensor([-2.0, -3.0]), torch.tensor([-2.0, -3.0])  # reference
LC, LR = torch.tensor([2.0, 1.0]), torch.tensor([4.0, 2.0])  # response lengths


def test_sigmoid_loss_and_metrics_by_hand():
    loss, m = dpo_loss(PC, PR, RC, RR, 0.5)
    # Pair 0: ratios +1, −1, h = 2 → −log σ(1). Pair 1: ratios −1, +1, h = −2 → −log σ(−1).
    expected = (math.log(1 + math.exp(-1.0)) + math.log(1 + math.exp(1.0))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert m["reward_chosen"].item() == pytest.approx((0.5 - 0.5) / 2)
    assert m["reward_rejected"].item() == pytest.approx((-0.5 + 0.5) / 2)
    assert m["margin"].item() == pytest.approx((1.0 + -1.0) / 2)
    assert m["accuracy"].item() == pytest.approx(0.5)


def test_length_normalised_loss_by_hand():
    loss, m = dpo_loss(PC, PR, RC, RR, 0.5, chosen_len=LC, rejected_len=LR, length_normalised=True)
    # Pair 0: 1/2 − (−1/4) = 0.75; pair 1: −1/1 − 1/2 = −1.5.
    expected = (math.log(1 + math.exp(-0.375)) + math.log(1 + math.exp(0.75))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert m["margin"].item() == pytest.approx(0.5 * (0.75 - 1.5) / 2)


def test_ipo_loss_by_hand():
    loss, m = dpo_loss(PC, PR, RC, RR, 0.5, variant="ipo", chosen_len=LC, rejected_len=LR)
    # Target 1/(2β) = 1: (0.75 − 1)² and (−1.5 − 1)².
    assert loss.item() == pytest.approx((0.0625 + 6.25) / 2, rel=1e-6)
    assert m["accuracy"].item() == pytest.approx(0.5)


def test_loss_is_ln2_and_nothing_is_ranked_when_policy_is_reference(tok, items):
    ids, masks = pair_tensors(tok, items)
    model = tiny_gpt(tok.vocab_size)
    objective = DPOObjective(model, frozen_reference(model), 0.1)
    out = objective(ids, masks)
    assert out.loss.item() == pytest.approx(math.log(2), abs=1e-6)
    assert out.metrics["margin"].item() == 0.0 and out.metrics["accuracy"].item() == 0.0
    ipo = DPOObjective(model, frozen_reference(model), 0.1, variant="ipo")(ids, masks)
    assert ipo.loss.item() == pytest.approx(1 / (2 * 0.1) ** 2, rel=1e-5)


def test_loss_arguments_are_checked():
    with pytest.raises(ValueError, match="chosen_len"):
        dpo_loss(PC, PR, RC, RR, 0.5, variant="ipo")
    with pytest.raises(ValueError, match="already averages"):
        dpo_loss(PC, PR, RC, RR, 0.5, variant="ipo", chosen_len=LC, rejected_len=LR, length_normalised=True)
    with pytest.raises(ValueError, match="variant"):
        dpo_loss(PC, PR, RC, RR, 0.5, variant="kto")  # type: ignore[arg-type]


# ---- gradients and the reference -----------------------------------------------------------------

def test_gradients_reach_response_tokens_only(tok, items):
    ids, masks = pair_tensors(tok, items)
    objective = objective_for(tok, seed=1)
    grads = []

    def keep_gradient(_module, _inputs, logits):
        logits.register_hook(grads.append)

    objective.policy.lm_head.register_forward_hook(keep_gradient)
    objective(ids, masks).loss.backward()
    per_position = grads[0].abs().sum(dim=-1)  # (2P, L − 1): position t predicts token t + 1
    predicts_response = masks.reshape(len(per_position), -1)[:, 1:].bool()
    assert per_position[~predicts_response].max().item() == 0.0
    assert (per_position[predicts_response] > 0).all()


def test_reference_has_its_own_weights_stays_frozen_and_never_changes(tok, items, tmp_path):
    policy = tiny_gpt(tok.vocab_size)
    reference = frozen_reference(policy)
    assert not {p.data_ptr() for p in policy.parameters()} & {p.data_ptr() for p in reference.parameters()}
    before = copy.deepcopy(reference.state_dict())
    start = copy.deepcopy(policy.state_dict())
    objective = DPOObjective(policy, reference, 0.5)
    objective.train()
    assert policy.training and not reference.training
    ids, masks = pair_tensors(tok, items)
    cfg = TrainConfig(steps=3, batch_size=2, seq_len=ids.shape[-1], eval_interval=0, device="cpu",
                      progress=False, spike_factor=0.0, checkpoint_interval=3,
                      schedule=ScheduleConfig(warmup_steps=0))
    train(objective, PairBatches(ids, masks), cfg, tmp_path / "run")
    assert all(p.grad is None and not p.requires_grad for p in reference.parameters())
    assert all(torch.equal(before[k], v) for k, v in reference.state_dict().items())
    assert any(not torch.equal(start[k], v) for k, v in policy.state_dict().items())
    with pytest.raises(ValueError, match="frozen"):
        DPOObjective(policy, tiny_gpt(tok.vocab_size), 0.5)
    with pytest.raises(ValueError, match="share"):
        DPOObjective(policy, policy.requires_grad_(False), 0.5)


def test_gradient_accumulation_splits_give_the_same_gradient(tok, items):
    ids, masks = pair_tensors(tok, items[:4])
    grads = []
    for splits in (1, 2, 4):
        objective = objective_for(tok, seed=1, length_normalised=True)
        size = len(ids) // splits
        batches = [(ids[i:i + size], masks[i:i + size]) for i in range(0, len(ids), size)]
        accumulate_gradients(objective, batches, precision="fp32", device=torch.device("cpu"))
        grads.append(torch.cat([p.grad.flatten() for p in objective.policy.parameters()]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6) and torch.allclose(grads[0], grads[2], atol=1e-6)


# ---- pairs ---------------------------------------------------------------------------------------

def test_format_pairs_prefer_the_gold_response_to_a_malformed_one():
    items = math_items(CORPUS, "train", 8)
    pairs = format_pairs(items)
    assert {it.lang for it in items} == {"en", "zh"}
    for i, (item, pair) in enumerate(zip(items, pairs, strict=True)):
        assert pair.chosen == item.response and pair.source == "format"
        assert is_well_formed(item, pair.chosen) and not is_well_formed(item, pair.rejected)
        # Even: the working without its answer sentence; odd: the right answer, then rambling.
        assert is_correct(item, pair.rejected) == (i % 2 == 1)
        assert pair.rejected.startswith(pair.chosen) == (i % 2 == 1)


def test_verifier_pairs_pair_a_correct_sample_with_a_wrong_one(tok, items, monkeypatch):
    gold = [it.response for it in items[:3]]
    texts = [["The answer is 0.", gold[0], gold[0]],  # mixed: a pair (wrong, right)
             [gold[1]] * 3,  # all right: no pair
             ["The answer is 0."] * 3]  # all wrong: no pair
    correct = np.array([[is_correct(it, t) for t in row] for it, row in zip(items, texts, strict=False)])
    fake = Samples([[[]] * 3] * 3, texts, correct, correct.copy())
    monkeypatch.setattr(dpo_module, "sample", lambda *a, **k: fake)
    pairs = verifier_pairs(tiny_gpt(tok.vocab_size), tok, items[:3], 3)
    assert len(pairs) == 1
    assert (pairs[0].chosen, pairs[0].rejected, pairs[0].source) == (gold[0], "The answer is 0.", "verifier")


def test_encoded_pairs_are_chat_exchanges_padded_with_no_loss(tok, items):
    pairs = format_pairs(items[:2])
    ids, masks = encode_pairs(tok, pairs, 160)
    seq, mask = encode(tok, items[1].example(pairs[1].rejected))
    assert ids[1, 1, :len(seq)].tolist() == seq and masks[1, 1, :len(seq)].tolist() == mask
    assert (ids[1, 1, len(seq):] == tok.pad_id).all() and (masks[1, 1, len(seq):] == 0).all()


def test_pair_batches_read_the_same_pairs_whatever_the_split_and_cover_each_epoch(tok, items):
    ids, masks = pair_tensors(tok, items)
    data = PairBatches(ids, masks, seed=3)
    length = ids.shape[-1]
    whole, _ = data.batch(0, 4, length)
    halves = torch.cat([data.batch(i, 2, length)[0] for i in (0, 1)])
    ranks = [data.batch(0, 2, length, rank=r, world_size=2)[0] for r in (0, 1)]
    assert torch.equal(whole, halves)
    assert torch.equal(whole[0::2], ranks[0]) and torch.equal(whole[1::2], ranks[1])
    epoch = torch.cat([data.batch(i, 3, length)[0] for i in (0, 1)])  # 6 pairs: one epoch
    def rows(t):
        return sorted(tuple(r.flatten().tolist()) for r in t)

    assert rows(epoch) == rows(ids)
    with pytest.raises(Exception, match="padded"):
        data.batch(0, 2, length + 1)


# ---- configuration -------------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "key"), [
    ({"beta": 0.0}, "beta"),
    ({"variant": "kto"}, "variant"),
    ({"variant": "ipo", "length_normalised": True}, "length_normalised"),
    ({"batch_size": 6, "grad_accum": 4}, "batch_size"),
    ({"lr": -1.0}, "lr"),
    ({"steps": 0}, "steps"),
])
def test_bad_dpo_config_names_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        DPOConfig(**kwargs)


def test_bad_pairs_config_names_the_key():
    with pytest.raises(ConfigError, match="samples"):
        PairsConfig(samples=1)
    with pytest.raises(ConfigError, match="format_items"):
        PairsConfig(items=4, format_items=8)
