"""The LM head and its cross-entropy loss in one step, without ever holding all (N, V) logits.

With a 50k vocabulary, the fp32 logits of an 8k-token batch take 1.6 GB, and their softmax and
gradient as much again. The Triton path instead walks the rows in chunks: for each chunk it
computes the logits (one GEMM), lets one kernel turn them into the per-row loss and, in place,
into the gradient d loss / d logits, and multiplies that gradient back into grad_h and grad_W
(two GEMMs). The loss is a scalar, so its gradient is known in the forward up to the upstream
scalar, which the backward only multiplies in: three GEMMs in all instead of four, and peak memory
of about one chunk of logits.

The loss is `phasebook.model.gpt.GPT.forward`'s: ce_loss = mean over valid targets of
logsumexp(logits) − logits[target], loss = ce_loss + z_loss · mean over valid targets of
logsumexp²; a batch with no valid target has loss 0.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from phasebook.kernels.dispatch import KernelError, check_dtype, check_matrix, resolve_backend
from phasebook.kernels.gemm import gemm

CE_DTYPES = (torch.bfloat16, torch.float32)  # not fp16: gradients ~ 1 / (V · n_valid) underflow it
TARGET_DTYPES = (torch.int64, torch.int32)
# The default chunk keeps one chunk's fp32 logits near this size.
CHUNK_LOGITS_BYTES = 256 * 2**20


def linear_cross_entropy(h: Tensor, weight: Tensor, targets: Tensor, *, z_loss: float = 0.0,
                         ignore_index: int = -100, chunk_size: int | None = None,
                         backend: str = "auto") -> tuple[Tensor, Tensor]:
    """(loss, ce_loss) of logits = h @ weight.T against `targets`; see the module docstring.

    h: (N, D) final hidden states; weight: (V, D) the LM head, same dtype as h (bf16 or fp32);
    targets: (N,) integer class ids in [0, V), or `ignore_index` for rows without a loss. Any other
    value makes the loss NaN (raising would need a host sync every step).
    Both results are fp32 scalars; `loss` carries the gradient, `ce_loss` is detached.
    chunk_size: rows per chunk on the Triton path (default: about 256 MiB of fp32 logits).
    """
    _check_inputs(h, weight, targets, z_loss, chunk_size)
    if resolve_backend(backend, h, weight, targets) == "reference":
        return linear_cross_entropy_reference(h, weight, targets, z_loss=z_loss, ignore_index=ignore_index)
    chunk = chunk_size or default_chunk_size(weight.shape[0])
    loss, ce_loss = _LinearCrossEntropyFunction.apply(h, weight, targets.contiguous(), z_loss, ignore_index,
                                                      chunk, torch.is_grad_enabled())
    return loss, ce_loss


def default_chunk_size(vocab_size: int) -> int:
    """Rows whose fp32 logits fill about CHUNK_LOGITS_BYTES; at least one."""
    return max(1, CHUNK_LOGITS_BYTES // (4 * vocab_size))


def linear_cross_entropy_reference(h: Tensor, weight: Tensor, targets: Tensor, *, z_loss: float = 0.0,
                                   ignore_index: int = -100) -> tuple[Tensor, Tensor]:
    """Plain torch with all (N, V) fp32 logits at once, differentiated by autograd."""
    with torch.autocast(h.device.type, enabled=False):  # fp32 logits even inside autocast
        logits = h.float() @ weight.float().t()
    valid = targets != ignore_index
    # As the kernel: a target outside [0, V) gives a NaN loss; no data-dependent branch, so
    # torch.compile keeps the model's forward in one graph.
    in_range = (targets >= 0) & (targets < weight.shape[0])
    lse = torch.logsumexp(logits, dim=-1)
    picked = logits.gather(-1, torch.where(in_range, targets, 0).long().unsqueeze(-1)).squeeze(-1)
    nll = torch.where(in_range, lse - picked, torch.nan)
    count = valid.sum().clamp(min=1)  # no valid target: loss 0, not NaN
    ce_loss = torch.where(valid, nll, 0.0).sum() / count
    loss = ce_loss + z_loss * (lse.pow(2) * valid).sum() / count if z_loss > 0 else ce_loss
    return loss, ce_loss.detach()


def _check_inputs(h: Tensor, weight: Tensor, targets: Tensor, z_loss: float, chunk_size: int | None) -> None:
    check_matrix("h", h)
    check_matrix("weight", weight)
    check_dtype("h", h, CE_DTYPES)
    check_dtype("weight", weight, CE_DTYPES)
    check_dtype("targets", targets, TARGET_DTYPES)
    if weight.dtype != h.dtype:
        raise KernelError(f"h ({h.dtype}) and weight ({weight.dtype}) must share one dtype; "
                          "cast one of them.")
    if weight.shape[1] != h.shape[1] or weight.shape[0] == 0:
        raise KernelError(f"weight has shape {tuple(weight.shape)}; for h of shape {tuple(h.shape)} (N, D) "
                          f"it must be (V, {h.shape[1]}) with V ≥ 1.")
    if targets.shape != (h.shape[0],):
        raise KernelError(f"targets has shape {tuple(targets.shape)}; it must be ({h.shape[0]},), "
                          "one per row of h.")
    if not (math.isfinite(z_loss) and z_loss >= 0):
        raise KernelError(f"z_loss must be a finite number ≥ 0, got {z_loss}.")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
                                   or chunk_size < 1):
        raise KernelError(f"chunk_size must be a positive integer or None, got {chunk_size!r}.")


class _LinearCrossEntropyFunction(torch.autograd.Function):
    """Computes the loss and, when autograd will want them, grad_h and grad_W, all in the forward."""

    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, targets: Tensor, z_loss: float, ignore_index: int,
                chunk_size: int, grad_enabled: bool) -> tuple[Tensor, Tensor]:
        # needs_input_grad says True under torch.no_grad() too: evaluation must not pay for gradients.
        need_grad_h = grad_enabled and ctx.needs_input_grad[0]
        need_grad_w = grad_enabled and ctx.needs_input_grad[1]
        loss, ce_loss, grad_h, grad_w = _chunked_loss_and_grads(
            h, weight, targets, z_loss, ignore_index, chunk_size, need_grad_h, need_grad_w)
        ctx.save_for_backward(grad_h, grad_w)
        ctx.mark_non_differentiable(ce_loss)
        return loss, ce_loss

    @staticmethod
    def backward(ctx, grad_loss: Tensor, _grad_ce_loss: Tensor | None) -> tuple[Tensor | None, ...]:
        grad_h, grad_w = ctx.saved_tensors
        return (None if grad_h is None else grad_h * grad_loss,
                None if grad_w is None else grad_w * grad_loss,
                None, None, None, None, None)


def _chunked_loss_and_grads(h: Tensor, weight: Tensor, targets: Tensor, z_loss: float, ignore_index: int,
                            chunk_size: int, need_grad_h: bool, need_grad_w: bool
                            ) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """loss, ce_loss, and d loss / d h and d loss / d weight (None where not needed), chunk by chunk."""
    from phasebook.kernels.triton_linear_ce import cross_entropy_rows

    n_rows = h.shape[0]
    valid = targets != ignore_index
    count = valid.sum().clamp(min=1)  # stays on the device: no host sync
    n_valid = count.float().reshape(1)
    nll = torch.empty(n_rows, device=h.device, dtype=torch.float32)
    lse = torch.empty(n_rows, device=h.device, dtype=torch.float32)
    grad_h = torch.empty_like(h) if need_grad_h else None
    # grad_W sums over every chunk: accumulated in fp32, cast once at the end.
    grad_w = torch.zeros(weight.shape, device=h.device, dtype=torch.float32) if need_grad_w else None
    write_grad = need_grad_h or need_grad_w
    for start in range(0, n_rows, chunk_size):
        rows = slice(start, start + chunk_size)
        h_chunk = h[rows]
        logits = gemm(h_chunk, weight.t(), out_dtype=torch.float32, backend="triton")
        cross_entropy_rows(logits, targets[rows], n_valid, nll[rows], lse[rows], z_loss=z_loss,
                           ignore_index=ignore_index, write_grad=write_grad)
        if not write_grad:
            continue
        grad_logits = logits.to(h.dtype)  # the GEMMs take one operand dtype
        if grad_h is not None:
            grad_h[rows] = gemm(grad_logits, weight, backend="triton")
        if grad_w is not None:
            grad_w += gemm(grad_logits.t(), h_chunk, out_dtype=torch.float32, backend="triton")
    ce_loss = nll.sum() / count
    # A distinct tensor even without z-loss: ce_loss is marked non-differentiable, loss is not.
    loss = ce_loss + z_loss * (lse.pow(2) * valid).sum() / count if z_loss > 0 else ce_loss.clone()
    return loss, ce_loss, grad_h, None if grad_w is None else grad_w.to(weight.dtype)
