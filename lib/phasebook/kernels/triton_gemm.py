"""The Triton GEMM behind `phasebook.kernels.gemm.gemm`: C = A @ B with fp32 accumulation.

Each program computes one BLOCK_M × BLOCK_N tile of C, walking K in BLOCK_K steps. Tiles are
visited in groups of GROUP_M tile-rows (the "swizzled" order): programs that run at the same time
then share rows of A and columns of B, so the L2 cache serves most of their loads.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from phasebook.kernels.dispatch import INTERPRETER
from phasebook.kernels.triton_common import cast_rounding_to_nearest, swizzled_tile


def _config(block_m: int, block_n: int, block_k: int, warps: int, stages: int) -> triton.Config:
    return triton.Config({"BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_K": block_k, "GROUP_M": 8},
                         num_warps=warps, num_stages=stages)


# For H100 with bf16: the two large tiles (48 KiB of operands per stage, three stages in the
# 227 KiB of shared memory a block may use) keep the tensor cores busiest on big GEMMs (8192³);
# the 128×128 tiles win when M or N leaves too few large tiles to fill the 132 SMs; the small
# ones are for thin shapes. Compiled for sm_90, all use wgmma without register spills, and
# with fp32 operands (twice the shared memory) they still fit.
GPU_CONFIGS = [
    _config(128, 256, 64, warps=8, stages=3),
    _config(256, 128, 64, warps=8, stages=3),
    _config(128, 128, 64, warps=8, stages=4),
    _config(128, 128, 64, warps=4, stages=4),
    _config(128, 128, 32, warps=4, stages=4),
    _config(64, 128, 64, warps=4, stages=4),
    _config(128, 64, 64, warps=4, stages=4),
    _config(64, 64, 64, warps=4, stages=4),
]

# The interpreter runs one numpy step per program: one small tile, and no benchmarking.
INTERPRETER_CONFIGS = [triton.Config({"BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 32, "GROUP_M": 2})]


@triton.autotune(configs=INTERPRETER_CONFIGS if INTERPRETER else GPU_CONFIGS, key=["M", "N", "K"])
@triton.heuristics({"EVEN_K": lambda args: args["K"] % args["BLOCK_K"] == 0})
@triton.jit
def _gemm_kernel(a_ptr, b_ptr, c_ptr, M, N, K,
                 stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                 GROUP_M: tl.constexpr, EVEN_K: tl.constexpr,
                 INPUT_PRECISION: tl.constexpr, INTERPRETER: tl.constexpr):
    tile_m, tile_n = swizzled_tile(tl.program_id(0), M, N, BLOCK_M, BLOCK_N, GROUP_M)

    rows = tile_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tile_n * BLOCK_N + tl.arange(0, BLOCK_N)
    ks = tl.arange(0, BLOCK_K)
    row_ok = rows < M
    col_ok = cols < N
    # int64 offsets: an operand may hold more than 2³¹ elements.
    a_ptrs = a_ptr + rows.to(tl.int64)[:, None] * stride_am + ks[None, :] * stride_ak
    b_ptrs = b_ptr + ks[:, None] * stride_bk + cols.to(tl.int64)[None, :] * stride_bn

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        if EVEN_K:
            a = tl.load(a_ptrs, mask=row_ok[:, None], other=0.0)
            b = tl.load(b_ptrs, mask=col_ok[None, :], other=0.0)
        else:
            k_ok = ks < K - k * BLOCK_K
            a = tl.load(a_ptrs, mask=row_ok[:, None] & k_ok[None, :], other=0.0)
            b = tl.load(b_ptrs, mask=k_ok[:, None] & col_ok[None, :], other=0.0)
        if INTERPRETER:
            # The interpreter's tl.dot gives garbage for bf16 operands. fp32 holds every
            # operand dtype exactly, so the upcast changes no product.
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk

    c_ptrs = c_ptr + rows.to(tl.int64)[:, None] * stride_cm + cols[None, :] * stride_cn
    c = cast_rounding_to_nearest(acc, c_ptr.dtype.element_ty, INTERPRETER)
    tl.store(c_ptrs, c, mask=row_ok[:, None] & col_ok[None, :])


def triton_gemm(a: Tensor, b: Tensor, out_dtype: torch.dtype) -> Tensor:
    """a (M, K) @ b (K, N) as a new (M, N) tensor of `out_dtype`; the caller checked the inputs."""
    m, k = a.shape
    n = b.shape[1]
    c = torch.empty((m, n), device=a.device, dtype=out_dtype)
    if m == 0 or n == 0:
        return c
    if k == 0:
        return c.zero_()

    def grid(meta: dict) -> tuple[int]:
        return (triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"]),)

    _gemm_kernel[grid](
        a, b, c, m, n, k, a.stride(0), a.stride(1), b.stride(0), b.stride(1), c.stride(0), c.stride(1),
        # fp32 operands get a true fp32 product, as torch.matmul gives by default (no TF32);
        # None leaves 16-bit operands to Triton's default.
        INPUT_PRECISION="ieee" if a.dtype == torch.float32 else None, INTERPRETER=INTERPRETER,
    )
    return c
