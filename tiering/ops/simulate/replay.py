"""Replay a trace against an inventory and a policy, over simulated time, with the real planner.

The clock moves in steps (``Scenario.step``). In each step the trace's
accesses are applied to the simulated hot tier (``state.HotState``), all at
once, vectorised:

- a *write* makes a file present (its first) or dirty (an archived one);
- a *read* (``open``/``read``) of a file on the hot tier is a hit; the first
  read of a released file is a miss: the access guard restores it before the
  reader goes on (``Scenario.restore_latency`` + size / ``restore_bandwidth``
  added to that read), and later reads hit. With datasets declared in the
  policy (and ``Scenario.stage_in``), the first miss in a dataset stages the
  rest of it in, in the background, as far as it fits under the high watermark
  (one unit, as the guard's read-ahead over a dataset's folder or a job's
  ``tiering restore --manifest`` of it would), so the dataset's later reads hit;
- reads count as heat, decayed with the config's half-life, as the daemon does.

At the end of a step, a cycle runs as ``tiering daemon`` would run one: when
``interval`` has passed since the last, or when used space is above the
policy's high watermark (backing off as the daemon does when a cycle cannot
get below it). A cycle is ``plan.plan_joined`` (the planner's own steps over
the state as a joined inventory: the real policy engine, rules, caps, safety
window and watermark) and then the plan applied to the state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tiering.core.errors import UserError
from tiering.ops.simulate.state import RELEASED, HotState, Moves
from tiering.plan import Usage
from tiering.plan.prejoined import plan_joined
from tiering.policy import Policy
from tiering.trace.schema import KINDS, READ, OPEN, RESTORE, WRITE

NS = 1_000_000_000
_NEVER = np.iinfo(np.int64).min
_READ_CODES = (KINDS.index(OPEN), KINDS.index(READ))


@dataclass(frozen=True)
class Scenario:
    """What the hot tier and the daemon are like in the replay."""

    capacity: int  # the hot tier's size, bytes
    interval: float = 3600.0  # seconds between the daemon's cycles
    step: float = 300.0  # seconds: how often the watermark is looked at (and the timeline's resolution)
    half_life: float = 7 * 86400.0  # heat's (the config's [heat] half_life)
    restore_latency: float = 0.05  # seconds a reader waits before a restore's first byte (the tier's)
    restore_bandwidth: float = 500e6  # bytes/s one restore reads at (the tier's, measured)
    tier: str = "capacity"  # the capacity tier files go to
    #: With datasets declared: a miss stages the rest of its dataset in (as the guard's read-ahead over a dataset
    #: folder, or a job's ``tiering restore --manifest`` of it, would); False: files come back one by one.
    stage_in: bool = True


@dataclass
class Timeline:
    """Per step: time, hot-tier used bytes, reads and hits in the step."""

    time_ns: list[int] = field(default_factory=list)
    used: list[int] = field(default_factory=list)
    reads: list[int] = field(default_factory=list)
    hits: list[int] = field(default_factory=list)


@dataclass
class Replay:
    """One policy's replay: what the report shows."""

    policy: str
    capacity: int
    reads: int = 0
    hits: int = 0
    read_bytes: int = 0
    hit_bytes: int = 0
    misses: int = 0  # reads that waited on a restore
    staged: int = 0  # files restored in the background with a dataset's stage-in
    latency: float = 0.0  # seconds readers waited on restores, in all
    cycles: int = 0
    watermark_cycles: int = 0
    peak_used: int = 0
    over_capacity_steps: int = 0
    mean_used: float = 0.0
    mean_on_capacity: float = 0.0
    initial_release_bytes: int = 0  # what the first cycle released to fit the capacity (not counted below)
    seconds: float = 0.0  # wall time of the replay
    plan_seconds: float = 0.0
    moves: dict = field(default_factory=dict)
    timeline: Timeline = field(default_factory=Timeline)
    span_ns: int = 0


@dataclass(frozen=True)
class Accesses:
    """A trace as file numbers of the inventory, kinds and times (oldest first); what does not name a file
    of the inventory is counted and left out."""

    ids: np.ndarray
    times: np.ndarray
    kinds: np.ndarray
    unknown: int
    recorded_restores: int

    @classmethod
    def of(cls, trace: pa.Table, inventory_paths: pa.Array | pa.ChunkedArray) -> Accesses:
        paths = inventory_paths.combine_chunks() if isinstance(inventory_paths, pa.ChunkedArray) else inventory_paths
        ids = _file_numbers(trace["path"], paths)
        kinds = _kind_codes(trace["kind"])
        times = trace["time_ns"].to_numpy()
        restores = int(np.count_nonzero(kinds == KINDS.index(RESTORE)))
        keep = (ids >= 0) & (kinds != KINDS.index(RESTORE))
        return cls(ids[keep], times[keep], kinds[keep], int(np.count_nonzero(ids < 0)), restores)


