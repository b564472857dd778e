"""DLIO-faithful dataloader emulation: the costs MLPerf Storage charges that the storage path alone does not.

``bench.dataloader.emulate`` measures the *storage path only*: reader threads
read raw bytes and hand their sizes to a consumer. MLPerf Storage's DLIO, on a
PyTorch workload, also pays for every sample's decode, the collation of a
batch into one array, the hand-off of that array from a reader process to the
training process through shared memory, one process per accelerator with a
barrier every step, and the readers' start-up inside the first step. On a host
short of CPU those costs, not the tier, starve the accelerators; this module
charges them the same way:

- *samples in a format* (``FORMATS``): ``npz`` files (a ``uint8`` array ``x``
  and a label ``y``, written with ``numpy.savez`` as DLIO's npz generator
  does) decoded with ``numpy.load``, or ``raw`` files read into an array;
- *one process per accelerator* (rank), each starting ``workers`` reader
  *processes* at the start of the point (PyTorch's non-persistent workers);
  worker ``w`` builds the rank's batches ``w, w + W, ...`` and the rank takes
  them in order; a worker has at most ``prefetch`` batches built or being
  built (``prefetch_factor``: PyTorch hands a worker its next index only when
  the training process takes one of its batches);
- *collation into shared memory*: a worker stacks a batch's decoded samples
  into a fresh, already unlinked shared-memory segment (as PyTorch's collate
  does in a worker) and passes its descriptor as PyTorch's default
  ``file_descriptor`` sharing strategy does (``multiprocessing.reduction.DupFd``:
  the rank fetches it from the worker's resource-sharer thread over a Unix
  socket); the rank maps it and drops it after the step;
- *a barrier per step* across ranks (``multiprocessing.Barrier``), after the
  emulated compute (a sleep of ``compute_s``);
- *DLIO 2.0's index-map formatting*: its reader (``FormatReader.read_index``)
  formats the rank's whole sample index map, ``{global sample: (path, sample
  in file)}`` over ``ceil(files / ranks)`` samples, for a ``logging.debug``
  call on every sample it reads, debug logging on or not; a reader here
  formats a map of the same shape before each sample (``index_map``; off:
  ``run_point(..., dlio_index=False)``). It is DLIO's overhead rather than the
  storage's, but it is CPU the readers spend, and MLPerf Storage's AU pays it:
  at 2,000 files on this kind of host about 0.65 ms per sample;
- *AU and samples/s as DLIO 2.0 computes them* (``StatsCounter.compute_metrics_train``):
  the clock starts before the readers do; ``AU = (steps − 1) · compute_s /
  (end − start − first step)``, where the first step (which holds the
  readers' start-up) runs from the start to the end of its compute, its
  barrier wait not included (DLIO times a step before its barrier), and the
  end is after the last barrier; samples/s counts *every* step over the whole
  wall time, ``steps · batch / (end − start)`` per rank, summed over ranks
  (DLIO's allreduce), so a point's ``seconds`` is the ranks' harmonic mean
  wall time.

Only hot-tier (local file) datasets are read this way: reader processes fork
from the rank, and a capacity tier's open connections do not survive a fork.
"""

from __future__ import annotations

import math
import mmap
import multiprocessing as mp
import os
import queue
import shutil
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from multiprocessing.reduction import DupFd
from pathlib import Path

import numpy as np

from bench.dataloader.emulate import LoadPoint, Pipeline, _shards
from bench.objects import percentile
from tiering.core.errors import UserError

FORMATS = ("npz", "raw")
#: Where batches are handed over: tmpfs shared memory, as PyTorch's file-descriptor strategy uses.
SHM_DIR = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
_SHM_PREFIX = "tiering-dl-"
_TIMEOUT_S = 120.0  # a rank or worker silent this long has failed


