"""RMSNorm, y = x / sqrt(mean(x², -1) + eps) · weight: a fused Triton kernel pair and its torch reference.

The maths is `phasebook.model.gpt.RMSNorm`'s: statistics in fp32, the normalised x rounded to
x's dtype, then multiplied by the weight, so y has the promoted dtype of x and weight (fp32 for
bf16 activations with an fp32 weight, as in mixed-precision training).
"""

from __future__ import annotations

import torch
from torch import Tensor

from phasebook.kernels.dispatch import KernelError, check_dtype, resolve_backend

NORM_DTYPES = (torch.bfloat16, torch.float16, torch.float32)


def rms_norm(x: Tensor, weight: Tensor, eps: float = 1e-5, *, backend: str = "auto") -> Tensor:
    """RMSNorm of x (..., D) with weight (D,), differentiable in both; see the module docstring."""
    check_dtype("x", x, NORM_DTYPES)
    check_dtype("weight", weight, NORM_DTYPES)
    if x.dim() == 0 or weight.shape != (x.shape[-1],):
        raise KernelError(f"weight has shape {tuple(weight.shape)}; it must be (D,) for x of shape "
                          f"{tuple(x.shape)} (..., D).")
    if resolve_backend(backend, x, weight) == "reference":
        return rms_norm_reference(x, weight, eps)
    from phasebook.kernels.triton_rmsnorm import MAX_HIDDEN

    if x.shape[-1] > MAX_HIDDEN:
        raise KernelError(f"x has rows of {x.shape[-1]} elements; the Triton kernel takes at most "
                          f"{MAX_HIDDEN}. Use backend='reference'.")
    return _RMSNormFunction.apply(x, weight, eps)


def rms_norm_reference(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """Plain torch, differentiated by autograd."""
    x32 = x.float()
    normed = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + eps)
    return normed.type_as(x) * weight


class _RMSNormFunction(torch.autograd.Function):
    """The Triton forward and backward; keeps x and 1/rms per row (not y) for the backward."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, eps: float) -> Tensor:
        from phasebook.kernels.triton_rmsnorm import rms_norm_forward

        rows = x.reshape(-1, x.shape[-1]).contiguous()
        weight = weight.contiguous()
        y, rstd = rms_norm_forward(rows, weight, eps, torch.promote_types(x.dtype, weight.dtype))
        ctx.save_for_backward(rows, weight, rstd)
        ctx.x_shape = x.shape
        return y.view(x.shape)

    @staticmethod
    def backward(ctx, grad_y: Tensor) -> tuple[Tensor, Tensor, None]:
        from phasebook.kernels.triton_rmsnorm import rms_norm_backward

        rows, weight, rstd = ctx.saved_tensors
        grad_rows = grad_y.reshape(rows.shape).contiguous()
        grad_x, grad_weight = rms_norm_backward(rows, weight, rstd, grad_rows)
        return grad_x.view(ctx.x_shape), grad_weight, None
