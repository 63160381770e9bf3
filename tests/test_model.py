"""The GPT: sizes, masks, RoPE, losses, KV-cache generation against recomputation, sampling filters."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from phasebook.model import (
    GPT,
    KVCache,
    ModelConfig,
    generate,
    rope_angles,
    sampling_probs,
    token_logprobs,
)
from phasebook.validation import ConfigError, from_mapping, to_mapping

VOCAB = 37
VARIANTS = {
    "mha": {},
    "gqa": {"n_kv_head": 2},
    "gqa-qknorm": {"n_kv_head": 1, "qk_norm": True, "tie_embeddings": False},
}


def tiny(**overrides) -> ModelConfig:
    fields = dict(vocab_size=VOCAB, n_layer=2, n_head=4, d_model=32, max_seq_len=64)
    return ModelConfig(**(fields | overrides))


def model(seed: int = 0, **overrides) -> GPT:
    """A tiny model with large random weights, so its greedy continuations are not all one token."""
    torch.manual_seed(seed)
    return GPT(tiny(**({"init_std": 0.3} | overrides))).eval()


PROMPTS = [[5, 6, 7], [1, 2, 3, 4, 5, 6, 7, 8], [9], [3, 1, 4, 1, 5]]


# ---- configuration and sizes ---------------------------------------------------------------------

def test_param_count_matches_hand_count():
    d, v, hd, ffn = 32, VOCAB, 8, 64
    per_layer = 2 * d + d * 4 * hd + 2 * d * 2 * hd + 4 * hd * d + 3 * d * ffn  # norms, q, k+v, out, MLP
    tied = v * d + 2 * per_layer + d
    cfg = tiny(n_kv_head=2, ffn_hidden=ffn)
    assert GPT(cfg).num_params() == cfg.num_params() == tied
    assert GPT(cfg).num_params(exclude_embedding=True) == tied - v * d
    untied = tiny(n_kv_head=2, ffn_hidden=ffn, tie_embeddings=False, qk_norm=True)
    expected = tied + v * d + 2 * 2 * hd
    assert GPT(untied).num_params() == untied.num_params() == expected
    assert GPT(untied).num_params(exclude_embedding=True) == expected - 2 * v * d


def test_flops_per_token_counts_every_matmul_weight_and_attention():
    cfg = tiny(n_kv_head=2, tie_embeddings=False)
    gpt = GPT(cfg)
    linear = sum(m.weight.numel() for m in gpt.modules() if isinstance(m, torch.nn.Linear))
    assert gpt.flops_per_token(16) == 6 * linear + 12 * cfg.n_layer * cfg.d_model * 16
    tied = GPT(tiny(n_kv_head=2))  # the shared head is still a matmul
    assert tied.flops_per_token(16) == gpt.flops_per_token(16)


def test_default_ffn_is_eight_thirds_rounded_up_to_32():
    assert tiny(d_model=32).ffn_dim == 96  # 85.3 -> 96
    assert tiny(d_model=96).ffn_dim == 256
    assert tiny(d_model=768, n_head=12).ffn_dim == 2048
    assert tiny(ffn_hidden=50).ffn_dim == 50


@pytest.mark.parametrize(("overrides", "field"), [
    ({"d_model": 30}, "d_model"),  # not a multiple of n_head
    ({"d_model": 12}, "d_model"),  # head_dim 3 is odd
    ({"n_kv_head": 3}, "n_kv_head"),
    ({"n_kv_head": 0}, "n_kv_head"),
    ({"vocab_size": 0}, "vocab_size"),
    ({"n_layer": 1.5}, "n_layer"),
    ({"rope_base": 1.0}, "rope_base"),
    ({"rope_scaling": 0.5}, "rope_scaling"),
    ({"z_loss": -1e-4}, "z_loss"),
    ({"norm_eps": 0.0}, "norm_eps"),
    ({"qk_norm": 1}, "qk_norm"),
])
def test_invalid_config_names_the_field(overrides, field):
    with pytest.raises(ConfigError) as err:
        tiny(**overrides)
    assert [p.key for p in err.value.problems] == [field]
    assert repr(overrides[field]) in str(err.value)


def test_all_problems_reported_together_and_mappings_round_trip():
    with pytest.raises(ConfigError) as err:
        tiny(n_head=0, init_std=-1.0)
    assert {p.key for p in err.value.problems} == {"n_head", "init_std"}
    assert "[1, ∞)" in str(err.value)
    cfg = tiny(n_kv_head=2, rope_scaling=4.0)
    assert from_mapping(ModelConfig, to_mapping(cfg)) == cfg


# ---- masks and positions ---------------------------------------------------------------------------

def test_future_tokens_never_change_earlier_logits():
    gpt = model()
    idx = torch.randint(0, VOCAB, (2, 12))
    for t in (0, 5, 10):
        changed = idx.clone()
        changed[:, t + 1:] = torch.randint(0, VOCAB, (2, 11 - t))
        a, b = gpt(idx).logits, gpt(changed).logits
        torch.testing.assert_close(a[:, :t + 1], b[:, :t + 1], rtol=0, atol=1e-6)
        assert not torch.allclose(a[:, t + 1:], b[:, t + 1:])


def test_segments_do_not_see_each_other():
    gpt = model()
    first, second = torch.randint(0, VOCAB, (1, 5)), torch.randint(0, VOCAB, (1, 7))
    packed = torch.cat((first, second), dim=1)
    segments = torch.tensor([[1] * 5 + [2] * 7])
    positions = torch.cat((torch.arange(5), torch.arange(7)))[None]
    logits = gpt(packed, positions=positions, segment_ids=segments).logits
    torch.testing.assert_close(logits[:, 5:], gpt(second).logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(logits[:, :5], gpt(first).logits, rtol=0, atol=1e-5)
    other = packed.clone()
    other[:, :5] = (other[:, :5] + 1) % VOCAB
    changed = gpt(other, positions=positions, segment_ids=segments).logits
    torch.testing.assert_close(changed[:, 5:], logits[:, 5:], rtol=0, atol=1e-6)


def test_rope_sees_only_relative_positions():
    gpt = model()
    idx = torch.randint(0, VOCAB, (2, 9))
    shifted = torch.arange(9)[None].expand(2, 9) + 100
    torch.testing.assert_close(gpt(idx, positions=shifted).logits, gpt(idx).logits, rtol=0, atol=1e-4)


def test_rope_scaling_divides_positions():
    positions = torch.arange(0, 40, 4)[None]
    cos, sin = rope_angles(positions, 8, 10000.0, scaling=4.0)
    cos1, sin1 = rope_angles(positions // 4, 8, 10000.0)
    torch.testing.assert_close((cos, sin), (cos1, sin1))
    expected = (positions[0, 3] / 4.0) * 10000.0 ** (-2 / 8)  # pair i=1 at position 12
    assert math.isclose(float(torch.atan2(sin[0, 3, 1], cos[0, 3, 1])), float(expected), rel_tol=1e-5)

    base = model()
    scaled = GPT(tiny(init_std=0.3, rope_scaling=2.0)).eval()
    scaled.load_state_dict(base.state_dict())
    idx = torch.randint(0, VOCAB, (1, 10))
    doubled = 2 * torch.arange(10)[None]
    torch.testing.assert_close(scaled(idx, positions=doubled).logits, base(idx).logits)


# ---- losses ---------------------------------------------------------------------------------------

def test_loss_is_mean_cross_entropy_over_kept_targets():
    gpt = model()
    idx = torch.randint(0, VOCAB, (2, 8))
    targets = torch.randint(0, VOCAB, (2, 8))
    targets[0, :3] = -100
    out = gpt(idx, targets, return_logits=True)
    expected = F.cross_entropy(out.logits.reshape(-1, VOCAB), targets.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(out.loss, expected)
    assert out.logits.dtype == torch.float32
    nothing = gpt(idx, torch.full_like(targets, -100))
    assert nothing.loss.item() == 0.0  # not NaN


def test_fused_loss_path_equals_the_logits_path_in_value_and_gradient():
    gpt = model(z_loss=1e-2)
    idx, targets = torch.randint(0, VOCAB, (2, 8)), torch.randint(0, VOCAB, (2, 8))
    targets[1, 5:] = -100
    fused = gpt(idx, targets)  # linear + cross-entropy kernel: no (B, T, V) logits
    assert fused.logits is None
    fused_grads = torch.autograd.grad(fused.loss, list(gpt.parameters()))
    full = gpt(idx, targets, return_logits=True)
    full_grads = torch.autograd.grad(full.loss, list(gpt.parameters()))
    torch.testing.assert_close(fused.loss, full.loss)
    torch.testing.assert_close(fused.ce_loss, full.ce_loss)
    for a, b in zip(fused_grads, full_grads, strict=True):
        torch.testing.assert_close(a, b)


def test_z_loss_adds_logsumexp_penalty_and_its_gradient_lowers_it():
    torch.manual_seed(0)
    plain = GPT(tiny(init_std=0.3))
    with_z = GPT(tiny(init_std=0.3, z_loss=0.1))
    with_z.load_state_dict(plain.state_dict())
    idx, targets = torch.randint(0, VOCAB, (2, 8)), torch.randint(0, VOCAB, (2, 8))
    out = with_z(idx, targets, return_logits=True)
    lse = torch.logsumexp(out.logits, dim=-1)
    torch.testing.assert_close(out.ce_loss, plain(idx, targets).loss)
    torch.testing.assert_close(out.loss, out.ce_loss + 0.1 * lse.pow(2).mean())
    assert out.loss > out.ce_loss

    params = list(with_z.parameters())
    total = torch.autograd.grad(out.loss, params, retain_graph=True)
    ce = torch.autograd.grad(out.ce_loss, params)
    z_grad = [a - b for a, b in zip(total, ce, strict=True)]
    assert sum(g.norm() for g in z_grad) > 0
    with torch.no_grad():
        for p, g in zip(params, z_grad, strict=True):
            p -= 0.05 * g
        after = torch.logsumexp(with_z(idx).logits, dim=-1).pow(2).mean()
    assert after < lse.pow(2).mean()


def test_token_logprobs_are_log_softmax_of_targets_with_gradient():
    gpt = model()
    idx, targets = torch.randint(0, VOCAB, (2, 6)), torch.randint(0, VOCAB, (2, 6))
    targets[1, -2:] = -100
    logp = token_logprobs(gpt, idx, targets)
    reference = torch.log_softmax(gpt(idx).logits, dim=-1).gather(-1, targets.clamp(min=0)[..., None])[..., 0]
    torch.testing.assert_close(logp[targets != -100], reference[targets != -100])
    assert (logp[1, -2:] == 0).all() and (logp <= 0).all()
    logp.sum().backward()
    assert gpt.tok_emb.weight.grad is not None


def test_tiny_model_overfits_a_fixed_batch():
    torch.manual_seed(0)
    gpt = GPT(tiny())
    idx = torch.randint(0, VOCAB, (4, 17))
    opt = torch.optim.AdamW(gpt.parameters(), lr=1e-2)
    first = None
    for _ in range(100):
        loss = gpt(idx[:, :-1], idx[:, 1:]).loss
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 3.0 and loss.item() < 0.05


def test_bf16_autocast_keeps_float32_logits_and_close_loss():
    gpt = model(seed=1, init_std=0.02)
    idx = torch.randint(0, VOCAB, (2, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = gpt(idx, idx, return_logits=True)
    assert out.logits.dtype == torch.float32
    assert abs(out.loss.item() - gpt(idx, idx).loss.item()) < 0.02


def test_training_forward_compiles_as_one_graph():
    gpt = model()
    compiled = torch.compile(gpt, backend="aot_eager", fullgraph=True)
    idx = torch.randint(0, VOCAB, (2, 8))
    segments = torch.tensor([[0] * 3 + [1] * 5] * 2)
    for kwargs in ({}, {"segment_ids": segments}):
        torch.testing.assert_close(compiled(idx, idx, **kwargs).loss, gpt(idx, idx, **kwargs).loss)


# ---- KV cache and generation -----------------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_cached_logits_match_recomputation(variant):
    gpt = model(**VARIANTS[variant])
    idx = torch.randint(0, VOCAB, (3, 14))
    full = gpt(idx).logits
    cache = gpt.make_cache(3, 14)
    pieces = [gpt(idx[:, :6], cache=cache).logits]  # prefill, then one token at a time
    pieces += [gpt(idx[:, t:t + 1], cache=cache).logits for t in range(6, 14)]
    assert cache.length == 14
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=0, atol=1e-5)


def test_cache_refuses_overflow_and_wrong_batch():
    gpt = model()
    cache = KVCache(gpt.cfg, 2, 4)
    with pytest.raises(ValueError, match="4 positions"):
        gpt(torch.zeros(2, 5, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="batch size 2"):
        gpt(torch.zeros(3, 1, dtype=torch.long), cache=cache)


@pytest.mark.parametrize("variant", VARIANTS)
def test_greedy_generation_with_cache_equals_recomputation_and_single_prompts(variant):
    gpt = model(**VARIANTS[variant])
    cached = generate(gpt, PROMPTS, 10, temperature=0)
    assert cached == generate(gpt, PROMPTS, 10, temperature=0, use_cache=False)
    assert cached == [generate(gpt, [p], 10, temperature=0)[0] for p in PROMPTS]  # padding is invisible
    assert all(len(row) == 10 for row in cached)
    assert len({tuple(row) for row in cached}) > 1 and any(len(set(row)) > 2 for row in cached)


def test_sampling_with_same_seed_is_identical_with_and_without_cache():
    gpt = model()

    def sample(use_cache: bool, seed: int) -> list[list[int]]:
        g = torch.Generator().manual_seed(seed)
        return generate(gpt, PROMPTS, 12, temperature=1.0, top_p=0.95, generator=g, use_cache=use_cache)

    assert sample(True, 3) == sample(False, 3)
    assert sample(True, 3) != sample(True, 4)


def test_top_k_one_is_greedy():
    gpt = model()
    g = torch.Generator().manual_seed(0)
    assert generate(gpt, PROMPTS, 8, top_k=1, temperature=1.5, generator=g) == generate(
        gpt, PROMPTS, 8, temperature=0)


def test_top_p_keeps_smallest_set_reaching_p():
    logits = torch.log(torch.tensor([[0.1, 0.5, 0.25, 0.15]]))
    kept = sampling_probs(logits, top_p=0.7)
    torch.testing.assert_close(kept, torch.tensor([[0.0, 2 / 3, 1 / 3, 0.0]]))
    assert (sampling_probs(logits, top_p=0.4) == torch.tensor([[0.0, 1.0, 0.0, 0.0]])).all()
    assert (sampling_probs(logits, top_p=0.8) > 0).sum() == 3
    exact = torch.log(torch.tensor([[0.125, 0.5, 0.125, 0.25]]))  # powers of two: sums are exact
    assert (sampling_probs(exact, top_p=0.75) > 0).tolist() == [[False, True, False, True]]
    torch.testing.assert_close(sampling_probs(logits, top_p=1.0), torch.softmax(logits, -1))
    top2 = sampling_probs(logits, top_k=2)
    assert top2[0, 0] == 0 and top2[0, 3] == 0


def test_stop_tokens_stop_each_row_independently():
    gpt = model()
    reference = generate(gpt, PROMPTS, 10, temperature=0)
    stop = reference[0][2]
    stopped = generate(gpt, PROMPTS, 10, temperature=0, stop_tokens=[stop])
    for ref, row in zip(reference, stopped, strict=True):
        expected = ref[:ref.index(stop) + 1] if stop in ref else ref
        assert row == expected
    assert len(stopped[0]) <= 3 and any(len(row) == 10 for row in stopped)


def test_generate_left_pads_with_positions_from_each_first_real_token():
    gpt = model()
    calls = []
    forward = gpt.forward

    def record(idx, targets=None, **kwargs):
        calls.append((idx, kwargs["positions"], kwargs["segment_ids"]))
        return forward(idx, targets, **kwargs)

    gpt.forward = record
    generate(gpt, [[4, 5, 6], [7]], 2, temperature=0, pad_id=9)
    (idx, positions, segments), (_, next_positions, _) = calls
    assert idx.tolist() == [[4, 5, 6], [9, 9, 7]]
    assert positions.tolist() == [[0, 1, 2], [0, 0, 0]] and segments.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert next_positions.tolist() == [[3], [1]]


def test_generate_restores_training_mode_and_leaves_no_gradients():
    gpt = model().train()
    generate(gpt, PROMPTS, 3)
    assert gpt.training
    assert all(p.grad is None for p in gpt.parameters())
    with pytest.raises(ValueError, match="top_p"):
        generate(gpt, PROMPTS, 3, top_p=0.0)
    assert gpt.training
