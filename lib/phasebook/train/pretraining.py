"""Pre-training as a pure function of its configuration: `pretrain(cfg)` -> a stored model.

The corpus, the tokenizer trained on it, the model and the training loop are each configured
by a dataclass; `pretrain` trains once per (configuration, code version) and every later call
— the Chinese notebook, the SFT notebook, a rerun of the book — loads the stored result. A run
killed halfway leaves its checkpoints in the store's scratch folder, and the next call resumes
from them rather than starting over.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

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
from phasebook.errors import PhasebookError
from phasebook.model import GPT, ModelConfig
from phasebook.store import Store
from phasebook.train.checkpoint import (
    CheckpointError,
    list_checkpoints,
    load_checkpoint,
    load_weights,
    read_state,
    save_weights,
    verify_checkpoint,
)
from phasebook.train.distributed import World, full_state_dict, init_world
from phasebook.train.loop import METRICS_FILE, TrainConfig, TrainResult, train
from phasebook.train.metrics import MetricsLog
from phasebook.train.optim import OptimizerConfig
from phasebook.train.schedules import ScheduleConfig, stable_end
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
        """What identifies the result: the configuration without its display-only switch and
        without the parallel strategy, which says how the same training is spread over ranks (a
        run may resume under another strategy and world size, and a model trained on 8 GPUs is
        the one the notebooks then load)."""
        key = dataclasses.asdict(self)
        del key["train"]["progress"], key["train"]["parallel"]
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

    @property
    def branch_checkpoint(self) -> Path | None:
        """A WSD run's end-of-stable checkpoint (weights and optimizer state, the training loop's
        checkpoint format), which annealing branches start from; None for other schedules."""
        folder = self.path / BRANCH
        return folder if folder.is_dir() else None

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
    stored result; a run killed earlier resumes from its checkpoints.

    Under torchrun every rank calls it with the same configuration and store, which must be a
    folder that every node sees at the same path (a shared filesystem): rank 0 prepares the
    tokenizer and token streams, all ranks train together in the store's scratch folder, rank 0
    writes the result, and every rank returns it, loaded.
    """
    store = store or Store()
    world = init_world(cfg.train.parallel, cfg.train.device)
    with _Rank0Messages(world) as messages:
        if world.is_main:
            path = _pretrain_as_rank0(cfg, store, messages)
        else:
            path = _pretrain_as_other_rank(cfg, store, world, messages)
    return load_pretrained(path, cfg)


# How long the other ranks wait for rank 0 between the training collectives: while it trains the
# tokenizer and tokenizes the corpus (minutes for gpu-125m), and while it writes the result. A rank
# that dies meanwhile ends the job sooner: torchrun then stops the others.
RANK0_WAIT = datetime.timedelta(hours=6)


class _Rank0Messages:
    """What rank 0 tells the other ranks of a pre-training job, outside the training itself, on a
    process group of its own whose timeout allows for the data preparation (RANK0_WAIT): either
    {"train": ...} (the run must be trained; here is where), {"done": path} or {"failed": why}."""

    def __init__(self, world: World):
        self.world = world
        self.group: Any = None
        self.others_waiting = True  # the other ranks wait for a message (they are not training)

    def __enter__(self) -> _Rank0Messages:
        if self.world.world_size > 1:
            self.group = dist.new_group(backend="gloo", timeout=RANK0_WAIT)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc is not None and self.world.is_main and self.others_waiting:
            with contextlib.suppress(RuntimeError):  # they may be gone too; the first error is the story
                self.send({"failed": f"{type(exc).__name__}: {exc}"})
        if self.group is not None:
            dist.destroy_process_group(self.group)

    def _broadcast(self, message: dict[str, Any] | None) -> dict[str, Any]:
        box = [message]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]  # type: ignore[return-value]

    def send(self, message: dict[str, Any]) -> None:
        """Rank 0: tell every other rank (nothing to do in a single process)."""
        if self.group is not None:
            self._broadcast(message)
        self.others_waiting = "train" not in message

    def training_over(self) -> None:
        """Rank 0: the other ranks have left the training and wait for the next message."""
        self.others_waiting = True

    def receive(self) -> dict[str, Any]:
        """Another rank: wait for rank 0's next message; raise if rank 0 failed."""
        message = self._broadcast(None)
        if "failed" in message:
            raise PhasebookError(f"rank {self.world.rank} stops because rank 0 failed: {message['failed']}")
        return message


def _pretrain_as_rank0(cfg: PretrainConfig, store: Store, messages: _Rank0Messages) -> Path:
    tokenizer = tokenizer_for(cfg.corpus, cfg.model.vocab_size, store)

    def produce(out: Path, scratch: Path) -> None:
        train_data, val_data = _token_data(cfg, tokenizer, store)
        messages.send({"train": {"target": str(store.path("pretrain", cfg.key())), "scratch": str(scratch)}})
        model, result = _train(cfg, train_data, val_data, scratch)
        final = _final_model(model, cfg)
        messages.training_over()
        _write_result(out, scratch, cfg, tokenizer, final, result, train_data)

    path = store.artifact("pretrain", cfg.key(), produce)
    messages.send({"done": str(path)})
    return path


