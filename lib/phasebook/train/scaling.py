"""Scaling laws: fit L(N, D) = E + A/N^α + B/D^β and read compute-optimal allocations off it.

The fit follows the parametric approach of Hoffmann et al. (2022): minimise a Huber loss on the
log of the predicted loss, written as a log-sum-exp so that every parameter stays positive,
from a grid of starting points (the objective has local minima). Uncertainties come from a
bootstrap over the measured runs, so they reflect how much the answer depends on which runs
happen to be in the sweep: with a dozen tiny models, it depends a lot, and the page says so.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp

PARAMS = ("E", "A", "alpha", "B", "beta")


@dataclass(frozen=True)
class ScalingFit:
    """Point estimates and bootstrap standard errors (NaN when not bootstrapped)."""

    E: float
    A: float
    alpha: float
    B: float
    beta: float
    stderr: dict[str, float]
    bootstrap: np.ndarray  # (n_boot, 5) rows of (E, A, alpha, B, beta)

    def predict(self, n: np.ndarray | float, d: np.ndarray | float) -> np.ndarray:
        n, d = np.asarray(n, float), np.asarray(d, float)
        return self.E + self.A / n**self.alpha + self.B / d**self.beta

    def optimal_split(self, compute: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """(N_opt, D_opt) minimising the fitted loss at compute C = 6·N·D.

        Setting the derivative of A/N^α + B/(C/6N)^β to zero gives
        N_opt = G·(C/6)^(β/(α+β)) with G = (αA/(βB))^(1/(α+β)), and D_opt = C/(6·N_opt).
        """
        c = np.asarray(compute, float) / 6.0
        g = (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))
        n_opt = g * c ** (self.beta / (self.alpha + self.beta))
        return n_opt, c / n_opt

    def tokens_per_parameter(self, compute: np.ndarray | float) -> np.ndarray:
        n_opt, d_opt = self.optimal_split(compute)
        return d_opt / n_opt

    def as_dict(self) -> dict[str, float]:
        out = {k: float(getattr(self, k)) for k in PARAMS}
        out.update({f"{k}_stderr": float(v) for k, v in self.stderr.items()})
        return out


def _objective(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray,
               delta: float) -> float:
    a, b, e, alpha, beta = theta
    pred = logsumexp(np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)]), axis=0)
    r = pred - log_l
    huber = np.where(np.abs(r) <= delta, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta))
    return float(huber.sum())


def _starts(log_l: np.ndarray) -> list[tuple[float, ...]]:
    """A grid of starting points (log A, log B, log E, α, β) around plausible values."""
    e0 = float(np.log(max(np.exp(log_l).min() * 0.5, 1e-3)))
    return list(itertools.product((0.0, 5.0, 10.0), (0.0, 5.0, 10.0), (e0,), (0.25, 0.6), (0.25, 0.6)))


def _fit_once(log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray, delta: float,
              starts: list[tuple[float, ...]] | list[np.ndarray]) -> np.ndarray:
    """Best (log A, log B, log E, α, β) over the starting points."""
    best, best_value = None, np.inf
    for start in starts:
        res = minimize(_objective, np.array(start), args=(log_n, log_d, log_l, delta),
                       method="L-BFGS-B",
                       bounds=[(-10, 40), (-10, 40), (-10, 5), (0.01, 3.0), (0.01, 3.0)])
        if res.fun < best_value:
            best, best_value = res.x, res.fun
    assert best is not None
    return best


def _natural(theta: np.ndarray) -> np.ndarray:
    a, b, e, alpha, beta = theta
    return np.array([np.exp(e), np.exp(a), alpha, np.exp(b), beta])


def fit_scaling_law(n: np.ndarray, d: np.ndarray, loss: np.ndarray, *, n_boot: int = 100,
                    delta: float = 1e-3, seed: int = 0) -> ScalingFit:
    """Fit L(N, D) to measured (N, D, loss) triples; bootstrap over runs for standard errors."""
    n, d, loss = (np.asarray(v, float) for v in (n, d, loss))
    if not (n.shape == d.shape == loss.shape) or n.ndim != 1 or len(n) < 6:
        raise ValueError("fit_scaling_law needs matching 1-D arrays of at least 6 runs.")
    if (n <= 0).any() or (d <= 0).any() or (loss <= 0).any():
        raise ValueError("N, D and loss must all be positive.")
    log_n, log_d, log_l = np.log(n), np.log(d), np.log(loss)
    theta = _fit_once(log_n, log_d, log_l, delta, _starts(log_l))
    point = _natural(theta)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(n), len(n))
        if len(np.unique(n[idx])) < 2 or len(np.unique(d[idx])) < 2:
            continue  # a resample without spread in N or D cannot identify an exponent
        # Resamples start from the full fit: they are perturbations of it, and a full grid
        # search per resample would cost minutes.
        boots.append(_natural(_fit_once(log_n[idx], log_d[idx], log_l[idx], delta, [theta])))
    boot = np.array(boots).reshape(-1, len(PARAMS))
    stderr = {k: float(boot[:, i].std(ddof=1)) if len(boot) > 1 else float("nan")
              for i, k in enumerate(PARAMS)}
    return ScalingFit(*map(float, point), stderr=stderr, bootstrap=boot)


def isoflop_minimum(n: np.ndarray, loss: np.ndarray) -> tuple[float, np.ndarray]:
    """Minimum of a parabola in log N through one iso-FLOP profile (Chinchilla's approach 2).

    Returns (N at the minimum, the parabola's coefficients in log N); N is NaN when the profile
    has no minimum inside the sampled sizes (it is still falling, or rising, throughout).
    """
    log_n = np.log(np.asarray(n, float))
    coeffs = np.polyfit(log_n, np.asarray(loss, float), 2)
    if coeffs[0] <= 0:
        return float("nan"), coeffs
    log_min = -coeffs[1] / (2 * coeffs[0])
    if not log_n.min() <= log_min <= log_n.max():
        return float("nan"), coeffs
    return float(np.exp(log_min)), coeffs
