"""Scaling analysis: efficiency, Kneedle and the USL fit on curves with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.report.scaling import USLFit, efficiency, kneedle, usl_fit

N = [1, 2, 4, 8, 16, 32, 64]


def test_efficiency_is_throughput_over_linear():
    assert efficiency([1, 2, 4], [100, 180, 300]) == pytest.approx([1.0, 0.9, 0.75])
    # Without an n=1 point the smallest n is the base.
    assert efficiency([2, 4, 8], [200, 400, 600]) == pytest.approx([1.0, 1.0, 0.75])
    assert efficiency([], []) == []


@pytest.mark.parametrize(("sigma", "kappa"), [(0.05, 0.001), (0.2, 0.0), (0.0, 0.0005)])
def test_usl_fit_recovers_known_parameters(sigma, kappa):
    truth = USLFit(1000.0, sigma, kappa, 1.0)
    fit = usl_fit(N, [truth.predict(n) for n in N])
    assert fit is not None
    assert fit.lam == pytest.approx(1000.0, rel=1e-6)
    assert fit.sigma == pytest.approx(sigma, abs=1e-9)
    assert fit.kappa == pytest.approx(kappa, abs=1e-9)
    assert fit.r2 == pytest.approx(1.0)


def test_usl_fit_tolerates_noise():
    truth = USLFit(500.0, 0.08, 0.002, 1.0)
    rng = np.random.default_rng(7)
    measured = [truth.predict(n) * (1 + rng.normal(0, 0.01)) for n in N]
    fit = usl_fit(N, measured)
    assert fit.sigma == pytest.approx(0.08, abs=0.02)
    assert fit.kappa == pytest.approx(0.002, rel=0.25)
    assert fit.peak == pytest.approx(math.sqrt(0.92 / 0.002), rel=0.15)
    assert fit.r2 > 0.98


def test_usl_peak_and_its_label():
    assert USLFit(1.0, 0.05, 0.001, 1.0).peak == pytest.approx(math.sqrt(0.95 / 0.001))
    assert USLFit(1.0, 0.05, 0.001, 1.0).peak_label(64) == "30.8"
    assert USLFit(1.0, 0.05, 0.001, 1.0).peak_label(16) == "30.8 (beyond measured 16)"
    flat = USLFit(1.0, 0.1, 0.0, 1.0)  # no coherency term: throughput only flattens
    assert flat.peak is None and flat.peak_label(64) == "beyond measured range"


def test_usl_never_reports_negative_parameters():
    # Super-linear at first (caches warming): the unconstrained fit would give σ < 0.
    fit = usl_fit([1, 2, 4, 8], [100, 220, 450, 900])
    assert fit is not None and fit.sigma >= 0 and fit.kappa >= 0


def test_usl_needs_three_concurrencies():
    assert usl_fit([1, 2], [100, 190]) is None
    assert usl_fit([4, 4, 4], [100, 101, 99]) is None


def test_kneedle_finds_the_knee_of_a_saturating_curve():
    x = list(range(1, 17))
    assert kneedle(x, [min(v, 4) for v in x]) == 4  # linear, then flat
    assert kneedle([1, 2, 4, 8, 16], [100, 190, 350, 400, 410]) == 4
    assert kneedle(x, [1 - math.exp(-v / 3) for v in x]) in (3, 4, 5, 6)


def test_kneedle_other_shapes():
    x = list(range(1, 17))
    assert kneedle(x, [max(0, v - 8) for v in x], curve="convex") == 8  # flat, then a hockey stick
    assert kneedle(x, [max(4, 16 - v) for v in x], curve="convex", direction="decreasing") == 12
    assert kneedle(x, [min(12, 16 - v) for v in x], curve="concave", direction="decreasing") == 4


def test_kneedle_finds_nothing_on_a_line_or_too_few_points():
    assert kneedle([1, 2, 4, 8], [10, 20, 40, 80]) is None
    assert kneedle([1, 2], [1, 2]) is None
    with pytest.raises(ValueError):
        kneedle([1, 2, 3], [1, 2, 3], curve="wavy")
