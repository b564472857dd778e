"""Scaling analysis: efficiency, Kneedle and the USL fit on curves with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.report.scaling import MIN_USL_POINTS, USLFit, efficiency, kneedle, usl_fit

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
    fit = usl_fit([1, 2, 4, 8, 16, 32], [100, 220, 450, 900, 1850, 3800])
    assert fit is not None and fit.sigma >= 0 and fit.kappa >= 0


def test_usl_is_not_fitted_to_fewer_than_six_concurrencies():
    # Three points fit the three parameters exactly: R² = 1.000 would be shown as evidence.
    truth = USLFit(1000.0, 0.05, 0.001, 1.0)
    assert MIN_USL_POINTS == 6
    for k in range(1, MIN_USL_POINTS):
        assert usl_fit(N[:k], [truth.predict(n) for n in N[:k]]) is None, k
    assert usl_fit([1, 2, 4, 4, 4, 4, 4], [100, 190, 350, 351, 349, 350, 352]) is None  # 3 distinct
    assert usl_fit(N[:6], [truth.predict(n) for n in N[:6]]) is not None


def test_usl_fit_reports_its_residuals_per_point():
    truth = USLFit(1000.0, 0.05, 0.001, 1.0)
    measured = [truth.predict(n) for n in N]
    measured[3] *= 1.2  # one point 20 % above the curve
    fit = usl_fit(list(reversed(N)), list(reversed(measured)))  # residuals come back in ascending n
    assert len(fit.residuals) == len(N)
    assert max(range(len(N)), key=lambda i: abs(fit.residuals[i])) == 3
    assert 0.1 < fit.residuals[3] < 0.25 and fit.max_residual == pytest.approx(abs(fit.residuals[3]))
    exact = usl_fit(N, [truth.predict(n) for n in N])
    assert exact.max_residual == pytest.approx(0.0, abs=1e-9)


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
