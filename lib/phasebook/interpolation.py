"""Interpolation vs extrapolation: polynomials fitted inside an interval, scored outside it.

The smallest honest version of the book's central lens: a model fitted on data from a range
is judged on points from the same range (interpolation) and from beyond it (extrapolation).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.polynomial import Polynomial

from phasebook.store import Result, Store


@dataclass(frozen=True)
class InterpolationConfig:
    max_degree: int = 15  # highest polynomial degree fitted
    n_train: int = 30  # noisy training points drawn inside [-1, 1]
    noise: float = 0.05  # standard deviation of the label noise
    reach: float = 1.5  # test points outside the training range go out to ±reach
    grid: int = 301  # points on the dense evaluation grid over [-reach, reach]
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_degree < 1 or self.n_train < 2 or self.reach <= 1 or self.grid < 11:
            raise ValueError(f"invalid InterpolationConfig: {self}")
        if self.noise < 0:
            raise ValueError("noise must be >= 0")


def target(x: np.ndarray) -> np.ndarray:
    """The function to learn: smooth, but not a polynomial, so no degree recovers it exactly."""
    return np.sin(3.0 * x) + 0.5 * np.cos(7.0 * x) * np.exp(-x * x)


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def fit(cfg: InterpolationConfig) -> Result:
    """Fit degrees 0..max_degree by least squares; score RMSE inside and outside [-1, 1]."""
    rng = np.random.default_rng(cfg.seed)
    x_train = np.sort(rng.uniform(-1.0, 1.0, cfg.n_train))
    y_train = target(x_train) + cfg.noise * rng.standard_normal(cfg.n_train)
    x = np.linspace(-cfg.reach, cfg.reach, cfg.grid)
    truth = target(x)
    inside = np.abs(x) <= 1.0
    degrees = np.arange(cfg.max_degree + 1)
    curves = np.empty((len(degrees), cfg.grid))
    err_in, err_out, err_train = (np.empty(len(degrees)) for _ in range(3))
    for d in degrees:
        # Polynomial.fit maps the data to [-1, 1] internally: well-conditioned at high degree.
        poly = Polynomial.fit(x_train, y_train, deg=int(d), domain=[-1.0, 1.0])
        curves[d] = poly(x)
        err_train[d] = rmse(poly(x_train), y_train)
        err_in[d] = rmse(curves[d][inside], truth[inside])
        err_out[d] = rmse(curves[d][~inside], truth[~inside])
    best = int(np.argmin(err_in))
    return {
        "config": asdict(cfg),
        "degrees": degrees,
        "x": x,
        "truth": truth,
        "x_train": x_train,
        "y_train": y_train,
        "curves": curves,
        "err_train": err_train,
        "err_in": err_in,
        "err_out": err_out,
        "best_degree": best,
    }


def run(cfg: InterpolationConfig, store: Store | None = None) -> Result:
    """`fit(cfg)`, computed once per configuration and code version."""
    return (store or Store()).memo("interpolation", asdict(cfg), lambda: fit(cfg))
