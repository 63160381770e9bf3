"""Triton kernels for fine-grained fp8: tile and block quantisation, and the block-scaled GEMM.

The launchers take inputs already checked by `phasebook.kernels.fp8`. Divisions use `div_rn`
(IEEE round-to-nearest) rather than `/`, which compiles to an approximate division on GPUs,
so the kernels produce the same scales and e4m3 values as the plain-torch reference.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from torch import Tensor

from phasebook.kernels.dispatch import INTERPRETER
from phasebook.kernels.fp8 import AMAX_FLOOR, FP8_DTYPE, FP8_MAX, TILE, Fp8Tiles
from phasebook.kernels.triton_common import swizzled_tile

# Rows per program when only the row-tiled copy is wanted (the transposing kernel needs TILE rows).
ROWS_PER_PROGRAM = 32


@triton.jit
def _scale_of(amax, AMAX_FLOOR: tl.constexpr, FP8_MAX: tl.constexpr):
    """The fp32 scale of a tile with absolute maximum `amax`: max(amax, floor) / 448, rounded to nearest."""
    return tl.math.div_rn(tl.maximum(amax, AMAX_FLOOR), tl.full(amax.shape, FP8_MAX, tl.float32))


@triton.jit
def _to_e4m3(x, scale, FP8_MAX: tl.constexpr, INTERPRETER: tl.constexpr):
    """x / scale saturated to ±448 and rounded to nearest-even e4m3; `scale` broadcasts against `x`."""
    x = tl.math.div_rn(x, scale + tl.zeros_like(x))
    x = tl.minimum(tl.maximum(x, -FP8_MAX), FP8_MAX)
    if INTERPRETER:
        # The interpreter's fp32 -> e4m3 cast misrounds when rounding carries into the exponent, but
        # converts exactly representable values correctly: round to the e4m3 grid first, in fp32.
        bits = x.to(tl.int32, bitcast=True)
        bits = (bits + 0x7FFFF + ((bits >> 20) & 1)) & -1048576  # nearest-even with 3 mantissa bits
        subnormal = (x + 24576.0) - 24576.0  # nearest-even multiple of 2^-9, the subnormal spacing
        x = tl.where(tl.abs(x) < 0.015625, subnormal, bits.to(tl.float32, bitcast=True))
    return x.to(tl.float8e4nv)


@triton.jit
def _quantize_tiles_kernel(
    x_ptr, data_ptr, scale_ptr, data_t_ptr, scale_t_ptr,
    rows, cols, stride_xr, stride_xc,
    BLOCK_R: tl.constexpr, TRANSPOSE: tl.constexpr, TILE: tl.constexpr,
    AMAX_FLOOR: tl.constexpr, FP8_MAX: tl.constexpr, INTERPRETER: tl.constexpr,
):
    """One BLOCK_R × TILE block of x: 1×TILE row tiles into data/scale and, with TRANSPOSE
    (BLOCK_R == TILE), the block's columns as 1×TILE tiles of x.T into data_t/scale_t."""
    pid_r = tl.program_id(0)
    pid_c = tl.program_id(1)
    r = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    c = pid_c * TILE + tl.arange(0, TILE)
    inside = (r[:, None] < rows) & (c[None, :] < cols)
    r64 = r.to(tl.int64)
    c64 = c.to(tl.int64)
    x = tl.load(x_ptr + r64[:, None] * stride_xr + c64[None, :] * stride_xc, mask=inside, other=0.0)
    x = x.to(tl.float32)
    magnitude = tl.abs(x)

    row_scale = _scale_of(tl.max(magnitude, axis=1), AMAX_FLOOR, FP8_MAX)
    n_tiles = tl.cdiv(cols, TILE)
    tl.store(scale_ptr + r64 * n_tiles + pid_c, row_scale, mask=r < rows)
    q = _to_e4m3(x, row_scale[:, None], FP8_MAX, INTERPRETER)
    tl.store(data_ptr + r64[:, None] * cols + c64[None, :], q, mask=inside)

    if TRANSPOSE:
        col_scale = _scale_of(tl.max(magnitude, axis=0), AMAX_FLOOR, FP8_MAX)
        n_tiles_t = tl.cdiv(rows, TILE)
        tl.store(scale_t_ptr + c64 * n_tiles_t + pid_r, col_scale, mask=c < cols)
        q_t = tl.trans(_to_e4m3(x, col_scale[None, :], FP8_MAX, INTERPRETER))
        tl.store(data_t_ptr + c64[:, None] * rows + r64[None, :], q_t, mask=tl.trans(inside))


