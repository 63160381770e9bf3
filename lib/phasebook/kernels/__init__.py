"""Fast kernels with plain-torch references, each dispatched by one rule (see `dispatch`).

- `gemm`: bf16 matrix multiply with fp32 accumulation.
- `quantize_tiles`, `quantize_blocks`, `fp8_gemm`: fine-grained fp8 (E4M3 with 1×128 tile and
  128×128 block scales) and the block-scaled GEMM that promotes to fp32 every 128 along K.
- `fp8_linear`, `Fp8Linear`: a linear layer whose three GEMMs (forward, input and weight
  gradients) run in fp8 against an fp32 master weight.
- `rms_norm`: fused RMSNorm, forward and backward.
- `linear_cross_entropy`: the output head and the cross-entropy fused and chunked, so the full
  logits never exist.
"""

from phasebook.kernels.dispatch import BACKENDS, KernelError, resolve_backend
from phasebook.kernels.fp8 import (
    Fp8Tiles,
    fake_quantize,
    fp8_gemm,
    quantization_error,
    quantize_blocks,
    quantize_tiles,
)
from phasebook.kernels.fp8_linear import Fp8Linear, fp8_linear
from phasebook.kernels.gemm import gemm
from phasebook.kernels.linear_ce import linear_cross_entropy
from phasebook.kernels.rmsnorm import rms_norm

__all__ = [
    "BACKENDS",
    "Fp8Linear",
    "Fp8Tiles",
    "KernelError",
    "fake_quantize",
    "fp8_gemm",
    "fp8_linear",
    "gemm",
    "linear_cross_entropy",
    "quantization_error",
    "quantize_blocks",
    "quantize_tiles",
    "resolve_backend",
    "rms_norm",
]
