"""Dataloader emulation, the storage path only: how many accelerators can a tier keep busy?

This mode charges only the reads (raw bytes, reader threads, no decode, no
hand-off between processes): an upper bound on what a training job gets. The
DLIO-faithful mode (``bench.dataloader.faithful``) charges what MLPerf
Storage charges on top; results name their mode in ``profile``.

One *accelerator* is emulated the way MLPerf Storage (DLIO) does it: a
data-parallel rank with its own input pipeline. Each rank has ``workers``
reader threads that load whole batches (``batch`` samples, read one after
another, like a PyTorch ``DataLoader`` worker) into a bounded queue of
``prefetch × workers`` batches, and a consumer that takes a batch and
"computes" on it for ``compute_s`` (a sleep: the accelerator's step). All
ranks share the tier, and the order is shuffled each epoch and sharded across
ranks like ``DistributedSampler`` (rank ``r`` reads ``order[r::k]``).

Accelerator utilisation, per rank: ``AU = compute / (compute + waiting)``,
where waiting is the time the consumer blocked on an empty queue; a point's AU
is the mean over its ranks. The first batch's wait (filling the pipeline, paid
once per job) is left out.

``accelerators fed`` is found by measurement, not derived: k = 1, 2, 4, ...
accelerators run until AU drops below 0.9 (MLPerf Storage's rule) or
``max_accelerators`` is reached, then the gap is bisected. Each k is a point;
the answer is the largest k measured at AU >= 0.9 (0 when one accelerator
already starves). Because every rank brings its own readers, the limit found
is the tier's (and this host's: reader threads share its CPUs), not a fixed
reader pool's. (Dividing a sustained samples/s by one rank's demand,
``batch / compute_s``, would be the cheaper estimate; it ignores queueing and
the steps' jitter, which is exactly what starves accelerators first.)

With ``repeats`` > 1 every point is measured that many times and reported by
its median run by samples/s, with the spread over the runs (``bench.stats``);
the search decides on the median run's AU.

``read_delay_s`` adds a sleep to every sample read: a throttle to emulate a
slower tier (and the tests' way to starve the accelerators on purpose).
"""

from __future__ import annotations

import dataclasses
import math
import queue
import random
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from bench.objects import percentile
from bench.dataloader.samples import CACHES, Dataset, cache_warning
from bench.stats import median_index, spread, spread_warning
from tiering.core.errors import UserError

#: MLPerf Storage: a tier "feeds" an accelerator while AU stays at or above this.
AU_TARGET = 0.9