def _pretrain_as_other_rank(cfg: PretrainConfig, store: Store, world: World,
                            messages: _Rank0Messages) -> Path:
    target = store.path("pretrain", cfg.key())
    message = messages.receive()
    if "train" in message:
        where = message["train"]
        if where["target"] != str(target):
            raise PhasebookError(
                f"rank {world.rank} stores this run at {target}, rank 0 at {where['target']}: every node "
                "must run the same phasebook code with the same store (PHASEBOOK_STORE).")
        if not Path(where["scratch"]).is_dir():
            raise PhasebookError(
                f"rank {world.rank} cannot see rank 0's scratch folder {where['scratch']}: the store must "
                "be on a filesystem that every node shares, at the same path (set PHASEBOOK_STORE).")
        tokenizer = tokenizer_for(cfg.corpus, cfg.model.vocab_size, store)  # stored by rank 0
        train_data, val_data = _token_data(cfg, tokenizer, store)
        model, _ = _train(cfg, train_data, val_data, Path(where["scratch"]))
        _final_model(model, cfg)  # gathering the weights takes every rank
        message = messages.receive()
    return Path(message["done"])


def _token_data(cfg: PretrainConfig, tokenizer: Tokenizer, store: Store) -> tuple[PackedTokens, PackedTokens]:
    train_data = PackedTokens(token_stream(cfg.corpus, "train", tokenizer, store), seed=cfg.train.seed)
    val_data = PackedTokens(token_stream(cfg.corpus, "validation", tokenizer, store), seed=cfg.train.seed + 1)
    return train_data, val_data


def _train(cfg: PretrainConfig, train_data: PackedTokens, val_data: PackedTokens,
           run_dir: Path) -> tuple[GPT, TrainResult]:
    torch.manual_seed(cfg.train.seed)  # the initial weights are part of what the seed fixes
    model = GPT(cfg.model)
    return model, train(model, train_data, cfg.train, run_dir, eval_data=val_data)


def _final_model(trained: GPT, cfg: PretrainConfig) -> GPT:
    """The trained weights in a plain model on CPU (rank 0; other ranks get an untrained one): under
    FSDP each rank holds only a shard, gathered here."""
    weights = full_state_dict(trained)
    final = GPT(cfg.model)
    if weights:
        final.load_state_dict(weights)
    return final


def _write_result(out: Path, scratch: Path, cfg: PretrainConfig, tokenizer: Tokenizer, model: GPT,
                  result: TrainResult, train_data: PackedTokens) -> None:
    save_weights(model, out / "model.safetensors")
    _save_snapshots(scratch, cfg.model, out / SNAPSHOTS)
    _keep_branch_point(scratch, cfg.train, out / BRANCH)
    (out / "tokenizer.json").write_text(tokenizer.to_json(), encoding="utf-8")
    shutil.copy(scratch / METRICS_FILE, out / METRICS_FILE)
    summary = {
        "steps": result.steps, "final_loss": result.final_loss,
        "final_val_loss": result.final_val_loss, "tokens_seen": result.tokens_seen,
        "tokens_per_s": result.tokens_per_s, "mfu": result.mfu, "wall_s": result.wall_s,
        "rewinds": result.rewinds, "skipped": result.skipped,
        "parameters": model.num_params(), "non_embedding_parameters": model.num_params(True),
        "train_tokens_available": train_data.num_tokens,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")


def scratch_folder(cfg: PretrainConfig, store: Store) -> Path:
    """Where `pretrain(cfg, store)` trains and keeps its checkpoints until the result is stored
    (the scratch folder `Store.artifact` hands it)."""
    return store.scratch_path("pretrain", cfg.key())


def last_good_checkpoint(cfg: PretrainConfig, store: Store) -> Path | None:
    """The newest checkpoint of an unfinished `pretrain(cfg, store)` that passes its checksums,
    which the next call resumes from; None when there is none."""
    for ckpt in reversed(list_checkpoints(scratch_folder(cfg, store))):
        try:
            verify_checkpoint(ckpt)
        except CheckpointError:
            continue
        return ckpt
    return None


SNAPSHOTS = "snapshots"


def _save_snapshots(run_dir: Path, model_cfg: ModelConfig, folder: Path) -> None:
    """Keep the weights of every checkpoint the run still holds, so that what the model could do
    along the way (not only at the end) can be measured after training."""
    model = GPT(model_cfg)
    for ckpt in list_checkpoints(run_dir):
        step = load_checkpoint(ckpt, model)["step"]
        save_weights(model, folder / f"step-{step:07d}.safetensors")


BRANCH = "branch"


def _keep_branch_point(run_dir: Path, train_cfg: TrainConfig, folder: Path) -> None:
    """A WSD run: copy its end-of-stable checkpoint (the loop keeps it through pruning) into the
    result, verified, so that annealing branches can start from it after the scratch is gone."""
    if train_cfg.schedule.name != "wsd":
        return
    step = stable_end(train_cfg.steps, train_cfg.schedule)
    found = [c for c in list_checkpoints(run_dir) if read_state(c)["step"] == step]
    if not found:
        raise PhasebookError(f"{run_dir}: the WSD branch-point checkpoint (step {step}) is missing; "
                             "it is kept through pruning, so it was deleted by hand. Delete the run's "
                             "scratch folder to train again.")
    verify_checkpoint(found[0])
    shutil.copytree(found[0], folder)


def load_pretrained(path: Path, cfg: PretrainConfig) -> Pretrained:
    model = GPT(cfg.model)
    load_weights(model, path / "model.safetensors")
    model.eval()
    tokenizer = Tokenizer.from_json((path / "tokenizer.json").read_text(encoding="utf-8"))
    summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    return Pretrained(cfg, path, model, tokenizer, MetricsLog(path / "metrics.jsonl").read(), summary)
