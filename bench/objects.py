"""Object-tier sweeps through the Store layer: PUT and GET over size x concurrency.

Debian's fio has no S3 engine, so the capacity tiers are measured here, with
the same code paths the mover uses (``Store.put_file`` / ``get_file``, with
checksums and verification on). Each point uploads a set of local files with
``concurrency`` workers, downloads them again, and records per-operation
latencies so percentiles can be reported, not just means.

What each point measures:

- ``put``: ``put_file`` of every file (checksummed, published atomically);
  latency is one whole upload.
- ``get``: ``get_file`` of every object into a local file (verified), as a
  restore does; latency is one whole verified download.
- time to first byte, reported on the ``get`` point: a separate probe pass
  over (up to ``TTFB_PROBES`` of) the same objects at the same concurrency,
  timing ``read_range(key, 0, 1)``: one ranged GET, so it is the request's
  round trip to its first byte, free of any client-side read-ahead
  (``Store.open`` buffers up to 4 MiB before its first ``read`` returns).
- ``list+get`` (``epoch_objects > 0``): one dataloader epoch over many small
  objects: list the prefix, then fetch every listed object with
  ``read_range(key, 0, size)`` (one GET each, into memory) by ``concurrency``
  workers. The point's time includes the listing; latency is one GET.

With ``repeats`` > 1 every point is measured that many times (the
put/get/ttfb passes of a size and concurrency together, or a list+get pass)
and reported by its median run by throughput, with the spread over the runs
(``bench.stats``). ``plan`` estimates a sweep's points, bytes and duration
before anything runs.

``point_row`` turns a point into a row of ``bench.results.SCHEMA``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench.stats import median_index, spread, spread_warning
from tiering.stores.base import FileMeta, Store
from tiering.core.units import format_elapsed, format_size
from tiering.stores.keys import encode_key


@dataclass(frozen=True, slots=True)
class SweepPoint:
    """One measured (operation, object size, concurrency) point."""

    op: str  # "put" or "get"
    object_size: int
    concurrency: int
    objects: int
    seconds: float
    lat_p50: float
    lat_p99: float
    lat_mean: float = 0.0
    lat_p999: float = 0.0
    ttfb_p50: float | None = None  # get points only; see the module docstring
    ttfb_p99: float | None = None
    repeats: int = 1  # runs of this point; the figures are the median run's (by throughput)
    spread: float | None = None  # (max − min) / median throughput over the runs; None for one run

    @property
    def bytes(self) -> int:
        return self.objects * self.object_size

    @property
    def ops_per_s(self) -> float:
        return self.objects / self.seconds if self.seconds else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds else 0.0


def objects_for(size: int, total_bytes: int, least: int = 8, most: int = 10_000) -> int:
    """How many objects of ``size`` make one point: about ``total_bytes`` worth."""
    return max(least, min(most, total_bytes // max(size, 1)))


#: At most this many objects per point are probed for time to first byte.
TTFB_PROBES = 256


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1, in steps of 0.001) of ``values``, interpolated; 0.0 when empty."""
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 1000) - 1]


#: Bytes moved, reported as each request completes (from the pool's threads): a progress display's feed.
OnBytes = Callable[[int], None]


def _timed_map(fn: Callable[[int], None], n: int, concurrency: int,
               on_done: Callable[[int], None] | None = None) -> tuple[float, list[float]]:
    latencies: list[float] = []

    def one(i: int) -> None:
        t = time.perf_counter()
        fn(i)
        latencies.append(time.perf_counter() - t)
        if on_done:
            on_done(i)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency, thread_name_prefix="bench") as pool:
        for _ in pool.map(one, range(n)):
            pass
    return time.perf_counter() - start, latencies


