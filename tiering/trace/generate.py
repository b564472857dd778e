"""Synthetic traces of training workloads, with the inventory they run over.

``generate(Workload(...))`` returns ``(inventory, trace)``: the inventory as a
scan would have written it (``tiering.core.inventory.SCHEMA``) and the trace
(``tiering.trace.SCHEMA``), oldest access first. What it models:

- **datasets** (``datasets/ds-NNNN/shard-NNNNNN.tar``, each with a ``.dataset``
  marker file) of lognormal shard counts, one shard size per dataset. Jobs
  arrive at random through the trace; each picks a dataset by Zipf popularity
  (a few shared datasets take most jobs), reads it for one to ``max_epochs``
  epochs, every shard once per epoch in a fresh shuffled order, at a steady
  pace; a share of jobs (``partial_jobs``) read only a part of their dataset
  (an evaluation split, a subset run);
- **checkpoints** (``runs/run-NNNN/checkpoints/step-NNNNNN/part-N.pt``),
  written every few hours by each run and rarely read again
  (``checkpoint_reads``: the share of checkpoints a resume reads, within a day).

Everything is drawn from one seeded generator (``seed``), vectorised: ten
million accesses over a million files take seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from tiering.core.inventory import SCHEMA as INVENTORY
from tiering.trace.schema import HOT, KINDS, READ, SCHEMA, WRITE

NS = 1_000_000_000
DAY = 86400 * NS
MIB = 1 << 20
#: The marker file naming a dataset's folder (policies may declare datasets by it).
MARKER = ".dataset"


@dataclass(frozen=True)
class Workload:
    """The knobs of a synthetic training workload (see the module docstring)."""

    files: int = 100_000  # about this many files in the inventory (datasets + checkpoints)
    accesses: int = 1_000_000  # about this many accesses in the trace
    days: float = 30.0
    start_ns: int = 1_767_225_600 * NS  # 2026-01-01T00:00:00Z
    checkpoint_share: float = 0.05  # of the files
    checkpoint_parts: int = 4  # files per checkpoint
    checkpoint_every: float = 4 * 3600.0  # seconds between a run's checkpoints
    checkpoint_reads: float = 0.05  # share of checkpoints read back (a resume), within a day
    shards_per_dataset: float = 2000.0  # median
    zipf: float = 1.1  # dataset popularity exponent
    max_epochs: int = 4
    partial_jobs: float = 0.3  # share of jobs reading only part of their dataset
    epoch_hours: float = 3.0  # median time an epoch of a whole dataset takes
    shard_mib: tuple[float, float] = (16.0, 256.0)  # shard sizes drawn log-uniformly in this range
    seed: int = 0


def generate(w: Workload) -> tuple[pa.Table, pa.Table]:
    """``(inventory, trace)`` for workload ``w``."""
    rng = np.random.default_rng(w.seed)
    sets = _datasets(w, rng)
    n_ckpt_files = int(w.files * w.checkpoint_share)
    end = w.start_ns + int(w.days * DAY)
    ckpt = _checkpoints(w, rng, n_ckpt_files, end)
    data_paths, data_sizes = _dataset_files(sets)
    paths = data_paths + ckpt["paths"]
    sizes = np.concatenate([data_sizes, ckpt["sizes"]])
    n = len(paths)
    old = w.start_ns - rng.integers(30 * DAY, 365 * DAY, n)
    mtime = np.concatenate([old[:len(data_paths)], ckpt["written"]])
    atime = np.maximum(mtime, w.start_ns - rng.integers(DAY, 60 * DAY, n))
    inventory = pa.table({
        "path": pa.array(paths, pa.binary()),
        "type": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int8)), pa.array(["file"])),
        "size": sizes, "blocks": (sizes + 4095) // 4096 * 8,
        "mode": pa.array(np.full(n, 0o100644, np.uint32)), "uid": pa.array(np.full(n, 1000, np.uint32)),
        "gid": pa.array(np.full(n, 1000, np.uint32)),
        "atime_ns": atime, "mtime_ns": mtime, "ctime_ns": mtime,
        "ino": pa.array(np.arange(1, n + 1, dtype=np.uint64)), "nlink": pa.array(np.ones(n, np.uint32)),
    }, schema=INVENTORY)
    reads = _jobs(w, rng, sets, end)
    first_ckpt = len(data_paths)
    ids = np.concatenate([reads[0], first_ckpt + ckpt["write_ids"], first_ckpt + ckpt["read_ids"]])
    times = np.concatenate([reads[1], ckpt["write_times"], ckpt["read_times"]])
    kinds = np.concatenate([np.full(len(reads[0]), KINDS.index(READ), np.int8),
                            np.full(len(ckpt["write_ids"]), KINDS.index(WRITE), np.int8),
                            np.full(len(ckpt["read_ids"]), KINDS.index(READ), np.int8)])
    keep = (times >= w.start_ns) & (times < end)
    ids, times, kinds = ids[keep], times[keep], kinds[keep]
    order = np.argsort(times, kind="stable")
    ids, times, kinds = ids[order], times[order], kinds[order]
    trace = pa.table([
        pa.array(times, pa.int64()),
        pa.DictionaryArray.from_arrays(pa.array(ids.astype(np.int32)), inventory["path"].combine_chunks()),
        pa.array(sizes[ids], pa.int64()),
        pa.DictionaryArray.from_arrays(pa.array(kinds), pa.array(KINDS)),
        pa.DictionaryArray.from_arrays(pa.array(np.zeros(len(ids), np.int8)), pa.array([HOT])),
    ], schema=_dictionary_schema())
    return inventory, trace


def _dictionary_schema() -> pa.Schema:
    """The trace schema with ``path`` dictionary-encoded (how ``read_trace`` gives it back)."""
    return SCHEMA.set(1, pa.field("path", pa.dictionary(pa.int32(), pa.binary()), nullable=False))


@dataclass(frozen=True)
class _Sets:
    shards: np.ndarray  # shards per dataset
    shard_size: np.ndarray  # bytes
    first: np.ndarray  # file id of each dataset's first shard (its marker is the id before)
    weight: np.ndarray  # popularity (sums to 1)


def _datasets(w: Workload, rng: np.random.Generator) -> _Sets:
    budget = int(w.files * (1 - w.checkpoint_share))
    counts = []
    while sum(counts) < budget:
        counts.append(max(1, int(rng.lognormal(np.log(w.shards_per_dataset), 1.0))))
    counts[-1] -= sum(counts) - budget
    if counts[-1] < 1:
        counts.pop()
    shards = np.array(counts or [1], np.int64)
    lo, hi = np.log(w.shard_mib[0] * MIB), np.log(w.shard_mib[1] * MIB)
    size = np.exp(rng.uniform(lo, hi, len(shards))).astype(np.int64)
    first = np.cumsum(np.concatenate([[0], shards[:-1] + 1])) + 1  # after each dataset's marker
    rank = rng.permutation(len(shards)) + 1  # popularity is not the order of creation
    weight = 1.0 / rank ** w.zipf
    return _Sets(shards, size, first, weight / weight.sum())


def _dataset_files(sets: _Sets) -> tuple[list[bytes], np.ndarray]:
    paths, sizes = [], []
    for d, (count, size) in enumerate(zip(sets.shards.tolist(), sets.shard_size.tolist())):
        base = f"datasets/ds-{d:04d}/"
        paths.append(f"{base}{MARKER}".encode())
        paths.extend(f"{base}shard-{i:06d}.tar".encode() for i in range(count))
        sizes.append(np.concatenate([[64], np.full(count, size, np.int64)]))
    return paths, np.concatenate(sizes)


def _jobs(w: Workload, rng: np.random.Generator, sets: _Sets, end: int) -> tuple[np.ndarray, np.ndarray]:
    """(file ids, times) of every dataset read of the jobs."""
    ids, times, total = [], [], 0
    span = end - w.start_ns
    while total < w.accesses:
        d = int(rng.choice(len(sets.shards), p=sets.weight))
        count = int(sets.shards[d])
        take = count if rng.random() >= w.partial_jobs else max(1, int(count * rng.uniform(0.05, 0.5)))
        subset = rng.choice(count, take, replace=False) if take < count else None
        epochs = int(rng.integers(1, w.max_epochs + 1))
        per_epoch = rng.lognormal(np.log(w.epoch_hours * 3600), 0.5) * NS * take / count
        start = w.start_ns + int(rng.integers(-span // 10, span))
        order = np.concatenate([rng.permutation(take) for _ in range(epochs)])
        chosen = order if subset is None else subset[order]
        ids.append(sets.first[d] + chosen)
        times.append(start + (np.arange(len(order)) * (per_epoch / take)).astype(np.int64))
        total += int(np.count_nonzero((times[-1] >= w.start_ns) & (times[-1] < end)))
    return np.concatenate(ids), np.concatenate(times)


def _checkpoints(w: Workload, rng: np.random.Generator, n_files: int, end: int) -> dict:
    """Checkpoint files, when each is written, and the few reads back."""
    parts = max(1, w.checkpoint_parts)
    count = max(0, n_files // parts)
    every = int(w.checkpoint_every * NS)
    per_run = max(1, int((end - w.start_ns) // every))
    runs = max(1, -(-count // per_run))
    run = np.arange(count) // per_run
    step = np.arange(count) % per_run
    offset = rng.integers(0, every, runs)
    written = w.start_ns + offset[run] + step * every  # some land after the end: never written in the trace
    paths = [f"runs/run-{r:04d}/checkpoints/step-{s:06d}/part-{p}.pt".encode()
             for r, s in zip(run.tolist(), step.tolist()) for p in range(parts)]
    sizes = np.exp(rng.uniform(np.log(64 * MIB), np.log(2048 * MIB), count)).astype(np.int64).repeat(parts)
    file_written = written.repeat(parts)
    read = rng.random(count) < w.checkpoint_reads
    read_files = (np.flatnonzero(read)[:, None] * parts + np.arange(parts)).ravel()
    read_times = file_written[read_files] + rng.integers(3600 * NS, DAY, len(read_files))
    return {"paths": paths, "sizes": sizes, "written": file_written,
            "write_ids": np.arange(count * parts), "write_times": file_written,
            "read_ids": read_files, "read_times": read_times}
