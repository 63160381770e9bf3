"""`phasebook bench kernels` end to end on the CPU path, and its ratio and goal bookkeeping."""

from __future__ import annotations

import json

import pytest
import torch

from phasebook.bench import kernels
from phasebook.cli import main


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU path even on a machine with a GPU (where the full run would take minutes)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def bench(tmp_path, *args: str) -> dict:
    out = tmp_path / "bench.json"
    assert main(["bench", "kernels", "--repeat", "2", "--out", str(out), *args]) == 0
    return json.loads(out.read_text(encoding="utf-8"))


def by_key(record: dict) -> dict[tuple[str, str, str], dict]:
    return {(r["family"], r["impl"], r["pass"]): r for r in record["rows"]}


def test_cpu_run_measures_every_family_with_provenance(tmp_path, no_cuda, capsys):
    record = bench(tmp_path)
    printed = capsys.readouterr().out

    for field in ("date", "commit", "command", "hardware", "torch", "triton", "cuda", "timing", "formulas"):
        assert field in record, field
    assert record["benchmark"] == "kernels" and record["device"] == "cpu" and record["quick"] is True
    assert record["hardware"]["cpu_count"] >= 1 and record["torch"] == torch.__version__
    assert "gpu_at_start" not in record  # nothing GPU-like from a CPU run
    assert {r["family"] for r in record["rows"]} == set(kernels.FAMILIES)

    rows = by_key(record)
    measured = [("gemm", "torch_bf16", "fwd"), ("gemm", "ours_bf16", "fwd"), ("fp8", "ours_fp8", "fwd"),
                ("fp8", "ours_fp8_quant", "fwd"), ("rmsnorm", "ours", "fwd"), ("rmsnorm", "ours", "fwd+bwd"),
                ("rmsnorm", "eager", "fwd"), ("rmsnorm", "eager", "fwd+bwd"),
                ("linear_ce", "ours", "fwd+bwd"), ("linear_ce", "eager", "fwd+bwd")]
    for key in measured:
        row = rows[key]
        assert row["status"] == "ok", (key, row["note"])
        assert len(row["times_ms"]) == 2 and row["ms"] == pytest.approx(sorted(row["times_ms"])[0] / 2
                                                                        + sorted(row["times_ms"])[1] / 2)
        assert row["peak_bytes"] is None  # peak memory is a CUDA measurement
    # The ours rows ran the plain-torch references, and say so.
    assert rows[("gemm", "ours_bf16", "fwd")]["label"].endswith("(reference)")
    for key in [("fp8", "scaled_mm_tensorwise", "fwd"), ("fp8", "scaled_mm_rowwise", "fwd"),
                ("rmsnorm", "compiled", "fwd+bwd"), ("linear_ce", "compiled", "fwd+bwd")]:
        assert rows[key]["status"] == "skipped" and "CUDA only" in rows[key]["note"]

    # Throughputs and ratios come from the numbers in the same record.
    gemm = rows[("gemm", "ours_bf16", "fwd")]
    m, n, k = (gemm["shape"][d] for d in "MNK")
    assert gemm["tflops"] == pytest.approx(2 * m * n * k / gemm["ms"] / 1e9)
    norm = rows[("rmsnorm", "ours", "fwd")]
    r, h = norm["shape"]["rows"], norm["shape"]["hidden"]
    assert norm["gbps"] == pytest.approx((2 * r * h + h) * 2 / norm["ms"] / 1e6)
    for key in measured:
        row = rows[key]
        ref = rows[("gemm" if row["family"] == "fp8" else row["family"], row["reference"], row["pass"])]
        assert row["ratio"] == pytest.approx(ref["ms"] / row["ms"])
    assert rows[("gemm", "torch_bf16", "fwd")]["ratio"] == 1.0

    assert len(record["goals"]) == len(kernels.GOALS)
    assert all(g["status"] == "not measured (no CUDA device)" and g["value"] is None for g in record["goals"])
    assert printed.startswith("No CUDA device: the Triton kernels cannot run here")
    assert "met " not in printed and "missed" not in printed


def test_only_picks_families(tmp_path, no_cuda):
    assert {r["family"] for r in bench(tmp_path, "--only", "rmsnorm")["rows"]} == {"rmsnorm"}
    rows = bench(tmp_path, "--only", "linear_ce, fp8")["rows"]
    # The cuBLAS bf16 row comes with fp8: it is the reference of every GEMM ratio.
    assert {(r["family"], r["impl"]) for r in rows if r["family"] != "fp8"} == {
        ("gemm", "torch_bf16"), ("linear_ce", "ours"), ("linear_ce", "eager"), ("linear_ce", "compiled")}
    assert all(r["ratio"] is not None for r in rows if r["family"] == "fp8" and r["status"] == "ok")


