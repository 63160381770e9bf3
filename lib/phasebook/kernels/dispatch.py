"""The one rule that decides where a kernel runs: Triton on CUDA, plain torch on CPU.

Every kernel in `phasebook.kernels` takes `backend="auto" | "triton" | "reference"`:

- "auto": Triton for CUDA tensors, the plain-torch reference for CPU tensors, and the
  reference inside `torch.compile`, which Inductor turns into its own fused kernels (our
  hand-written kernels serve eager mode; `Fp8Linear` steps out of the graph to use its own).
- "reference": the plain-torch implementation, on any device (the emulated fp8 path on CPU).
- "triton": the Triton kernel. On CUDA tensors; on CPU tensors only when the Triton
  interpreter is on, which the tests use. The interpreter must be chosen before the kernels
  are defined, so `TRITON_INTERPRET=1` has to be in the environment before
  `phasebook.kernels` is first imported.

Triton itself is imported only when a Triton kernel runs, so the reference path works on
machines without Triton (macOS laptops).
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from phasebook.errors import PhasebookError

BACKENDS = ("auto", "triton", "reference")

# Read once, as Triton does when it decorates a kernel: setting it later changes nothing.
INTERPRETER = os.environ.get("TRITON_INTERPRET", "").strip().lower() in {"1", "true", "yes", "on"}


class KernelError(PhasebookError, ValueError):
    """A kernel was called with inputs it cannot handle (dtype, device, shape, backend)."""


def resolve_backend(backend: str, *tensors: Tensor) -> str:
    """"triton" or "reference" for `tensors` (which must share one device) under `backend`."""
    if backend not in BACKENDS:
        raise KernelError(f"backend {backend!r} is unknown; allowed: {', '.join(BACKENDS)}.")
    if backend == "auto" and torch.compiler.is_compiling():
        return "reference"
    devices = {t.device for t in tensors}
    if len(devices) != 1:
        raise KernelError(f"the inputs are on different devices ({', '.join(sorted(map(str, devices)))}); "
                          "move them to one device first.")
    device = devices.pop()
    if backend == "reference":
        return "reference"
    if backend == "auto":
        return "triton" if device.type == "cuda" else "reference"
    if device.type == "cuda" or (device.type == "cpu" and INTERPRETER):
        return "triton"
    hint = ("set TRITON_INTERPRET=1 before phasebook.kernels is imported to run them in the Triton "
            "interpreter, or use backend='reference'" if device.type == "cpu" else "use backend='reference'")
    raise KernelError(f"Triton kernels run on CUDA tensors, and these are on {device}: {hint}.")


def check_dtype(name: str, tensor: Tensor, allowed: tuple[torch.dtype, ...]) -> None:
    """Raise a KernelError naming the argument unless `tensor.dtype` is one of `allowed`."""
    if tensor.dtype not in allowed:
        names = ", ".join(str(d).removeprefix("torch.") for d in allowed)
        raise KernelError(f"{name} has dtype {str(tensor.dtype).removeprefix('torch.')}; "
                          f"this kernel takes {names}.")


def check_matrix(name: str, tensor: Tensor) -> None:
    """Raise a KernelError unless `tensor` is 2-D."""
    if tensor.dim() != 2:
        raise KernelError(f"{name} must be a 2-D matrix, got shape {tuple(tensor.shape)}.")
