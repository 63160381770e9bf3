"""Pieces shared by the Triton kernels: the swizzled tile order of the GEMMs, and a rounding cast
that stays correct under the interpreter."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def swizzled_tile(pid, M, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
    """(tile row, tile column) of program `pid` in the swizzled order.

    Programs walk down a band of GROUP_M tile-rows before moving one tile-column right (the last
    band may hold fewer rows), so programs running at the same time share rows of A and columns
    of B, and the L2 cache serves most of their loads.
    """
    tiles_n = tl.cdiv(N, BLOCK_N)
    tiles_per_band = GROUP_M * tiles_n
    band = pid // tiles_per_band
    first_m = band * GROUP_M
    band_rows = tl.minimum(tl.cdiv(M, BLOCK_M) - first_m, GROUP_M)
    within = pid - band * tiles_per_band
    return first_m + within % band_rows, within // band_rows


@triton.jit
def cast_rounding_to_nearest(x, dtype: tl.constexpr, INTERPRETER: tl.constexpr):
    """fp32 x in `dtype`, rounded to nearest (ties to even), as the GPU casts.

    The interpreter's fp32 → bf16 cast truncates instead (rounds toward zero). Under it, x is
    first rounded to the bf16 grid on its fp32 bits, after which the cast is exact.
    """
    if INTERPRETER and dtype == tl.bfloat16:
        bits = x.to(tl.int32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & -65536  # keep the top 16 bits, rounded
        x = bits.to(tl.float32, bitcast=True)
    return x.to(dtype)
