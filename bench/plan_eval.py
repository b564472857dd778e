"""How fast the planner evaluates a policy: synthetic inventory rows/s and peak RSS.

    python -m bench.plan_eval [--rows 10000000] [--policy bench/policies/ten-rules.toml]
                              [--catalog-fraction 0.5] [--modes old,new,new-table,dask] [--dask-workers 2]

Writes a synthetic inventory snapshot (not timed), then times ``make_plan``
streaming it back, as ``tiering plan`` does, and prints rows/s, actions chosen
and the peak RSS of the planning process (measured in a fresh subprocess per
round so generation does not count). Median of ``--rounds`` runs.

``--catalog-fraction F``: that fraction of the rows also has catalog state,
half archived (same size, mtime and inode: not dirty), half released, with some
heat; the catalog is read in the timed part. Modes:

- ``old``: one Parquet file, planned in memory with the catalog as one table
  (what ``tiering plan`` did before partitioned inventories);
- ``new``: a partitioned snapshot (``buckets_for(rows)`` partitions), planned
  out of core with the catalog *streamed* in batches (bucketed to disk beside
  the snapshot), as ``tiering plan`` does with ``Catalog.state_batches``;
- ``new-table``: the partitioned snapshot with the catalog as one table (as
  ``Catalog.state_table`` gives it);
- ``dask``: the partitioned snapshot planned on a real Dask cluster this script
  starts (``dask scheduler`` and ``--dask-workers`` ``dask worker`` processes,
  one thread each: ``bench.scan_dask.DaskCluster``), as ``tiering plan
  --executor dask://`` does; the peak RSS of the coordinator and of each worker
  (reset before each round) is printed.

The catalog stands in as a Parquet file (columns of ``Catalog.state_table``); ``bench.catalog_scale``
times the same over a real SQLite catalog.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.scan_dask import DaskCluster, peak_rss_kib, reset_peak
from tiering.core.inventory import SCHEMA, buckets_for
from tiering.plan import PLAN_BATCH_ROWS, Usage, make_plan, read_inventory
from tiering.policy import load_policy
from tiering.scan import PartitionedWriter, iter_snapshot

NS = 1_000_000_000
DAY = 86400 * NS
_DIRS = [b"datasets/imagenet/train/", b"datasets/laion/shards/", b"ckpt/run-7/", b"home/alice/tmp/",
         b"logs/2026/11/", b"a/b/c/d/e/f/g/"]
_SUFFIXES = [b".tar", b".jpg", b".pt", b".log", b".tmp", b".safetensors", b".parquet", b".bin"]


def synthetic_batch(rng: np.random.Generator, n: int, start: int, now: int) -> pa.RecordBatch:
    dirs = rng.integers(0, len(_DIRS), n)
    sufs = rng.integers(0, len(_SUFFIXES), n)
    paths = [_DIRS[d] + b"f%09d" % (start + i) + _SUFFIXES[s] for i, (d, s) in enumerate(zip(dirs, sufs))]
    size = rng.lognormal(13, 3, n).astype(np.int64)
    atime = now - (rng.exponential(60, n) * DAY).astype(np.int64)
    mtime = atime - (rng.exponential(30, n) * DAY).astype(np.int64)
    cols = {
        "path": pa.array(paths, pa.binary()),
        "type": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int8)), pa.array(["file", "dir", "symlink"])),
        "size": size, "blocks": (size + 511) // 512, "mode": np.full(n, 0o100644, np.uint32),
        "uid": rng.integers(1000, 1010, n).astype(np.uint32), "gid": np.full(n, 100, np.uint32),
        "atime_ns": atime, "mtime_ns": mtime, "ctime_ns": mtime, "ino": np.arange(start, start + n, dtype=np.uint64),
        "nlink": np.ones(n, np.uint32),
    }
    return pa.RecordBatch.from_pydict(cols, schema=SCHEMA)


CATALOG_SCHEMA = pa.schema([("path", pa.binary()), ("state", pa.string()), ("tier", pa.string()),
                            ("heat", pa.float64()), ("pinned", pa.bool_()), ("size", pa.int64()),
                            ("mtime_ns", pa.int64()), ("ino", pa.int64())])


def synthetic_catalog(rng: np.random.Generator, batch: pa.RecordBatch, fraction: float) -> pa.RecordBatch:
    """Catalog state for about ``fraction`` of ``batch``'s rows: half archived (unchanged since), half released."""
    rows = batch.filter(pa.array(rng.random(batch.num_rows) < fraction))
    n = rows.num_rows
    return pa.RecordBatch.from_pydict({
        "path": rows["path"], "state": pa.array(np.where(rng.random(n) < 0.5, "archived", "released")),
        "tier": pa.array(["capacity"] * n, pa.string()), "heat": rng.exponential(2.0, n),
        "pinned": pa.array(rng.random(n) < 0.01), "size": rows["size"], "mtime_ns": rows["mtime_ns"],
        "ino": rows["ino"].cast(pa.int64()),
    }, schema=CATALOG_SCHEMA)


