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

from tiering.stores.base import FileMeta, Store
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


def _timed_map(fn: Callable[[int], None], n: int, concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []

    def one(i: int) -> None:
        t = time.perf_counter()
        fn(i)
        latencies.append(time.perf_counter() - t)

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
) -> Iterator[SweepPoint]:
    """Measure PUT then GET for every size x concurrency, then (``epoch_objects > 0``)
    a list+GET epoch over that many ``epoch_size`` objects per concurrency.

    Every object written is deleted again, also when a point fails.
    """
    run = f"tiering-bench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="tiering-bench-", dir=workdir) as tmp:
        for size in sizes:
            n = objects_for(size, total_bytes)
            src_dir = Path(tmp) / f"src-{size}"
            files = make_files(src_dir, size, n)
            for conc in concurrencies:
                keys = [encode_key(f"{run}/{size}/c{conc}/{i:06d}") for i in range(n)]
                yield from _point_pair(store, files, keys, size, conc, Path(tmp), on_point)
            for path in files:
                path.unlink()
        if epoch_objects > 0:
            files = make_files(Path(tmp) / "epoch", epoch_size, epoch_objects)
            yield from epoch_pass(store, files, f"{run}/epoch/", concurrencies, on_point)


def epoch_pass(
    store: Store,
    files: Sequence[Path],
    prefix: str,
    concurrencies: Sequence[int],
    on_point: Callable[[SweepPoint], None] | None = None,
) -> Iterator[SweepPoint]:
    """Upload ``files`` under ``prefix`` once, then per concurrency list the prefix
    and GET every listed object (one ``list+get`` point each); deleted after."""
    keys = [encode_key(f"{prefix}{i:06d}") for i in range(len(files))]
    try:
        measure_put(store, files, keys, max(concurrencies))  # setup, not a point
        for conc in concurrencies:
            point = _list_and_get(store, prefix, conc, files[0].stat().st_size)
            if on_point:
                on_point(point)
            yield point
    finally:
        _delete(store, keys, max(concurrencies))


def _list_and_get(store: Store, prefix: str, concurrency: int, size: int) -> SweepPoint:
    start = time.perf_counter()
    listed = [(info.key, info.size) for info in store.list(prefix)]
    listing = time.perf_counter() - start

    def get(i: int) -> None:
        store.read_range(listed[i][0], 0, listed[i][1])

    seconds, latencies = _timed_map(get, len(listed), concurrency)
    return _point("list+get", size, concurrency, len(listed), listing + seconds, latencies)


def measure_put(store: Store, files: Sequence[Path], keys: Sequence[str], concurrency: int) -> SweepPoint:
    """Upload ``files[i]`` as ``keys[i]`` with ``concurrency`` workers; one point."""

    def put(i: int) -> None:
        store.put_file(files[i], keys[i], FileMeta.from_stat(files[i].stat(), keys[i]))

    return _point("put", files[0].stat().st_size, concurrency, len(keys), *_timed_map(put, len(keys), concurrency))


def measure_get(store: Store, keys: Sequence[str], out_dir: Path, concurrency: int, size: int) -> SweepPoint:
    """Download every key into its own file under ``out_dir`` (verified); one point."""
    out_dir.mkdir(parents=True, exist_ok=True)

    def get(i: int) -> None:
        store.get_file(keys[i], out_dir / f"{i:06d}")

    return _point("get", size, concurrency, len(keys), *_timed_map(get, len(keys), concurrency))


def measure_ttfb(store: Store, keys: Sequence[str], concurrency: int) -> list[float]:
    """Seconds to the first byte of each key: one ``read_range(key, 0, 1)`` each."""
    return _timed_map(lambda i: store.read_range(keys[i], 0, 1), len(keys), concurrency)[1]


def _point(op: str, size: int, concurrency: int, n: int, seconds: float, latencies: list[float]) -> SweepPoint:
    return SweepPoint(
        op, size, concurrency, n, seconds, percentile(latencies, 0.5), percentile(latencies, 0.99),
        lat_mean=statistics.fmean(latencies) if latencies else 0.0, lat_p999=percentile(latencies, 0.999),
    )


def _point_pair(store, files, keys, size, conc, tmp: Path, on_point) -> Iterator[SweepPoint]:
    out_dir = tmp / f"get-{size}-{conc}"
    try:
        put = measure_put(store, files, keys, conc)
        get = measure_get(store, keys, out_dir, conc, size)
        ttfb = measure_ttfb(store, keys[:TTFB_PROBES], conc)
        get = dataclasses.replace(get, ttfb_p50=percentile(ttfb, 0.5), ttfb_p99=percentile(ttfb, 0.99))
        for point in (put, get):
            if on_point:
                on_point(point)
            yield point
    finally:
        _delete(store, keys, conc)
        shutil.rmtree(out_dir, ignore_errors=True)


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
    }
