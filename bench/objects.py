"""Object-tier sweeps through the Store layer: PUT and GET over size x concurrency.

Debian's fio has no S3 engine, so the capacity tiers are measured here, with
the same code paths the mover uses (``Store.put_file`` / ``get_file``, with
checksums and verification on). Each point uploads a set of local files with
``concurrency`` workers, downloads them again, and records per-operation
latencies so percentiles can be reported, not just means.
"""

from __future__ import annotations

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


def _percentile(values: Sequence[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


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
) -> Iterator[SweepPoint]:
    """Measure PUT then GET for every size x concurrency; objects are deleted after."""
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


def _point(op: str, size: int, concurrency: int, n: int, seconds: float, latencies: list[float]) -> SweepPoint:
    return SweepPoint(op, size, concurrency, n, seconds, _percentile(latencies, 0.5), _percentile(latencies, 0.99))


def _point_pair(store, files, keys, size, conc, tmp: Path, on_point) -> Iterator[SweepPoint]:
    out_dir = tmp / f"get-{size}-{conc}"
    try:
        for point in (measure_put(store, files, keys, conc), measure_get(store, keys, out_dir, conc, size)):
            if on_point:
                on_point(point)
            yield point
    finally:
        with ThreadPoolExecutor(max(conc, 8)) as pool:
            list(pool.map(store.delete, keys))
        shutil.rmtree(out_dir, ignore_errors=True)