def _file_numbers(column: pa.ChunkedArray, paths: pa.Array) -> np.ndarray:
    """Each access's file number in ``paths`` (-1: not there), through the chunks' dictionaries when encoded."""
    if not pa.types.is_dictionary(column.type):
        return pc.fill_null(pc.index_in(column, value_set=paths), -1).to_numpy().astype(np.int64)
    chunks = [c for c in column.chunks if len(c)]
    if not chunks:
        return np.zeros(0, np.int64)
    words = pa.concat_arrays([c.dictionary for c in chunks])
    where = pc.fill_null(pc.index_in(words, value_set=paths), -1).to_numpy().astype(np.int64)
    out, base = [], 0
    for c in chunks:
        out.append(where[base:base + len(c.dictionary)][c.indices.to_numpy(zero_copy_only=False)])
        base += len(c.dictionary)
    return np.concatenate(out)


def _kind_codes(column: pa.ChunkedArray) -> np.ndarray:
    plain = column.cast(column.type.value_type) if pa.types.is_dictionary(column.type) else column
    codes = pc.index_in(plain, value_set=pa.array(KINDS)).to_numpy(zero_copy_only=False)
    return np.nan_to_num(codes.astype(float), nan=-1).astype(np.int8)


def births(accesses: Accesses, inventory: pa.Table, start_ns: int) -> np.ndarray:
    """When each file appears: at its first write in the trace, for a file the inventory shows modified at or
    after that write (the write made it); else it is there from the start (``_NEVER``)."""
    born = np.full(inventory.num_rows, _NEVER, np.int64)
    writes = accesses.kinds == KINDS.index(WRITE)
    ids, times = accesses.ids[writes], accesses.times[writes]
    first_ids, first = np.unique(ids, return_index=True)
    first_times = times[first]
    mtime = inventory["mtime_ns"].to_numpy()
    made = (first_times > start_ns) & (mtime[first_ids] >= first_times)
    born[first_ids[made]] = first_times[made]
    return born


def replay(policy: Policy, inventory: pa.Table, accesses: Accesses, scenario: Scenario, *,
           start_ns: int, end_ns: int, label: str | None = None,
           progress: Callable[[int, int], None] | None = None) -> Replay:
    """Replay ``accesses`` (over ``inventory``) from ``start_ns`` to ``end_ns`` under ``policy``.

    A first cycle at ``start_ns``, with every file on the hot tier, fits the tier to the policy; what it moves
    is ``initial_release_bytes``, not counted with the rest.
    """
    if scenario.capacity <= 0:
        raise UserError("the hot tier's capacity must be above zero")
    began = time.perf_counter()
    run = _Run(policy, inventory, accesses, scenario, start_ns, end_ns, label)
    run.cycle(start_ns, "start")
    run.out.initial_release_bytes = run.state.moves.released_bytes
    run.state.moves = Moves()
    step = int(scenario.step * NS)
    bounds = np.searchsorted(accesses.times, np.arange(start_ns, end_ns + step, step), side="left")
    steps = len(bounds) - 1
    for k in range(steps):
        run.advance(start_ns + (k + 1) * step, slice(bounds[k], bounds[k + 1]), sample=k % 12 == 0)
        if progress is not None:
            progress(k + 1, steps)
    out = run.out
    out.mean_used = run.used_sum / max(1, steps)
    out.mean_on_capacity = run.capacity_sum / max(1, len(range(0, steps, 12)))
    out.moves = vars(run.state.moves).copy()
    out.seconds = time.perf_counter() - began
    return out


class _Run:
    """One replay's state between steps."""

    def __init__(self, policy: Policy, inventory: pa.Table, accesses: Accesses, scenario: Scenario,
                 start_ns: int, end_ns: int, label: str | None) -> None:
        self.policy, self.accesses, self.scenario = policy, accesses, scenario
        self.state = HotState(inventory, births(accesses, inventory, start_ns), scenario.tier)
        self.state.atime = np.minimum(self.state.atime, start_ns)
        self.datasets = policy.datasets.ids(self.state.paths)[0] if policy.datasets else None
        self.heat = _Heat(self.state.n, scenario.half_life, start_ns)
        self.out = Replay(label or policy.path.stem, scenario.capacity, span_ns=end_ns - start_ns)
        self.last_cycle, self.backoff_until, self.misses_in_row = start_ns, _NEVER, 0
        self.used_sum = self.capacity_sum = 0.0
        wm = policy.watermark
        self.room = int(scenario.capacity * (wm.high if wm else 1.0))

    def advance(self, now: int, rows: slice, sample: bool) -> None:
        """Apply the accesses of ``rows`` (the step ending at ``now``), then run a cycle if one is due."""
        out, state, a = self.out, self.state, self.accesses
        reads, hits = out.reads, out.hits
        _step(state, self.heat, out, a.ids[rows], a.times[rows], a.kinds[rows], self.datasets, self.scenario,
              self.room)
        out.peak_used = max(out.peak_used, state.used)  # (before a cycle brings it down again)
        wm, capacity = self.policy.watermark, self.scenario.capacity
        if now - self.last_cycle >= self.scenario.interval * NS:
            self.cycle(now, "interval")
        elif wm is not None and state.used > wm.high * capacity and now >= self.backoff_until:
            self.cycle(now, "watermark")
        out.over_capacity_steps += state.used > capacity
        self.used_sum += state.used
        if sample:  # a sum over every file: sampled
            self.capacity_sum += state.on_capacity_bytes()
        t = out.timeline
        t.time_ns.append(now)
        t.used.append(state.used)
        t.reads.append(out.reads - reads)
        t.hits.append(out.hits - hits)

    def cycle(self, now: int, trigger: str) -> None:
        """Plan with the real planner over the state as it is at ``now``, and apply the plan."""
        t0 = time.perf_counter()
        state, out = self.state, self.out
        batches, rows = state.joined(self.heat.at(now))
        plan = plan_joined(batches, self.policy, now, usage=Usage(self.scenario.capacity, state.used),
                           default_tier=self.scenario.tier,
                           dataset_ids=None if self.datasets is None else self.datasets[rows])
        state.apply(plan)
        out.plan_seconds += time.perf_counter() - t0
        out.cycles += 1
        self.last_cycle = now
        if trigger != "watermark":
            return
        out.watermark_cycles += 1
        if state.used > self.policy.watermark.high * self.scenario.capacity:  # the daemon's back-off
            self.misses_in_row += 1
            wait = min(self.scenario.interval, self.scenario.step * 2 ** self.misses_in_row)
            self.backoff_until = now + int(wait * NS)
        else:
            self.misses_in_row = 0