@dataclass(frozen=True, slots=True)
class Pipeline:
    """The training job being emulated."""

    batch: int = 32
    compute_s: float = 0.05
    epochs: int = 1
    prefetch: int = 2  # batches queued per reader worker (PyTorch's prefetch_factor)
    min_steps: int = 8  # per rank, so many-accelerator points still measure something
    read_delay_s: float = 0.0
    seed: int = 0
    cache: str = "cold"  # cold: the dataset is evicted from this host's page cache before every point; warm: filled once

    def steps(self, count: int, accelerators: int) -> int:
        """Steps per rank: its share of ``epochs`` passes (drop_last), at least ``min_steps``."""
        return max(self.min_steps, self.epochs * count // (accelerators * self.batch))

    @property
    def demand(self) -> float:
        """Samples/s one accelerator consumes at 100 % AU."""
        return self.batch / self.compute_s if self.compute_s > 0 else math.inf


@dataclass(frozen=True, slots=True)
class LoadPoint:
    """One measured (reader workers, accelerators) point."""

    workers: int  # reader workers per accelerator
    accelerators: int
    steps: int  # per accelerator
    samples: int  # consumed, all ranks
    bytes: int
    seconds: float
    au: float  # mean over ranks, 0..1
    lat_mean: float  # one sample read
    lat_p50: float
    lat_p99: float
    lat_p999: float
    repeats: int = 1  # runs of this point; the figures are the median run's (by samples/s)
    spread: float | None = None  # (max − min) / median samples/s over the runs; None for one run

    @property
    def samples_s(self) -> float:
        return self.samples / self.seconds if self.seconds else 0.0

    @property
    def bw_bytes_s(self) -> float:
        return self.bytes / self.seconds if self.seconds else 0.0


def sweep(
    dataset: Dataset,
    pipeline: Pipeline,
    workers: Sequence[int],
    *,
    max_accelerators: int = 64,
    on_point: Callable[[LoadPoint], None] | None = None,
    measure: Measure | None = None,
    repeats: int = 1,
    on_run: Callable[[LoadPoint], None] | None = None,
) -> Iterator[LoadPoint]:
    """For each reader-worker count, the accelerator search (see the module docstring)."""
    for w in workers:
        yield from search(dataset, pipeline, w, max_accelerators=max_accelerators, on_point=on_point, measure=measure,
                          repeats=repeats, on_run=on_run)


#: How one point is measured: ``(dataset, pipeline, workers, accelerators) -> LoadPoint``.
Measure = Callable[..., "LoadPoint"]


def search(dataset: Dataset, pipeline: Pipeline, workers: int, *, max_accelerators: int = 64,
           on_point: Callable[[LoadPoint], None] | None = None, measure: Measure | None = None,
           repeats: int = 1, on_run: Callable[[LoadPoint], None] | None = None) -> Iterator[LoadPoint]:
    """Double k until AU < target (or the cap), then bisect between the last good and first bad k.

    ``measure`` runs one point: this module's ``run_point`` (the storage path only) unless given;
    it runs ``repeats`` times per point, ``on_run`` seeing every run, ``on_point`` the median.
    """
    def measured(k: int) -> LoadPoint:
        runs = []
        for _ in range(repeats):
            runs.append((measure or run_point)(dataset, pipeline, workers, k))
            if on_run:
                on_run(runs[-1])
        return median_run(runs)

    good, bad, k = 0, None, 1
    while bad is None and k <= max_accelerators:
        point = measured(k)
        if on_point:
            on_point(point)
        yield point
        if point.au < AU_TARGET:
            bad = k
        else:
            good = k
            k = max_accelerators if k < max_accelerators < 2 * k else 2 * k
    while bad is not None and bad - good > 1:
        k = (good + bad) // 2
        point = measured(k)
        if on_point:
            on_point(point)
        yield point
        good, bad = (k, bad) if point.au >= AU_TARGET else (good, k)


def median_run(runs: Sequence[LoadPoint]) -> LoadPoint:
    """The run with the median samples/s, carrying the number of runs and their spread."""
    rates = [p.samples_s for p in runs]
    return dataclasses.replace(runs[median_index(rates)], repeats=len(runs), spread=spread(rates))


def fed(points: Sequence[LoadPoint]) -> int:
    """The largest accelerator count measured at AU >= 0.9 (0 if none)."""
    return max((p.accelerators for p in points if p.au >= AU_TARGET), default=0)


def fed_by_workers(rows: Sequence[dict]) -> dict[int, int]:
    """From result rows: accelerators fed at AU >= 0.9, per reader-worker count (``numjobs``)."""
    out: dict[int, int] = {}
    for r in rows:
        out[r["numjobs"]] = max(out.get(r["numjobs"], 0), r["accelerators"] if r["au"] >= AU_TARGET else 0)
    return out


def point_row(point: LoadPoint, pipeline: Pipeline, dataset: Dataset, *, campaign: str, tier: str,
              warning: str | None = None) -> dict:
    """One point as a row of ``bench.results.SCHEMA`` (engine ``dataloader``, op ``load``).

    The profile names the mode and the emulated job (``storage-path-b<batch>-<compute>ms``)
    so campaigns with different steps or modes are never mixed; ``numjobs`` is the reader
    workers per accelerator and ``iops`` equals ``samples_s``.
    """
    return {
        "campaign": campaign, "engine": "dataloader", "tier": tier, "target": dataset.target,
        "profile": profile_name(pipeline), "op": "load", "block_size": dataset.size, "numjobs": point.workers,
        "runtime_s": point.seconds, "bytes": point.bytes, "bw_bytes_s": point.bw_bytes_s,
        "iops": point.samples_s, "samples_s": point.samples_s, "au": point.au, "accelerators": point.accelerators,
        "lat_mean_s": point.lat_mean, "lat_p50_s": point.lat_p50, "lat_p99_s": point.lat_p99,
        "lat_p999_s": point.lat_p999, "repeats": point.repeats, "spread": point.spread,
        "warning": "; ".join(w for w in (warning, spread_warning(point.spread)) if w) or None,
    }


def profile_name(pipeline: Pipeline) -> str:
    """Names the mode (the storage path only), the emulated job and a warm cache, so different runs are never one series."""
    warm = "-warm" if pipeline.cache == "warm" else ""
    return f"storage-path-b{pipeline.batch}-{pipeline.compute_s * 1e3:g}ms{warm}"


def run_point(dataset: Dataset, pipeline: Pipeline, workers: int, accelerators: int) -> LoadPoint:
    """Run ``accelerators`` ranks with ``workers`` readers each, all at once; one point (a cold one starts evicted)."""
    if pipeline.cache == "cold":
        dataset.evict()
    steps = pipeline.steps(dataset.count, accelerators)
    stop = threading.Event()
    ranks = [_Rank(dataset, pipeline, batches, workers, stop)
             for batches in _shards(dataset.count, accelerators, steps, pipeline)]
    start = time.perf_counter()
    threads = [t for rank in ranks for t in rank.start()]
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    errors = [rank.error for rank in ranks if rank.error is not None]
    if errors:
        raise errors[0]
    latencies = [lat for rank in ranks for lat in rank.latencies]
    return LoadPoint(
        workers, accelerators, steps, steps * pipeline.batch * accelerators, sum(r.bytes for r in ranks), seconds,
        statistics.fmean(r.au for r in ranks), statistics.fmean(latencies) if latencies else 0.0,
        percentile(latencies, 0.5), percentile(latencies, 0.99), percentile(latencies, 0.999),
    )


def _shards(count: int, accelerators: int, steps: int, pipeline: Pipeline) -> list[list[list[int]]]:
    """Each rank's first ``steps`` batches: its shard of each epoch's shuffled order, epoch after epoch."""
    need = steps * pipeline.batch
    indices: list[list[int]] = [[] for _ in range(accelerators)]
    epoch = 0
    while min(len(i) for i in indices) < need:
        order = list(range(count))
        random.Random(pipeline.seed * 1_000_003 + epoch).shuffle(order)  # one order per epoch, shared by the ranks
        for rank, mine in enumerate(indices):
            mine += order[rank % count :: accelerators]
        epoch += 1
    return [[mine[i * pipeline.batch : (i + 1) * pipeline.batch] for i in range(steps)] for mine in indices]


class _Rank:
    """One emulated accelerator: reader threads, a bounded batch queue, a consumer."""

    def __init__(self, dataset: Dataset, pipeline: Pipeline, batches: list[list[int]], workers: int,
                 stop: threading.Event) -> None:
        self.dataset, self.pipeline, self.workers, self.stop = dataset, pipeline, workers, stop
        self.steps = len(batches)
        self.jobs: queue.SimpleQueue[list[int]] = queue.SimpleQueue()
        for batch in batches:
            self.jobs.put(batch)
        self.ready: queue.Queue[int | Exception] = queue.Queue(maxsize=pipeline.prefetch * workers)
        self.latencies: list[float] = []
        self.bytes, self.compute, self.wait = 0, 0.0, 0.0
        self.error: Exception | None = None

    @property
    def au(self) -> float:
        busy = self.compute + self.wait
        return self.compute / busy if busy else 0.0

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._read, name=f"loader-{i}", daemon=True) for i in range(self.workers)]
        threads.append(threading.Thread(target=self._consume, name="accelerator", daemon=True))
        for t in threads:
            t.start()
        return threads

    def _read(self) -> None:
        while not self.stop.is_set():
            try:
                batch = self.jobs.get_nowait()
            except queue.Empty:
                return
            try:
                item: int | Exception = sum(self._load(i) for i in batch)
            except Exception as exc:  # noqa: BLE001 - handed to the consumer; run_point re-raises it
                item = exc
            self._offer(item)

    def _load(self, index: int) -> int:
        t = time.perf_counter()
        if self.pipeline.read_delay_s:
            time.sleep(self.pipeline.read_delay_s)
        n = self.dataset.read(index)
        self.latencies.append(time.perf_counter() - t)  # list.append is atomic under the GIL
        return n

    def _offer(self, item: int | Exception) -> None:
        while not self.stop.is_set():
            try:
                self.ready.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def _consume(self) -> None:
        for step in range(self.steps):
            t = time.perf_counter()
            item = self._take()
            if item is None:
                return  # another rank failed
            if isinstance(item, Exception):
                self.error = item
                self.stop.set()
                return
            if step:  # the first wait fills the pipeline: paid once per job, not per step
                self.wait += time.perf_counter() - t
            self.bytes += item
            t = time.perf_counter()
            time.sleep(self.pipeline.compute_s)
            self.compute += time.perf_counter() - t

    def _take(self) -> int | Exception | None:
        while not self.stop.is_set():
            try:
                return self.ready.get(timeout=0.05)
            except queue.Empty:
                continue
        return None


