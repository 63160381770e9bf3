"""Mid-training: annealing branches from a WSD branch point, domain adaptation with replay, and
the training loop's `init_from`."""

from __future__ import annotations

import dataclasses
import json
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from phasebook.data import MixtureConfig, PackedTokens, documents
from phasebook.data.corpus import SOURCES
from phasebook.model import GPT
from phasebook.store import Store
from phasebook.train import (
    CheckpointError,
    list_checkpoints,
    load_checkpoint,
    midtraining,
    read_state,
    stable_end,
    train,
)
from phasebook.train.midtraining import AdaptConfig, AnnealConfig, adapt, anneal, replay_mixture
from phasebook.train.pretraining import PRESETS, pretrain, token_stream
from phasebook.validation import ConfigError

# A 20-step WSD base whose decay is its last 5 steps: the branch point is step 15. A small world
# (16 entities) keeps the fact-recall probes of `adapt` quick.
BASE = PRESETS["base"].replace(
    corpus={"n_documents": 300, "eval_documents": 40, "facts": {"n_entities": 16}},
    model={"vocab_size": 300, "n_layer": 1, "d_model": 32, "n_head": 2, "max_seq_len": 32},
    train={"steps": 20, "batch_size": 4, "seq_len": 32, "eval_interval": 0, "eval_batches": 2,
           "checkpoint_interval": 5, "log_interval": 1, "progress": False,
           "schedule": {"name": "wsd", "warmup_steps": 2, "decay_fraction": 0.25, "decay_shape": "linear",
                        "min_lr_ratio": 0.1}})
BRANCH_STEP = 15
# The base's own decay, as a branch: its mixture, shape, floor and seed.
OWN_DECAY = AnnealConfig(steps=5, mixture=BASE.corpus.mixture, decay_shape="linear", min_lr_ratio=0.1, seed=0)
# A branch of its own: another mixture, shape, floor and seed.
MATH_BRANCH = AnnealConfig(steps=8, mixture=MixtureConfig(general=0.1, math=0.8, facts=0.1),
                           decay_shape="sqrt", min_lr_ratio=0.0, seed=3)
# Three steps of training for the init_from tests.
SHORT_TRAIN = dataclasses.replace(BASE.train, steps=3, schedule=OWN_DECAY.schedule())


@pytest.fixture(scope="module")
def base_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """A store holding the pre-trained base (and its tokenizer), shared by the tests that only
    read it, and MATH_BRANCH trained there without interruption."""
    store = Store(tmp_path_factory.mktemp("base-store"))
    pretrain(BASE, store)
    anneal(BASE, MATH_BRANCH, store)
    return store


def fresh_store(folder: Path, base_store: Store) -> Store:
    """A new store that holds the pre-trained base and its tokenizer, but no branch."""
    for kind in ("pretrain", "tokenizer", "tokens"):
        shutil.copytree(base_store.root / kind, folder / kind)
    return Store(folder)


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_wsd_base_keeps_its_branch_point(base_store: Store) -> None:
    run = pretrain(BASE, base_store)
    branch = run.branch_checkpoint
    assert branch is not None and stable_end(20, BASE.train.schedule) == BRANCH_STEP
    assert read_state(branch)["step"] == BRANCH_STEP
    model = GPT(BASE.model)
    load_checkpoint(branch, model)  # verified: a whole checkpoint
    assert same_weights(weights(model), weights(run.snapshot(BRANCH_STEP)))
    assert json.loads((branch / "manifest.json").read_text())["contents"] == ["model", "optimizer"]


def test_a_branch_with_the_base_decay_is_the_base_decay(base_store: Store) -> None:
    """Started from the branch point's weights and optimizer state, on the data the base read
    next, the branch's first loss is the base's loss of step 16 and its end is the base's end."""
    run = anneal(BASE, OWN_DECAY, base_store)
    base_losses = {m["step"]: m["ce_loss"] for m in run.base.metrics}
    assert [m["step"] for m in run.metrics] == [1, 2, 3, 4, 5]
    assert [m["ce_loss"] for m in run.metrics] == [base_losses[BRANCH_STEP + k] for k in range(1, 6)]
    assert abs(run.metrics[0]["ce_loss"] - base_losses[BRANCH_STEP]) < 0.5  # close to the branch point's
    assert same_weights(weights(run.model), weights(run.base.model))
    lrs = [m["lr"] for m in run.metrics]
    assert lrs[0] == pytest.approx(BASE.train.optimizer.lr) and lrs[-1] == pytest.approx(0.1 * lrs[0])
    decay = run.summary["decay"]
    assert run.summary["branch_step"] == BRANCH_STEP
    for phase in ("base", "branch"):
        assert decay[phase]["steps"] == 5  # and the losses of each phase's first and last steps:
        assert decay[phase]["train_loss_before"] == pytest.approx(base_losses[BRANCH_STEP + 1], abs=1e-5)
        assert decay[phase]["train_loss_after"] == base_losses[20]
        assert decay[phase]["val_drop"] == pytest.approx(decay[phase]["val_loss_before"]
                                                         - decay[phase]["val_loss_after"])
        assert decay[phase]["val_drop"] > 0  # the decay lowers the held-out loss
    assert decay["base"]["val_drop"] == pytest.approx(decay["branch"]["val_drop"])


