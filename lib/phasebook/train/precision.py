"""Numeric precision of training, switched in one place: fp32, bf16 autocast, or fp8 linears.

- fp32: nothing changes.
- bf16: the forward pass runs under bf16 autocast; parameters, optimizer state and the
  residual stream stay fp32 (the standard mixed-precision recipe).
- fp8: bf16 autocast as above, and the transformer blocks' linear layers become
  `Fp8Linear`: their forward, input-gradient and weight-gradient GEMMs take E4M3 operands with
  fine-grained scales (1×128 tiles for activations and gradients, 128×128 blocks for weights),
  as in DeepSeek-V3. Embeddings, norms, attention and the output head stay in bf16/fp32. On a
  CPU the same code runs the emulated path: quantise → dequantise with exactly the same scales,
  so the numbers match the GPU kernels' up to summation order.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager

import torch
from torch import nn

from phasebook.errors import PhasebookError

PRECISIONS = ("fp32", "bf16", "fp8")
# Linear layers that fp8 training leaves in higher precision, by attribute name: the output head
# turns the last hidden state into logits, whose small differences decide the loss.
HIGH_PRECISION_LINEARS = ("lm_head",)


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise PhasebookError(f"precision {precision!r} is unknown; allowed: {', '.join(PRECISIONS)}.")


def autocast(precision: str, device: torch.device | str) -> AbstractContextManager[object]:
    """The context the forward pass runs in: nothing for fp32, bf16 autocast for bf16 and fp8."""
    check_precision(precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def prepare_model(model: nn.Module, precision: str) -> int:
    """Make `model` ready to train at `precision`, in place; returns how many linears became fp8.

    For fp8, every bias-free `nn.Linear` except those in HIGH_PRECISION_LINEARS is replaced by an
    `Fp8Linear` that shares its weight Parameter, so optimizers, checkpoints and state_dict
    keys are unaffected. Other precisions change nothing. Calling it twice is harmless.
    """
    check_precision(precision)
    if precision != "fp8":
        return 0
    from phasebook.kernels.fp8_linear import Fp8Linear

    converted = 0
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear and name not in HIGH_PRECISION_LINEARS and child.bias is None:
                setattr(parent, name, Fp8Linear.from_linear(child))
                converted += 1
    if converted == 0 and not any(isinstance(m, Fp8Linear) for m in model.modules()):
        raise PhasebookError("precision 'fp8': the model has no bias-free nn.Linear layers to run in fp8.")
    return converted
