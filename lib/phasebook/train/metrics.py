"""Training metrics: a JSON-lines log that resumes exactly, throughput, and model FLOP utilisation.

MFU is only reported against a peak that is known: the dense (no 2:4 sparsity) figures of
the GPUs below. For a CPU or an unknown device the peak is None and so is MFU, never a guess.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

# Dense peak throughput in FLOP/s by precision, from NVIDIA's product datasheets (data-center
# GPUs; their "with sparsity" figures halved) and the Ada Lovelace architecture whitepaper
# (RTX 4090, FP32 accumulation). "tf32" is the tensor-core rate of fp32 matmuls when TF32 is
# allowed, "fp32" the plain CUDA-core rate. None: the GPU has no such unit. First match wins.
_T = 1e12
PEAK_FLOPS: list[tuple[str, dict[str, float | None]]] = [
    (r"GH200", {"bf16": 989.5 * _T, "fp8": 1979 * _T, "tf32": 494.5 * _T, "fp32": 67 * _T}),
    (r"H[12]00 NVL", {"bf16": 835.5 * _T, "fp8": 1670.5 * _T, "tf32": 417.5 * _T, "fp32": 60 * _T}),
    (r"H100 PCIe", {"bf16": 756.5 * _T, "fp8": 1513 * _T, "tf32": 378 * _T, "fp32": 51 * _T}),
    (r"H100|H200", {"bf16": 989.5 * _T, "fp8": 1979 * _T, "tf32": 494.5 * _T, "fp32": 67 * _T}),
    (r"A100", {"bf16": 312 * _T, "fp8": None, "tf32": 156 * _T, "fp32": 19.5 * _T}),
    (r"L40S", {"bf16": 362.05 * _T, "fp8": 733 * _T, "tf32": 183 * _T, "fp32": 91.6 * _T}),
    (r"\bL4\b", {"bf16": 121 * _T, "fp8": 242.5 * _T, "tf32": 60 * _T, "fp32": 30.3 * _T}),
    (r"RTX 4090", {"bf16": 165.2 * _T, "fp8": 330.3 * _T, "tf32": 82.6 * _T, "fp32": 82.6 * _T}),
]


def peak_flops_for_name(name: str, precision: str, *, tf32: bool = False) -> float | None:
    """Dense peak FLOP/s of the GPU called `name` (as CUDA reports it) at `precision`, or None."""
    for pattern, peaks in PEAK_FLOPS:
        if re.search(pattern, name):
            if precision == "fp32":
                return peaks["tf32"] if tf32 else peaks["fp32"]
            return peaks.get(precision)
    return None


def peak_flops(device: torch.device, precision: str) -> float | None:
    """Dense peak FLOP/s of `device` at `precision` (fp32 counts TF32 when torch allows it);
    None for CPUs and for GPUs not in the table."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    tf32 = torch.get_float32_matmul_precision() != "highest"
    return peak_flops_for_name(torch.cuda.get_device_name(device), precision, tf32=tf32)


def mfu(tokens_per_s: float, flops_per_token: float | None, peak: float | None) -> float | None:
    """Model FLOP utilisation: the share of the peak that the model's own arithmetic uses."""
    if peak is None or flops_per_token is None or peak <= 0:
        return None
    return tokens_per_s * flops_per_token / peak


class MetricsLog:
    """One JSON object per logged step, appended to `path` and flushed at once.

    A run killed while writing leaves at most one torn last line; `read` skips it and
    `truncate_after` removes it, so a resumed run's file equals an uninterrupted run's.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)

    def append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue  # the torn line of a killed write
        return records

    def truncate_after(self, step: int) -> None:
        """Drop every record after `step` (and any torn line), replacing the file atomically."""
        if not self.path.is_file():
            return
        kept = [r for r in self.read() if r.get("step", 0) <= step]
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(r) + "\n" for r in kept)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        finally:
            Path(tmp).unlink(missing_ok=True)
