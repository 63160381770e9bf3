"""A stored post-training result: the policy a stage trained, its metrics and its summary.

Every stage (SFT, DPO, GRPO) starts from a model (the pre-trained base, or an earlier stage's
policy) and stores what it trained under a "post-…" kind of the store, keyed by the whole chain
of configurations that led to it. `write_run` and `load_run` are the one format they share, so
any stage can start from any other's result.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phasebook.data import Tokenizer
from phasebook.model import GPT, ModelConfig
from phasebook.train.checkpoint import load_weights, save_weights
from phasebook.train.loop import METRICS_FILE
from phasebook.train.metrics import MetricsLog


@dataclass
class PostRun:
    """A post-training stage's stored result, loaded: the policy (a plain GPT, eval mode, on CPU,
    LoRA merged), the tokenizer it shares with the base, every logged record and a summary."""

    stage: str  # "sft", "rejection", "dpo", "grpo"
    key: dict[str, Any]  # the chain of configurations that made it (what the store hashed)
    path: Path
    model: GPT
    tokenizer: Tokenizer
    metrics: list[dict[str, Any]]
    summary: dict[str, Any]


def write_run(out: Path, model: GPT, tokenizer: Tokenizer, summary: dict[str, Any],
              metrics_from: Path | None = None) -> None:
    """Write a stage's result into the store's `out` folder: weights, model config, tokenizer,
    summary, and the metrics log of the run folder `metrics_from` (if any)."""
    save_weights(model, out / "model.safetensors")
    (out / "model.json").write_text(json.dumps(dataclasses.asdict(model.cfg), indent=1), encoding="utf-8")
    (out / "tokenizer.json").write_text(tokenizer.to_json(), encoding="utf-8")
    (out / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    if metrics_from is not None and (metrics_from / METRICS_FILE).exists():
        shutil.copy(metrics_from / METRICS_FILE, out / METRICS_FILE)


def load_run(path: Path, stage: str, key: dict[str, Any]) -> PostRun:
    """Load what `write_run` wrote."""
    model_cfg = ModelConfig(**json.loads((path / "model.json").read_text(encoding="utf-8")))
    model = GPT(model_cfg)
    load_weights(model, path / "model.safetensors")
    tokenizer = Tokenizer.from_json((path / "tokenizer.json").read_text(encoding="utf-8"))
    summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    metrics = MetricsLog(path / METRICS_FILE).read() if (path / METRICS_FILE).exists() else []
    return PostRun(stage, key, path, model.eval(), tokenizer, metrics, summary)