@pytest.mark.parametrize(("args", "message"), [
    (["--only", "gemm,softmax"],
     "--only: no kernel family 'softmax'. Families: gemm, fp8, rmsnorm, linear_ce."),
    (["--only", "rmsnrm"], "Did you mean 'rmsnorm'?"),
    (["--repeat", "0"], "--repeat 0: give at least 1"),
])
def test_bad_arguments_are_clear_errors(args, message, capsys):
    assert main(["bench", "kernels", *args]) == 2
    assert message in capsys.readouterr().err


def row(family, case, impl, pass_="fwd", ms=1.0, peak=None, status="ok"):
    return {"family": family, "case": case, "impl": impl, "pass": pass_, "ms": ms, "peak_bytes": peak,
            "status": status, "note": None if status == "ok" else "OutOfMemoryError: CUDA out of memory",
            "reference": None, "ratio": None, "memory_ratio": None}


def test_ratios_and_goals_on_cuda_numbers():
    rows = [row("gemm", "8192³", "torch_bf16", ms=2.0), row("gemm", "8192³", "ours_bf16", ms=2.5),
            row("fp8", "8192³", "ours_fp8", ms=1.25), row("fp8", "8192³", "ours_fp8_quant", status="error"),
            row("rmsnorm", "8192×8192", "eager", "fwd+bwd", ms=3.0, peak=100),
            row("rmsnorm", "8192×8192", "ours", "fwd+bwd", ms=1.0, peak=50),
            row("rmsnorm", "8192×8192", "ours", "fwd", ms=1.0),  # no eager fwd: no ratio
            row("linear_ce", "8192×768×32768", "eager", "fwd+bwd", ms=10.0, peak=4000),
            row("linear_ce", "8192×768×32768", "ours", "fwd+bwd", ms=11.0, peak=900)]
    kernels.add_ratios(rows)
    ratio = {(r["family"], r["impl"], r["pass"]): (r["ratio"], r["memory_ratio"]) for r in rows}
    assert ratio[("gemm", "ours_bf16", "fwd")] == (0.8, None)
    assert ratio[("fp8", "ours_fp8", "fwd")] == (1.6, None)
    assert ratio[("fp8", "ours_fp8_quant", "fwd")] == (None, None)
    assert ratio[("rmsnorm", "ours", "fwd+bwd")] == (3.0, 0.5)
    assert ratio[("rmsnorm", "ours", "fwd")] == (None, None)
    assert ratio[("linear_ce", "ours", "fwd+bwd")] == (pytest.approx(10 / 11), 0.225)

    goals = {(g["family"], g["impl"], g["metric"]): g for g in kernels.check_goals(rows, cuda=True)}
    assert len(goals) == len(kernels.GOALS)
    fp8 = goals[("fp8", "ours_fp8", "ratio")]
    assert fp8["status"] == "met" and fp8["value"] == 1.6 and fp8["target"] == "≥ 1.5×"
    assert goals[("fp8", "ours_fp8_quant", "ratio")]["status"].startswith("not measured (OutOfMemoryError")
    assert goals[("gemm", "ours_bf16", "ratio")]["status"] == "missed"  # 0.8 < 0.9
    assert goals[("rmsnorm", "ours", "ratio")]["status"] == "met"  # 3 >= 2
    assert goals[("linear_ce", "ours", "memory_ratio")]["status"] == "met"  # 0.225 <= 0.25
    assert goals[("linear_ce", "ours", "ratio")]["status"] == "missed"  # slower than eager
    assert kernels.check_goals(rows[:1], cuda=True)[0]["status"].startswith("not measured (not in this run")


def test_preset_gemm_shapes_are_the_models_layers():
    from phasebook.train.pretraining import PRESETS

    cfg = PRESETS["gpu-125m"]
    tokens = cfg.train.batch_size // cfg.train.grad_accum * cfg.train.seq_len
    d, ffn, vocab = cfg.model.d_model, cfg.model.ffn_dim, cfg.model.vocab_size
    assert dict(kernels.preset_gemm_cases()) == {
        "gpu-125m q/k/v/out": (tokens, d, d), "gpu-125m gate/up": (tokens, ffn, d),
        "gpu-125m down": (tokens, d, ffn), "gpu-125m lm head": (tokens, vocab, d)}
