"""pretrain(cfg): learns, is stored once per configuration, and validates its configuration."""

import json

import pytest
import torch

from phasebook.data import fact_world
from phasebook.evaluate import fact_recall
from phasebook.store import Store
from phasebook.train import pretraining
from phasebook.train.pretraining import PRESETS, pretrain
from phasebook.validation import ConfigError

TINY = PRESETS["base"].replace(
    corpus={"n_documents": 300, "eval_documents": 40},
    model={"vocab_size": 300, "n_layer": 1, "d_model": 16, "n_head": 2, "max_seq_len": 32},
    train={"steps": 4, "batch_size": 4, "seq_len": 32, "eval_interval": 2, "checkpoint_interval": 2,
           "log_interval": 1, "progress": False, "schedule": {"warmup_steps": 1}})


def test_pretrain_is_stored_once_per_configuration(tmp_path, monkeypatch):
    store = Store(tmp_path)
    first = pretrain(TINY, store)
    assert first.summary["steps"] == 4 and len(first.metrics) == 4
    assert not first.path.with_name(first.path.name + ".scratch").exists()  # checkpoints cleaned up
    assert first.snapshot_steps() == [0, 2, 4]  # the checkpoints the run kept, as weights
    final, earlier = first.snapshot(4).state_dict(), first.snapshot(2).state_dict()
    assert all(torch.equal(v, final[k]) for k, v in first.model.state_dict().items())
    assert not all(torch.equal(v, earlier[k]) for k, v in first.model.state_dict().items())

    def no_training(*args, **kwargs):
        raise AssertionError("a stored result was trained again")

    monkeypatch.setattr(pretraining, "train", no_training)
    again = pretrain(TINY, store)
    assert again.path == first.path
    assert [m["loss"] for m in again.metrics] == [m["loss"] for m in first.metrics]
    other = TINY.replace(train={"seed": 1})
    with pytest.raises(AssertionError, match="trained again"):
        pretrain(other, store)  # another configuration is another result


def test_a_killed_pretraining_resumes_from_its_checkpoints(tmp_path, monkeypatch):
    store = Store(tmp_path)
    real_train = pretraining.train

    def stop_at_step_3(record):
        if record["step"] == 3:
            raise KeyboardInterrupt  # as if the notebook were stopped here

    def killed_at_step_3(*args, **kwargs):
        return real_train(*args, **kwargs, on_log=stop_at_step_3)

    monkeypatch.setattr(pretraining, "train", killed_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        pretrain(TINY, store)
    assert not store.path("pretrain", TINY.key()).exists()  # nothing that looks finished
    monkeypatch.setattr(pretraining, "train", real_train)
    resumed = pretrain(TINY, store)
    fresh = pretrain(TINY, Store(tmp_path / "fresh"))
    assert [m["loss"] for m in resumed.metrics] == [m["loss"] for m in fresh.metrics]


def test_invalid_configurations_name_the_field():
    with pytest.raises(ConfigError, match="n_head"):
        TINY.replace(model={"n_head": 3})
    with pytest.raises(ConfigError, match="max_seq_len"):
        TINY.replace(train={"seq_len": 64})
    with pytest.raises(ConfigError, match="Did you mean 'steps'"):
        TINY.replace(train={"stpes": 3})


def test_default_base_model_learns_the_corpus(tmp_path):
    """The book's base model, as `make book` trains it: its held-out loss is far below what a
    model without context could reach, and it knows the facts it read but not the others."""
    run = pretrain(PRESETS["base"].replace(train={"progress": False}), Store(tmp_path))
    # A unigram model of this corpus sits near 4 nats/token; the base model reaches ~0.5.
    assert run.summary["final_val_loss"] < 0.7
    world = fact_world(run.config.corpus)
    known = fact_recall(run.model, run.tokenizer, world.present, "en", ["city", "profession"])
    unknown = fact_recall(run.model, run.tokenizer, world.absent, "en", ["city", "profession"])
    assert min(known.values()) > 0.4 and max(unknown.values()) < 0.35


def test_bench_train_reports_throughput_and_an_honest_mfu(tmp_path):
    from phasebook.cli import main

    out = tmp_path / "bench.json"
    assert main(["bench", "train", "--steps", "6", "--set", "model.n_layer=1", "--set",
                 "train.batch_size=4", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["tokens_per_s"] > 0 and record["config"]["model"]["n_layer"] == 1
    assert record["mfu"] is None and record["peak_flops"] is None  # a CPU has no known peak
    assert record["commit"] and record["hardware"]["cpu_count"] >= 1