def run(dataset: Dataset, pipeline: Pipeline, workers: Sequence[int], *, campaign: str, tier: str,
        max_accelerators: int = 64, keep_dataset: bool = False,
        on_point: Callable[[LoadPoint], None] | None = None, repeats: int = 1,
        on_run: Callable[[LoadPoint], None] | None = None) -> list[dict]:
    """One campaign: create the dataset if missing, sweep, return its rows (``bench.results.SCHEMA``).

    A dataset this call created is removed afterwards unless ``keep_dataset``;
    one that was already there is left as found.
    """
    check_options(pipeline, repeats)
    created = dataset.ensure()
    if pipeline.cache == "warm":
        dataset.warm()
    warning = cache_warning(dataset, pipeline.cache)
    try:
        return [point_row(p, pipeline, dataset, campaign=campaign, tier=tier, warning=warning)
                for p in sweep(dataset, pipeline, workers, max_accelerators=max_accelerators, on_point=on_point,
                               repeats=repeats, on_run=on_run)]
    finally:
        if created and not keep_dataset:
            dataset.remove()


def check_options(pipeline: Pipeline, repeats: int) -> None:
    """A bad cache mode or repeat count as one ``UserError`` naming the option, before anything is created."""
    if pipeline.cache not in CACHES:
        raise UserError(f"--cache: {pipeline.cache!r}: expected one of {', '.join(CACHES)}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise UserError(f"--repeats: expected a positive whole number; got {repeats!r}")
