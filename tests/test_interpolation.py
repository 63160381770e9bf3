"""The interpolation experiment shows what the book claims it shows, at the default settings."""

from __future__ import annotations

import numpy as np
import pytest

from phasebook.interpolation import InterpolationConfig, fit


@pytest.fixture(scope="module")
def result():
    return fit(InterpolationConfig())


def test_extrapolation_is_far_worse_than_interpolation(result):
    best = int(result["best_degree"])
    assert result["err_out"][best] > 10 * result["err_in"][best]
    assert result["err_out"][-1] > 100 * result["err_in"][-1]


def test_training_error_never_rises_with_degree(result):
    assert np.all(np.diff(result["err_train"]) <= 1e-9)


def test_inside_error_approaches_noise_level(result):
    assert result["err_in"].min() < 2 * InterpolationConfig().noise


def test_deterministic_and_seed_sensitive():
    a, b = fit(InterpolationConfig(seed=1)), fit(InterpolationConfig(seed=1))
    c = fit(InterpolationConfig(seed=2))
    assert np.array_equal(a["curves"], b["curves"]) and not np.array_equal(a["curves"], c["curves"])


def test_invalid_config_is_rejected():
    with pytest.raises(ValueError):
        InterpolationConfig(reach=0.5)