def test_branches_are_reproducible_and_keep_the_base_tokenizer(tmp_path: Path, base_store: Store) -> None:
    first = anneal(BASE, MATH_BRANCH, base_store)  # stored: loaded, not trained again
    store = fresh_store(tmp_path, base_store)
    second = anneal(BASE, MATH_BRANCH, store)
    assert same_weights(weights(first.model), weights(second.model))
    assert [m["loss"] for m in first.metrics] == [m["loss"] for m in second.metrics]
    assert not same_weights(weights(first.model), weights(first.base.model))
    assert second.path.parent.name == "anneal" and second.path.name == first.path.name
    assert second.path != store.path("anneal", {"base": BASE.key(), "anneal": dataclasses.asdict(OWN_DECAY)})
    # One tokenizer in the store, the base corpus's: the new mixture's texts never trained one.
    assert len(list((tmp_path / "tokenizer").iterdir())) == 1
    assert second.tokenizer.digest == second.base.tokenizer.digest
    values = [v for table in second.summary["val_loss"].values() for v in table.values()]
    assert len(values) == 6 and all(np.isfinite(values))
    assert second.summary["decay"]["branch"]["steps"] == 8


def test_anneal_needs_a_wsd_base(tmp_path: Path) -> None:
    cosine = BASE.replace(train={"schedule": {"name": "cosine"}})
    with pytest.raises(ConfigError, match=r"train\.schedule\.name.*'cosine'.*'wsd'"):
        anneal(cosine, OWN_DECAY, Store(tmp_path))
    assert not any(tmp_path.iterdir())  # refused before pre-training anything
    with pytest.raises(ConfigError, match="decay_shape"):
        AnnealConfig(decay_shape="exp")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="min_lr_ratio"):
        AnnealConfig(min_lr_ratio=1.5)


