"""Data-parallel training with real torchrun jobs of 2 gloo ranks on the CPU: DDP and FSDP2 follow
the single-process run with the same global batch, checkpoints move between world sizes and
strategies, and a job that loses a rank says so and resumes when started again.

Tolerance: losses, gradient norms and evaluation losses agree with the single-process run to a
relative 1e-5 over 8 fp32 steps (AdamW, grad_accum 2). The ranks add up gradients in another
order than one process does, so the runs are not bit-identical (measured: at most 2.3e-7
apart). Ranks reading samples one off move the loss by 9e-3; summing the ranks' gradients
instead of averaging them doubles the gradient norm and moves the loss by 5e-4.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from phasebook.data import PackedTokens
from phasebook.launch import MONITOR_INTERVAL
from phasebook.model import GPT, ModelConfig
from phasebook.train import (
    MetricsLog,
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
    latest_checkpoint,
    list_checkpoints,
    train,
)
from phasebook.train.loop import rows_per_rank
from phasebook.validation import ConfigError

ROOT = Path(__file__).resolve().parents[1]
RTOL = 1e-5
VOCAB = 64


def gpt() -> GPT:
    """The same tiny GPT on every rank (the seed fixes its weights)."""
    torch.manual_seed(0)
    return GPT(ModelConfig(vocab_size=VOCAB, n_layer=2, n_head=2, d_model=32, max_seq_len=16))


def tokens(seed: int) -> PackedTokens:
    """A fixed random token stream; rank r reads rows r::W of each global batch (PackedTokens)."""
    return PackedTokens(np.random.default_rng(seed).integers(0, VOCAB, 4000).astype(np.int32), seed=seed)


def config(parallel: str = "none", **overrides: Any) -> TrainConfig:
    base: dict[str, Any] = {
        "steps": 8, "batch_size": 8, "grad_accum": 2, "seq_len": 16, "checkpoint_interval": 4,
        "eval_interval": 4, "eval_batches": 2, "log_interval": 1, "progress": False, "device": "cpu",
        "optimizer": OptimizerConfig(lr=1e-2), "schedule": ScheduleConfig(name="cosine", warmup_steps=2)}
    return TrainConfig(**{**base, "parallel": parallel, **overrides})


def run(model: GPT, cfg: TrainConfig, run_dir: Path, **kwargs: Any):
    return train(model, tokens(0), cfg, run_dir, eval_data=tokens(1), **kwargs)


# What every rank of a job runs: the scenarios named on the command line, in order. Each rank
# writes what it saw to out/rank-R.json.
JOB = """
import json, os, shutil, signal, sys
import torch
torch.set_num_threads(1)
from phasebook.errors import PhasebookError
from phasebook.train import barrier, full_state_dict, init_world
from tests.test_distributed import config, gpt, run

out, scenarios = sys.argv[1], sys.argv[2:]
rank = int(os.environ["RANK"])
seen = {}

def record(name, result):
    seen[name] = {"final_loss": result.final_loss, "final_val_loss": result.final_val_loss,
                  "metrics": result.metrics}

def die_at_step_6(rec):
    if rank == 1 and rec["step"] == 6:
        os.kill(os.getpid(), signal.SIGKILL)

for name in scenarios:
    if name == "error-none":
        try:
            run(gpt(), config("none"), f"{out}/none")
        except PhasebookError as exc:
            seen[name] = str(exc)
    elif name == "error-batch":
        try:
            run(gpt(), config("ddp", batch_size=6), f"{out}/batch")
        except PhasebookError as exc:
            seen[name] = str(exc)
    elif name in ("ddp", "fsdp", "from-single"):
        model = gpt()
        record(name, run(model, config("fsdp" if name != "ddp" else "ddp"), f"{out}/{name}"))
        if name == "fsdp":
            weights = full_state_dict(model)
            seen["full_state_dict_keys"] = len(weights)
            if rank == 0:
                torch.save(weights, f"{out}/fsdp-weights.pt")
    elif name == "ddp-from-fsdp":
        world = init_world("ddp", "cpu")
        if rank == 0:
            os.makedirs(f"{out}/{name}/checkpoints")
            shutil.copytree(f"{out}/fsdp/checkpoints/step-000004", f"{out}/{name}/checkpoints/step-000004")
        barrier(world)
        record(name, run(gpt(), config("ddp"), f"{out}/{name}"))
    elif name == "killed":
        record(name, run(gpt(), config("ddp"), f"{out}/killed", on_log=die_at_step_6))
    elif name == "restarted":  # the same run again, nobody dying this time
        record(name, run(gpt(), config("ddp"), f"{out}/killed"))
with open(f"{out}/rank-{rank}.json", "w") as f:
    json.dump(seen, f)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(out: Path, *scenarios: str) -> subprocess.CompletedProcess[str]:
    script = out / "job.py"
    script.write_text(JOB)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "lib")]),
           "OMP_NUM_THREADS": "1", "PHASEBOOK_DIST_TIMEOUT": "60"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
               "--monitor-interval", str(MONITOR_INTERVAL),
               "--master-port", str(free_port()), str(script), str(out), *scenarios]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)


