"""Dense matrix multiply with fp32 accumulation: a Triton kernel on CUDA, torch.matmul as reference.

`gemm` takes any strides, so a transposed view (`w.t()`) goes to the kernel without a copy.
"""

from __future__ import annotations

import torch
from torch import Tensor

from phasebook.kernels.dispatch import KernelError, check_dtype, check_matrix, resolve_backend

GEMM_DTYPES = (torch.bfloat16, torch.float16, torch.float32)


def gemm(a: Tensor, b: Tensor, *, out_dtype: torch.dtype | None = None, backend: str = "auto") -> Tensor:
    """a (M, K) @ b (K, N) accumulated in fp32, returned in `out_dtype` (default a.dtype).

    a and b share one dtype: bf16, fp16 or fp32 (fp32 operands are multiplied in full fp32,
    not TF32). `backend` follows `phasebook.kernels.dispatch.resolve_backend`.
    """
    check_matrix("a", a)
    check_matrix("b", b)
    check_dtype("a", a, GEMM_DTYPES)
    check_dtype("b", b, GEMM_DTYPES)
    if b.dtype != a.dtype:
        raise KernelError(f"a and b must share one dtype, got {a.dtype} and {b.dtype}; cast one of them.")
    if a.shape[1] != b.shape[0]:
        raise KernelError(f"a {tuple(a.shape)} @ b {tuple(b.shape)}: a's columns ({a.shape[1]}) must "
                          f"equal b's rows ({b.shape[0]}).")
    out_dtype = a.dtype if out_dtype is None else out_dtype
    if out_dtype not in GEMM_DTYPES:
        raise KernelError(f"out_dtype {out_dtype} is not supported; allowed: bfloat16, float16, float32.")
    if resolve_backend(backend, a, b) == "reference":
        return gemm_reference(a, b, out_dtype)
    from phasebook.kernels.triton_gemm import triton_gemm

    return triton_gemm(a, b, out_dtype)


def gemm_reference(a: Tensor, b: Tensor, out_dtype: torch.dtype) -> Tensor:
    """The product in fp32, then cast: what the kernel's fp32 accumulator holds, up to summation order."""
    return torch.matmul(a.float(), b.float()).to(out_dtype)