@dataclass(frozen=True)
class SampleFiles:
    """``count`` samples of about ``size`` bytes each, one file per sample, in ``fmt``."""

    root: Path
    count: int
    size: int
    fmt: str = "npz"
    names: tuple[str, ...] = ()  # existing files to read (another tool's data set); empty: ours, sample-NNNNNN

    @classmethod
    def existing(cls, root: Path, fmt: str = "npz") -> "SampleFiles":
        """The ``*.npz`` (or raw ``*.bin``) files already in ``root`` (e.g. DLIO's generator's), in name order."""
        suffix = "npz" if fmt == "npz" else "bin"
        names = tuple(sorted(p.name for p in Path(root).glob(f"*.{suffix}")))
        if not names:
            raise UserError(f"{root}: no *.{suffix} sample files in it")
        return cls(Path(root), len(names), (Path(root) / names[0]).stat().st_size, fmt, names)

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            raise UserError(f"--format: {self.fmt!r}: expected one of {', '.join(FORMATS)}")

    @property
    def target(self) -> str:
        return str(self.root)

    @property
    def shape(self) -> tuple[int, ...]:
        """One decoded sample's shape: a square image for npz (DLIO's records are dim x dim), flat for raw."""
        if self.fmt == "npz":
            side = max(1, int(self.size ** 0.5))
            return (side, side)
        return (self.size,)

    def path(self, index: int) -> Path:
        if self.names:
            return self.root / self.names[index]
        return self.root / f"sample-{index:06d}.{'npz' if self.fmt == 'npz' else 'bin'}"

    def ensure(self) -> bool:
        """Write missing samples (random pixels); True when any had to be written (never for ``existing``)."""
        if self.names:
            return False
        self.root.mkdir(parents=True, exist_ok=True)
        rng, created = np.random.default_rng(0), False
        for i in range(self.count):
            path = self.path(i)
            if path.is_file():
                continue
            pixels = rng.integers(0, 255, size=self.shape, dtype=np.uint8)
            tmp = path.with_name(f".{path.name}.tmp")
            with open(tmp, "wb") as f:
                if self.fmt == "npz":
                    np.savez(f, x=pixels, y=np.zeros(1, dtype=np.uint8))
                else:
                    f.write(pixels.tobytes())
            os.replace(tmp, path)
            created = True
        return created

    def decode(self, index: int) -> np.ndarray:
        """Read and decode one sample, as DLIO's reader for the format does."""
        if self.fmt == "npz":
            with np.load(self.path(index)) as archive:
                return archive["x"]
        return np.fromfile(self.path(index), dtype=np.uint8)

    def file_bytes(self) -> int:
        """Bytes one sample occupies on the tier (npz adds a header)."""
        return self.path(0).stat().st_size

    def evict(self) -> None:
        from bench.dataloader.samples import _drop_cache

        for i in range(self.count):
            _drop_cache(self.path(i))

    def warm(self) -> None:
        for i in range(self.count):
            self.path(i).read_bytes()

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        try:
            self.root.parent.rmdir()  # the shared bench folder, once no data set is left in it (as HotDataset)
        except OSError:
            pass


def run_point(files: SampleFiles, pipeline: Pipeline, workers: int, accelerators: int, *,
              dlio_index: bool = True) -> LoadPoint:
    """``accelerators`` rank processes, each with ``workers`` reader processes; one point.

    Raises the first failure of a worker or rank (an ``OSError`` for a missing
    sample); every process is gone and every shared-memory segment removed
    when it returns or raises.
    """
    if pipeline.cache == "cold":
        files.evict()
    steps = max(2, pipeline.steps(files.count, accelerators))  # the first step is not measured
    ctx = mp.get_context("fork")
    tag = f"{_SHM_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}-"
    barrier, results = ctx.Barrier(accelerators), ctx.Queue()
    share = math.ceil(files.count / accelerators) if dlio_index else 0  # samples in a rank's DLIO index map
    ranks = [ctx.Process(target=_rank, args=(files, pipeline, batches, workers, barrier, results, f"{tag}{r}-", share),
                         name=f"accelerator-{r}", daemon=False)
             for r, batches in enumerate(_shards(files.count, accelerators, steps, pipeline))]
    try:
        for p in ranks:
            p.start()
        reports = _collect(results, ranks, barrier)
    finally:
        _stop(ranks)
        for leftover in SHM_DIR.glob(f"{tag}*"):
            leftover.unlink(missing_ok=True)
    window = accelerators / sum(1 / r["wall"] for r in reports)  # samples / window = the ranks' rates summed
    latencies = [lat for r in reports for lat in r["latencies"]]
    samples = accelerators * steps * pipeline.batch
    return LoadPoint(workers, accelerators, steps, samples, samples * files.file_bytes(), window,
                     statistics.fmean(r["au"] for r in reports), statistics.fmean(latencies) if latencies else 0.0,
                     percentile(latencies, 0.5), percentile(latencies, 0.99), percentile(latencies, 0.999))


