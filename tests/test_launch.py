"""`phasebook pretrain` on one process and under real torchrun (2 gloo ranks), a rank killed
mid-run and resumed by the same command, `phasebook bench parallel`, and the errors of bad options."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from phasebook.cli import _overrides, main
from phasebook.errors import PhasebookError
from phasebook.store import Store
from phasebook.train import pretraining
from phasebook.train.distributed import World
from phasebook.train.pretraining import PRESETS, pretrain

# A model of ~10k parameters on a corpus of 300 documents: a step takes milliseconds.
TINY = ["corpus.n_documents=300", "corpus.eval_documents=40", "model.vocab_size=300", "model.n_layer=1",
        "model.d_model=16", "model.n_head=2", "model.max_seq_len=32", "train.batch_size=4",
        "train.seq_len=32", "train.eval_interval=0", "train.log_interval=1", "train.progress=false",
        "train.schedule.warmup_steps=1"]
# DDP's all-reduce sums the two ranks' gradients in another order than one process does: the
# trajectories agree to float32 rounding, which a wrong sample or an unaveraged gradient exceeds by far.
RTOL = 1e-5


def sets(*extra: str) -> list[str]:
    return [arg for item in [*TINY, *extra] for arg in ("--set", item)]


def tiny_config(*extra: str) -> pretraining.PretrainConfig:
    """The configuration `phasebook pretrain` builds from the same --set options."""
    return PRESETS["base"].replace(**_overrides([*TINY, *extra]))


def cli(tmp_path: Path, *args: str) -> subprocess.Popen:
    """`phasebook ARGS` as its own process, with the store in tmp_path/store."""
    env = dict(os.environ, PHASEBOOK_STORE=str(tmp_path / "store"), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "phasebook.cli", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def losses(path: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (path / "metrics.jsonl").read_text().splitlines()]


def result_path(stdout: str) -> Path:
    match = re.search(r"^result: (.+)$", stdout, re.MULTILINE)
    assert match, stdout
    return Path(match[1])


def test_pretrain_trains_once_and_prints_where_the_result_is(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PHASEBOOK_STORE", str(tmp_path / "store"))
    assert main(["pretrain", *sets("train.steps=3")]) == 0
    printed = capsys.readouterr().out
    path = result_path(printed)
    assert printed.startswith("trained: ") and "3 steps" in printed and "final loss: " in printed
    assert path == Store(tmp_path / "store").path("pretrain", tiny_config("train.steps=3").key())
    assert (path / "model.safetensors").is_file() and (path / "summary.json").is_file()

    def no_training(*args, **kwargs):
        raise AssertionError("a stored result was trained again")

    monkeypatch.setattr(pretraining, "train", no_training)
    assert main(["pretrain", *sets("train.steps=3")]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("already stored: ") and result_path(printed) == path


def _rank_process(store: Path, rank: int) -> int | None:
    """The pid of the torchrun rank `rank` whose store is `store` (so parallel tests never meet)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = set((entry / "environ").read_bytes().split(b"\0"))
        except OSError:  # gone meanwhile, or not ours
            continue
        if {f"RANK={rank}".encode(), f"PHASEBOOK_STORE={store}".encode()} <= env \
                and any(v.startswith(b"TORCHELASTIC_RUN_ID=") for v in env):
            return int(entry.name)
    return None


