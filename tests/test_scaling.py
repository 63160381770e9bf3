"""The scaling-law fit recovers known laws, and its compute-optimal split is the true optimum."""

import numpy as np
import pytest

from phasebook.train.scaling import fit_scaling_law, isoflop_minimum

TRUE = {"E": 1.7, "A": 400.0, "alpha": 0.34, "B": 410.0, "beta": 0.28}


def synthetic(noise: float, seed: int = 1):
    n = np.repeat([1e4, 3e4, 1e5, 3e5, 1e6], 4)
    d = np.tile([1e5, 1e6, 1e7, 1e8], 5)
    loss = TRUE["E"] + TRUE["A"] / n ** TRUE["alpha"] + TRUE["B"] / d ** TRUE["beta"]
    return n, d, loss * np.exp(np.random.default_rng(seed).normal(0, noise, len(n)))


def test_fit_recovers_exponents_from_exact_data():
    fit = fit_scaling_law(*synthetic(0.0), n_boot=0)
    for key, value in TRUE.items():
        assert getattr(fit, key) == pytest.approx(value, rel=1e-3), key


def test_fit_recovers_exponents_under_noise_and_reports_uncertainty():
    fit = fit_scaling_law(*synthetic(0.003), n_boot=20)
    assert fit.alpha == pytest.approx(TRUE["alpha"], abs=0.02)
    assert fit.beta == pytest.approx(TRUE["beta"], abs=0.02)
    irreducible = fit.E
    assert irreducible == pytest.approx(TRUE["E"], abs=0.1)
    assert len(fit.bootstrap) >= 15 and all(np.isfinite(v) and v > 0 for v in fit.stderr.values())


def test_fit_distinguishes_different_exponents():
    n, d, _ = synthetic(0.0)
    loss = 2.0 + 2000.0 / n**0.6 + 90.0 / d**0.2
    fit = fit_scaling_law(n, d, loss, n_boot=0)
    assert fit.alpha == pytest.approx(0.6, abs=0.01) and fit.beta == pytest.approx(0.2, abs=0.01)


def test_optimal_split_minimises_the_fitted_loss_at_fixed_compute():
    fit = fit_scaling_law(*synthetic(0.0), n_boot=0)
    compute = 1e15
    n_opt, d_opt = fit.optimal_split(compute)
    assert 6 * n_opt * d_opt == pytest.approx(compute)
    grid = np.geomspace(n_opt / 30, n_opt * 30, 2001)
    numeric = grid[np.argmin(fit.predict(grid, compute / (6 * grid)))]
    assert numeric == pytest.approx(n_opt, rel=0.01)
    assert fit.tokens_per_parameter(compute) == pytest.approx(d_opt / n_opt)


def test_isoflop_minimum_of_a_parabola_in_log_n():
    n = np.geomspace(1e4, 1e6, 7)
    loss = 3.0 + 0.2 * (np.log(n) - np.log(7e4)) ** 2
    n_min, _ = isoflop_minimum(n, loss)
    assert n_min == pytest.approx(7e4, rel=1e-6)
    falling = 3.0 + 0.05 * (np.log(n) - np.log(1e7)) ** 2  # minimum beyond the largest model
    assert np.isnan(isoflop_minimum(n, falling)[0])
    assert np.isnan(isoflop_minimum(n, -0.1 * np.log(n) ** 2)[0])  # concave: no minimum at all


def test_fit_rejects_too_few_or_nonpositive_runs():
    with pytest.raises(ValueError, match="at least 6"):
        fit_scaling_law(np.ones(3), np.ones(3), np.ones(3))
    n, d, loss = synthetic(0.0)
    with pytest.raises(ValueError, match="positive"):
        fit_scaling_law(n, d, -loss)
