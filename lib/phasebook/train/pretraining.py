"""Pre-training as a pure function of its configuration: `pretrain(cfg)` -> a stored model.

The corpus, the tokenizer trained on it, the model and the training loop are each configured
by a dataclass; `pretrain` trains once per (configuration, code version) and every later call
— the Chinese notebook, the SFT notebook, a rerun of the book — loads the stored result. A run
killed halfway leaves its checkpoints in the store's scratch folder, and the next call resumes
from them rather than starting over.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from phasebook.data import (
    CorpusConfig,
    PackedTokens,
    Tokenizer,
    corpus_digest,
    documents,
    pack,
    train_tokenizer,
)
from phasebook.model import GPT, ModelConfig
from phasebook.store import Store
from phasebook.train.checkpoint import load_weights, save_weights
from phasebook.train.loop import TrainConfig, train
from phasebook.train.metrics import MetricsLog
from phasebook.train.optim import OptimizerConfig
from phasebook.train.schedules import ScheduleConfig
from phasebook.validation import Checks, from_mapping

# The book's default base model: ~0.2M parameters, trains in about a minute on 2 CPU cores.
BASE_MODEL = ModelConfig(vocab_size=512, n_layer=4, n_head=4, d_model=64, max_seq_len=128)
BASE_TRAIN = TrainConfig(steps=600, batch_size=32, seq_len=128, eval_interval=100, checkpoint_interval=100,
                         log_interval=10, optimizer=OptimizerConfig(lr=3e-3),
                         schedule=ScheduleConfig(name="cosine", warmup_steps=30))


@dataclass(frozen=True)
class PretrainConfig:
    """Everything a pre-training run depends on. `model.vocab_size` is also the size the
    tokenizer is trained to (it can come out smaller on a small corpus; the spare rows of the
    embedding are then never used)."""

    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    model: ModelConfig = BASE_MODEL
    train: TrainConfig = BASE_TRAIN

    def __post_init__(self) -> None:
        c = Checks(self)
        c.rule(self.model.max_seq_len >= self.train.seq_len, "model",
               f"max_seq_len={self.model.max_seq_len} must be at least train.seq_len={self.train.seq_len}.")
        c.done()

    def key(self) -> dict[str, Any]:
        """What identifies the result: the configuration without its display-only switches."""
        key = dataclasses.asdict(self)
        del key["train"]["progress"]
        return key

    def replace(self, **sections: dict[str, Any]) -> PretrainConfig:
        """A copy with fields of some sections changed: `cfg.replace(train={"steps": 50})`;
        nested sections merge too: `cfg.replace(train={"optimizer": {"lr": 1e-3}})`."""
        changed = {name: from_mapping(type(getattr(self, name)),
                                      _merge(dataclasses.asdict(getattr(self, name)), values), name)
                   for name, values in sections.items()}
        return dataclasses.replace(self, **changed)


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else value
    return out


PRESETS: dict[str, PretrainConfig] = {
    "base": PretrainConfig(),
    # ~125M parameters (GPT-2 small's shape with Llama-style blocks) for one H100: bf16, compiled.
    "gpu-125m": PretrainConfig(
        model=ModelConfig(vocab_size=32768, n_layer=12, n_head=12, d_model=768, max_seq_len=1024),
        train=TrainConfig(steps=2000, batch_size=64, seq_len=1024, precision="bf16", compile=True,
                          eval_interval=250, checkpoint_interval=500, log_interval=10,
                          optimizer=OptimizerConfig(lr=1e-3),
                          schedule=ScheduleConfig(name="cosine", warmup_steps=100))),
}


@dataclass
class Pretrained:
    """A stored pre-training result, loaded: the model (eval mode, on CPU), its tokenizer,
    the metrics of every logged step and a summary of the run."""

    config: PretrainConfig
    path: Path
    model: GPT
    tokenizer: Tokenizer
    metrics: list[dict[str, Any]]
    summary: dict[str, Any]


def tokenizer_for(corpus: CorpusConfig, vocab_size: int, store: Store | None = None) -> Tokenizer:
    """The BPE tokenizer trained on the corpus's training split, stored by the corpus's hash."""
    store = store or Store()
    key = {"corpus": corpus_digest(corpus), "vocab_size": vocab_size}

    def produce(out: Path, scratch: Path) -> None:
        texts = [d.text for d in documents(corpus, "train")]
        (out / "tokenizer.json").write_text(train_tokenizer(texts, vocab_size).to_json(), encoding="utf-8")

    path = store.artifact("tokenizer", key, produce)
    return Tokenizer.from_json((path / "tokenizer.json").read_text(encoding="utf-8"))


def token_stream(corpus: CorpusConfig, split: str, tokenizer: Tokenizer) -> np.ndarray:
    """The split's documents tokenized and joined, EOS before each one (see `data.pack`)."""
    texts = [d.text for d in documents(corpus, split)]  # type: ignore[arg-type]
    return pack(tokenizer.encode_batch(texts), tokenizer.eos_id)


def pretrain(cfg: PretrainConfig = PRESETS["base"], store: Store | None = None) -> Pretrained:
    """Train `cfg` once per code version and return the stored result (resuming a killed run)."""
    store = store or Store()
    tokenizer = tokenizer_for(cfg.corpus, cfg.model.vocab_size, store)
    if tokenizer.vocab_size > cfg.model.vocab_size:
        raise ValueError(f"tokenizer has {tokenizer.vocab_size} tokens, model.vocab_size is "
                         f"{cfg.model.vocab_size}")

    def produce(out: Path, scratch: Path) -> None:
        train_data = PackedTokens(token_stream(cfg.corpus, "train", tokenizer), seed=cfg.train.seed)
        val_data = PackedTokens(token_stream(cfg.corpus, "validation", tokenizer), seed=cfg.train.seed + 1)
        model = GPT(cfg.model)
        result = train(model, train_data, cfg.train, scratch, eval_data=val_data)
        save_weights(model.cpu(), out / "model.safetensors")
        (out / "tokenizer.json").write_text(tokenizer.to_json(), encoding="utf-8")
        shutil.copy(scratch / "metrics.jsonl", out / "metrics.jsonl")
        summary = {
            "steps": result.steps, "final_loss": result.final_loss,
            "final_val_loss": result.final_val_loss, "tokens_seen": result.tokens_seen,
            "tokens_per_s": result.tokens_per_s, "mfu": result.mfu, "wall_s": result.wall_s,
            "rewinds": result.rewinds, "skipped": result.skipped,
            "parameters": model.num_params(), "non_embedding_parameters": model.num_params(True),
            "train_tokens_available": train_data.num_tokens,
        }
        (out / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")

    path = store.artifact("pretrain", cfg.key(), produce)
    return load_pretrained(path, cfg)


def load_pretrained(path: Path, cfg: PretrainConfig) -> Pretrained:
    model = GPT(cfg.model)
    load_weights(model, path / "model.safetensors")
    model.eval()
    tokenizer = Tokenizer.from_json((path / "tokenizer.json").read_text(encoding="utf-8"))
    summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    return Pretrained(cfg, path, model, tokenizer, MetricsLog(path / "metrics.jsonl").read(), summary)
