"""The Triton kernel behind `phasebook.kernels.linear_ce`: cross-entropy of a chunk of logits rows,
which it overwrites in place with the loss's gradient.

One program per row. The first sweep over the vocabulary keeps a running maximum and a running
sum of exponentials rescaled to it, so logsumexp needs one read of the row and never overflows;
the second sweep writes d loss / d logits = (softmax · (1 + 2·z_loss·lse) − onehot(target)) / n_valid
over the logits it has just read, so the chunk needs no second buffer.
"""

from __future__ import annotations

import triton
import triton.language as tl
from torch import Tensor

from phasebook.kernels.dispatch import INTERPRETER

# Columns per step of a sweep. Under the interpreter a small block makes the test vocabularies
# (a few hundred) span several steps, so the running rescaling is exercised.
BLOCK_V = 128 if INTERPRETER else 4096


@triton.jit
def _cross_entropy_rows_kernel(logits_ptr, row_stride, targets_ptr, n_valid_ptr, nll_ptr, lse_ptr,
                               n_cols, ignore_index, z_loss,
                               BLOCK_V: tl.constexpr, WRITE_GRAD: tl.constexpr):
    row = tl.program_id(0)
    row_ptr = logits_ptr + row.to(tl.int64) * row_stride
    target = tl.load(targets_ptr + row)
    valid = target != ignore_index
    cols = tl.arange(0, BLOCK_V)

    running_max = float("-inf")
    running_sum = 0.0
    for start in range(0, n_cols, BLOCK_V):
        block = tl.load(row_ptr + start + cols, mask=start + cols < n_cols, other=float("-inf"))
        new_max = tl.maximum(running_max, tl.max(block, axis=0))
        running_sum = running_sum * tl.exp(running_max - new_max) + tl.sum(tl.exp(block - new_max), axis=0)
        running_max = new_max
    lse = running_max + tl.log(running_sum)
    # A target outside [0, V) reads nothing and makes the row's loss NaN: finding it on the host
    # would cost a sync every step, and a NaN loss does not go unnoticed.
    in_range = (target >= 0) & (target < n_cols)
    picked = tl.load(row_ptr + tl.where(in_range, target, 0))
    nll = tl.where(in_range, lse - picked, float("nan"))
    tl.store(nll_ptr + row, tl.where(valid, nll, 0.0))
    tl.store(lse_ptr + row, lse)

    if WRITE_GRAD:
        # Ignored rows get scale 0: a zero gradient row.
        scale = tl.where(valid, 1.0, 0.0) / tl.load(n_valid_ptr)
        softmax_weight = 1.0 + 2.0 * z_loss * lse
        for start in range(0, n_cols, BLOCK_V):
            in_row = start + cols < n_cols
            block = tl.load(row_ptr + start + cols, mask=in_row, other=0.0)
            onehot = tl.where(start + cols == target, 1.0, 0.0)
            grad = (tl.exp(block - lse) * softmax_weight - onehot) * scale
            tl.store(row_ptr + start + cols, grad, mask=in_row)


def cross_entropy_rows(logits: Tensor, targets: Tensor, n_valid: Tensor, nll: Tensor, lse: Tensor, *,
                       z_loss: float, ignore_index: int, write_grad: bool) -> None:
    """Fill nll (rows,) and lse (rows,) for fp32 logits (rows, V) with unit column stride and, with
    `write_grad`, replace the logits by the gradient of the mean loss over `n_valid` (a 1-element
    fp32 tensor, so no host sync is needed to know it)."""
    n_rows, n_cols = logits.shape
    if n_rows == 0:
        return
    _cross_entropy_rows_kernel[(n_rows,)](
        logits, logits.stride(0), targets, n_valid, nll, lse, n_cols, ignore_index, z_loss,
        BLOCK_V=BLOCK_V, WRITE_GRAD=write_grad, num_warps=8 if BLOCK_V >= 2048 else 4)
