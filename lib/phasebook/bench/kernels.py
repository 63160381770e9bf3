"""`phasebook bench kernels`: our kernels against cuBLAS, eager torch and torch.compile.

One run measures every family, so each ratio compares numbers taken on the same machine,
clocks and driver, minutes apart. The families (`--only` picks some):

- ``gemm``: bf16 C = A·Bᵀ in the layout of `nn.Linear` (A (M, K) and B (N, K), both
  row-major), for shapes written M×N×K: 4096³, 8192³, 4096×7168×16384 and the layers of the
  gpu-125m preset model (M = tokens per micro-batch). torch.matmul (cuBLAS) is the reference of
  every GEMM ratio, so it is measured whenever gemm or fp8 is.
- ``fp8``: the same shapes in fp8 e4m3: torch._scaled_mm with tensor-wise and with row-wise
  scales (fast accumulation), and ours with DeepSeek-V3-style 1×128 / 128×128 block scales,
  from pre-quantised operands and with the quantisation of both operands from bf16 included.
- ``rmsnorm``: forward and forward+backward of ours, of eager torch and of torch.compile of it.
  Eager torch is `rms_norm_reference`, the maths of the model's `RMSNorm` in plain torch (the
  module itself now runs our kernel on CUDA). x, the weight and y are all bf16.
- ``linear_ce``: the LM head's linear layer and the cross-entropy, forward+backward: time and
  peak memory of ours (chunked; the full logits never exist) against eager and compiled torch.

On CUDA a time is the median of `triton.testing.do_bench` (warm-up, L2 cache flushed before
each call), taken --repeat times; the row keeps all of them and reports their median. Peak
memory is measured in a separate pass, as the most allocated above what was allocated before
(the inputs). Each measurement is guarded: one that fails (out of memory, a kernel that does
not compile) is recorded as an error in its row and the rest still runs. Nothing is asserted:
the issue's goals (`GOALS`) are reported as met or missed.

Without CUDA the Triton kernels cannot run, so the command times the plain-torch reference
implementations against plain torch at small shapes (--quick is implied), so that it, its
table and its JSON can be exercised anywhere. Those numbers describe the CPU, not the kernels.

This module imports only torch, the standard library and phasebook modules that need nothing
more (triton when timing on CUDA): the GPU machines it runs on have nothing else installed. The
one exception is reading the gpu-125m preset from `phasebook.train.pretraining`, whose package
also imports tqdm and safetensors: where that fails, the preset's GEMM shapes become one error
row and everything else runs.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from phasebook.errors import PhasebookError, suggest
from phasebook.provenance import git_commit, hardware, now, package_version

FAMILIES = ("gemm", "fp8", "rmsnorm", "linear_ce")
PRESET = "gpu-125m"  # the model whose own layer shapes the GEMMs are also measured at
BF16 = torch.bfloat16
ELEMENT_BYTES = 2  # every benchmarked tensor is bf16
E4M3_MAX = 448.0
COMPILE_ON_CUDA_ONLY = "torch.compile is measured on CUDA only"
EPS = 1e-5  # the model's RMSNorm default
CPU_MIN_S = 0.02  # on CPU a measurement repeats its call for at least this long (timer resolution, noise)
CUDA_TIMING = "triton.testing.do_bench median (warm-up, L2 flushed before each call); median of --repeat"
CPU_TIMING = (f"perf_counter after one warm-up call, the mean over calls filling {CPU_MIN_S} s; "
              "median of --repeat")

# The implementation each family's ratios are taken against (ratio = its time / the row's time).
REFERENCE = {"gemm": "torch_bf16", "fp8": "torch_bf16", "rmsnorm": "eager", "linear_ce": "eager"}
# Where a family's reference row lives: the fp8 rows share their cuBLAS bf16 row with gemm.
SECTION = {"gemm": "gemm", "fp8": "gemm", "rmsnorm": "rmsnorm", "linear_ce": "linear_ce"}

FORMULAS = {
    "gemm_flop": "2·M·N·K",
    "rmsnorm_bytes_fwd": "(2·rows·hidden + hidden)·2: read x and w, write y (bf16)",
    "rmsnorm_bytes_bwd": "(3·rows·hidden + 2·hidden)·2: read g, x and w, write grad_x and grad_w (bf16)",
    "rmsnorm_bytes_fwd+bwd": "rmsnorm_bytes_fwd + rmsnorm_bytes_bwd",
    "linear_ce_flop": "6·tokens·d_model·vocab: the logits GEMM and the two gradient GEMMs",
    "ratio": "reference ms / this ms (> 1: faster than the reference; for GEMMs = TFLOP/s ratio)",
    "memory_ratio": "this peak_bytes / reference peak_bytes (< 1: less memory)",
}
UNITS = {"ms": "milliseconds", "tflops": "1e12 FLOP/s", "gbps": "1e9 bytes/s",
         "peak_bytes": "bytes allocated above the inputs at the peak (CUDA only)"}


@dataclass(frozen=True)
class Cases:
    """The shapes one run measures: GEMMs as (name, (M, N, K)), RMSNorm as (rows, hidden),
    linear + cross-entropy as (tokens, d_model, vocab)."""

    gemm: tuple[tuple[str, tuple[int, int, int]], ...]
    rmsnorm: tuple[tuple[int, int], ...]
    linear_ce: tuple[tuple[int, int, int], ...]
    preset_gemms: bool  # also the gpu-125m model's layer shapes


def _cube_name(m: int, n: int, k: int) -> str:
    return f"{m}³" if m == n == k else f"{m}×{n}×{k}"


def _gemm_cases(*shapes: tuple[int, int, int]) -> tuple[tuple[str, tuple[int, int, int]], ...]:
    return tuple((_cube_name(*s), s) for s in shapes)


FULL = Cases(gemm=_gemm_cases((4096, 4096, 4096), (8192, 8192, 8192), (4096, 7168, 16384)),
             rmsnorm=((16384, 768), (16384, 4096), (8192, 8192)),
             linear_ce=((8192, 768, 32768), (8192, 4096, 128256)), preset_gemms=True)
# --quick on CUDA: only the shapes the goals are judged at.
QUICK = Cases(gemm=_gemm_cases((8192, 8192, 8192)), rmsnorm=((8192, 8192),),
              linear_ce=((8192, 768, 32768),), preset_gemms=False)
# Without CUDA: small enough for the reference implementations on a laptop in seconds.
CPU = Cases(gemm=_gemm_cases((256, 256, 256)), rmsnorm=((512, 256),), linear_ce=((256, 64, 1024),),
            preset_gemms=False)


@dataclass(frozen=True)
class Goal:
    """A target from the issue: `metric` of the row (family, case, impl, pass) against `target`."""

    text: str
    family: str
    case: str
    impl: str
    pass_: str
    metric: str  # "ratio" or "memory_ratio" (see FORMULAS)
    at_least: bool  # met when metric >= target (else when metric <= target)
    target: float


GOALS = (
    Goal("fp8 block-scaled GEMM (GEMM only) vs cuBLAS bf16 at 8192³", "fp8", "8192³", "ours_fp8",
         "fwd", "ratio", True, 1.5),
    Goal("fp8 block-scaled GEMM with quantisation of both operands vs cuBLAS bf16 at 8192³", "fp8",
         "8192³", "ours_fp8_quant", "fwd", "ratio", True, 1.2),
    Goal("bf16 Triton GEMM vs cuBLAS at 8192³", "gemm", "8192³", "ours_bf16", "fwd", "ratio", True, 0.9),
    Goal("RMSNorm forward+backward vs eager at 8192×8192", "rmsnorm", "8192×8192", "ours", "fwd+bwd",
         "ratio", True, 2.0),
    Goal("linear + cross-entropy peak memory vs eager at vocabulary 32k", "linear_ce", "8192×768×32768",
         "ours", "fwd+bwd", "memory_ratio", False, 0.25),
    Goal("linear + cross-entropy speed vs eager at vocabulary 32k", "linear_ce", "8192×768×32768",
         "ours", "fwd+bwd", "ratio", True, 1.0),
)


def parse_families(text: str | None) -> tuple[str, ...]:
    """The families named in a comma-separated `--only` value (all of them for None)."""
    if not text:
        return FAMILIES
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if name not in FAMILIES:
            raise PhasebookError(f"--only: no kernel family '{name}'. Families: {', '.join(FAMILIES)}."
                                 + suggest(name, FAMILIES))
    return tuple(f for f in FAMILIES if f in names)


class Bench:
    """Measures callables on one device and keeps one row per measurement."""

    def __init__(self, device: torch.device, repeat: int, echo: Callable[[str], None] | None = None):
        self.device, self.repeat, self.echo = device, repeat, echo
        self.cuda = device.type == "cuda"
        self.rows: list[dict[str, Any]] = []

    def measure(self, family: str, case: str, shape: dict[str, int], impl: str, label: str, pass_: str,
                build: Callable[[], Callable[[], object]], *, flop: int | None = None,
                nbytes: int | None = None, grads: Sequence[Tensor] = (), memory: bool = False) -> None:
        """Time `build()` (and measure its peak memory if `memory`); errors become the row's note.

        `build` makes the callable to time, so that what it prepares (an import, quantised
        operands, a compiled module) fails inside the guard too. `grads` are tensors whose .grad
        is cleared before every call, so backward passes do not accumulate.
        """
        row = self._row(family, case, shape, impl, label, pass_)
        fn = None
        try:
            fn = build()
            times = self._time(fn, grads)
            ms = statistics.median(times)
            row.update(times_ms=times, ms=ms)
            if flop is not None:
                row["tflops"] = flop / ms / 1e9
            if nbytes is not None:
                row["gbps"] = nbytes / ms / 1e6
            if memory:
                row["peak_bytes"] = self._peak_bytes(fn, grads)
        except Exception as exc:  # one failed measurement must not end the run
            row.update(status="error", note=_message(exc))
        finally:
            del fn
            for t in grads:
                t.grad = None
            if self.cuda:
                torch.cuda.empty_cache()
        self._add(row)

    def skip(self, family: str, case: str, shape: dict[str, int], impl: str, label: str, pass_: str,
             reason: str, status: str = "skipped") -> None:
        self._add(self._row(family, case, shape, impl, label, pass_) | {"status": status, "note": reason})

    def _row(self, family: str, case: str, shape: dict[str, int], impl: str, label: str,
             pass_: str) -> dict[str, Any]:
        return {"family": family, "case": case, "shape": shape, "impl": impl, "label": label,
                "pass": pass_, "status": "ok", "note": None, "ms": None, "times_ms": [], "tflops": None,
                "gbps": None, "peak_bytes": None, "reference": None, "ratio": None, "memory_ratio": None}

    def _add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if self.echo:
            what = f"{row['ms']:.3f} ms" if row["status"] == "ok" else f"{row['status']}: {row['note']}"
            self.echo(f"{row['family']} {row['case']} {row['impl']} {row['pass']}: {what}")

    def _time(self, fn: Callable[[], object], grads: Sequence[Tensor]) -> list[float]:
        self._clear(grads)
        fn()  # compiles, autotunes and fails (if it fails) before any timing
        if self.cuda:
            from triton.testing import do_bench

            torch.cuda.synchronize()
            return [float(do_bench(fn, grad_to_none=list(grads) or None, return_mode="median"))
                    for _ in range(self.repeat)]
        times = []
        for _ in range(self.repeat):  # each: the mean over calls filling at least CPU_MIN_S
            calls, start = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - start) < CPU_MIN_S:
                self._clear(grads)
                fn()
                calls += 1
            times.append(elapsed / calls * 1e3)
        return times

    def _peak_bytes(self, fn: Callable[[], object], grads: Sequence[Tensor]) -> int | None:
        if not self.cuda:
            return None
        self._clear(grads)
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before

    @staticmethod
    def _clear(grads: Sequence[Tensor]) -> None:
        for t in grads:
            t.grad = None


def _message(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:400] if lines else ''}".rstrip(": ")


# ---- GEMM and fp8 GEMM -------------------------------------------------------------------------

def preset_gemm_cases(preset: str = PRESET) -> tuple[tuple[str, tuple[int, int, int]], ...]:
    """The (name, (M, N, K)) of the preset model's matrix multiplies, one micro-batch of tokens
    as M; layers with equal shapes share one case (q/k/v/out without grouped-query attention)."""
    from phasebook.train.pretraining import PRESETS

    cfg = PRESETS[preset]
    m, t = cfg.model, cfg.train
    tokens = t.batch_size // t.grad_accum * t.seq_len
    q, kv = m.n_head * m.head_dim, m.kv_heads * m.head_dim
    layers = [("q", (tokens, q, m.d_model)), ("k", (tokens, kv, m.d_model)), ("v", (tokens, kv, m.d_model)),
              ("out", (tokens, m.d_model, q)), ("gate", (tokens, m.ffn_dim, m.d_model)),
              ("up", (tokens, m.ffn_dim, m.d_model)), ("down", (tokens, m.d_model, m.ffn_dim)),
              ("lm head", (tokens, m.vocab_size, m.d_model))]
    names: dict[tuple[int, int, int], list[str]] = {}
    for name, shape in layers:
        names.setdefault(shape, []).append(name)
    return tuple((f"{preset} {'/'.join(n)}", shape) for shape, n in names.items())


def _torch_matmul(a: Tensor, w: Tensor) -> Callable[[], Tensor]:
    wt = w.t()
    return lambda: a @ wt


def _ours_bf16(a: Tensor, w: Tensor) -> Callable[[], Tensor]:
    from phasebook.kernels.gemm import gemm

    wt = w.t()  # a strided view: the kernel takes any strides
    return lambda: gemm(a, wt)


def _scaled_mm(a: Tensor, w: Tensor, rowwise: bool) -> Callable[[], Tensor]:
    """torch._scaled_mm on e4m3 copies of a and w scaled per tensor or per row (amax / 448)."""
    def quantise(x: Tensor) -> tuple[Tensor, Tensor]:
        amax = x.abs().amax(dim=1, keepdim=True) if rowwise else x.abs().amax()
        scale = amax.float().clamp_min(1e-12) / E4M3_MAX
        return (x.float() / scale).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn), scale

    aq, a_scale = quantise(a)  # (M, K), scale (M, 1) or scalar
    wq, w_scale = quantise(w)  # (N, K), scale (N, 1) or scalar
    b, b_scale = wq.t(), w_scale.reshape(1, -1) if rowwise else w_scale  # b (K, N) column-major
    return lambda: torch._scaled_mm(aq, b, scale_a=a_scale, scale_b=b_scale, out_dtype=BF16,
                                    use_fast_accum=True)


def _ours_fp8(a: Tensor, w: Tensor, quantise: bool) -> Callable[[], Tensor]:
    from phasebook.kernels.fp8 import fp8_gemm, quantize_blocks, quantize_tiles

    if quantise:
        return lambda: fp8_gemm(quantize_tiles(a), quantize_blocks(w)[0])
    aq, wq = quantize_tiles(a), quantize_blocks(w)[0]
    return lambda: fp8_gemm(aq, wq)


def _gemm_case(bench: Bench, families: Sequence[str], case: str, m: int, n: int, k: int) -> None:
    a = torch.randn(m, k, device=bench.device, dtype=BF16)
    w = torch.randn(n, k, device=bench.device, dtype=BF16)
    shape, flop, backend = {"M": m, "N": n, "K": k}, 2 * m * n * k, _backend(a)

    def measure(family: str, impl: str, label: str, build: Callable[[], Callable[[], object]]) -> None:
        bench.measure(family, case, shape, impl, label, "fwd", build, flop=flop)

    measure("gemm", "torch_bf16", "torch.matmul bf16" + (" (cuBLAS)" if bench.cuda else ""),
            partial(_torch_matmul, a, w))
    if "gemm" in families:
        measure("gemm", "ours_bf16", f"ours gemm bf16 ({backend})", partial(_ours_bf16, a, w))
    if "fp8" not in families:
        return
    for impl, label, rowwise in (
            ("scaled_mm_tensorwise", "torch._scaled_mm e4m3 tensor-wise, fast accum", False),
            ("scaled_mm_rowwise", "torch._scaled_mm e4m3 row-wise, fast accum", True)):
        if bench.cuda:
            measure("fp8", impl, label, partial(_scaled_mm, a, w, rowwise))
        else:
            bench.skip("fp8", case, shape, impl, label, "fwd", "torch._scaled_mm is measured on CUDA only")
    measure("fp8", "ours_fp8", f"ours fp8_gemm, block scales, pre-quantised ({backend})",
            partial(_ours_fp8, a, w, False))
    measure("fp8", "ours_fp8_quant", f"ours quantize_tiles + quantize_blocks + fp8_gemm ({backend})",
            partial(_ours_fp8, a, w, True))


# ---- RMSNorm -----------------------------------------------------------------------------------

def _rmsnorm_pass(impl: str, w: Tensor, x: Tensor, g: Tensor, backward: bool) -> Callable[[], object]:
    from phasebook.kernels.rmsnorm import rms_norm, rms_norm_reference

    norm = rms_norm if impl == "ours" else rms_norm_reference
    if impl == "compiled":
        norm = torch.compile(norm, dynamic=False)
    if backward:
        return lambda: norm(x, w, EPS).backward(g)

    def forward() -> Tensor:
        with torch.no_grad():
            return norm(x, w, EPS)
    return forward


def _rmsnorm_case(bench: Bench, rows: int, hidden: int) -> None:
    case, shape = f"{rows}×{hidden}", {"rows": rows, "hidden": hidden}
    x = torch.randn(rows, hidden, device=bench.device, dtype=BF16, requires_grad=True)
    w = (1 + 0.1 * torch.randn(hidden, device=bench.device)).to(BF16).requires_grad_()
    g = torch.randn_like(x)
    fwd_bytes = (2 * rows * hidden + hidden) * ELEMENT_BYTES
    bwd_bytes = (3 * rows * hidden + 2 * hidden) * ELEMENT_BYTES
    if bench.cuda:
        torch.compiler.reset()  # a fresh compile per shape, never a dynamic-shape one
    implementations = (("ours", f"ours rms_norm ({_backend(x)})"),
                       ("eager", "eager torch (rms_norm_reference)"),
                       ("compiled", "torch.compile(rms_norm_reference)"))
    for impl, label in implementations:
        for pass_, backward, nbytes in (("fwd", False, fwd_bytes), ("fwd+bwd", True, fwd_bytes + bwd_bytes)):
            if impl == "compiled" and not bench.cuda:
                bench.skip("rmsnorm", case, shape, impl, label, pass_, COMPILE_ON_CUDA_ONLY)
                continue
            bench.measure("rmsnorm", case, shape, impl, label, pass_,
                          partial(_rmsnorm_pass, impl, w, x, g, backward), nbytes=nbytes,
                          grads=(x, w) if backward else (), memory=True)


# ---- linear + cross-entropy --------------------------------------------------------------------

def eager_linear_ce(h: Tensor, w: Tensor, targets: Tensor) -> Tensor:
    """The plain way: the full logits h·Wᵀ, in float32, then F.cross_entropy."""
    return F.cross_entropy((h @ w.t()).float(), targets)


def _linear_ce_pass(impl: str, h: Tensor, w: Tensor, targets: Tensor) -> Callable[[], None]:
    if impl == "ours":
        from phasebook.kernels.linear_ce import linear_cross_entropy

        return lambda: linear_cross_entropy(h, w, targets)[0].backward()
    loss = eager_linear_ce if impl == "eager" else torch.compile(eager_linear_ce, dynamic=False)
    return lambda: loss(h, w, targets).backward()


def _linear_ce_case(bench: Bench, tokens: int, d_model: int, vocab: int) -> None:
    case, shape = f"{tokens}×{d_model}×{vocab}", {"tokens": tokens, "d_model": d_model, "vocab": vocab}
    h = torch.randn(tokens, d_model, device=bench.device, dtype=BF16, requires_grad=True)
    # Weights of std 1/sqrt(d_model) give logits of std ~1, as in a trained model's head.
    w = (torch.randn(vocab, d_model, device=bench.device) * d_model**-0.5).to(BF16).requires_grad_()
    targets = torch.randint(0, vocab, (tokens,), device=bench.device)
    if bench.cuda:
        torch.compiler.reset()
    implementations = (("ours", f"ours linear_cross_entropy ({_backend(h)})"),
                       ("eager", "eager torch (h·Wᵀ → float → F.cross_entropy)"),
                       ("compiled", "torch.compile(eager)"))
    for impl, label in implementations:
        if impl == "compiled" and not bench.cuda:
            bench.skip("linear_ce", case, shape, impl, label, "fwd+bwd", COMPILE_ON_CUDA_ONLY)
            continue
        bench.measure("linear_ce", case, shape, impl, label, "fwd+bwd",
                      partial(_linear_ce_pass, impl, h, w, targets), flop=6 * tokens * d_model * vocab,
                      grads=(h, w), memory=True)


# ---- the run -----------------------------------------------------------------------------------

def _backend(t: Tensor) -> str:
    from phasebook.kernels.dispatch import resolve_backend

    return resolve_backend("auto", t)


def _guarded(bench: Bench, family: str, case: str, run_case: Callable[[], None]) -> None:
    """Run one case; a failure outside any single measurement (allocating its inputs, an
    import) becomes one error row for the case."""
    try:
        run_case()
    except Exception as exc:
        bench.skip(family, case, {}, "*", "the whole case", "*", _message(exc), status="error")
    finally:
        if bench.cuda:
            torch.cuda.empty_cache()


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Fill each row's ratio (reference time / its time) and memory_ratio (its peak / the
    reference's) from the reference row of the same case and pass."""
    index = {(SECTION[r["family"]], r["case"], r["pass"], r["impl"]): r for r in rows if r["status"] == "ok"}
    for row in rows:
        row["reference"] = REFERENCE[row["family"]]
        ref = index.get((SECTION[row["family"]], row["case"], row["pass"], row["reference"]))
        if row["status"] != "ok" or ref is None:
            continue
        row["ratio"] = ref["ms"] / row["ms"]
        if row["peak_bytes"] is not None and ref["peak_bytes"]:
            row["memory_ratio"] = row["peak_bytes"] / ref["peak_bytes"]


