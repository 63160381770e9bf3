"""pass@k: the chance that at least one of k samples is correct, estimated without bias from n ≥ k.

Drawing k of n samples of which c are correct, all k are wrong with probability
C(n − c, k) / C(n, k); pass@k is one minus that (Chen et al., 2021). Taking the best of the
first k samples instead is also unbiased but noisier; using n = k samples leaves no choice.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with c correct out of n samples (1 ≤ k ≤ n).

    The product form 1 − ∏_{i=n−c+1}^{n} (1 − k/i) equals 1 − C(n−c, k)/C(n, k) without the
    huge binomials.
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n; got n={n}, c={c}, k={k}.")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(correct: np.ndarray, ks: Sequence[int]) -> dict[int, float]:
    """{k: mean pass@k over problems} from a (problems, n) boolean array of verdicts."""
    correct = np.asarray(correct, dtype=bool)
    n = correct.shape[1]
    counts = correct.sum(axis=1)
    return {k: float(np.mean([pass_at_k(n, int(c), k) for c in counts])) for k in ks}
