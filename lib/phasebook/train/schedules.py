"""Learning-rate schedules as a multiplier of the peak rate: constant, cosine, WSD, inverse-sqrt.

Steps are counted from 0 to `total_steps - 1`; the multiplier of step `s` is the one its
optimizer update uses. Every schedule starts with a linear warm-up from 1/warmup to 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from phasebook.validation import Checks

SCHEDULES = ("constant", "cosine", "wsd", "inverse_sqrt")
DECAY_SHAPES = ("linear", "cosine", "sqrt")


@dataclass(frozen=True)
class ScheduleConfig:
    name: Literal["constant", "cosine", "wsd", "inverse_sqrt"] = "cosine"
    warmup_steps: int = 50  # linear warm-up; 0 starts at the peak
    min_lr_ratio: float = 0.1  # where cosine and WSD end, as a share of the peak
    decay_fraction: float = 0.2  # WSD: share of all steps spent in the final decay
    decay_shape: Literal["linear", "cosine", "sqrt"] = "linear"  # WSD decay; "sqrt" is 1 - sqrt(progress)

    def __post_init__(self) -> None:
        c = Checks(self)
        c.choice("name", SCHEDULES)
        c.range("warmup_steps", 0, integer=True)
        c.range("min_lr_ratio", 0.0, 1.0)
        c.range("decay_fraction", 0.0, 1.0)
        c.choice("decay_shape", DECAY_SHAPES)
        c.done()


def stable_end(total_steps: int, cfg: ScheduleConfig) -> int:
    """WSD: the first step of the decay (the stable phase covers the steps before it).

    The checkpoint saved after `stable_end` steps is the branch point for annealing runs.
    """
    decay_steps = round(cfg.decay_fraction * total_steps)
    return max(min(cfg.warmup_steps, total_steps), total_steps - decay_steps)


def _decay(progress: float, shape: str) -> float:
    """1 at progress 0, 0 at progress 1."""
    if shape == "linear":
        return 1.0 - progress
    if shape == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - math.sqrt(progress)


def _progress(step: int, start: int, end: int) -> float:
    """Where `step` lies between `start` (0) and `end` (1), clamped."""
    if end <= start:
        return 1.0
    return min(1.0, max(0.0, (step - start) / (end - start)))


def lr_multiplier(step: int, total_steps: int, cfg: ScheduleConfig) -> float:
    """The learning rate of step `step` (0-based) as a fraction of the peak rate."""
    if total_steps < 1:
        raise ValueError(f"total_steps is {total_steps}; must be at least 1.")
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    floor = cfg.min_lr_ratio
    if cfg.name == "constant":
        return 1.0
    if cfg.name == "cosine":
        p = _progress(step, cfg.warmup_steps, total_steps - 1)
        return floor + (1.0 - floor) * _decay(p, "cosine")
    if cfg.name == "wsd":
        start = stable_end(total_steps, cfg)
        if step < start:
            return 1.0
        p = _progress(step, start, total_steps - 1)
        return floor + (1.0 - floor) * _decay(p, cfg.decay_shape)
    # inverse_sqrt: 1 at the end of warm-up, then falls as 1/sqrt(step) with no floor.
    reference = max(cfg.warmup_steps, 1)
    return math.sqrt(reference / max(step, reference))