def _step(state: HotState, heat: _Heat, out: Replay, ids: np.ndarray, times: np.ndarray, kinds: np.ndarray,
          datasets: np.ndarray | None, scenario: Scenario, room: int) -> None:
    """One step's accesses (the module docstring); ``room``: the used bytes a dataset's stage-in may fill to."""
    if not len(ids):
        return
    writes = kinds == KINDS.index(WRITE)
    if writes.any():
        state.write(ids[writes], times[writes])
    reads = np.isin(kinds, _READ_CODES)
    ids, times = ids[reads], times[reads]
    present = state.present[ids]
    ids, times = ids[present], times[present]
    if not len(ids):
        return
    sizes = state.size[ids]
    stub = state.state[ids] == RELEASED
    miss = np.zeros(len(ids), bool)
    if stub.any():
        if datasets is not None and scenario.stage_in and (datasets[ids[stub]] >= 0).any():
            miss = _first_in_unit(ids, stub, datasets)
            units = np.unique(datasets[ids[miss]])
            units = units[units >= 0]
            state.restore(ids[miss])
            staged = np.flatnonzero(np.isin(datasets, units) & (state.state == RELEASED) & state.present)
            room = room - state.used  # the rest of the unit comes in as far as it fits
            fits = staged[np.cumsum(state.blocks[staged] * 512) <= room]
            out.staged += len(fits)
            state.restore(fits)
            left = np.flatnonzero(stub & ~miss & (state.state[ids] == RELEASED))  # what did not fit: per file
            _, first = np.unique(ids[left], return_index=True)
            miss[left[first]] = True
            state.restore(ids[left[first]])
        else:
            _, first = np.unique(ids[stub], return_index=True)
            miss[np.flatnonzero(stub)[first]] = True
            state.restore(ids[miss])
    out.reads += len(ids)
    out.read_bytes += int(sizes.sum())
    out.misses += int(miss.sum())
    out.hits += len(ids) - int(miss.sum())
    out.hit_bytes += int(sizes[~miss].sum())
    out.latency += float(np.count_nonzero(miss) * scenario.restore_latency + sizes[miss].sum() / scenario.restore_bandwidth)
    np.maximum.at(state.atime, ids, times)
    heat.add(ids, times)


def _first_in_unit(ids: np.ndarray, stub: np.ndarray, datasets: np.ndarray) -> np.ndarray:
    """The reads that miss when a dataset is staged in whole at its first miss: the first read of a stub in
    each dataset, and the first read of each stub in no dataset."""
    unit = np.where(datasets[ids] >= 0, datasets[ids], -2 - ids)  # a file of no dataset is a unit of its own
    miss = np.zeros(len(ids), bool)
    where = np.flatnonzero(stub)
    _, first = np.unique(unit[where], return_index=True)
    miss[where[first]] = True
    return miss


class _Heat:
    """Every file's heat, decayed with ``half_life`` as the catalog decays it, kept scaled to a base time so
    an access adds one weight and nothing is rewritten per step."""

    def __init__(self, n: int, half_life: float, start_ns: int) -> None:
        self.scaled = np.zeros(n)
        self.half_life = half_life * NS
        self.base = start_ns

    def add(self, ids: np.ndarray, times: np.ndarray) -> None:
        if (times[-1] - self.base) > 30 * self.half_life:  # keep the weights well inside float range
            self.scaled *= np.exp2(-(times[0] - self.base) / self.half_life)
            self.base = int(times[0])
        np.add.at(self.scaled, ids, np.exp2((times - self.base) / self.half_life))

    def at(self, now: int) -> np.ndarray:
        return self.scaled * np.exp2(-(now - self.base) / self.half_life)
