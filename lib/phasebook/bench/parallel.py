"""`phasebook bench parallel`: how well data-parallel training scales, and what communication costs.

Weak scaling: each world size W runs as its own torchrun job in which every rank trains the
preset model on random tokens with the same batch per rank (the preset's `batch_size`, in its
`grad_accum` micro-batches), so W ranks do W times the work of one. Scaling efficiency is the
tokens/s per rank at W over the tokens/s of one rank: 1.0 means communication and waiting cost
nothing. The ranks run the training loop's own pieces (`wrap_model`, `accumulate_gradients`
with its single gradient reduction per step, `gradient_norm`, `optimizer_step`) on the model
directly, without the loop's checkpoints, evaluation and logging, which would blur the timing.

Communication share: every measured step is timed twice in alternation, once as training runs
it and once with the gradient reduction switched off for all micro-batches (DDP `no_sync`, FSDP2
`set_requires_gradient_sync(False)`; the update then differs, which does not matter for timing).
The share is 1 − t_without_sync / t_step: the part of the step that waiting for the gradient
all-reduce (DDP) or reduce-scatter (FSDP) adds, after whatever of it overlaps the backward
pass. FSDP's parameter all-gathers happen in both timings, so for FSDP the share counts the
gradient reduction only. The optimizer update is timed once, in the real steps, and counted in
both. Ranks start every timed step together (a barrier, untimed); a step's time is that of the
slowest rank, the median over the measured steps.

Where it runs: CPU processes over gloo (threads per rank fixed for every world size, so that
one rank computes equally fast in each job), or one GPU per rank over NCCL.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from phasebook.errors import PhasebookError
from phasebook.provenance import git_commit, hardware, now, package_version

METHOD = ("1 - t_without_sync / t_step: each measured step is also run with the gradient reduction off "
          "(DDP no_sync, FSDP2 set_requires_gradient_sync(False)); FSDP's parameter all-gathers are in "
          "both timings, so for FSDP only the gradient reduction is counted")
WARMUP_STEPS = 2  # untimed steps of each kind first: DDP sizes its buckets, torch.compile compiles


def parse_world_sizes(text: str) -> list[int]:
    """`"1,2,4"` -> [1, 2, 4]; 1 is always measured, as the baseline of the efficiency."""
    try:
        sizes = {int(part) for part in text.split(",") if part.strip()}
    except ValueError:
        sizes = set()
    if not sizes or min(sizes) < 1:
        raise PhasebookError(f"--world-sizes {text!r}: give comma-separated numbers of ranks, each at "
                             "least 1, e.g. 1,2,4.")
    return sorted(sizes | {1})


def run(preset: str = "base", world_sizes: list[int] | None = None, strategy: str = "ddp", steps: int = 10,
        changes: dict[str, Any] | None = None, out: Path | None = None, command: str = "") -> dict[str, Any]:
    """Measure every world size in its own torchrun job; return (and write to `out`) the record."""
    from phasebook.launch import Rendezvous, explain_failure, rank_environment, run_job, torchrun_command
    from phasebook.train.distributed import resolve_device
    from phasebook.train.pretraining import PRESETS

    world_sizes = world_sizes or [1, 2]
    if steps < 1:
        raise PhasebookError(f"--steps {steps}: measure at least 1 step.")
    changes = dict(changes or {})
    train_changes = {**changes.pop("train", {}), "parallel": strategy}
    cfg = PRESETS[preset].replace(train=train_changes, **changes)
    device = resolve_device(cfg.train.device)
    if device.type == "cuda" and max(world_sizes) > torch.cuda.device_count():
        raise PhasebookError(f"--world-sizes: {max(world_sizes)} ranks need as many GPUs; this machine has "
                             f"{torch.cuda.device_count()}.")
    threads = max(1, (os.cpu_count() or 1) // max(world_sizes))
    measured = []
    with tempfile.TemporaryDirectory(prefix="phasebook-bench-parallel-") as tmp:
        for world_size in world_sizes:
            print(f"bench parallel: {world_size} rank(s)...", file=sys.stderr, flush=True)
            spec, result = Path(tmp) / f"spec-{world_size}.json", Path(tmp) / f"result-{world_size}.json"
            spec.write_text(json.dumps({"model": dataclasses.asdict(cfg.model),
                                        "train": dataclasses.asdict(cfg.train), "threads": threads,
                                        "steps": steps}), encoding="utf-8")
            job = torchrun_command(Rendezvous(nproc_per_node=world_size), "phasebook.bench.parallel",
                                   [str(spec), str(result)])
            outcome = run_job(job, {**rank_environment(world_size), "OMP_NUM_THREADS": str(threads)})
            if not outcome.ok:
                raise PhasebookError(f"bench parallel: the job on {world_size} rank(s) failed. "
                                     f"{explain_failure(outcome)}")
            measured.append(json.loads(result.read_text(encoding="utf-8")))
    tokens_per_rank_step = cfg.train.batch_size * cfg.train.seq_len
    rows = _rows(measured, tokens_per_rank_step)
    record = {
        "benchmark": "parallel", "preset": preset, "strategy": strategy, "date": now(),
        "commit": git_commit(), "command": command, "hardware": hardware(), "device": device.type,
        "backend": "nccl" if device.type == "cuda" else "gloo", "torch": torch.__version__,
        "triton": package_version("triton"), "config": dataclasses.asdict(cfg),
        "parameters": measured[0]["parameters"], "scaling": "weak (the same batch on every rank)",
        "batch_per_rank": {"sequences": cfg.train.batch_size, "seq_len": cfg.train.seq_len,
                           "grad_accum": cfg.train.grad_accum, "tokens": tokens_per_rank_step},
        "threads_per_rank": threads, "steps": steps, "warmup_steps": WARMUP_STEPS,
        "communication_method": METHOD, "rows": rows,
    }
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")
    return record


def _rows(measured: list[dict[str, Any]], tokens_per_rank_step: int) -> list[dict[str, Any]]:
    """Per world size: throughput, efficiency against one rank, communication share."""
    rows = []
    for m in measured:
        ranks = m["ranks"]
        step_s = max(r["forward_backward_s"] + r["update_s"] for r in ranks)
        row: dict[str, Any] = {"world_size": m["world_size"], "step_s": step_s,
                               "update_s": max(r["update_s"] for r in ranks),
                               "tokens_per_s": m["world_size"] * tokens_per_rank_step / step_s,
                               "tokens_per_s_per_rank": tokens_per_rank_step / step_s}
        if m["world_size"] == 1:  # nothing to communicate with
            row.update(step_s_without_sync=step_s, communication_share=0.0, communication_share_raw=0.0)
        else:
            quiet_s = max(r["forward_backward_no_sync_s"] + r["update_s"] for r in ranks)
            raw = 1.0 - quiet_s / step_s  # below 0 when the difference drowns in timing noise
            row.update(step_s_without_sync=quiet_s, communication_share=min(1.0, max(0.0, raw)),
                       communication_share_raw=raw)
        rows.append(row)
    baseline = rows[0]["tokens_per_s_per_rank"]
    for row in rows:
        row["efficiency"] = row["tokens_per_s_per_rank"] / baseline
    return rows


def report(record: dict[str, Any]) -> str:
    """The record as a table, with what it measured and where."""
    cfg, batch = record["config"], record["batch_per_rank"]
    where = record["hardware"].get("gpu") or record["hardware"]["processor"]
    threads = f", {record['threads_per_rank']} thread(s) per rank" if record["device"] == "cpu" else ""
    lines = [
        f"preset {record['preset']}: {record['parameters'] / 1e6:.2f}M parameters, {record['strategy']} over "
        f"{record['backend']} on {record['device']} ({where}){threads}",
        f"weak scaling: {batch['sequences']} × {batch['seq_len']} tokens per rank and step "
        f"({batch['grad_accum']} micro-batch(es)), {cfg['train']['precision']}, median of "
        f"{record['steps']} steps",
        f"{'ranks':>5}  {'tokens/s':>12}  {'per rank':>10}  {'efficiency':>10}  {'step ms':>8}  "
        f"{'no-sync ms':>10}  {'communication':>13}",
    ]
    for r in record["rows"]:
        lines.append(f"{r['world_size']:>5}  {r['tokens_per_s']:>12,.0f}  "
                     f"{r['tokens_per_s_per_rank']:>10,.0f}  {r['efficiency']:>10.0%}  "
                     f"{1e3 * r['step_s']:>8.1f}  {1e3 * r['step_s_without_sync']:>10.1f}  "
                     f"{r['communication_share']:>13.0%}")
    lines.append(f"communication share: {record['communication_method']}.")
    one, most = record["rows"][0], record["rows"][-1]
    if most["world_size"] > 1:  # where the rest of the lost efficiency went
        lines.append(f"at {most['world_size']} ranks a step without the gradient reduction takes "
                     f"{most['step_s_without_sync'] / one['step_s']:.2f}× one rank's step: the rest of the "
                     "lost efficiency is slower computation (shared cores or memory bandwidth, stragglers)"
                     + (", and FSDP's parameter all-gathers" if record["strategy"] == "fsdp" else "") + ".")
    return "\n".join(lines)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(spec: dict[str, Any]) -> dict[str, Any] | None:
    """One rank's part of a job (every rank calls it): time forward-backward with and without
    the gradient reduction, and the update; rank 0 returns every rank's medians, the others None."""
    from phasebook.bench.train import RandomTokens
    from phasebook.model import GPT, ModelConfig
    from phasebook.train.distributed import barrier, gradient_sync, init_world, wrap_model
    from phasebook.train.loop import TrainConfig, accumulate_gradients, gradient_norm, optimizer_step
    from phasebook.train.optim import build_optimizer
    from phasebook.train.precision import prepare_model
    from phasebook.validation import from_mapping

    torch.set_num_threads(spec["threads"])
    model_cfg = from_mapping(ModelConfig, spec["model"])
    cfg = from_mapping(TrainConfig, spec["train"])
    world = init_world(cfg.parallel, cfg.device)
    torch.manual_seed(cfg.seed)
    model = GPT(model_cfg)
    parameters = model.num_params()
    prepare_model(model, cfg.precision)
    model.to(world.device).train()
    wrapped = wrap_model(model, world, cfg.precision)
    forward = torch.compile(wrapped) if cfg.compile else wrapped
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(model, cfg.optimizer)
    data = RandomTokens(model_cfg.vocab_size, cfg.seed)
    rows = cfg.batch_size // cfg.grad_accum

    def batches(step: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        pairs = (data.batch(step * cfg.grad_accum + m, rows, cfg.seq_len, world.rank, world.world_size)
                 for m in range(cfg.grad_accum))
        return [(x.to(world.device), y.to(world.device)) for x, y in pairs]

    def timed_forward_backward(work: list[tuple[torch.Tensor, torch.Tensor]], sync: bool) -> float:
        barrier(world)
        _synchronize(world.device)
        start = time.perf_counter()
        with gradient_sync(wrapped, enabled=sync):  # off: no micro-batch reduces, not even the last
            accumulate_gradients(forward, work, precision=cfg.precision, device=world.device,
                                 sync_module=wrapped)
        _synchronize(world.device)
        return time.perf_counter() - start

    def timed_update() -> float:
        start = time.perf_counter()
        optimizer_step(optimizer, params, gradient_norm(params), cfg.clip)
        _synchronize(world.device)
        return time.perf_counter() - start

    times: dict[str, list[float]] = {"forward_backward_s": [], "update_s": [],
                                     "forward_backward_no_sync_s": []}
    for step in range(WARMUP_STEPS + spec["steps"]):
        keep, work = step >= WARMUP_STEPS, batches(step)
        fb, update = timed_forward_backward(work, sync=True), timed_update()
        if keep:
            times["forward_backward_s"].append(fb)
            times["update_s"].append(update)
        if world.world_size > 1:  # the same micro-batches again, without the gradient reduction
            quiet = timed_forward_backward(work, sync=False)
            optimizer.zero_grad(set_to_none=True)
            if keep:
                times["forward_backward_no_sync_s"].append(quiet)
    mine = {name: statistics.median(values) for name, values in times.items() if values}
    everyone = [mine]
    if world.world_size > 1:
        everyone = [None] * world.world_size
        dist.all_gather_object(everyone, mine)
    if not world.is_main:
        return None
    return {"world_size": world.world_size, "parameters": parameters, "device": str(world.device),
            "ranks": everyone}


def _rank_main(spec_path: str, result_path: str) -> int:
    result = measure(json.loads(Path(spec_path).read_text(encoding="utf-8")))
    if result is not None:
        Path(result_path).write_text(json.dumps(result), encoding="utf-8")
    # Only now, with the DDP or FSDP model gone: destroying the group under a live DDP can hang.
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":  # one rank of a job started by `run` through torchrun
    sys.exit(_rank_main(*sys.argv[1:]))
