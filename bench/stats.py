"""Repeated measurements of one point: which run to keep and how far the runs disagree.

A point measured ``k`` times is reported by its median run (by throughput),
a real run whose figures belong together, rather than a mix of medians of
each figure. The spread ``(max − min) / median`` says how reproducible the
point is; above ``SPREAD_LIMIT`` the point is flagged.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Spread above which a point is flagged as not reproducible.
SPREAD_LIMIT = 0.10
#: Runs per point unless told otherwise (MLPerf Storage asks for 5).
DEFAULT_REPEATS = 3


def median_index(values: Sequence[float]) -> int:
    """The index of the median value (the lower median for an even count)."""
    if not values:
        raise ValueError("no values")
    order = sorted(range(len(values)), key=lambda i: values[i])
    return order[(len(order) - 1) // 2]


def spread(values: Sequence[float]) -> float | None:
    """``(max − min) / median``; None for fewer than two values or a zero median."""
    if len(values) < 2:
        return None
    middle = values[median_index(values)]
    return (max(values) - min(values)) / middle if middle > 0 else None


def spread_warning(value: float | None) -> str | None:
    """The row warning for a spread past the limit (worded without numbers, so a campaign's collapse to one)."""
    if value is None or value <= SPREAD_LIMIT:
        return None
    return f"throughput varied by more than {SPREAD_LIMIT:.0%} across repeats: see the spread column"
