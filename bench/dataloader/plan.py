"""A dataloader campaign's plan: its points and an estimated duration, before anything runs.

The accelerator search (``emulate.search``) is adaptive, so its points are
known only as it runs. The plan lists the path that takes longest without a
starved point, the doubling ``k = 1, 2, 4, ...`` up to ``max_accelerators``
for every reader-worker count, and says what a starved point changes: a
search that finds a limit stops doubling there and bisects (up to
``log2(k / 2)`` more points), and a starved step lasts longer than its
compute (by about ``1 / AU``).

One point's time is its steps, each the longer of the emulated compute and
reading the step's samples of all ranks at ``ASSUMED_READ_BYTES_S``, plus a
start-up ``POINT_OVERHEAD_S`` (ranks and readers started, the cache evicted).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from bench.dataloader.emulate import Pipeline
from tiering.core.units import format_elapsed, format_size

#: A point's start-up: processes or threads started, the data set evicted, the pipeline filled.
POINT_OVERHEAD_S = 0.5
#: Assumed rate at which all ranks together read (and decode) samples when compute does not hide it.
ASSUMED_READ_BYTES_S = 200e6
#: Assumed rate of writing a missing data set.
ASSUMED_WRITE_BYTES_S = 200e6


@dataclass(frozen=True, slots=True)
class PlannedLoad:
    """One (reader workers, accelerators) point as planned: one run's steps, bytes and seconds."""

    workers: int
    accelerators: int
    steps: int  # per accelerator
    bytes: int
    seconds: float


@dataclass(frozen=True)
class LoadPlan:
    """The doubling path of every worker count, the repeats, and what else may run."""

    points: tuple[PlannedLoad, ...]
    repeats: int
    create_bytes: int = 0  # a missing data set, written first
    bisect_points: int = 0  # at most this many more points, if the search finds a limit
    bisect_s: float = 0.0  # at most this much more time for them (one run each)

    @property
    def create_s(self) -> float:
        return self.create_bytes / ASSUMED_WRITE_BYTES_S

    @property
    def total_s(self) -> float:
        return self.create_s + self.repeats * sum(p.seconds for p in self.points)

    @property
    def total_bytes(self) -> int:
        """Bytes the planned runs read (what the progress bar counts)."""
        return self.repeats * sum(p.bytes for p in self.points)


def plan(pipeline: Pipeline, count: int, size: int, workers: Sequence[int], *, max_accelerators: int = 64,
         repeats: int = 1, least_steps: int = 1, create: bool = False) -> LoadPlan:
    """The planned points of ``run`` over ``count`` samples of ``size`` bytes (``least_steps``: the mode's floor).

    ``create``: the data set is missing and will be written first.
    """
    ks = _doubling(max_accelerators)
    points = tuple(_point(pipeline, count, size, w, k, least_steps) for w in workers for k in ks)
    # The widest bisection follows a starved point at the cap: between cap/2 and cap.
    extra = max(0, math.ceil(math.log2(max(ks[-1] - (ks[-2] if len(ks) > 1 else 0), 1))))
    bisect_s = sum(_point(pipeline, count, size, w, ks[-2] if len(ks) > 1 else 1, least_steps).seconds
                   for w in workers) * extra
    return LoadPlan(points, repeats, count * size if create else 0, extra * len(workers), bisect_s * repeats)


def _doubling(cap: int) -> list[int]:
    ks, k = [], 1
    while k <= cap:
        ks.append(k)
        k = cap if k < cap < 2 * k else 2 * k
    return ks


def _point(pipeline: Pipeline, count: int, size: int, workers: int, k: int, least_steps: int) -> PlannedLoad:
    steps = max(least_steps, pipeline.steps(count, k))
    step_bytes = k * pipeline.batch * size
    step_s = max(pipeline.compute_s, step_bytes / ASSUMED_READ_BYTES_S)
    return PlannedLoad(workers, k, steps, steps * step_bytes, POINT_OVERHEAD_S + steps * step_s)


def plan_lines(load_plan: LoadPlan, pipeline: Pipeline, target: str, mode: str) -> list[str]:
    """What ``--dry-run`` prints: one line per planned point, then the estimate and what may change it."""
    lines = [f"dataloader ({mode}) on {target}: batch {pipeline.batch}, compute {pipeline.compute_s * 1e3:g} ms per "
             f"step, {pipeline.epochs} epoch(s), cache {pipeline.cache}, {load_plan.repeats} run(s) per point:"]
    for i, p in enumerate(load_plan.points, 1):
        lines.append(f"  {i:>3}. workers {p.workers:>3}  accelerators {p.accelerators:>3}  steps {p.steps:>5}  "
                     f"{format_size(p.bytes):>8}  ~{format_elapsed(p.seconds)}")
    create = (f" + writing the {format_size(load_plan.create_bytes)} data set (~{format_elapsed(load_plan.create_s)})"
              if load_plan.create_bytes else "")
    lines.append(f"{len(load_plan.points)} point(s) x {load_plan.repeats} run(s){create}: estimated total "
                 f"{format_elapsed(load_plan.total_s)} with every point at full AU (assumed: "
                 f"{ASSUMED_READ_BYTES_S / 1e6:g} MB/s reads, {POINT_OVERHEAD_S:g} s start-up per point)")
    if load_plan.bisect_points:
        lines.append(f"note: a starved point ends the doubling; the bisection after it adds at most "
                     f"{load_plan.bisect_points} point(s) (~{format_elapsed(load_plan.bisect_s)}), and a starved "
                     "step lasts longer than its compute (by about 1/AU)")
    return lines
