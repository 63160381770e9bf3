"""Batched sampling from a GPT: left-padded prompts, KV-cache decoding, temperature / top-k / top-p.

The cached path and the recompute path (`use_cache=False`) consume the random generator in the
same way, so with the same seed they produce the same tokens: recomputation is the reference
the cache is tested against.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from phasebook.model.gpt import GPT


def sampling_probs(logits: Tensor, *, temperature: float = 1.0, top_k: int | None = None,
                   top_p: float | None = None) -> Tensor:
    """The distribution (…, V) to sample the next token from, after temperature, top-k and top-p.

    top_k keeps the k largest logits (ties with the k-th are kept too); top_p then keeps the
    smallest set of most likely tokens whose probability reaches p (nucleus sampling).
    """
    if temperature <= 0:
        raise ValueError(f"temperature is {temperature}; sampling needs > 0 (use 0 in generate for greedy).")
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p is not None and top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
        drop_sorted = mass_before >= top_p  # the set already reached p without this token
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        probs = probs.masked_fill(drop, 0.0)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


def _next_tokens(logits: Tensor, temperature: float, top_k: int | None, top_p: float | None,
                 generator: torch.Generator | None) -> Tensor:
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = sampling_probs(logits, temperature=temperature, top_k=top_k, top_p=top_p)
    # Inverse-CDF sampling with uniforms drawn on the generator's own device: a CPU generator
    # then drives a CUDA model too, and every call consumes exactly one draw per row.
    device = generator.device if generator is not None else probs.device
    u = torch.rand(probs.shape[0], generator=generator, device=device).to(probs.device)
    cdf = probs.cumsum(dim=-1)
    picked = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(-1), right=True).squeeze(-1)
    return picked.clamp(max=probs.shape[-1] - 1)


def _check(prompts: list[list[int]], max_new_tokens: int, temperature: float, top_k: int | None,
           top_p: float | None) -> None:
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("generate needs at least one prompt, and every prompt at least one token.")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens is {max_new_tokens}; must be >= 0.")
    if temperature < 0:
        raise ValueError(f"temperature is {temperature}; must be >= 0 (0 = greedy).")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k is {top_k}; must be >= 1 or None.")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p is {top_p}; must be in (0, 1] or None.")


def generate(model: GPT, prompts: list[list[int]], max_new_tokens: int, *, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, stop_tokens: Iterable[int] = (),
             pad_id: int = 0, generator: torch.Generator | None = None,
             use_cache: bool = True) -> list[list[int]]:
    """Continue each prompt by up to `max_new_tokens` tokens; the new tokens only, per prompt.

    A row stops after its first stop token (which is included). Prompts are left-padded into
    one batch: padding forms its own segment, so real tokens never attend to it, and each row's
    positions start at 0 at its first real token, so a prompt's tokens do not depend on its
    batch-mates. temperature=0 is greedy. Runs in eval mode without gradients and restores the
    model's mode. Pass the plain `GPT`, not a compiled or DDP-wrapped one.
    """
    _check(prompts, max_new_tokens, temperature, top_k, top_p)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return _generate(model, prompts, max_new_tokens, temperature, top_k, top_p, set(stop_tokens),
                             pad_id, generator, use_cache)
    finally:
        model.train(was_training)


def _generate(model: GPT, prompts: list[list[int]], max_new_tokens: int, temperature: float,
              top_k: int | None, top_p: float | None, stop: set[int], pad_id: int,
              generator: torch.Generator | None, use_cache: bool) -> list[list[int]]:
    device = model.tok_emb.weight.device
    width = max(len(p) for p in prompts)
    idx = torch.tensor([[pad_id] * (width - len(p)) + list(p) for p in prompts], device=device)
    pad = torch.tensor([width - len(p) for p in prompts], device=device)
    columns = torch.arange(width, device=device)
    segments = (columns[None, :] >= pad[:, None]).long()  # 0 = padding, 1 = prompt and continuation
    positions = (columns[None, :] - pad[:, None]).clamp(min=0)

    out: list[list[int]] = [[] for _ in prompts]
    if max_new_tokens == 0:
        return out
    done = [False] * len(prompts)
    cache = model.make_cache(len(prompts), width + max_new_tokens) if use_cache else None
    logits = model(idx, positions=positions, segment_ids=segments, cache=cache, last_only=True).logits[:, -1]
    last_position = positions[:, -1:]
    for step in range(max_new_tokens):
        tokens = _next_tokens(logits, temperature, top_k, top_p, generator)
        for row, token in enumerate(tokens.tolist()):
            if not done[row]:
                out[row].append(token)
                done[row] = token in stop
        if all(done) or step == max_new_tokens - 1:
            break
        last_position = last_position + 1
        ones = torch.ones_like(last_position)
        if cache is not None:
            logits = model(tokens[:, None], positions=last_position, segment_ids=ones, cache=cache,
                           last_only=True).logits[:, -1]
        else:
            idx = torch.cat((idx, tokens[:, None]), dim=1)
            positions = torch.cat((positions, last_position), dim=1)
            segments = torch.cat((segments, ones), dim=1)
            logits = model(idx, positions=positions, segment_ids=segments, last_only=True).logits[:, -1]
    return out