def _collect(results, ranks, barrier) -> list[dict]:
    reports: list[dict] = []
    while len(reports) < len(ranks):
        try:
            report = results.get(timeout=_TIMEOUT_S)
        except queue.Empty:
            barrier.abort()
            raise TimeoutError(f"a dataloader rank sent nothing for {_TIMEOUT_S:g}s") from None
        if isinstance(report, BaseException):
            barrier.abort()  # the other ranks wait at the barrier: release them
            raise report
        reports.append(report)
    return reports


def _stop(processes) -> None:
    for p in processes:
        p.join(timeout=_TIMEOUT_S if p.exitcode is None else 0)
        if p.is_alive():
            p.kill()
            p.join()


def _rank(files: SampleFiles, pipeline: Pipeline, batches: list[list[int]], workers: int, barrier, results,
          tag: str, share: int = 0) -> None:
    """One accelerator: start the readers, then take, map, compute, barrier, step after step."""
    ctx = mp.get_context("fork")
    inboxes = [ctx.Queue() for _ in range(workers)]
    prefetch = max(1, pipeline.prefetch)
    slots = [ctx.Semaphore(prefetch) for _ in range(workers)]
    readers = [ctx.Process(target=_reader, args=(files, batches[w::workers], inboxes[w], slots[w], prefetch, f"{tag}{w}-",
                                                 share),
                           name=f"loader-{w}", daemon=True) for w in range(workers)]
    try:
        started = time.perf_counter()
        for p in readers:
            p.start()
        first_step, latencies = 0.0, []
        for step in range(len(batches)):
            got = inboxes[step % workers].get(timeout=_TIMEOUT_S)
            if isinstance(got, BaseException):
                raise got
            segment, nbytes, shape, lat = got
            fd = segment.detach()  # the descriptor, from the worker's resource sharer
            slots[step % workers].release()  # taken: that worker may start another batch (PyTorch sends an index)
            latencies += lat
            _hand_off(fd, nbytes, shape)
            time.sleep(pipeline.compute_s)
            if step == 0:
                first_step = time.perf_counter() - started  # before the barrier, as DLIO times a step
            barrier.wait(timeout=_TIMEOUT_S)
        end = time.perf_counter()
        nominal = (len(batches) - 1) * pipeline.compute_s
        window = end - started - first_step
        results.put({"au": min(1.0, nominal / window) if window > 0 else 0.0, "wall": end - started,
                     "latencies": latencies})
    except BaseException as exc:  # noqa: BLE001 - the parent re-raises it
        results.put(exc)
    finally:
        for p in readers:
            p.kill()
            p.join()


def _hand_off(fd: int, nbytes: int, shape: tuple[int, ...]) -> None:
    """Map a batch a reader left in shared memory, as the training process receives it; then release it."""
    try:
        with mmap.mmap(fd, nbytes) as region:
            batch = np.ndarray(shape, dtype=np.uint8, buffer=region)
            del batch  # the accelerator would consume it here; the emulated compute does not read it
    finally:
        os.close(fd)


def index_map(files: SampleFiles, share: int) -> dict[int, tuple[str, int]]:
    """A rank's sample index map as DLIO 2.0 holds it: ``{global sample: (absolute path, sample in file)}``."""
    return {i: (os.path.abspath(files.path(i)), 0) for i in range(share)}


