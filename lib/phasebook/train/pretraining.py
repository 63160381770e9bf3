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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from phasebook.data import (
    CorpusConfig,
    FactsConfig,
    PackedTokens,
    Tokenizer,
    corpus_digest,
    documents,
    pack,
    train_tokenizer,
)
from phasebook.model import GPT, ModelConfig
from phasebook.store import Store
from phasebook.train.checkpoint import list_checkpoints, load_checkpoint, load_weights, save_weights
from phasebook.train.loop import TrainConfig, train
from phasebook.train.metrics import MetricsLog
from phasebook.train.optim import OptimizerConfig
from phasebook.train.schedules import ScheduleConfig
from phasebook.validation import Checks, from_mapping

# The book's default world: few enough fictional people that a tiny model meets each one's
# biography dozens of times in a short run, so what it knows and what it lacks are both visible.
BASE_CORPUS = CorpusConfig(facts=FactsConfig(n_entities=64, present_fraction=0.75))
# The book's default base model: ~0.25M parameters, trains in under two minutes on 2 CPU cores.
# 1000 steps, because somewhere between 600 and 1000 it learns to copy a question's numbers into
# its worked steps, and its arithmetic jumps from ~10% to ~95% exact answers.
BASE_MODEL = ModelConfig(vocab_size=512, n_layer=4, n_head=4, d_model=64, max_seq_len=128)
BASE_TRAIN = TrainConfig(steps=1000, batch_size=32, seq_len=128, eval_interval=100, checkpoint_interval=250,
                         keep_checkpoints=5, log_interval=10, optimizer=OptimizerConfig(lr=3e-3),
                         schedule=ScheduleConfig(name="cosine", warmup_steps=30))


@dataclass(frozen=True)
class PretrainConfig:
    """Everything a pre-training run depends on. `model.vocab_size` is also the size the
    tokenizer is trained to (it can come out smaller on a small corpus; the spare rows of the
    embedding are then never used)."""

    corpus: CorpusConfig = BASE_CORPUS
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
        corpus=dataclasses.replace(BASE_CORPUS, n_documents=2_000_000, eval_documents=5_000),
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

    def snapshot_steps(self) -> list[int]:
        """Steps whose weights were kept (the last `train.keep_checkpoints` checkpoints)."""
        return sorted(int(p.name[5:12]) for p in (self.path / SNAPSHOTS).glob("step-*.safetensors"))

    def snapshot(self, step: int) -> GPT:
        """The model as it was after `step` optimizer steps (eval mode, on CPU)."""
        model = GPT(self.config.model)
        load_weights(model, self.path / SNAPSHOTS / f"step-{step:07d}.safetensors")
        return model.eval()


def tokenizer_for(corpus: CorpusConfig, vocab_size: int, store: Store | None = None) -> Tokenizer:
    """The BPE tokenizer trained on the corpus's training split, stored by the corpus's hash."""
    store = store or Store()
    key = {"corpus": corpus_digest(corpus), "vocab_size": vocab_size}

    def produce(out: Path, scratch: Path) -> None:
        texts = [d.text for d in documents(corpus, "train")]
        (out / "tokenizer.json").write_text(train_tokenizer(texts, vocab_size).to_json(), encoding="utf-8")

    path = store.artifact("tokenizer", key, produce)
    return Tokenizer.from_json((path / "tokenizer.json").read_text(encoding="utf-8"))


def token_stream(corpus: CorpusConfig, split: str, tokenizer: Tokenizer,
                 store: Store | None = None) -> np.ndarray:
    """The split's documents tokenized and joined, EOS before each one (see `data.pack`);
    stored, so that a sweep of many small runs tokenizes the corpus once."""
    def compute() -> dict[str, Any]:
        texts = [d.text for d in documents(corpus, split)]  # type: ignore[arg-type]
        return {"tokens": pack(tokenizer.encode_batch(texts), tokenizer.eos_id)}

    key = {"corpus": dataclasses.asdict(corpus), "split": split, "tokenizer": tokenizer.digest}
    return (store or Store()).memo("tokens", key, compute)["tokens"]


def pretrain(cfg: PretrainConfig = PRESETS["base"], store: Store | None = None) -> Pretrained:
    """Train `cfg` once per compute version (see `provenance.compute_version`) and return the
    stored result; a run killed earlier resumes from its checkpoints."""
    store = store or Store()
    tokenizer = tokenizer_for(cfg.corpus, cfg.model.vocab_size, store)

    def produce(out: Path, scratch: Path) -> None:
        train_data = PackedTokens(token_stream(cfg.corpus, "train", tokenizer, store), seed=cfg.train.seed)
        val_data = PackedTokens(token_stream(cfg.corpus, "validation", tokenizer, store),
                                seed=cfg.train.seed + 1)
        torch.manual_seed(cfg.train.seed)  # the initial weights are part of what the seed fixes
        model = GPT(cfg.model)
        result = train(model, train_data, cfg.train, scratch, eval_data=val_data)
        save_weights(model.cpu(), out / "model.safetensors")
        _save_snapshots(scratch, cfg.model, out / SNAPSHOTS)
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


SNAPSHOTS = "snapshots"


def _save_snapshots(run_dir: Path, model_cfg: ModelConfig, folder: Path) -> None:
    """Keep the weights of every checkpoint the run still holds, so that what the model could do
    along the way (not only at the end) can be measured after training."""
    model = GPT(model_cfg)
    for ckpt in list_checkpoints(run_dir):
        step = load_checkpoint(ckpt, model)["step"]
        save_weights(model, folder / f"step-{step:07d}.safetensors")


def load_pretrained(path: Path, cfg: PretrainConfig) -> Pretrained:
    model = GPT(cfg.model)
    load_weights(model, path / "model.safetensors")
    model.eval()
    tokenizer = Tokenizer.from_json((path / "tokenizer.json").read_text(encoding="utf-8"))
    summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    return Pretrained(cfg, path, model, tokenizer, MetricsLog(path / "metrics.jsonl").read(), summary)
