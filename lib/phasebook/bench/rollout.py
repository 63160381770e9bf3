"""`phasebook bench rollout`: tokens/s of sampling with the KV cache against recomputation.

GRPO spends most of its time generating rollouts. Without a cache, each new token runs the
model over the whole sequence so far, so generating n tokens costs ~n²/2 token-forwards; with
the KV cache each new token runs the model over itself only, reading the cached keys and
values of the others (~n token-forwards, plus attention over the cache). Both paths of
`model.generate` consume the random generator identically, so they sample the same tokens and
the comparison is like for like; the command checks that they did.

The model is a random GPT of the book's base shape (4 layers, d_model 64, vocab 512) with room
for the prompt and 256 new tokens; no stop token, so every row generates all of them. Each
path is timed `repeat` times after one warm-up call and the median is reported.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from phasebook.model import GPT, ModelConfig, generate
from phasebook.provenance import git_commit, hardware, now
from phasebook.train.distributed import resolve_device
from phasebook.train.pretraining import BASE_MODEL

GOAL = 5.0  # the goal: the cache at least 5× faster at 256 new tokens


def bench_model(new_tokens: int, prompt_len: int) -> ModelConfig:
    """The base model's shape with room for the prompt and the new tokens."""
    return dataclasses.replace(BASE_MODEL, max_seq_len=max(BASE_MODEL.max_seq_len, prompt_len + new_tokens))


def _timed(model: GPT, prompts: list[list[int]], new_tokens: int, use_cache: bool, seed: int,
           device: torch.device) -> tuple[float, list[list[int]]]:
    generator = torch.Generator().manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = generate(model, prompts, new_tokens, temperature=1.0, generator=generator, use_cache=use_cache)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, out


def run(new_tokens: int = 256, batch_size: int = 16, prompt_len: int = 32, repeat: int = 3,
        device: str = "auto", seed: int = 0, out: Path | None = None, command: str = "") -> dict[str, Any]:
    """Time `generate` with and without the KV cache; return (and write to `out`) the record."""
    dev = resolve_device(device)
    cfg = bench_model(new_tokens, prompt_len)
    torch.manual_seed(seed)
    model = GPT(cfg).to(dev).eval()
    g = torch.Generator().manual_seed(seed)
    prompts = torch.randint(0, cfg.vocab_size, (batch_size, prompt_len), generator=g).tolist()
    paths: dict[str, dict[str, Any]] = {}
    outputs = {}
    for name, use_cache in (("kv_cache", True), ("recompute", False)):
        _timed(model, prompts, min(new_tokens, 8), use_cache, seed, dev)  # warm-up
        times = []
        for _ in range(repeat):
            seconds, outputs[name] = _timed(model, prompts, new_tokens, use_cache, seed, dev)
            times.append(seconds)
        median = statistics.median(times)
        paths[name] = {"seconds": times, "median_s": median, "tokens_per_s": batch_size * new_tokens / median}
    speedup = paths["kv_cache"]["tokens_per_s"] / paths["recompute"]["tokens_per_s"]
    record = {
        "benchmark": "rollout", "date": now(), "commit": git_commit(), "command": command,
        "hardware": hardware(), "device": str(dev), "torch": torch.__version__,
        "model": dataclasses.asdict(cfg), "parameters": model.num_params(), "batch_size": batch_size,
        "prompt_len": prompt_len, "new_tokens": new_tokens, "repeat": repeat, **paths,
        "speedup": speedup, "goal": GOAL, "goal_met": speedup >= GOAL,
        "same_tokens": outputs["kv_cache"] == outputs["recompute"],
    }
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")
    return record


def report(record: dict[str, Any]) -> str:
    where = record["hardware"].get("gpu") or record["hardware"].get("processor")
    met = "met" if record["goal_met"] else "missed"
    cache, naive = record["kv_cache"], record["recompute"]
    return "\n".join([
        f"rollout: {record['batch_size']} prompts × {record['new_tokens']} new tokens, "
        f"{record['parameters'] / 1e6:.2f}M-parameter GPT on {record['device']} ({where})",
        f"KV cache:  {cache['tokens_per_s']:,.0f} tokens/s ({cache['median_s']:.2f} s)",
        f"recompute: {naive['tokens_per_s']:,.0f} tokens/s ({naive['median_s']:.2f} s)",
        f"speed-up: {record['speedup']:.1f}× (goal ≥ {record['goal']:.0f}×: {met}); "
        f"same tokens sampled: {record['same_tokens']}",
    ])
