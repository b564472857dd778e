"""Scaling analysis of a sweep: efficiency, the knee, and a Universal Scalability Law fit.

All three take a series measured at several concurrencies ``n`` (fio numjobs,
object-request concurrency, dataloader workers) with a throughput ``x(n)``.

- Scaling efficiency ``E(n) = T(n) / (n * T(1))``: 1.0 is perfectly linear.
- The knee (Kneedle, Satopää et al. 2011): the point of maximum curvature,
  where more concurrency stops buying proportionally more throughput.
- The USL (Gunther): ``X(N) = λN / (1 + σ(N−1) + κN(N−1))`` with contention
  ``σ`` and coherency ``κ``; throughput peaks at ``N* = sqrt((1−σ)/κ)`` and
  falls after it (retrograde). With ``κ ≈ 0`` there is no peak: throughput
  only flattens, and ``N*`` is reported as beyond the measured range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Below this the coherency term cannot produce a retrograde region worth naming.
KAPPA_ZERO = 1e-6
#: Distinct concurrencies needed before the USL is fitted: its three parameters fit three
#: points exactly (R² = 1 says nothing), so at least three more are needed to test the fit.
MIN_USL_POINTS = 6
NOT_ENOUGH_POINTS = "not enough points to fit"


def efficiency(n: Sequence[float], throughput: Sequence[float]) -> list[float]:
    """``E(n) = T(n) / (n * T(1))`` for each point, in the given order.

    When the sweep has no ``n = 1`` point, the smallest ``n`` is the base:
    ``E(n) = T(n) * n0 / (n * T(n0))``, which is 1.0 at ``n0``.
    """
    if not n:
        return []
    base = min(range(len(n)), key=lambda i: n[i])
    n0, t0 = n[base], throughput[base]
    if t0 <= 0:
        return [math.nan] * len(n)
    return [t * n0 / (k * t0) for k, t in zip(n, throughput)]


def kneedle(
    x: Sequence[float],
    y: Sequence[float],
    *,
    curve: str = "concave",
    direction: str = "increasing",
    sensitivity: float = 1.0,
) -> float | None:
    """The ``x`` of the knee of ``y(x)``, or None when the curve has none.

    Kneedle: normalise both axes to [0, 1], turn the curve into a concave
    increasing one, take the difference curve ``d = y_n − x_n`` (the distance
    above the chord), and accept the first local maximum of ``d`` after which
    ``d`` falls below ``d_max − S · mean(Δx_n)``. A straight line has no knee.
    """
    if curve not in ("concave", "convex") or direction not in ("increasing", "decreasing"):
        raise ValueError(f"curve must be concave|convex and direction increasing|decreasing, not {curve}/{direction}")
    order = np.argsort(np.asarray(x, dtype=float), kind="stable")
    xs, ys = np.asarray(x, dtype=float)[order], np.asarray(y, dtype=float)[order]
    if len(xs) < 3 or xs[-1] == xs[0] or ys.max() == ys.min():
        return None
    xn = (xs - xs[0]) / (xs[-1] - xs[0])
    yn = (ys - ys.min()) / (ys.max() - ys.min())
    if direction == "decreasing":
        yn = 1.0 - yn  # a decreasing curve flipped upward swaps its convexity
    concave = (curve == "concave") != (direction == "decreasing")
    diff = yn - xn if concave else xn - yn
    step = sensitivity * float(np.mean(np.diff(xn)))
    maxima = _local_maxima(diff)
    for k, i in enumerate(maxima):
        # The threshold resets at the next local maximum: d must fall before it.
        end = maxima[k + 1] if k + 1 < len(maxima) else len(diff)
        if any(diff[j] < diff[i] - step for j in range(i + 1, end)):
            return float(xs[i])
    return None


def _local_maxima(d: np.ndarray) -> list[int]:
    return [i for i in range(1, len(d) - 1) if d[i] >= d[i - 1] and d[i] > d[i + 1]]


@dataclass(frozen=True, slots=True)
class USLFit:
    """A Universal Scalability Law fit ``X(N) = λN / (1 + σ(N−1) + κN(N−1))``."""

    lam: float  # throughput of one unit of concurrency (λ)
    sigma: float  # contention (serial fraction), σ >= 0
    kappa: float  # coherency (crosstalk), κ >= 0
    r2: float  # coefficient of determination against the measured throughput
    #: (measured − predicted) / predicted at each fitted concurrency, in ascending n
    residuals: tuple[float, ...] = ()

    @property
    def max_residual(self) -> float:
        """The largest relative miss of the fit over the measured points (0.05 = 5 %)."""
        return max((abs(r) for r in self.residuals), default=0.0)

    def predict(self, n: float | np.ndarray) -> float | np.ndarray:
        """Throughput the fit predicts at concurrency ``n``."""
        return self.lam * n / (1 + self.sigma * (n - 1) + self.kappa * n * (n - 1))

    @property
    def peak(self) -> float | None:
        """``N* = sqrt((1−σ)/κ)``; None when ``κ ≈ 0`` (throughput never turns down)."""
        if self.sigma >= 1:
            return 1.0  # one unit of concurrency is already the best
        if self.kappa < KAPPA_ZERO:
            return None
        return math.sqrt((1 - self.sigma) / self.kappa)

    def peak_label(self, measured_max: float) -> str:
        """The peak as a report cell: a number, marked when it lies beyond the sweep."""
        peak = self.peak
        if peak is None:
            return "beyond measured range"
        if peak > measured_max:
            return f"{peak:.1f} (beyond measured {measured_max:g})"
        return f"{peak:.1f}"


def usl_fit(n: Sequence[float], throughput: Sequence[float]) -> USLFit | None:
    """Least-squares USL fit; None with fewer than ``MIN_USL_POINTS`` distinct concurrencies.

    The model is linear after a change of variable: ``N / X = a + b(N−1) + c·N(N−1)``
    with ``λ = 1/a``, ``σ = b/a``, ``κ = c/a``. It is solved with ``numpy.linalg.lstsq``
    under ``σ, κ >= 0``: when the free solution breaks a bound, the bounded
    coefficient is pinned to zero and the best remaining fit (by squared error
    in throughput) wins.
    """
    ns, xs = np.asarray(n, dtype=float), np.asarray(throughput, dtype=float)
    keep = (ns > 0) & (xs > 0)
    ns, xs = ns[keep], xs[keep]
    if len(np.unique(ns)) < MIN_USL_POINTS:
        return None
    columns = np.column_stack([np.ones_like(ns), ns - 1, ns * (ns - 1)])
    target = ns / xs
    best: USLFit | None = None
    for free in ((0, 1, 2), (0, 1), (0, 2), (0,)):
        coef = np.zeros(3)
        coef[list(free)] = np.linalg.lstsq(columns[:, free], target, rcond=None)[0]
        a, b, c = coef
        if a <= 0 or b < -1e-12 or c < -1e-12:
            continue
        fit = USLFit(float(1 / a), float(max(b / a, 0.0)), float(max(c / a, 0.0)), 0.0)
        fit = USLFit(fit.lam, fit.sigma, fit.kappa, _r2(xs, fit.predict(ns)))
        if best is None or fit.r2 > best.r2 + 1e-12:
            best = fit
    if best is None:
        return None
    order = np.argsort(ns, kind="stable")
    predicted = best.predict(ns[order])
    residuals = tuple(float(r) for r in (xs[order] - predicted) / predicted)
    return USLFit(best.lam, best.sigma, best.kappa, best.r2, residuals)


def _r2(measured: np.ndarray, predicted: np.ndarray) -> float:
    total = float(np.sum((measured - measured.mean()) ** 2))
    residual = float(np.sum((measured - predicted) ** 2))
    return 1.0 - residual / total if total > 0 else 1.0
