"""`phasebook bench train`: tokens/s and MFU of the real training loop on a preset model.

The data are random tokens (throughput does not depend on what the tokens say), so the
benchmark needs no corpus or tokenizer and runs anywhere the model runs. Throughput is the
median over the logged windows of the second half of the run, after warm-up and compilation.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from phasebook.model import GPT
from phasebook.provenance import git_commit, hardware, now, package_version
from phasebook.train.loop import resolve_device, train
from phasebook.train.metrics import peak_flops
from phasebook.train.pretraining import PRESETS, PretrainConfig


class RandomTokens:
    """Uniform random token batches with the data interface of `PackedTokens`."""

    def __init__(self, vocab_size: int, seed: int = 0):
        self.vocab_size, self.seed = vocab_size, seed

    def batch(self, index: int, batch_size: int, seq_len: int, rank: int = 0,
              world_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index * world_size + rank)
        rows = torch.randint(0, self.vocab_size, (batch_size, seq_len + 1), generator=g)
        return rows[:, :-1], rows[:, 1:]


def bench_config(preset: str, steps: int | None, changes: dict[str, Any]) -> PretrainConfig:
    """The preset with benchmark settings: no evaluation, rare checkpoints, frequent logging."""
    cfg = PRESETS[preset]
    train_changes = {"eval_interval": 0, "checkpoint_interval": 10**6, "log_interval": 5,
                     "spike_factor": 0.0, "progress": sys.stderr.isatty()}
    if steps is not None:
        train_changes["steps"] = steps
        train_changes["schedule"] = {"warmup_steps": min(cfg.train.schedule.warmup_steps, steps)}
    train_changes.update(changes.pop("train", {}))
    return cfg.replace(train=train_changes, **changes)


def run(preset: str = "base", steps: int | None = None, changes: dict[str, Any] | None = None,
        out: Path | None = None, command: str = "") -> dict[str, Any]:
    """Train the preset on random tokens; return (and write to `out`) the measurement."""
    cfg = bench_config(preset, steps, dict(changes or {}))
    torch.manual_seed(cfg.train.seed)
    model = GPT(cfg.model)
    device = resolve_device(cfg.train.device)
    with tempfile.TemporaryDirectory(prefix="phasebook-bench-") as tmp:
        result = train(model, RandomTokens(cfg.model.vocab_size, cfg.train.seed), cfg.train, Path(tmp))
    windows = [m["tokens_per_s"] for m in result.metrics if m.get("tokens_per_s")]
    steady = windows[len(windows) // 2:] or windows
    tokens_per_s = statistics.median(steady)
    flops = model.flops_per_token(cfg.train.seq_len)
    peak = peak_flops(device, cfg.train.precision)
    record = {
        "benchmark": "train", "preset": preset, "date": now(), "commit": git_commit(),
        "command": command, "hardware": hardware(), "device": str(device),
        "torch": torch.__version__, "triton": package_version("triton"),
        "config": dataclasses.asdict(cfg), "parameters": model.num_params(),
        "flops_per_token": flops, "tokens_per_s": tokens_per_s,
        "tokens_per_s_whole_run": result.tokens_per_s, "peak_flops": peak,
        "mfu": tokens_per_s * flops / peak if peak else None, "steps": result.steps,
        "final_loss": result.final_loss, "wall_s": result.wall_s,
    }
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")
    return record


def report(record: dict[str, Any]) -> str:
    mfu = "unknown (no peak FLOP/s known for this device)" if record["mfu"] is None \
        else f"{100 * record['mfu']:.1f}% of {record['peak_flops'] / 1e12:.0f} TFLOP/s"
    cfg = record["config"]
    where = record["hardware"].get("gpu") or record["hardware"]["processor"]
    return "\n".join([
        f"preset {record['preset']}: {record['parameters'] / 1e6:.2f}M parameters, "
        f"{cfg['train']['precision']}, batch {cfg['train']['batch_size']} × {cfg['train']['seq_len']}, "
        f"{record['steps']} steps on {record['device']} ({where})",
        f"throughput: {record['tokens_per_s']:,.0f} tokens/s (steady state; whole run "
        f"{record['tokens_per_s_whole_run']:,.0f})",
        f"model FLOPs per token: {record['flops_per_token'] / 1e6:.2f} MFLOP → "
        f"{record['tokens_per_s'] * record['flops_per_token'] / 1e12:.3f} TFLOP/s achieved",
        f"MFU: {mfu}",
    ])