def test_two_ranks_killed_midway_resume_by_the_same_command(tmp_path):
    """Under real torchrun: a rank killed mid-run is named, with the checkpoint to resume from;
    the command the message gives resumes, and the result is the single-process run's, stored
    once, under the same key (the strategy is how, not what)."""
    args = ["pretrain", "--nproc-per-node", "2", *sets("train.steps=30", "train.checkpoint_interval=5")]
    cfg = tiny_config("train.steps=30", "train.checkpoint_interval=5")
    checkpoints = pretraining.scratch_folder(cfg, Store(tmp_path / "store")) / "checkpoints"
    job = cli(tmp_path, *args)
    deadline = time.monotonic() + 90
    while not (checkpoints / "step-000005").is_dir():
        assert job.poll() is None and time.monotonic() < deadline, job.communicate()
        time.sleep(0.01)
    victim = _rank_process(tmp_path / "store", 1)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    code, out, err = finish(job)

    assert code == 2 and "result: " not in out
    paragraph = err[err.rindex("phasebook pretrain: error"):]
    assert "Rank 1 (local rank 1 on " in paragraph and "failed first: killed by SIGKILL" in paragraph
    last = re.search(r"The last good checkpoint is (\S+);", paragraph)
    assert last and Path(last[1]).parent == checkpoints and Path(last[1]).is_dir()
    assert 5 <= int(Path(last[1]).name[5:]) < 30
    assert f"  phasebook pretrain --preset base {' '.join(args[3:])} --nproc-per-node 2\n" in paragraph

    code, out, err = finish(cli(tmp_path, *args))  # the command the paragraph gives, again
    assert code == 0, err
    path = result_path(out)
    assert out.count("result: ") == 1  # rank 0 alone reports
    # Stored once, the scratch folder removed (a rank killed by torchrun's SIGTERM may leave a hidden
    # temporary folder of the store behind: never mistaken for a result).
    assert [p.name for p in path.parent.iterdir() if not p.name.startswith(".")] == [path.name]
    assert path == Store(tmp_path / "store").path("pretrain", cfg.key())
    # Checkpoints change nothing in the numbers: the reference run saves none on the way.
    alone = pretrain(cfg.replace(train={"checkpoint_interval": 1000}), Store(tmp_path / "alone"))
    assert len(losses(path)) == 30 and losses(path) == pytest.approx(losses(alone.path), rel=RTOL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_meet_at_the_rendezvous_endpoint(tmp_path):
    """Two "nodes" of one rank each on this machine, each started with its own --node-rank, as
    on a cluster: they train together and store the single-process result."""
    args = [*sets("train.steps=6"), "--nnodes", "2", "--rdzv-endpoint", f"127.0.0.1:{free_port()}"]
    node1 = cli(tmp_path, "pretrain", *args, "--node-rank", "1")
    code, out, err = finish(cli(tmp_path, "pretrain", *args, "--node-rank", "0"))
    assert code == 0, err
    assert finish(node1)[0] == 0
    alone = pretrain(tiny_config("train.steps=6"), Store(tmp_path / "alone"))
    assert losses(result_path(out)) == pytest.approx(losses(alone.path), rel=RTOL)


def test_other_ranks_refuse_a_store_they_do_not_share_with_rank_0(tmp_path):
    """What rank 0 announces is checked before training: the same store path (same code, same
    PHASEBOOK_STORE) and a scratch folder this rank can see (a shared filesystem)."""
    class Rank0Said:
        def __init__(self, message: dict):
            self.message = message

        def receive(self) -> dict:
            return self.message

    cfg, store = tiny_config("train.steps=2"), Store(tmp_path / "store")
    rank1 = World(rank=1, world_size=2, local_rank=1, device=torch.device("cpu"), strategy="ddp")
    elsewhere = {"train": {"target": "/elsewhere/pretrain/x", "scratch": str(tmp_path)}}
    with pytest.raises(PhasebookError, match=r"rank 1 stores this run at .* rank 0 at /elsewhere"):
        pretraining._pretrain_as_other_rank(cfg, store, rank1, Rank0Said(elsewhere))
    unseen = {"train": {"target": str(store.path("pretrain", cfg.key())), "scratch": "/not/here.scratch"}}
    with pytest.raises(PhasebookError, match=r"cannot see rank 0's scratch folder /not/here\.scratch"):
        pretraining._pretrain_as_other_rank(cfg, store, rank1, Rank0Said(unseen))


def test_bench_parallel_measures_efficiency_and_communication(tmp_path, capsys):
    out = tmp_path / "parallel.json"
    assert main(["bench", "parallel", "--world-sizes", "2", "--steps", "3", "--out", str(out),
                 *sets()]) == 0
    record = json.loads(out.read_text())
    printed = capsys.readouterr().out
    for field in ("date", "commit", "command", "hardware", "torch", "triton", "communication_method"):
        assert record[field], field
    assert record["benchmark"] == "parallel" and record["strategy"] == "ddp" and record["backend"] == "gloo"
    assert record["batch_per_rank"]["tokens"] == 4 * 32
    one, two = record["rows"]
    assert (one["world_size"], two["world_size"]) == (1, 2)  # 1 added: the baseline
    assert one["efficiency"] == 1.0 and one["communication_share"] == 0.0
    assert two["efficiency"] > 0 and 0 <= two["communication_share"] <= 1
    assert two["tokens_per_s"] == pytest.approx(2 * two["tokens_per_s_per_rank"])
    assert "efficiency" in printed and "communication" in printed


@pytest.mark.parametrize(("args", "message"), [
    (["pretrain", "--nproc-per-node", "0"], "--nproc-per-node 0: give at least 1"),
    (["pretrain", "--nnodes", "2"], "need --rdzv-endpoint HOST:PORT"),
    (["pretrain", "--nnodes", "2", "--node-rank", "2", "--rdzv-endpoint", "h:1"], "--node-rank 2: must be"),
    (["pretrain", "--nnodes", "2", "--rdzv-endpoint", "nohost"], "write HOST:PORT"),
    (["pretrain", "--max-restarts", "-1"], "--max-restarts -1"),
    (["pretrain", "--preset", "bsae"], "Did you mean 'base'"),
    (["pretrain", "--set", "train.stpes=3"], "Did you mean 'steps'"),
    (["pretrain", "--set", "steps=3"], "SECTION.FIELD=VALUE"),
    (["pretrain", "--nproc-per-node", "2", "--set", "train.parallel=none"], "need train.parallel ddp or"),
    (["pretrain", "--nproc-per-node", "2", "--set", "train.parallel=fsdp", "--set",
      "train.optimizer.name=muon"], "optimizer 'muon'"),
    (["pretrain", "--nproc-per-node", "2", "--set", "train.batch_size=3"], "multiple of grad_accum × world"),
    (["bench", "parallel", "--world-sizes", "0,2"], "--world-sizes '0,2'"),
    (["bench", "parallel", "--world-sizes", "two"], "comma-separated numbers"),
    (["bench", "parallel", "--steps", "0"], "--steps 0"),
    (["bench", "parallel", "--set", "train.parallel=fsdp", "--set", "train.optimizer.name=muon",
      "--strategy", "fsdp"], "optimizer 'muon'"),
])
def test_bad_options_are_clear_errors(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PHASEBOOK_STORE", str(tmp_path / "store"))
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "store").exists()  # nothing ran


def test_pretrain_under_torchrun_refuses_to_start_torchrun_again(capsys, monkeypatch):
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    assert main(["pretrain", "--nproc-per-node", "2"]) == 2
    assert "already runs under torchrun" in capsys.readouterr().err