def ranks_saw(out: Path) -> list[dict[str, Any]]:
    return [json.loads((out / f"rank-{r}.json").read_text()) for r in (0, 1)]


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One single-process reference run, then one torchrun job of 2 ranks running every scenario."""
    out = tmp_path_factory.mktemp("dist")
    single_model = gpt()
    single = run(single_model, config(), out / "single")
    step_4 = Path("checkpoints") / "step-000004"
    shutil.copytree(out / "single" / step_4, out / "from-single" / step_4)
    done = torchrun(out, "error-none", "error-batch", "ddp", "fsdp", "from-single", "ddp-from-fsdp")
    assert done.returncode == 0, done.stdout + done.stderr
    return {"out": out, "single": single, "single_model": single_model, "ranks": ranks_saw(out)}


def series(metrics: list[dict[str, Any]], key: str) -> list[float]:
    return [r[key] for r in metrics if key in r]


def assert_same_run(got: dict[str, Any], want, first_step: int = 1) -> None:
    """`got` (a rank's record) follows the single-process result `want` within RTOL, step by step."""
    want_metrics = [r for r in want.metrics if r["step"] >= first_step]
    assert [r["step"] for r in got["metrics"]] == [r["step"] for r in want_metrics]
    for key in ("loss", "ce_loss", "grad_norm", "val_loss"):
        assert series(got["metrics"], key) == pytest.approx(series(want_metrics, key), rel=RTOL), key
    assert got["final_loss"] == pytest.approx(want.final_loss, rel=RTOL)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_ranks_follow_the_single_process_run_step_by_step(job: dict[str, Any], strategy: str) -> None:
    rank0, rank1 = job["ranks"]
    assert_same_run(rank0[strategy], job["single"])
    assert rank1[strategy] == rank0[strategy]  # every rank returns the same result
    # Rank 0 alone writes the metrics file: one line per step, not one per rank.
    logged = MetricsLog(job["out"] / strategy / "metrics.jsonl").read()
    assert [r["step"] for r in logged] == list(range(1, 9))


def test_fsdp_checkpoint_is_sharded_and_full_weights_reach_rank_0(job: dict[str, Any]) -> None:
    ckpt = latest_checkpoint(job["out"] / "fsdp")
    names = {p.name for p in ckpt.iterdir()}
    assert {"__0_0.distcp", "__1_0.distcp", ".metadata", "rng-0.pt", "rng-1.pt", "state.json",
            "manifest.json"} <= names
    manifest = json.loads((ckpt / "manifest.json").read_text())
    assert set(manifest["files"]) == names - {"manifest.json"} and manifest["world_size"] == 2
    rank0, rank1 = job["ranks"]
    assert rank1["full_state_dict_keys"] == 0
    weights = torch.load(job["out"] / "fsdp-weights.pt", weights_only=True)
    single = job["single_model"].state_dict()
    assert rank0["full_state_dict_keys"] == len(single) == len(weights)
    for name, value in single.items():
        torch.testing.assert_close(weights[name], value, rtol=1e-4, atol=1e-6)


def test_checkpoint_of_two_fsdp_ranks_resumes_in_one_process_and_in_two_ddp_ranks(
        job: dict[str, Any], tmp_path: Path) -> None:
    step_4 = Path("checkpoints") / "step-000004"
    shutil.copytree(job["out"] / "fsdp" / step_4, tmp_path / step_4)
    resumed = run(gpt(), config("fsdp"), tmp_path)  # the strategy is ignored in a world of one
    got = {"final_loss": resumed.final_loss, "metrics": resumed.metrics}
    assert_same_run(got, job["single"], first_step=5)
    assert_same_run(job["ranks"][0]["ddp-from-fsdp"], job["single"], first_step=5)


def test_checkpoint_of_one_process_resumes_in_two_fsdp_ranks(job: dict[str, Any]) -> None:
    assert_same_run(job["ranks"][0]["from-single"], job["single"], first_step=5)
    assert json.loads((job["out"] / "from-single" / "checkpoints" / "step-000008" / "manifest.json")
                      .read_text())["world_size"] == 2


def test_killed_rank_ends_the_job_with_a_clear_error_and_a_restart_resumes(job: dict[str, Any],
                                                                           tmp_path: Path) -> None:
    died = torchrun(tmp_path, "killed")
    output = died.stdout + died.stderr
    assert died.returncode != 0
    last_good = tmp_path / "killed" / "checkpoints" / "step-000004"
    assert latest_checkpoint(tmp_path / "killed") == last_good
    assert "rank 0 lost contact with the other ranks in step 7 (did another rank die?)" in output, output
    assert f"the last good checkpoint is {last_good}" in output
    again = torchrun(tmp_path, "restarted")  # the same run_dir and configuration: resumes from step 4
    assert again.returncode == 0, again.stdout + again.stderr
    resumed = ranks_saw(tmp_path)[0]["restarted"]
    assert [r["step"] for r in resumed["metrics"]] == list(range(1, 9))  # the lines of steps 5, 6 replaced
    ddp = job["ranks"][0]["ddp"]
    assert resumed["final_loss"] == pytest.approx(ddp["final_loss"], rel=RTOL)
    assert series(resumed["metrics"], "loss") == pytest.approx(series(ddp["metrics"], "loss"), rel=RTOL)
    assert [p.name for p in list_checkpoints(tmp_path / "killed")] == ["step-000004", "step-000008"]


def test_configuration_errors_name_the_field(job: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"parallel: is 'fsdp'.*'muon'"):
        config("fsdp", optimizer=OptimizerConfig(name="muon"))
    config("ddp", optimizer=OptimizerConfig(name="muon"))  # DDP keeps whole matrices: allowed
    with pytest.raises(ConfigError, match=r"batch_size: is 8; with grad_accum 2 on 3 ranks.* = 6"):
        rows_per_rank(config(), 3)
    rank0, rank1 = job["ranks"]
    for seen in (rank0, rank1):  # what the ranks of a 2-process job were told
        assert "2 processes were started" in seen["error-none"]
        assert "set train.parallel to 'ddp' or 'fsdp'" in seen["error-none"]
        assert "batch_size: is 6; with grad_accum 2 on 2 ranks it must be a multiple" in seen["error-batch"]
    assert not (job["out"] / "none").exists() and not (job["out"] / "batch").exists()