def test_a_killed_branch_resumes_from_its_own_checkpoints(tmp_path: Path, base_store: Store,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    store = fresh_store(tmp_path, base_store)
    real_train = midtraining.train
    seen: list[int] = []

    def killed_at_step_7(*args, **kwargs):
        def stop(record):
            if record["step"] == 7:
                raise KeyboardInterrupt
        return real_train(*args, **kwargs, on_log=stop)

    monkeypatch.setattr(midtraining, "train", killed_at_step_7)
    with pytest.raises(KeyboardInterrupt):
        anneal(BASE, MATH_BRANCH, store)
    key = {"base": BASE.key(), "anneal": dataclasses.asdict(MATH_BRANCH)}
    assert not store.path("anneal", key).exists()  # nothing that looks finished
    scratch = store.scratch_path("anneal", key)
    assert [read_state(c)["step"] for c in list_checkpoints(scratch)] == [0, 5]
    # The branch's step 0 is the branch point: its weights and its optimizer state.
    ours, theirs = GPT(BASE.model), GPT(BASE.model)
    load_checkpoint(list_checkpoints(scratch)[0], ours)
    load_checkpoint(pretrain(BASE, store).branch_checkpoint, theirs)
    assert same_weights(weights(ours), weights(theirs))
    step0 = json.loads((list_checkpoints(scratch)[0] / "manifest.json").read_text())
    assert step0["contents"] == ["model", "optimizer"]

    def resumed(*args, **kwargs):
        return real_train(*args, **kwargs, on_log=lambda record: seen.append(record["step"]))

    monkeypatch.setattr(midtraining, "train", resumed)
    run = anneal(BASE, MATH_BRANCH, store)
    assert seen == [6, 7, 8]  # from its own step-5 checkpoint, not from the branch point again
    whole = anneal(BASE, MATH_BRANCH, base_store)  # trained without interruption
    assert [m["loss"] for m in run.metrics] == [m["loss"] for m in whole.metrics]
    assert same_weights(weights(run.model), weights(whole.model))


def tiny_data(seed: int = 0) -> PackedTokens:
    return PackedTokens(np.random.default_rng(seed).integers(0, 300, 4000).astype(np.int32), seed=seed)


@pytest.mark.parametrize("damage", ["missing folder", "corrupt weights", "no manifest"])
def test_init_from_a_bad_checkpoint_names_the_file_and_writes_nothing(tmp_path: Path, base_store: Store,
                                                                      damage: str) -> None:
    source = tmp_path / "source"
    shutil.copytree(pretrain(BASE, base_store).branch_checkpoint, source)
    bad = {"missing folder": tmp_path / "nowhere", "corrupt weights": source / "__0_0.distcp",
           "no manifest": source / "manifest.json"}[damage]
    if damage == "corrupt weights":
        data = bytearray(bad.read_bytes())
        data[len(data) // 2] ^= 0x10
        bad.write_bytes(bytes(data))
    elif damage == "no manifest":
        bad.unlink()
    run_dir = tmp_path / "run"
    start = source if damage != "missing folder" else bad
    with pytest.raises(CheckpointError) as err:
        train(GPT(BASE.model), tiny_data(), SHORT_TRAIN, run_dir, init_from=start)
    assert err.value.path == bad and bad.name in str(err.value)
    assert not run_dir.exists()


def test_init_from_keeps_the_new_run_hyperparameters(tmp_path: Path, base_store: Store) -> None:
    """The optimizer state comes from the checkpoint, the peak rates from the new run's config."""
    branch = pretrain(BASE, base_store).branch_checkpoint
    cfg = dataclasses.replace(SHORT_TRAIN, optimizer=dataclasses.replace(BASE.train.optimizer, lr=1e-4))
    logged: list[float] = []
    result = train(GPT(BASE.model), tiny_data(), cfg, tmp_path, init_from=branch,
                   on_log=lambda r: logged.append(r["lr"]))
    assert result.steps == 3 and logged[0] == pytest.approx(1e-4)  # the base's peak was 3e-3
    assert BASE.train.optimizer.lr == pytest.approx(3e-3)


def exact_counts(n: int, shares: dict[str, Fraction]) -> dict[str, int]:
    """Largest remainder in exact arithmetic (ties to the earlier source)."""
    floors = {s: int(n * shares[s]) for s in SOURCES}
    order = sorted(SOURCES, key=lambda s: (-(n * shares[s] - floors[s]), SOURCES.index(s)))
    for s in order[:n - sum(floors.values())]:
        floors[s] += 1
    return floors


@pytest.mark.parametrize(("replay", "n"), [(0.0, 97), (0.25, 301), (0.3, 250), (0.5, 123)])
def test_replay_mixtures_give_exact_document_counts(replay: float, n: int) -> None:
    domain, general = MixtureConfig(general=0.0, math=0.7, facts=0.3), BASE.corpus.mixture
    mixture = replay_mixture(domain, general, replay)
    r = Fraction(str(replay))
    intended = {s: (1 - r) * Fraction(str(getattr(domain, s))) + r * Fraction(str(getattr(general, s)))
                for s in SOURCES}
    corpus = dataclasses.replace(BASE.corpus, n_documents=n, mixture=mixture)
    counted = {s: 0 for s in SOURCES}
    for doc in documents(corpus, "train"):
        counted[doc.source] += 1
    assert counted == exact_counts(n, intended)
    assert replay_mixture(domain, general, 0.0) == domain


def test_adapt_config_names_bad_fields() -> None:
    with pytest.raises(ConfigError, match="replay"):
        AdaptConfig(replay=1.0)
    with pytest.raises(ConfigError, match="lr"):
        AdaptConfig(lr=0.0)
    with pytest.raises(ConfigError, match="steps"):
        AdaptConfig(steps=0)


def test_adapt_measures_forgetting_and_gain(base_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(midtraining, "TASK_PROBLEMS", 4)
    cfg = AdaptConfig(steps=6, domain=MixtureConfig(general=0.0, math=1.0, facts=0.0), replay=0.25, lr=3e-3)
    run = adapt(BASE, cfg, base_store)
    s = run.summary
    assert s["mixture"] == {"general": 0.1, "math": 0.85, "strings": 0.0, "facts": 0.05}
    # "Before" is the base's final model on the base's own validation windows.
    assert s["general"]["before"] == pytest.approx(run.base.summary["final_val_loss"], abs=1e-5)
    assert s["forgetting"] == s["general"]["forgetting"] == pytest.approx(s["general"]["after"]
                                                                         - s["general"]["before"])
    assert s["gain"] == s["domain"]["gain"] == pytest.approx(s["domain"]["before"] - s["domain"]["after"])
    assert s["gain"] > 0  # six steps on the domain lower its held-out loss
    for task in ("arithmetic", "fact_recall"):
        assert set(s["tasks"][task]) == {"before", "after"}
        assert all(0.0 <= v <= 1.0 for v in s["tasks"][task].values())
    assert all(np.isfinite([s["general"]["after"], s["domain"]["after"], s["final_val_loss"]]))
    lrs = [m["lr"] for m in run.metrics]
    assert max(lrs) == pytest.approx(3e-3) and lrs[-1] == pytest.approx(0.1 * 3e-3)  # cosine to the floor
    # Step 1 is the base's final model on the adapted mixture's stream, read from where the base stopped.
    corpus = dataclasses.replace(BASE.corpus, mixture=cfg.mixture(BASE.corpus.mixture))
    stream = PackedTokens(token_stream(corpus, "train", run.tokenizer, base_store), seed=cfg.seed)
    x, y = stream.batch(BASE.train.steps, BASE.train.batch_size, BASE.train.seq_len)
    with torch.no_grad():
        assert run.metrics[0]["ce_loss"] == pytest.approx(run.base.model(x, y).ce_loss.item(), abs=1e-5)
    again = adapt(BASE, cfg, base_store)
    assert again.path == run.path and again.path.parent.name == "adapt"