@triton.jit
def _quantize_blocks_kernel(
    w_ptr, data_ptr, scale_ptr, data_t_ptr, scale_t_ptr,
    rows, cols, stride_wr, stride_wc,
    TILE: tl.constexpr, AMAX_FLOOR: tl.constexpr, FP8_MAX: tl.constexpr, INTERPRETER: tl.constexpr,
):
    """One TILE × TILE block of w with a single scale, written to the (R, C) copy and its transpose."""
    pid_r = tl.program_id(0)
    pid_c = tl.program_id(1)
    r = (pid_r * TILE + tl.arange(0, TILE)).to(tl.int64)
    c = (pid_c * TILE + tl.arange(0, TILE)).to(tl.int64)
    inside = (r[:, None] < rows) & (c[None, :] < cols)
    w = tl.load(w_ptr + r[:, None] * stride_wr + c[None, :] * stride_wc, mask=inside, other=0.0)
    w = w.to(tl.float32)
    scale = _scale_of(tl.max(tl.max(tl.abs(w), axis=1), axis=0), AMAX_FLOOR, FP8_MAX)
    tl.store(scale_ptr + pid_r * tl.cdiv(cols, TILE) + pid_c, scale)
    tl.store(scale_t_ptr + pid_c * tl.cdiv(rows, TILE) + pid_r, scale)
    q = _to_e4m3(w, scale, FP8_MAX, INTERPRETER)
    tl.store(data_ptr + r[:, None] * cols + c[None, :], q, mask=inside)
    tl.store(data_t_ptr + c[:, None] * rows + r[None, :], tl.trans(q), mask=tl.trans(inside))


def _gemm_configs() -> list[triton.Config]:
    """Tile shapes to autotune over on H100-class GPUs; one small shape under the slow interpreter."""
    if INTERPRETER:
        return [triton.Config({"BLOCK_M": 32, "BLOCK_N": 32, "GROUP_M": 4}, num_warps=4, num_stages=1)]
    shapes = [(128, 128, 8, 3), (128, 128, 4, 4), (128, 256, 8, 3), (64, 128, 4, 4), (64, 64, 4, 4)]
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n, "GROUP_M": 8}, num_warps=warps, num_stages=stages)
            for m, n, warps, stages in shapes]


@triton.autotune(configs=_gemm_configs(), key=["M", "N", "K"])
@triton.jit
def _fp8_gemm_kernel(
    a_ptr, a_scale_ptr, b_ptr, b_scale_ptr, out_ptr,
    M, N, K, stride_am, stride_bn, stride_om,
    B_BLOCK_ROWS: tl.constexpr, TILE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr,
):
    """out[m, n] = Σ over K slices of (a[m, slice] · b[n, slice]) · a_scale[m, slice] · b_scale[n, slice].

    Each TILE-long K slice is one fp8 tl.dot with an fp32 result, scaled and then added to an fp32
    accumulator: the scales change every TILE along K, and adding in fp32 keeps the precision the
    tensor cores' fp8 accumulation lacks.
    """
    pid_m, pid_n = swizzled_tile(tl.program_id(0), M, N, BLOCK_M, BLOCK_N, GROUP_M)

    m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    k = tl.arange(0, TILE)
    m_ok = m < M
    n_ok = n < N
    m64 = m.to(tl.int64)
    n64 = n.to(tl.int64)
    a_rows = a_ptr + m64[:, None] * stride_am
    b_cols = b_ptr + n64[None, :] * stride_bn  # b is read as its (K, N) transpose
    k_tiles = tl.cdiv(K, TILE)
    if B_BLOCK_ROWS == 1:
        b_scale_rows = b_scale_ptr + n64 * k_tiles
    else:
        b_scale_rows = b_scale_ptr + (n64 // B_BLOCK_ROWS) * k_tiles

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kt in range(0, k_tiles):
        kk = kt * TILE + k
        k_ok = kk < K
        a = tl.load(a_rows + kk[None, :], mask=m_ok[:, None] & k_ok[None, :], other=0.0)
        b = tl.load(b_cols + kk[:, None], mask=k_ok[:, None] & n_ok[None, :], other=0.0)
        a_scale = tl.load(a_scale_ptr + m64 * k_tiles + kt, mask=m_ok, other=0.0)
        b_scale = tl.load(b_scale_rows + kt, mask=n_ok, other=0.0)
        acc += tl.dot(a, b) * (a_scale[:, None] * b_scale[None, :])

    out = out_ptr + m64[:, None] * stride_om + n64[None, :]
    tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=m_ok[:, None] & n_ok[None, :])


