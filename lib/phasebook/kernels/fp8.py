"""Fine-grained fp8 (DeepSeek-V3 style): quantisation to e4m3 with small-tile scales, and the GEMM on it.

A tensor is stored as float8 e4m3 values plus one float32 scale per tile: 1×128 tiles along a row for
activations and gradients, 128×128 blocks for weights. A tile's scale is its absolute maximum over
448 (the largest finite e4m3 value), so one outlier only coarsens the rounding of its own tile.
The GEMM multiplies each 128-long slice of K in fp8 and applies both operands' scales to that
partial product before adding it to a float32 accumulator.

Each function takes `backend` (see `dispatch`): the Triton kernels live in `triton_fp8`; the plain-torch
references here are also the emulated fp8 path that CPU training runs, with the very same scales and
rounding (scale = max(amax, 1e-12) / 448, value = x / scale clamped to ±448, rounded to nearest even).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from phasebook.kernels.dispatch import KernelError, check_dtype, check_matrix, resolve_backend

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = 448.0  # largest finite e4m3 value
TILE = 128  # tile length along the contiguous dimension, and the GEMM's scale step along K
AMAX_FLOOR = 1e-12  # keeps the scale of an all-zero tile finite
INPUT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
OUTPUT_DTYPES = (torch.bfloat16, torch.float32, torch.float16)
BLOCK_ROWS = (1, TILE)


class Fp8Tiles(NamedTuple):
    """A matrix in fp8 with one scale per tile of `block_rows` × 128 elements.

    `data` (R, C) holds the e4m3 values, contiguous; `scale` (ceil(R / block_rows), ceil(C / 128))
    holds float32 scales; the real value of data[r, c] is data[r, c] · scale[r // block_rows, c // 128].
    """

    data: Tensor
    scale: Tensor
    block_rows: int

    @property
    def shape(self) -> torch.Size:
        return self.data.shape

    def dequantize(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """The real values: each e4m3 value times its tile's scale (computed in float32)."""
        rows, cols = self.data.shape
        scale = self.scale.repeat_interleave(self.block_rows, 0)[:rows].repeat_interleave(TILE, 1)[:, :cols]
        return (self.data.to(torch.float32) * scale).to(dtype)


def quantize_tiles(
    x: Tensor, *, transpose: bool = False, backend: str = "auto"
) -> Fp8Tiles | tuple[Fp8Tiles, Fp8Tiles]:
    """`x` (R, C) in fp8 with 1×128 tiles along its rows; with `transpose`, also x.T (C, R) tiled likewise.

    The transposed copy is what a weight-gradient GEMM needs (it contracts over x's rows). The Triton
    kernel makes both copies from one read of each 128×128 block of `x`.
    """
    check_matrix("x", x)
    check_dtype("x", x, INPUT_DTYPES)
    if resolve_backend(backend, x) == "triton":
        from phasebook.kernels import triton_fp8

        return triton_fp8.quantize_tiles(x, transpose=transpose)
    tiles = Fp8Tiles(*quantize_reference(x, (1, TILE)), block_rows=1)
    if not transpose:
        return tiles
    return tiles, Fp8Tiles(*quantize_reference(x.T, (1, TILE)), block_rows=1)


def quantize_blocks(w: Tensor, *, backend: str = "auto") -> tuple[Fp8Tiles, Fp8Tiles]:
    """`w` (R, C) in fp8 with 128×128 block scales, and its transpose (C, R) holding the same numbers.

    The transposed copy (for the input-gradient GEMM) reuses the values and scales of the normal one,
    so it adds no rounding of its own. Edge blocks take their maximum over their real elements only.
    """
    check_matrix("w", w)
    check_dtype("w", w, INPUT_DTYPES)
    if resolve_backend(backend, w) == "triton":
        from phasebook.kernels import triton_fp8

        return triton_fp8.quantize_blocks(w)
    data, scale = quantize_reference(w, (TILE, TILE))
    return (Fp8Tiles(data, scale, TILE),
            Fp8Tiles(data.T.contiguous(), scale.T.contiguous(), TILE))


def fp8_gemm(a: Fp8Tiles, b: Fp8Tiles, *, out_dtype: torch.dtype = torch.bfloat16,
             backend: str = "auto") -> Tensor:
    """dequant(a) @ dequant(b).T, shape (M, N), for a.data (M, K) and b.data (N, K), both K-contiguous.

    `a` has 1×128 tiles; `b` has 1×128 tiles or 128×128 blocks. The Triton kernel scales each
    128-long K slice's fp8 partial product and accumulates in float32 (the fp8 tensor-core
    accumulator alone is only about 14 bits accurate); the reference matmuls the dequantised
    operands in float32.
    """
    _check_gemm_operands(a, b, out_dtype)
    if resolve_backend(backend, a.data, a.scale, b.data, b.scale) == "triton":
        from phasebook.kernels import triton_fp8

        return triton_fp8.fp8_gemm(a, b, out_dtype)
    # Autocast would run this matmul in bf16; the emulation multiplies in float32 like the kernel.
    with torch.autocast(a.data.device.type, enabled=False):
        return (a.dequantize() @ b.dequantize().T).to(out_dtype)


def fake_quantize(x: Tensor, tile: tuple[int, int]) -> Tensor:
    """dequant(quant(x)) in float32: `x` as fp8 with one scale per `tile` (rows, cols) would give it back.

    The same rules as the kernels, for any tile shape: (1, 128) is the activation tiling,
    (128, 128) the weight blocks, (1, C) one scale per row, (R, C) one scale for the whole tensor.
    """
    check_matrix("x", x)
    check_dtype("x", x, INPUT_DTYPES)
    if len(tile) != 2 or any(not isinstance(n, int) or n < 1 for n in tile):
        raise KernelError(f"tile must be two positive ints (rows, cols), got {tile!r}.")
    data, scale = quantize_reference(x, tile)
    rows, cols = x.shape
    scale = scale.repeat_interleave(tile[0], 0)[:rows].repeat_interleave(tile[1], 1)[:, :cols]
    return data.to(torch.float32) * scale


def quantization_error(x: Tensor, tile: tuple[int, int]) -> float:
    """Relative Frobenius error ‖fake_quantize(x, tile) − x‖ / ‖x‖ (0 for an all-zero x)."""
    dequantized = fake_quantize(x, tile).to(torch.float64)
    exact = x.to(torch.float64)
    norm = torch.linalg.vector_norm(exact).item()
    if norm == 0.0:
        return 0.0
    return torch.linalg.vector_norm(dequantized - exact).item() / norm


def quantize_reference(x: Tensor, tile: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Plain-torch quantisation of 2-D `x` with one scale per `tile` (rows, cols): (e4m3 data, scales).

    The scales have shape (ceil(R / rows), ceil(C / cols)); edge tiles are zero-padded, which leaves
    their absolute maximum that of their real elements.
    """
    tile_rows, tile_cols = tile
    rows, cols = x.shape
    grid_rows, grid_cols = math.ceil(rows / tile_rows), math.ceil(cols / tile_cols)
    padded = F.pad(x.to(torch.float32), (0, grid_cols * tile_cols - cols, 0, grid_rows * tile_rows - rows))
    blocks = padded.view(grid_rows, tile_rows, grid_cols, tile_cols)
    amax = blocks.abs().amax(dim=(1, 3)) if blocks.numel() else blocks.new_zeros(grid_rows, grid_cols)
    scale = amax.clamp_min(AMAX_FLOOR) / FP8_MAX
    # x / scale can round a hair above 448: saturate explicitly rather than rely on how a cast overflows.
    scaled = (blocks / scale[:, None, :, None]).clamp(-FP8_MAX, FP8_MAX)
    data = scaled.to(FP8_DTYPE).view(grid_rows * tile_rows, grid_cols * tile_cols)[:rows, :cols]
    return data.contiguous(), scale


def _check_gemm_operands(a: Fp8Tiles, b: Fp8Tiles, out_dtype: torch.dtype) -> None:
    """Raise a KernelError naming the operand unless `a`, `b` and `out_dtype` suit fp8_gemm."""
    for name, operand in (("a", a), ("b", b)):
        check_matrix(f"{name}.data", operand.data)
        check_dtype(f"{name}.data", operand.data, (FP8_DTYPE,))
        check_dtype(f"{name}.scale", operand.scale, (torch.float32,))
        if operand.block_rows not in BLOCK_ROWS:
            raise KernelError(f"{name}.block_rows is {operand.block_rows}; fp8 tiles have 1 or {TILE} rows.")
        rows, cols = operand.data.shape
        expected = (math.ceil(rows / operand.block_rows), math.ceil(cols / TILE))
        if tuple(operand.scale.shape) != expected:
            raise KernelError(f"{name}.scale has shape {tuple(operand.scale.shape)}; data of shape "
                              f"{(rows, cols)} with {operand.block_rows}×{TILE} tiles needs {expected}.")
    if a.block_rows != 1:
        raise KernelError(f"a must have 1×{TILE} tiles (block_rows 1), got block_rows {a.block_rows}.")
    if a.data.shape[1] != b.data.shape[1]:
        raise KernelError(f"a.data {tuple(a.data.shape)} and b.data {tuple(b.data.shape)} must share K "
                          "(their second dimension): fp8_gemm computes a @ b.T.")
    if out_dtype not in OUTPUT_DTYPES:
        names = ", ".join(str(d).removeprefix("torch.") for d in OUTPUT_DTYPES)
        raise KernelError(f"out_dtype {str(out_dtype).removeprefix('torch.')} is not supported; use {names}.")