def check_goals(rows: list[dict[str, Any]], cuda: bool) -> list[dict[str, Any]]:
    """Each goal with its measured value and "met", "missed" or "not measured (why)"."""
    found = {(r["family"], r["case"], r["impl"], r["pass"]): r for r in rows}
    out = []
    for goal in GOALS:
        row = found.get((goal.family, goal.case, goal.impl, goal.pass_))
        value = row.get(goal.metric) if row else None
        if not cuda:
            status = "not measured (no CUDA device)"
        elif row is None:
            status = "not measured (not in this run: see --only and --quick)"
        elif value is None:
            status = f"not measured ({row['note'] or 'no reference measurement'})"
        else:
            status = "met" if (value >= goal.target if goal.at_least else value <= goal.target) else "missed"
        out.append({"goal": goal.text, "family": goal.family, "case": goal.case, "impl": goal.impl,
                    "pass": goal.pass_, "metric": goal.metric,
                    "target": f"{'≥' if goal.at_least else '≤'} {goal.target:g}×", "value": value,
                    "status": status})
    return out


def gpu_state() -> dict[str, Any]:
    """Best effort: what torch and nvidia-smi say about GPU 0 (clocks, power limit, temperature);
    a field that cannot be read is left out, and nothing here raises."""
    info: dict[str, Any] = {}
    try:
        props = torch.cuda.get_device_properties(0)
        info.update(name=props.name, capability=f"{props.major}.{props.minor}",
                    memory_bytes=props.total_memory, multiprocessors=props.multi_processor_count)
    except Exception as exc:
        info["torch_error"] = _message(exc)
    fields = ("pci.bus_id", "driver_version", "power.limit", "power.max_limit", "power.draw", "clocks.sm",
              "clocks.max.sm", "clocks.mem", "clocks.max.mem", "temperature.gpu", "persistence_mode")
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return info
    try:
        result = subprocess.run([smi, f"--query-gpu={','.join(fields)}", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=10, check=True)
        lines = [line.split(", ") for line in result.stdout.strip().splitlines()]
        info["nvidia_smi"] = dict(zip(fields, _this_gpu(lines), strict=False))
    except Exception as exc:
        info["nvidia_smi_error"] = _message(exc)
    return info


def _this_gpu(lines: list[list[str]]) -> list[str]:
    """The nvidia-smi line of the GPU torch calls cuda:0 (they number GPUs differently when
    CUDA_VISIBLE_DEVICES is set), matched by PCI address; the first line if that is unknown."""
    props = torch.cuda.get_device_properties(0)
    ids = [getattr(props, f"pci_{part}_id", None) for part in ("domain", "bus", "device")]
    if None in ids:
        return lines[0]
    address = "{:08X}:{:02X}:{:02X}.0".format(*ids)
    return next((line for line in lines if line[0].upper() == address), lines[0])


def run(families: Sequence[str] = FAMILIES, *, quick: bool = False, repeat: int = 3, out: Path | None = None,
        command: str = "", echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure `families` on this machine's GPU (or, without one, the references on the CPU);
    return the record, also written as JSON to `out` when given."""
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    cases = (QUICK if quick else FULL) if cuda else CPU
    torch.manual_seed(0)
    record: dict[str, Any] = {
        "benchmark": "kernels", "date": now(), "commit": git_commit(), "command": command,
        "hardware": hardware(), "device": device.type, "torch": torch.__version__,
        "triton": package_version("triton"), "cuda": torch.version.cuda, "families": list(families),
        "quick": quick or not cuda, "repeat": repeat,
        "timing": CUDA_TIMING if cuda else CPU_TIMING,
        "formulas": FORMULAS, "units": UNITS,
    }
    if cuda:
        record["gpu_at_start"] = gpu_state()
    bench = Bench(device, repeat, echo)
    if "gemm" in families or "fp8" in families:
        gemm_cases = list(cases.gemm)
        if cases.preset_gemms:
            try:
                gemm_cases += preset_gemm_cases()
            except Exception as exc:  # e.g. a dependency of the training code missing on this machine
                bench.skip("gemm", PRESET, {}, "*", f"the {PRESET} layer shapes", "fwd",
                           f"could not read the preset: {_message(exc)}", status="error")
        for case, (m, n, k) in gemm_cases:
            _guarded(bench, "gemm", case, partial(_gemm_case, bench, families, case, m, n, k))
    if "rmsnorm" in families:
        for rows, hidden in cases.rmsnorm:
            _guarded(bench, "rmsnorm", f"{rows}×{hidden}", partial(_rmsnorm_case, bench, rows, hidden))
    if "linear_ce" in families:
        for tokens, d_model, vocab in cases.linear_ce:
            _guarded(bench, "linear_ce", f"{tokens}×{d_model}×{vocab}",
                     partial(_linear_ce_case, bench, tokens, d_model, vocab))
    add_ratios(bench.rows)
    record["rows"] = bench.rows
    record["goals"] = check_goals(bench.rows, cuda)
    gpu = record["hardware"].get("gpu")
    if cuda and "H100" not in (gpu or ""):
        record["goals_note"] = f"the goals are stated for an H100; this run is on {gpu}"
    if cuda:
        record["gpu_at_end"] = gpu_state()
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")
    return record


# ---- the printed report ------------------------------------------------------------------------

def _number(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _times(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def _mib(value: int | None) -> str:
    return "—" if value is None else f"{value / 2**20:,.0f}"


# Per section: (header, cell) columns after the case and the implementation.
COLUMNS: dict[str, tuple[tuple[str, Callable[[dict[str, Any]], str]], ...]] = {
    "gemm": (("ms", lambda r: _number(r["ms"], 3)), ("TFLOP/s", lambda r: _number(r["tflops"])),
             ("× torch bf16", lambda r: _times(r["ratio"]))),
    "rmsnorm": (("pass", lambda r: r["pass"]), ("ms", lambda r: _number(r["ms"], 3)),
                ("GB/s", lambda r: _number(r["gbps"], 0)), ("peak MiB", lambda r: _mib(r["peak_bytes"])),
                ("× eager", lambda r: _times(r["ratio"]))),
    "linear_ce": (("ms", lambda r: _number(r["ms"], 2)), ("TFLOP/s", lambda r: _number(r["tflops"])),
                  ("peak MiB", lambda r: _mib(r["peak_bytes"])),
                  ("speed × eager", lambda r: _times(r["ratio"])),
                  ("memory × eager", lambda r: _times(r["memory_ratio"]))),
}
TITLES = {"gemm": "GEMM C = A·Bᵀ (M×N×K), bf16 and fp8",
          "rmsnorm": "RMSNorm (rows×hidden), bf16; GB/s from the bytes that must move",
          "linear_ce": "linear + cross-entropy (tokens×d_model×vocab), bf16, forward+backward; "
                       "peak memory above the inputs"}


def _table(rows: list[dict[str, Any]], columns: Sequence[tuple[str, Callable[[dict[str, Any]], str]]]) -> str:
    """Case and implementation left-aligned, numbers right-aligned; a row that failed or was
    skipped shows its reason in place of the numbers."""
    headers = ["case", "implementation", *(h for h, _ in columns)]
    body = [[r["case"], r["label"], *(cell(r) for _, cell in columns)] if r["status"] == "ok"
            else [r["case"], r["label"], f"{r['status']}: {r['note']}"] for r in rows]
    full = [headers, *(line for line in body if len(line) == len(headers))]
    widths = [max(len(line[i]) for line in full) for i in range(len(headers))]
    widths[:2] = [max(len(line[i]) for line in [headers, *body]) for i in range(2)]
    lines = []
    for line in [headers, *body]:
        cells = [c.ljust(widths[i]) if i < 2 else c.rjust(widths[i]) for i, c in enumerate(line)]
        if len(line) < len(headers):
            cells[-1] = line[-1]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def report(record: dict[str, Any]) -> str:
    """The record as readable text: where it ran, one table per family, the goals."""
    if record["device"] == "cuda":
        gpu = record.get("gpu_at_start", {})
        smi = gpu.get("nvidia_smi", {})
        extra = ", ".join(f"{k} {smi[k]}" for k in ("power.limit", "clocks.sm", "clocks.max.sm") if k in smi)
        head = [f"GPU: {gpu.get('name', record['hardware'].get('gpu'))}; torch {record['torch']}, triton "
                f"{record['triton']}, CUDA {record['cuda']}" + (f"; {extra}" if extra else ""),
                f"timing: {record['timing']} (--repeat {record['repeat']})"]
    else:
        head = ["No CUDA device: the Triton kernels cannot run here, so the plain-torch references are "
                "timed against plain torch at small shapes (--quick implied); these numbers describe this "
                "CPU, not the GPU kernels.",
                f"CPU: {record['hardware']['processor']}, {record['hardware']['cpu_count']} cores; "
                f"torch {record['torch']}"]
    parts = ["\n".join(head)]
    for section, columns in COLUMNS.items():
        rows = [r for r in record["rows"] if SECTION[r["family"]] == section]
        if rows:
            parts.append(f"{TITLES[section]}\n{_table(rows, columns)}")
    goal_lines = ["goals (stated for an H100)"]
    for g in record["goals"]:
        value = "" if g["value"] is None else f": {g['value']:.2f}×"
        goal_lines.append(f"  {g['status']}  {g['goal']}{value} (target {g['target']})")
    if record.get("goals_note"):
        goal_lines.append(f"  note: {record['goals_note']}")
    parts.append("\n".join(goal_lines))
    return "\n\n".join(parts)