def _reader(files: SampleFiles, batches: list[list[int]], inbox, slots, prefetch: int, tag: str,
            share: int = 0) -> None:
    """One reader process: for each batch, wait for a free slot, read and decode each sample (formatting
    the rank's index map first, as DLIO's reader does, when ``share``), collate the batch into fresh shared
    memory, send it."""
    try:
        index = index_map(files, share) if share else None
        for n, batch in enumerate(batches):
            if not slots.acquire(timeout=_TIMEOUT_S):
                raise TimeoutError(f"the training process took no batch for {_TIMEOUT_S:g}s")
            samples, lat = [], []
            for sample in batch:
                t = time.perf_counter()
                if index is not None:
                    f"{index}"  # noqa: B018 - DLIO's read_index formats it for a debug log: the cost is the point
                samples.append(files.decode(sample))
                lat.append(time.perf_counter() - t)
            shape = (len(samples), *samples[0].shape)
            nbytes = int(np.prod(shape))
            path = SHM_DIR / f"{tag}{n}"
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
            try:
                os.unlink(path)  # as PyTorch's segments: they live on their descriptors only
                os.ftruncate(fd, nbytes)
                with mmap.mmap(fd, nbytes) as region:
                    out = np.ndarray(shape, dtype=np.uint8, buffer=region)
                    np.stack(samples, out=out)  # collation: PyTorch's default_collate stacks into shared memory
                    del out
                segment = DupFd(fd)  # passed as PyTorch's file_descriptor strategy passes a storage
            finally:
                os.close(fd)
            inbox.put((segment, nbytes, shape, lat), timeout=_TIMEOUT_S)
        for _ in range(prefetch):  # stay until the rank has taken every batch: it fetches each descriptor from us
            slots.acquire(timeout=_TIMEOUT_S)
    except BaseException as exc:  # noqa: BLE001 - the rank re-raises it
        inbox.put(exc)


def profile_name(pipeline: Pipeline, fmt: str) -> str:
    """``dlio-<format>-b<batch>-<compute>ms[-warm]``: never one series with the storage-path-only mode."""
    warm = "-warm" if pipeline.cache == "warm" else ""
    return f"dlio-{fmt}-b{pipeline.batch}-{pipeline.compute_s * 1e3:g}ms{warm}"


def run(files: SampleFiles, pipeline: Pipeline, workers, *, campaign: str, tier: str, max_accelerators: int = 64,
        keep_dataset: bool = False, on_point=None, repeats: int = 1, on_run=None) -> list[dict]:
    """One DLIO-faithful campaign: create the samples if missing, search each worker count, return its rows.

    Each point runs ``repeats`` times (the median kept, see ``emulate.search``).
    """
    from bench.dataloader import emulate

    emulate.check_options(pipeline, repeats)
    created = files.ensure()
    if pipeline.cache == "warm":
        files.warm()
    warning = ("warm cache by request (--cache warm): reads are served from the page cache, not the tier"
               if pipeline.cache == "warm" else None)
    try:
        points = emulate.sweep(files, pipeline, workers, max_accelerators=max_accelerators, on_point=on_point,
                               measure=run_point, repeats=repeats, on_run=on_run)
        return [{**emulate.point_row(p, pipeline, files, campaign=campaign, tier=tier, warning=warning),
                 "profile": profile_name(pipeline, files.fmt)} for p in points]
    finally:
        if created and not keep_dataset:
            files.remove()


def open_files(config, tier: str, count: int, size: int, fmt: str) -> SampleFiles:
    """The hot tier's sample files for a DLIO-faithful run; a capacity tier is a usage error (see the module)."""
    from bench.dataloader.samples import BENCH_FOLDER, dataset_name

    if tier != "hot":
        raise UserError(f"--mode dlio reads files on the hot tier only (its reader processes fork); "
                        f"for tier {tier!r} use --mode storage")
    if not config.hot_path.is_dir():
        raise UserError(f"{config.path}: [hot] path: {config.hot_path} is not an existing directory")
    return SampleFiles(config.hot_path / BENCH_FOLDER / f"{dataset_name(count, size)}-{fmt}", count, size, fmt)