def child(args: argparse.Namespace) -> None:
    """The timed side: read the catalog (if any) and plan, as ``--mode`` says; print seconds, actions, RSS."""
    now = int(args.now)
    policy = load_policy(args.policy)
    start = time.perf_counter()
    catalog = None
    if args.catalog:
        catalog = pq.ParquetFile(args.catalog).iter_batches(PLAN_BATCH_ROWS) if args.mode in ("new", "dask") \
            else pq.read_table(args.catalog)
    inventory = read_inventory(args.snapshot) if args.mode != "old" else \
        iter_snapshot(args.snapshot, batch_rows=PLAN_BATCH_ROWS)
    usage = Usage(100 << 40, 90 << 40)
    if args.mode == "dask":
        from tiering.plan.distributed import plan_on_cluster

        plan = plan_on_cluster(args.executor, inventory, catalog, policy, now, usage=usage, default_tier="capacity")
    else:
        plan = make_plan(inventory, catalog, policy, now, usage=usage, default_tier="capacity")
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "actions": len(plan), "rss_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's peak RSS (``VmHWM``): ``ru_maxrss`` carries over the parent's peak across fork and exec,
    and the parent generated the data."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(directory: Path, rows: int, batch: int, now: int, fraction: float, partitioned: bool,
             buckets: int) -> tuple[Path, Path, Path | None]:
    """The synthetic inventory as one file and as a partitioned snapshot, and its catalog (None when empty)."""
    single, parts = directory / "inventory.parquet", directory / "partitioned.parquet"
    catalog = directory / "catalog.parquet" if fraction > 0 else None
    rng = np.random.default_rng(7)
    parts.mkdir()
    with pq.ParquetWriter(single, SCHEMA) as writer, PartitionedWriter(parts, buckets) as split, \
            (pq.ParquetWriter(catalog, CATALOG_SCHEMA) if catalog else _Nothing()) as cat:
        for s in range(0, rows, batch):
            part = synthetic_batch(rng, min(batch, rows - s), s, now)
            writer.write_batch(part)
            if partitioned:
                split.write_batch(part)
            if catalog:
                cat.write_batch(synthetic_catalog(rng, part, fraction))
    split.finish()
    return single, parts, catalog


class _Nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--batch", type=int, default=1 << 20)
    ap.add_argument("--policy", default=str(Path(__file__).parent / "policies" / "ten-rules.toml"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--catalog-fraction", type=float, default=0.0,
                    help="fraction of the rows with catalog state (half archived, half released)")
    ap.add_argument("--buckets", type=int, help="partitions of the partitioned snapshot (default: buckets_for(rows))")
    ap.add_argument("--modes", default="old,new", help="comma-separated: old, new, new-table, dask (see above)")
    ap.add_argument("--dask-workers", type=int, default=2, help="worker processes of the dask mode's cluster")
    ap.add_argument("--executor", help=argparse.SUPPRESS)
    ap.add_argument("--snapshot", help=argparse.SUPPRESS)
    ap.add_argument("--catalog", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="old", help=argparse.SUPPRESS)
    ap.add_argument("--now", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.snapshot:  # the timed child
        child(args)
        return
    modes = args.modes.split(",")
    buckets = args.buckets or buckets_for(args.rows)
    now = time.time_ns()
    results = {}
    with tempfile.TemporaryDirectory(prefix="tiering-plan-", dir="/var/tmp") as tmp, \
            _cluster(Path(tmp) / "dask", args.dask_workers if "dask" in modes else 0) as cluster:
        single, parts, catalog = generate(Path(tmp), args.rows, args.batch, now, args.catalog_fraction,
                                          partitioned=any(m != "old" for m in modes), buckets=buckets)
        for mode in modes:
            snapshot = single if mode == "old" else parts
            extra = ["--catalog", str(catalog)] if catalog else []
            extra += ["--executor", cluster.address] if mode == "dask" else []
            runs = results[mode] = []
            for _ in range(args.rounds):
                for pid in cluster.worker_pids if mode == "dask" else ():
                    reset_peak(pid)
                runs.append(json.loads(subprocess.run(
                    [sys.executable, "-m", "bench.plan_eval", "--snapshot", str(snapshot), "--now", str(now),
                     "--policy", args.policy, "--mode", mode, *extra], check=True, capture_output=True,
                    text=True).stdout))
                if mode == "dask":
                    runs[-1]["workers_rss_mb"] = [peak_rss_kib(pid) / 1024 for pid in cluster.worker_pids]
    print(f"policy {args.policy}: {len(load_policy(args.policy).rules)} rules; catalog fraction "
          f"{args.catalog_fraction:g}; {buckets} partitions for the partitioned modes")
    for mode, runs in results.items():
        med = statistics.median(r["seconds"] for r in runs)
        rss = max(r["rss_mb"] for r in runs)
        workers = [max(w) for w in zip(*(r["workers_rss_mb"] for r in runs))] if mode == "dask" else []
        who = f" (coordinator; workers {', '.join(f'{w:,.0f}' for w in workers)} MB)" if workers else ""
        print(f"{mode:9} rows {args.rows:,}  median {med:.2f}s of {args.rounds}"
              f"  -> {args.rows / med / 1e6:.2f} M rows/s  actions {runs[0]['actions']:,}  peak RSS {rss:,.0f} MB{who}")


@contextlib.contextmanager
def _cluster(work: Path, workers: int):
    """A real Dask cluster of ``workers`` processes for the dask mode (none: a stand-in with no workers)."""
    if not workers:
        yield DaskCluster(work, 0)
        return
    cluster = DaskCluster(work, workers)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