def make_files(directory: Path, size: int, n: int) -> list[Path]:
    """``n`` files of ``size`` random bytes (distinct, so nothing can dedupe or compress them)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = directory / f"obj-{i:06d}"
        path.write_bytes(os.urandom(size))
        paths.append(path)
    return paths


def sweep(
    store: Store,
    sizes: Sequence[int],
    concurrencies: Sequence[int],
    *,
    total_bytes: int = 64 * 1024 * 1024,
    workdir: str | os.PathLike[str] | None = None,
    on_point: Callable[[SweepPoint], None] | None = None,
    epoch_objects: int = 0,
    epoch_size: int = 16 * 1024,
    repeats: int = 1,
    on_bytes: OnBytes | None = None,
) -> Iterator[SweepPoint]:
    """Measure PUT then GET for every size x concurrency, then (``epoch_objects > 0``)
    a list+GET epoch over that many ``epoch_size`` objects per concurrency.

    Each point is measured ``repeats`` times and yielded as its median run.
    Every object written is deleted again, also when a point fails.
    """
    run = f"tiering-bench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="tiering-bench-", dir=workdir) as tmp:
        for size in sizes:
            n = objects_for(size, total_bytes)
            src_dir = Path(tmp) / f"src-{size}"
            files = make_files(src_dir, size, n)
            for conc in concurrencies:
                for point in _point_pair(store, files, f"{run}/{size}/c{conc}", size, conc, Path(tmp), repeats,
                                         on_bytes):
                    if on_point:
                        on_point(point)
                    yield point
            for path in files:
                path.unlink()
        if epoch_objects > 0:
            files = make_files(Path(tmp) / "epoch", epoch_size, epoch_objects)
            yield from epoch_pass(store, files, f"{run}/epoch/", concurrencies, on_point, repeats=repeats,
                                  on_bytes=on_bytes)


def epoch_pass(
    store: Store,
    files: Sequence[Path],
    prefix: str,
    concurrencies: Sequence[int],
    on_point: Callable[[SweepPoint], None] | None = None,
    *,
    repeats: int = 1,
    on_bytes: OnBytes | None = None,
) -> Iterator[SweepPoint]:
    """Upload ``files`` under ``prefix`` once, then per concurrency list the prefix
    and GET every listed object (one ``list+get`` point each, its median of
    ``repeats`` passes); deleted after."""
    keys = [encode_key(f"{prefix}{i:06d}") for i in range(len(files))]
    size = files[0].stat().st_size
    try:
        measure_put(store, files, keys, max(concurrencies), on_bytes)  # setup, not a point
        for conc in concurrencies:
            point = median_run([_list_and_get(store, prefix, conc, size, on_bytes) for _ in range(repeats)])
            if on_point:
                on_point(point)
            yield point
    finally:
        _delete(store, keys, max(concurrencies))


def _list_and_get(store: Store, prefix: str, concurrency: int, size: int, on_bytes: OnBytes | None) -> SweepPoint:
    start = time.perf_counter()
    listed = [(info.key, info.size) for info in store.list(prefix)]
    listing = time.perf_counter() - start

    def get(i: int) -> None:
        store.read_range(listed[i][0], 0, listed[i][1])

    seconds, latencies = _timed_map(get, len(listed), concurrency, _counter(on_bytes, size))
    return _point("list+get", size, concurrency, len(listed), listing + seconds, latencies)


def measure_put(store: Store, files: Sequence[Path], keys: Sequence[str], concurrency: int,
                on_bytes: OnBytes | None = None) -> SweepPoint:
    """Upload ``files[i]`` as ``keys[i]`` with ``concurrency`` workers; one point."""

    def put(i: int) -> None:
        store.put_file(files[i], keys[i], FileMeta.from_stat(files[i].stat(), keys[i]))

    size = files[0].stat().st_size
    return _point("put", size, concurrency, len(keys),
                  *_timed_map(put, len(keys), concurrency, _counter(on_bytes, size)))


def measure_get(store: Store, keys: Sequence[str], out_dir: Path, concurrency: int, size: int,
                on_bytes: OnBytes | None = None) -> SweepPoint:
    """Download every key into its own file under ``out_dir`` (verified); one point."""
    out_dir.mkdir(parents=True, exist_ok=True)

    def get(i: int) -> None:
        store.get_file(keys[i], out_dir / f"{i:06d}")

    return _point("get", size, concurrency, len(keys),
                  *_timed_map(get, len(keys), concurrency, _counter(on_bytes, size)))


def _counter(on_bytes: OnBytes | None, size: int) -> Callable[[int], None] | None:
    return (lambda _i: on_bytes(size)) if on_bytes else None


def median_run(runs: Sequence[SweepPoint]) -> SweepPoint:
    """The run with the median throughput, carrying the number of runs and their spread."""
    rates = [p.mb_per_s for p in runs]
    return dataclasses.replace(runs[median_index(rates)], repeats=len(runs), spread=spread(rates))


def measure_ttfb(store: Store, keys: Sequence[str], concurrency: int) -> list[float]:
    """Seconds to the first byte of each key: one ``read_range(key, 0, 1)`` each."""
    return _timed_map(lambda i: store.read_range(keys[i], 0, 1), len(keys), concurrency)[1]


def _point(op: str, size: int, concurrency: int, n: int, seconds: float, latencies: list[float]) -> SweepPoint:
    return SweepPoint(
        op, size, concurrency, n, seconds, percentile(latencies, 0.5), percentile(latencies, 0.99),
        lat_mean=statistics.fmean(latencies) if latencies else 0.0, lat_p999=percentile(latencies, 0.999),
    )


def _point_pair(store, files, prefix: str, size: int, conc: int, tmp: Path, repeats: int,
                on_bytes: OnBytes | None) -> tuple[SweepPoint, SweepPoint]:
    """``repeats`` passes of put, get and the time-to-first-byte probe; the median put and the median get."""
    puts, gets = [], []
    for k in range(repeats):
        keys = [encode_key(f"{prefix}/r{k}/{i:06d}") for i in range(len(files))]
        out_dir = tmp / f"get-{size}-{conc}-r{k}"
        try:
            puts.append(measure_put(store, files, keys, conc, on_bytes))
            get = measure_get(store, keys, out_dir, conc, size, on_bytes)
            ttfb = measure_ttfb(store, keys[:TTFB_PROBES], conc)
            gets.append(dataclasses.replace(get, ttfb_p50=percentile(ttfb, 0.5), ttfb_p99=percentile(ttfb, 0.99)))
        finally:
            _delete(store, keys, conc)
            shutil.rmtree(out_dir, ignore_errors=True)
    return median_run(puts), median_run(gets)


def _delete(store: Store, keys: Sequence[str], concurrency: int) -> None:
    with ThreadPoolExecutor(max(concurrency, 8)) as pool:
        list(pool.map(store.delete, keys))


def point_row(point: SweepPoint, *, campaign: str, tier: str, target: str) -> dict:
    """One point as a row of ``bench.results.SCHEMA`` (engine ``objects``)."""
    return {
        "campaign": campaign, "engine": "objects", "tier": tier, "target": target, "profile": "objects",
        "op": point.op, "block_size": point.object_size, "numjobs": point.concurrency,
        "runtime_s": point.seconds, "bytes": point.bytes,
        "bw_bytes_s": point.bytes / point.seconds if point.seconds else 0.0, "iops": point.ops_per_s,
        "lat_mean_s": point.lat_mean, "lat_p50_s": point.lat_p50, "lat_p99_s": point.lat_p99,
        "lat_p999_s": point.lat_p999, "ttfb_p50_s": point.ttfb_p50, "ttfb_p99_s": point.ttfb_p99,
        "repeats": point.repeats, "spread": point.spread, "warning": spread_warning(point.spread),
    }


# -- a sweep's plan: its points, bytes and duration before anything runs ----------

#: Assumed when planning, on the slow side for a store across a network: a round trip plus
#: checksumming per request (divided among the concurrent requests), and one link's bandwidth
#: shared by all of them. ``plan_lines`` states both.
ASSUMED_REQUEST_S = 0.02
ASSUMED_BYTES_S = 100e6


@dataclass(frozen=True, slots=True)
class PlannedPoint:
    """One point as planned: what one run moves and how long it should take, with its probes and clean-up."""

    op: str
    object_size: int
    concurrency: int
    objects: int
    seconds: float

    @property
    def bytes(self) -> int:
        return self.objects * self.object_size


@dataclass(frozen=True)
class Plan:
    """A sweep's points in run order, its repeats, and the one-off upload of the epoch objects."""

    points: tuple[PlannedPoint, ...]
    repeats: int
    setup_bytes: int = 0
    setup_s: float = 0.0

    @property
    def total_s(self) -> float:
        return self.setup_s + self.repeats * sum(p.seconds for p in self.points)

    @property
    def total_bytes(self) -> int:
        """Bytes every request of the sweep moves together (what the progress bar counts)."""
        return self.setup_bytes + self.repeats * sum(p.bytes for p in self.points)


