"""What ``tiering simulate`` reports: one row per (policy, hot-tier size), side by side, and two plots."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from tiering.config.cost import ClassPrice
from tiering.ops.simulate.replay import NS, Replay

GIB = float(1 << 30)
MONTH = 30 * 86400.0


@dataclass(frozen=True)
class Prices:
    """What the hot tier and the capacity tier cost (``tiering.config.cost``'s model)."""

    currency: str
    hot_per_gb_month: float
    capacity: ClassPrice

    @classmethod
    def of(cls, config, tier: str | None) -> Prices:
        """From a config's cost model (its default tier's default class), or the project's default prices."""
        from tiering.config.cost import CostModel
        from tiering.config.prices import DEFAULT_PRICES

        if config is None:
            model = CostModel()
            return cls(model.currency, model.hot_per_gb_month, DEFAULT_PRICES["s3"]["STANDARD"])
        model = config.cost
        name = tier or config.default_tier
        return cls(model.currency, model.hot_per_gb_month, model.price(name, None) or ClassPrice())


def summary(r: Replay, prices: Prices) -> dict:
    """One replay as the report's row (``--json`` prints these)."""
    months = r.span_ns / NS / MONTH
    m = r.moves
    hot = r.mean_used / GIB * prices.hot_per_gb_month * months
    capacity = r.mean_on_capacity / GIB * prices.capacity.per_gb_month * months
    requests = (m.get("up_files", 0) * prices.capacity.per_1000("put")
                + m.get("down_files", 0) * prices.capacity.per_1000("get")) / 1000
    retrieval = m.get("down_bytes", 0) / GIB * prices.capacity.retrieval_per_gb
    return {
        "policy": r.policy, "capacity": r.capacity, "days": round(r.span_ns / NS / 86400, 3),
        "reads": r.reads, "hit_ratio": _ratio(r.hits, r.reads), "read_bytes": r.read_bytes,
        "byte_hit_ratio": _ratio(r.hit_bytes, r.read_bytes),
        "misses": r.misses, "staged_files": r.staged, "policy_restores": m.get("policy_restores", 0),
        "restore_wait_seconds": round(r.latency, 3),
        "restore_wait_per_miss": round(r.latency / r.misses, 4) if r.misses else 0.0,
        "bytes_up": m.get("up_bytes", 0), "files_up": m.get("up_files", 0),
        "bytes_released": m.get("released_bytes", 0),
        "bytes_down": m.get("down_bytes", 0), "files_down": m.get("down_files", 0),
        "initial_release_bytes": r.initial_release_bytes,
        "peak_used": r.peak_used, "peak_used_ratio": _ratio(r.peak_used, r.capacity),
        "mean_used": int(r.mean_used), "over_capacity_steps": r.over_capacity_steps,
        "cycles": r.cycles, "watermark_cycles": r.watermark_cycles,
        "cost": {"currency": prices.currency, "hot": round(hot, 2), "capacity": round(capacity, 2),
                 "requests": round(requests, 2), "retrieval": round(retrieval, 2),
                 "total": round(hot + capacity + requests + retrieval, 2)},
        "seconds": round(r.seconds, 2), "plan_seconds": round(r.plan_seconds, 2),
    }


def _ratio(a: float, b: float) -> float:
    return round(a / b, 6) if b else 0.0


def plot(replays: list[Replay], path: str | os.PathLike[str], bucket: float = 86400.0) -> None:
    """Hot-tier usage over time and the hit ratio (over the last ``bucket`` seconds), one line per replay, as a PNG.

    Needs matplotlib (``pip install 'tiering[bench]'``); ``ImportError`` without it.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for r in replays:
        t = np.asarray(r.timeline.time_ns, np.int64)
        if not len(t):
            continue
        days = (t - t[0]) / NS / 86400
        label = f"{r.policy} @ {r.capacity / 2**40:.3g} TiB"
        top.plot(days, np.asarray(r.timeline.used) / r.capacity * 100, label=label, linewidth=0.8)
        step = (t[1] - t[0]) / NS if len(t) > 1 else bucket
        window = max(1, int(round(bucket / step)))
        reads, hits = np.cumsum(r.timeline.reads), np.cumsum(r.timeline.hits)
        lag = np.concatenate([np.zeros(window, np.int64), reads[:-window]])[:len(t)]
        lag_hits = np.concatenate([np.zeros(window, np.int64), hits[:-window]])[:len(t)]
        seen = reads - lag
        ratio = np.where(seen > 0, (hits - lag_hits) / np.maximum(seen, 1) * 100, np.nan)
        bottom.plot(days, ratio, label=label, linewidth=0.8)
    top.set_ylabel("hot tier used (% of capacity)")
    top.axhline(100, color="grey", linewidth=0.5)
    bottom.set_ylabel(f"hit ratio, last {bucket / 3600:g} h (% of reads)")
    bottom.set_xlabel("days into the trace")
    bottom.set_ylim(0, 101)
    top.legend(fontsize=8, loc="lower right")
    top.set_title("tiering simulate: hot-tier usage and hit ratio")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