def _empty_tiles(rows: int, cols: int, block_rows: int, device: torch.device) -> Fp8Tiles:
    """Uninitialised fp8 tiles for a (rows, cols) matrix, for a kernel to fill."""
    return Fp8Tiles(torch.empty(rows, cols, dtype=FP8_DTYPE, device=device),
                    torch.empty(math.ceil(rows / block_rows), math.ceil(cols / TILE),
                                dtype=torch.float32, device=device),
                    block_rows)


def quantize_tiles(x: Tensor, *, transpose: bool) -> Fp8Tiles | tuple[Fp8Tiles, Fp8Tiles]:
    """Launch the tile quantiser on `x` (R, C); with `transpose`, also produce x.T's tiles."""
    rows, cols = x.shape
    tiles = _empty_tiles(rows, cols, 1, x.device)
    tiles_t = _empty_tiles(cols, rows, 1, x.device) if transpose else tiles
    block_r = TILE if transpose else ROWS_PER_PROGRAM
    grid = (triton.cdiv(rows, block_r), triton.cdiv(cols, TILE))
    if x.numel():
        _quantize_tiles_kernel[grid](
            x, tiles.data, tiles.scale, tiles_t.data, tiles_t.scale,
            rows, cols, x.stride(0), x.stride(1),
            BLOCK_R=block_r, TRANSPOSE=transpose, TILE=TILE,
            AMAX_FLOOR=AMAX_FLOOR, FP8_MAX=FP8_MAX, INTERPRETER=INTERPRETER,
            num_warps=8 if transpose else 4,
        )
    return (tiles, tiles_t) if transpose else tiles


def quantize_blocks(w: Tensor) -> tuple[Fp8Tiles, Fp8Tiles]:
    """Launch the block quantiser on `w` (R, C): the (R, C) copy and the (C, R) transposed copy."""
    rows, cols = w.shape
    blocks = _empty_tiles(rows, cols, TILE, w.device)
    blocks_t = _empty_tiles(cols, rows, TILE, w.device)
    if w.numel():
        _quantize_blocks_kernel[(triton.cdiv(rows, TILE), triton.cdiv(cols, TILE))](
            w, blocks.data, blocks.scale, blocks_t.data, blocks_t.scale,
            rows, cols, w.stride(0), w.stride(1),
            TILE=TILE, AMAX_FLOOR=AMAX_FLOOR, FP8_MAX=FP8_MAX, INTERPRETER=INTERPRETER, num_warps=8,
        )
    return blocks, blocks_t


def fp8_gemm(a: Fp8Tiles, b: Fp8Tiles, out_dtype: torch.dtype) -> Tensor:
    """Launch the block-scaled GEMM: dequant(a) @ dequant(b).T in `out_dtype`."""
    a_data, b_data = a.data.contiguous(), b.data.contiguous()
    a_scale, b_scale = a.scale.contiguous(), b.scale.contiguous()
    (M, K), N = a_data.shape, b_data.shape[0]
    out = torch.empty(M, N, dtype=out_dtype, device=a_data.device)
    if out.numel():
        def grid(meta: dict) -> tuple[int]:
            return (triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"]),)

        _fp8_gemm_kernel[grid](
            a_data, a_scale, b_data, b_scale, out,
            M, N, K, a_data.stride(0), b_data.stride(0), out.stride(0),
            B_BLOCK_ROWS=b.block_rows, TILE=TILE,
        )
    return out