def _requests_s(n: int, size: int, concurrency: int) -> float:
    return n * ASSUMED_REQUEST_S / concurrency + n * size / ASSUMED_BYTES_S


def plan(sizes: Sequence[int], concurrencies: Sequence[int], *, total_bytes: int = 64 * 1024 * 1024,
         epoch_objects: int = 0, epoch_size: int = 16 * 1024, repeats: int = 1) -> Plan:
    """The points ``sweep`` measures with these arguments, in its order, with assumed durations.

    A get point's time includes its time-to-first-byte probe and the deletion
    of its objects (requests of their own). Writing the local source files is
    not counted: local disk is much faster than the assumed network rate.
    """
    points: list[PlannedPoint] = []
    for size in sizes:
        n = objects_for(size, total_bytes)
        for conc in concurrencies:
            after = min(n, TTFB_PROBES) * ASSUMED_REQUEST_S / conc + n * ASSUMED_REQUEST_S / max(conc, 8)
            points += [PlannedPoint("put", size, conc, n, _requests_s(n, size, conc)),
                       PlannedPoint("get", size, conc, n, _requests_s(n, size, conc) + after)]
    setup_bytes, setup_s = 0, 0.0
    if epoch_objects > 0:
        widest = max(concurrencies)
        setup_bytes = epoch_objects * epoch_size
        setup_s = _requests_s(epoch_objects, epoch_size, widest) + epoch_objects * ASSUMED_REQUEST_S / max(widest, 8)
        listing = -(-epoch_objects // 1000) * ASSUMED_REQUEST_S  # one LIST request per 1000 keys
        points += [PlannedPoint("list+get", epoch_size, conc, epoch_objects,
                                listing + _requests_s(epoch_objects, epoch_size, conc)) for conc in concurrencies]
    return Plan(tuple(points), repeats, setup_bytes, setup_s)


def plan_lines(sweep_plan: Plan, target: str) -> list[str]:
    """What ``--dry-run`` prints: one line per point in run order, then the estimate and its assumptions."""
    lines = [f"object sweep of {target} ({sweep_plan.repeats} run(s) per point, the median kept):"]
    for i, p in enumerate(sweep_plan.points, 1):
        lines.append(f"  {i:>3}. {p.op:<8} size {format_size(p.object_size):>7}  concurrency {p.concurrency:>3}  "
                     f"{p.objects:>6} object(s)  {format_size(p.bytes):>8}  ~{format_elapsed(p.seconds)}")
    setup = (f" + uploading {format_size(sweep_plan.setup_bytes)} of epoch objects once"
             if sweep_plan.setup_bytes else "")
    lines.append(f"{len(sweep_plan.points)} point(s) x {sweep_plan.repeats} run(s){setup}: "
                 f"{format_size(sweep_plan.total_bytes)} moved, estimated total {format_elapsed(sweep_plan.total_s)} "
                 f"(assumed: {ASSUMED_REQUEST_S * 1e3:g} ms per request, {ASSUMED_BYTES_S / 1e6:g} MB/s shared)")
    return lines
