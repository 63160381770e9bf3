"""Numeric precision of training, switched in one place: fp32, bf16 autocast, fp8 (kernels)."""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager

import torch

from phasebook.errors import PhasebookError

PRECISIONS = ("fp32", "bf16", "fp8")


def autocast(precision: str, device: torch.device | str) -> AbstractContextManager[object]:
    """The context the forward pass runs in: nothing for fp32, bf16 autocast for bf16.

    Raises at once (not when entered) for a precision this build cannot train in, so a run
    fails before it has done any work.
    """
    device_type = torch.device(device).type
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
    if precision == "fp8":
        raise PhasebookError(
            "precision 'fp8': fp8 training comes with phasebook.kernels (block-scaled fp8 matmuls), "
            "which this installation does not provide yet; use precision 'bf16' or 'fp32'.")
    raise PhasebookError(f"precision {precision!r} is unknown; allowed: {', '.join(PRECISIONS)}.")
