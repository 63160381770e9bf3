"""Accuracies with confidence intervals: every accuracy the book reports carries its uncertainty.

Small evaluation sets make differences of a few points noise; the Wilson score interval
stays inside [0, 1] and behaves at 0/n and n/n, where the normal ("Wald") interval collapses
to a single point.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (low, high) for `successes` out of `n` at normal quantile `z`.

    z = 1.96 gives 95 %. With n = 0 nothing is known and the interval is (0, 1).
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"wilson_interval needs 0 <= successes <= n; got successes={successes}, n={n}.")
    if z <= 0:
        raise ValueError(f"wilson_interval needs z > 0; got z={z}.")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class Accuracy:
    """k correct of n, the rate k/n and its Wilson interval [low, high]."""

    k: int
    n: int
    rate: float
    low: float
    high: float

    @classmethod
    def of(cls, k: int, n: int, z: float = 1.96) -> Accuracy:
        """The accuracy of k correct answers out of n ≥ 1."""
        if n < 1:
            raise ValueError(f"an accuracy needs at least one item; got k={k}, n={n}.")
        low, high = wilson_interval(k, n, z)
        return cls(k, n, k / n, low, high)

    @classmethod
    def from_verdicts(cls, verdicts: Iterable[bool], z: float = 1.96) -> Accuracy:
        """The accuracy of a sequence of right/wrong verdicts."""
        flags = [bool(v) for v in verdicts]
        return cls.of(sum(flags), len(flags), z)

    def __str__(self) -> str:
        return f"{self.rate:.3f} [{self.low:.3f}, {self.high:.3f}] ({self.k}/{self.n})"


@dataclass(frozen=True)
class PairedChange:
    """How the same items fare before and after a change (e.g. a perturbation).

    `lost`: right before, wrong after; `gained`: wrong before, right after. `z` is McNemar's
    statistic (lost − gained) / √(lost + gained): only the discordant pairs carry evidence,
    so a paired test sees a drop that two separate intervals would both cover.
    """

    before: Accuracy
    after: Accuracy
    lost: int
    gained: int

    @classmethod
    def of(cls, before: Iterable[bool], after: Iterable[bool], z: float = 1.96) -> PairedChange:
        """The change from verdicts `before` to verdicts `after` on the same items, in order."""
        b, a = [bool(v) for v in before], [bool(v) for v in after]
        if len(b) != len(a):
            raise ValueError(f"PairedChange needs as many verdicts after as before; got {len(b)}, {len(a)}.")
        lost = sum(x and not y for x, y in zip(b, a, strict=True))
        gained = sum(y and not x for x, y in zip(b, a, strict=True))
        return cls(Accuracy.from_verdicts(b, z), Accuracy.from_verdicts(a, z), lost, gained)

    @property
    def change(self) -> float:
        """after − before, as a share of the items."""
        return self.after.rate - self.before.rate

    @property
    def z(self) -> float:
        """McNemar's statistic; 0 when no pair changed."""
        changed = self.lost + self.gained
        return (self.lost - self.gained) / math.sqrt(changed) if changed else 0.0

    def significant_drop(self, z: float = 1.96) -> bool:
        """Whether significantly more items were lost than gained (one-sided at normal quantile z)."""
        return self.z > z
