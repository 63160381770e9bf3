"""A linear layer that multiplies in fp8 in both directions (DeepSeek-V3 style), and its nn.Linear twin.

Forward: y = x @ w.T with x in 1×128 tiles and the float32 master weight in 128×128 blocks.
Backward: grad_x = grad_y @ w and grad_w = grad_y.T @ x, both in fp8 with grad_y in 1×128 tiles.
Only fp8 copies are kept for backward (x.T tiled along the tokens, w.T in blocks), not x itself:
that is the memory the layer saves besides the faster GEMMs. On CPU the reference backend emulates
the same arithmetic (quantise, dequantise with the same scales, float32 matmul).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx, once_differentiable

from phasebook.kernels.dispatch import KernelError, check_dtype
from phasebook.kernels.fp8 import INPUT_DTYPES, TILE, Fp8Tiles, fp8_gemm, quantize_blocks, quantize_tiles


class _Fp8LinearFunction(torch.autograd.Function):
    """x @ weight.T with fp8 GEMMs forward and backward; see `fp8_linear`."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, weight: Tensor, backend: str) -> Tensor:
        device_type = x.device.type
        out_dtype = (torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type)
                     else x.dtype)
        x2d = x.reshape(math.prod(x.shape[:-1]), x.shape[-1])
        need_x_grad, need_w_grad = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        # x.T in tiles along the tokens is only needed for the weight gradient.
        if need_w_grad:
            xq, xtq = quantize_tiles(x2d, transpose=True, backend=backend)
        else:
            xq, xtq = quantize_tiles(x2d, backend=backend), None
        wq, wtq = quantize_blocks(weight, backend=backend)
        y = fp8_gemm(xq, wq, out_dtype=out_dtype, backend=backend)

        saved: list[Tensor] = []
        if need_x_grad:
            saved += [wtq.data, wtq.scale]
        if need_w_grad:
            saved += [xtq.data, xtq.scale]
        ctx.save_for_backward(*saved)
        ctx.backend = backend
        ctx.x_shape, ctx.x_dtype, ctx.weight_dtype = x.shape, x.dtype, weight.dtype
        return y.reshape(*x.shape[:-1], weight.shape[0])

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad_y: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        need_x_grad, need_w_grad = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        saved = list(ctx.saved_tensors)
        wtq = Fp8Tiles(saved.pop(0), saved.pop(0), TILE) if need_x_grad else None
        xtq = Fp8Tiles(saved.pop(0), saved.pop(0), 1) if need_w_grad else None
        grad2d = grad_y.reshape(math.prod(grad_y.shape[:-1]), grad_y.shape[-1])
        if need_w_grad:
            gq, gtq = quantize_tiles(grad2d, transpose=True, backend=ctx.backend)
        else:
            gq, gtq = quantize_tiles(grad2d, backend=ctx.backend), None

        grad_x = grad_w = None
        if need_x_grad:
            grad_x = fp8_gemm(gq, wtq, out_dtype=ctx.x_dtype, backend=ctx.backend).reshape(ctx.x_shape)
        if need_w_grad:
            grad_w = fp8_gemm(gtq, xtq, out_dtype=torch.float32, backend=ctx.backend).to(ctx.weight_dtype)
        return grad_x, grad_w, None


def fp8_linear(x: Tensor, weight: Tensor, *, backend: str = "auto") -> Tensor:
    """x @ weight.T computed in fp8, for x (..., K) and the master weight (N, K) in nn.Linear layout.

    The result has the autocast dtype when autocast is on for x's device, else x's dtype; the
    gradients come back in x's and the weight's dtypes.
    """
    if x.dim() < 1:
        raise KernelError("x must have at least one dimension (..., K), got a scalar.")
    if weight.dim() != 2:
        raise KernelError(f"weight must be a 2-D (N, K) matrix, got shape {tuple(weight.shape)}.")
    check_dtype("x", x, INPUT_DTYPES)
    check_dtype("weight", weight, INPUT_DTYPES)
    if x.shape[-1] != weight.shape[1]:
        raise KernelError(f"x has {x.shape[-1]} features in its last dimension but weight "
                          f"{tuple(weight.shape)} expects {weight.shape[1]}.")
    return _Fp8LinearFunction.apply(x, weight, backend)


class Fp8Linear(nn.Linear):
    """nn.Linear without bias whose forward runs `fp8_linear`: same parameter, same state_dict keys.

    `backend` picks where the kernels run (see `phasebook.kernels.dispatch`).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = False,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                 backend: str = "auto") -> None:
        if bias:
            raise KernelError("Fp8Linear has no bias: build it with bias=False.")
        super().__init__(in_features, out_features, bias=False, device=device, dtype=dtype)
        self.backend = backend

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, backend: str = "auto") -> Fp8Linear:
        """An Fp8Linear sharing `linear`'s weight Parameter, so optimisers see one tensor either way."""
        if linear.bias is not None:
            raise KernelError("Fp8Linear has no bias: from_linear takes an nn.Linear built with bias=False.")
        layer = cls(linear.in_features, linear.out_features, device="meta", backend=backend)
        layer.weight = linear.weight
        return layer.train(linear.training)

    # Inside torch.compile the "auto" backend would pick the reference, which is the slow emulation
    # for fp8: the layer runs eagerly instead (a graph break), so its Triton kernels are used.
    @torch.compiler.disable
    def forward(self, x: Tensor) -> Tensor:
        return fp8_linear(x, self.weight, backend=self.backend)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, backend={self.backend!r}"
