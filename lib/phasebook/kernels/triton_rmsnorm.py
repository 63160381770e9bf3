"""The fused Triton RMSNorm behind `phasebook.kernels.rmsnorm.rms_norm`: one pass forward, one backward.

Each program holds a tile of whole rows (several short rows, or one long one) in registers, so
x is read once per pass. The forward keeps 1/rms per row for the backward, which then needs no
second reduction over x². The weight gradient Σ_rows g·x̂ is summed per program in fp32 and the
few partial sums are added afterwards: no atomics, and the result does not depend on timing.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from phasebook.kernels.dispatch import INTERPRETER
from phasebook.kernels.triton_common import cast_rounding_to_nearest

# A tile holds about this many elements: several rows of a short hidden size, one row of a long one.
TILE_ELEMENTS = 4096
# The longest row a tile holds (the public function refuses longer ones). Compiled for sm_90,
# rows up to 8192 fit in registers; longer ones spill to local memory: correct, but slower.
MAX_HIDDEN = 65536


@triton.jit
def _rms_norm_forward_kernel(x_ptr, w_ptr, y_ptr, rstd_ptr, n_rows, n_cols, eps,
                             ROWS: tl.constexpr, BLOCK_D: tl.constexpr, INTERPRETER: tl.constexpr):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    cols = tl.arange(0, BLOCK_D)
    row_ok = rows < n_rows
    col_ok = cols < n_cols
    mask = row_ok[:, None] & col_ok[None, :]
    offsets = rows.to(tl.int64)[:, None] * n_cols + cols[None, :]

    x = tl.load(x_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    rstd = tl.rsqrt(tl.sum(x * x, axis=1) / n_cols + eps)
    # As RMSNorm: the normalised row is rounded to x's dtype before the weight multiplies it.
    normed = cast_rounding_to_nearest(x * rstd[:, None], x_ptr.dtype.element_ty, INTERPRETER)
    normed = normed.to(tl.float32)
    w = tl.load(w_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
    y = cast_rounding_to_nearest(normed * w[None, :], y_ptr.dtype.element_ty, INTERPRETER)
    tl.store(y_ptr + offsets, y, mask=mask)
    tl.store(rstd_ptr + rows, rstd, mask=row_ok)


@triton.jit
def _rms_norm_backward_kernel(x_ptr, w_ptr, rstd_ptr, grad_y_ptr, grad_x_ptr, grad_w_partial_ptr,
                              n_rows, n_cols, ROWS: tl.constexpr, BLOCK_D: tl.constexpr,
                              INTERPRETER: tl.constexpr):
    # grad_x = rstd · (w·g − x̂ · mean(x̂ · w·g)) per row; grad_w = Σ_rows g · x̂, per program.
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_D)
    col_ok = cols < n_cols
    w = tl.load(w_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
    grad_w_sum = tl.zeros((BLOCK_D,), dtype=tl.float32)
    for tile in range(pid, tl.cdiv(n_rows, ROWS), tl.num_programs(0)):
        rows = tile * ROWS + tl.arange(0, ROWS)
        row_ok = rows < n_rows
        mask = row_ok[:, None] & col_ok[None, :]
        offsets = rows.to(tl.int64)[:, None] * n_cols + cols[None, :]
        x = tl.load(x_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
        g = tl.load(grad_y_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(rstd_ptr + rows, mask=row_ok, other=0.0)
        x_hat = x * rstd[:, None]
        wg = g * w[None, :]
        mean_x_hat_wg = tl.sum(x_hat * wg, axis=1) / n_cols
        grad_x = rstd[:, None] * (wg - x_hat * mean_x_hat_wg[:, None])
        grad_x = cast_rounding_to_nearest(grad_x, grad_x_ptr.dtype.element_ty, INTERPRETER)
        tl.store(grad_x_ptr + offsets, grad_x, mask=mask)
        grad_w_sum += tl.sum(g * x_hat, axis=0)  # masked rows and columns add zeros
    tl.store(grad_w_partial_ptr + pid * n_cols + cols, grad_w_sum, mask=col_ok)


def _tile(n_cols: int) -> tuple[int, int, int]:
    """(rows per tile, padded row length, warps) for rows of `n_cols` elements."""
    block_d = triton.next_power_of_2(n_cols)
    rows = max(1, TILE_ELEMENTS // block_d)
    tile = rows * block_d
    warps = 4 if tile <= 2048 else 8 if tile <= 4096 else 16
    return rows, block_d, warps


def rms_norm_forward(x: Tensor, weight: Tensor, eps: float, out_dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """y (rows, D) in `out_dtype` and 1/rms (rows,) fp32 for a contiguous x (rows, D)."""
    n_rows, n_cols = x.shape
    y = torch.empty((n_rows, n_cols), device=x.device, dtype=out_dtype)
    rstd = torch.empty(n_rows, device=x.device, dtype=torch.float32)
    if n_rows == 0:
        return y, rstd
    rows, block_d, warps = _tile(n_cols)
    _rms_norm_forward_kernel[(triton.cdiv(n_rows, rows),)](
        x, weight, y, rstd, n_rows, n_cols, eps, ROWS=rows, BLOCK_D=block_d, INTERPRETER=INTERPRETER,
        num_warps=warps)
    return y, rstd


def rms_norm_backward(x: Tensor, weight: Tensor, rstd: Tensor, grad_y: Tensor) -> tuple[Tensor, Tensor]:
    """grad_x (x's dtype) and grad_weight (weight's dtype) from contiguous x and grad_y (rows, D)."""
    n_rows, n_cols = x.shape
    grad_x = torch.empty_like(x)
    rows, block_d, warps = _tile(n_cols)
    tiles = triton.cdiv(n_rows, rows)
    # Enough programs to fill the GPU a few times over; each adds up the tiles it visits.
    slots = 4 * torch.cuda.get_device_properties(x.device).multi_processor_count if x.is_cuda else 4
    programs = max(1, min(tiles, slots))
    partial = torch.zeros((programs, n_cols), device=x.device, dtype=torch.float32)
    if n_rows > 0:
        _rms_norm_backward_kernel[(programs,)](
            x, weight, rstd, grad_y, grad_x, partial, n_rows, n_cols, ROWS=rows, BLOCK_D=block_d,
            INTERPRETER=INTERPRETER, num_warps=warps)
    return grad_x, partial.sum(dim=0).to(weight.dtype)
