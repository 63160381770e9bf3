"""Learning-rate schedules: values at the phase boundaries, monotonicity, validation."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phasebook.train.schedules import ScheduleConfig, lr_multiplier, stable_end
from phasebook.validation import ConfigError, from_mapping

TOTAL = 100


def curve(cfg: ScheduleConfig, total: int = TOTAL) -> list[float]:
    return [lr_multiplier(s, total, cfg) for s in range(total)]


@pytest.mark.parametrize("name", ["constant", "cosine", "wsd", "inverse_sqrt"])
def test_warmup_rises_linearly_from_near_zero_to_one(name: str) -> None:
    cfg = ScheduleConfig(name=name, warmup_steps=10)
    lrs = curve(cfg)
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[9] == pytest.approx(1.0)  # last warm-up step reaches the peak
    assert lrs[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert max(lrs) == pytest.approx(1.0)


def test_no_warmup_starts_at_peak() -> None:
    assert lr_multiplier(0, TOTAL, ScheduleConfig(name="cosine", warmup_steps=0)) == 1.0


def test_cosine_ends_at_min_ratio_and_passes_the_midpoint() -> None:
    cfg = ScheduleConfig(name="cosine", warmup_steps=10, min_lr_ratio=0.1)
    lrs = curve(cfg, total=111)
    assert lrs[10] == pytest.approx(1.0)  # first step after warm-up
    assert lrs[60] == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through the decay
    assert lrs[-1] == pytest.approx(0.1)


def test_constant_stays_at_peak_after_warmup() -> None:
    lrs = curve(ScheduleConfig(name="constant", warmup_steps=5))
    assert lrs[5:] == [1.0] * (TOTAL - 5)


@pytest.mark.parametrize("shape", ["linear", "cosine", "sqrt"])
def test_wsd_is_flat_until_stable_end_then_decays_to_min(shape: str) -> None:
    cfg = ScheduleConfig(name="wsd", warmup_steps=10, decay_fraction=0.2, min_lr_ratio=0.05,
                         decay_shape=shape)
    start = stable_end(TOTAL, cfg)
    assert start == 80
    lrs = curve(cfg)
    assert lrs[10:start] == [1.0] * (start - 10)
    assert lrs[start] == pytest.approx(1.0)  # the decay starts at the peak...
    assert lrs[start + 1] < 1.0  # ...and moves off it at once
    assert lrs[-1] == pytest.approx(0.05)


def test_wsd_decay_shapes_differ_as_documented() -> None:
    base = {"name": "wsd", "warmup_steps": 0, "decay_fraction": 0.5, "min_lr_ratio": 0.0}
    total = 102  # decay over steps 51..101, so step 76 is half-way
    assert stable_end(total, ScheduleConfig(**base)) == 51
    mid = {shape: lr_multiplier(76, total, ScheduleConfig(**base, decay_shape=shape))
           for shape in ("linear", "cosine", "sqrt")}
    assert mid["linear"] == pytest.approx(0.5)
    assert mid["cosine"] == pytest.approx(0.5)
    assert mid["sqrt"] == pytest.approx(1 - math.sqrt(0.5))
    early = {shape: lr_multiplier(60, total, ScheduleConfig(**base, decay_shape=shape))
               for shape in ("linear", "cosine")}
    assert early["cosine"] > early["linear"]  # cosine lingers near the peak longer


def test_stable_end_never_precedes_warmup() -> None:
    cfg = ScheduleConfig(name="wsd", warmup_steps=30, decay_fraction=0.9)
    assert stable_end(TOTAL, cfg) == 30


def test_inverse_sqrt_follows_the_formula_after_warmup() -> None:
    cfg = ScheduleConfig(name="inverse_sqrt", warmup_steps=16)
    assert lr_multiplier(16, TOTAL, cfg) == pytest.approx(1.0)
    assert lr_multiplier(64, TOTAL, cfg) == pytest.approx(0.5)
    assert lr_multiplier(99, TOTAL, cfg) == pytest.approx(math.sqrt(16 / 99))


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(["constant", "cosine", "wsd", "inverse_sqrt"]),
       shape=st.sampled_from(["linear", "cosine", "sqrt"]),
       total=st.integers(1, 400), warmup=st.integers(0, 50),
       floor=st.floats(0.0, 1.0), decay=st.floats(0.0, 1.0))
def test_rises_through_warmup_then_never_increases(name: str, shape: str, total: int, warmup: int,
                                                   floor: float, decay: float) -> None:
    cfg = ScheduleConfig(name=name, warmup_steps=min(warmup, total), min_lr_ratio=floor,
                         decay_fraction=decay, decay_shape=shape)
    lrs = curve(cfg, total)
    w = cfg.warmup_steps
    assert all(0.0 <= v <= 1.0 + 1e-12 for v in lrs)
    assert all(a < b for a, b in itertools.pairwise(lrs[:w]))
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(lrs[w:]))
    if name != "inverse_sqrt":
        assert all(v >= floor - 1e-12 for v in lrs[w:])


def test_invalid_values_name_the_field_and_range() -> None:
    with pytest.raises(ConfigError) as err:
        ScheduleConfig(name="cosin", warmup_steps=-1, min_lr_ratio=1.5)
    text = str(err.value)
    assert "name" in text and "Did you mean 'cosine'" in text
    assert "warmup_steps" in text and "-1" in text
    assert "min_lr_ratio" in text and "[0.0, 1.0]" in text


def test_from_mapping_builds_and_rejects_typos() -> None:
    assert from_mapping(ScheduleConfig, {"name": "wsd", "decay_shape": "sqrt"}).decay_shape == "sqrt"
    with pytest.raises(ConfigError, match="decay_fractoin"):
        from_mapping(ScheduleConfig, {"decay_fractoin": 0.3})
