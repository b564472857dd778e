"""The out-of-core plan on a Dask distributed cluster: ``tiering plan --executor dask://HOST:PORT``.

The coordinator buckets the catalog state into spill files beside the snapshot
(``outofcore.spilled``: the catalog is read here, once, as a stream); then each
partition is one task: a worker reads that inventory partition and its bucket's
spill files, plans them and cuts the result down to what can still be in the
plan (``outofcore.plan_bucket``: every action of an uncapped rule, and the
bounded running prefixes of capped rules and the watermark). The coordinator
merges the partitions' results in partition order, pruning as they come, with a
few tasks in flight per worker thread, and finishes the plan as in one process:
the same plan (tests/test_scan_dask.py checks it against the in-memory plan).

So the workers must see the snapshot's directory at the same path as the
coordinator (the filesystem the hot tier lives on, or any shared one); only
bounded candidates travel back.
"""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from tiering.plan.model import Plan, Usage
from tiering.plan.outofcore import _Bounds, merge_parts, plan_bucket, read_spilled, spilled
from tiering.plan.planner import PLAN_BATCH_ROWS, _Accumulator, _batch_planner, _finish
from tiering.policy import Policy

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Iterable, Iterator

    from tiering.scan import Snapshot


def plan_on_cluster(executor: str, snapshot: Snapshot, catalog: pa.Table | Iterable[pa.RecordBatch] | None,
                    policy: Policy, now_ns: int, *, usage: Usage | None = None,
                    default_tier: str | None = None) -> Plan:
    """``make_plan`` of a snapshot (either form) with its partitions planned on the Dask cluster ``executor``
    names (``dask://HOST:PORT``); the same plan."""
    from tiering.scan.distributed import connect

    if isinstance(catalog, pa.Table):
        catalog = catalog.to_batches()
    bounds = _Bounds(policy, usage)
    client = connect(executor)
    try:
        with spilled(catalog, snapshot.buckets, snapshot.path.parent) as spill:
            parts = _in_order(client, snapshot, spill.files, policy, now_ns, usage)
            acc = merge_parts(parts, bounds)
    finally:
        client.close()
    return _finish(policy, bounds.settle(acc), now_ns, usage, default_tier)


def _in_order(client, snapshot: Snapshot, files: dict[int, list[Path]], policy: Policy, now_ns: int,
              usage: Usage | None) -> Iterator[_Accumulator]:
    """Each partition's result, in partition order, with at most two tasks per worker thread in flight."""
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    limit = 2 * max(1, sum(w.get("nthreads", 1) for w in workers))
    running: deque = deque()
    buckets = iter(range(snapshot.buckets))
    try:
        while True:
            while len(running) < limit and (bucket := next(buckets, None)) is not None:
                spilled_files = [Path(os.path.abspath(f)) for f in files.get(bucket, [])]  # workers have other cwds
                running.append(client.submit(plan_task, os.path.abspath(snapshot.path), bucket, spilled_files,
                                             policy, now_ns, usage, pure=False))
            if not running:
                return
            future = running.popleft()
            part = future.result()
            future.release()
            yield part
    finally:
        for future in running:
            future.cancel()


def plan_task(snapshot_path: str, bucket: int, files: list[Path], policy: Policy, now_ns: int,
              usage: Usage | None) -> _Accumulator:
    """On a worker: one partition of the snapshot planned against its bucket's spilled catalog rows."""
    from tiering.scan import Snapshot

    snapshot = Snapshot(snapshot_path, batch_rows=PLAN_BATCH_ROWS)
    return plan_bucket(snapshot, bucket, lambda b, paths: read_spilled(files, paths),
                       _batch_planner(policy, now_ns), _Bounds(policy, usage))


__all__ = ["plan_on_cluster"]
