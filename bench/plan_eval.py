"""How fast the planner evaluates a policy: synthetic inventory rows/s and peak RSS.

    python -m bench.plan_eval [--rows 10000000] [--policy bench/policies/ten-rules.toml]

Writes a synthetic inventory snapshot (Parquet, like ``tiering scan``; not
timed), then times ``make_plan`` streaming it back with an empty catalog,
exactly as ``tiering plan`` does, and prints rows/s, actions chosen and the
peak RSS of the planning process (measured in a fresh subprocess per round so
generation does not count). Median of ``--rounds`` runs.
"""

from __future__ import annotations

import argparse
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

from tiering.core.inventory import SCHEMA
from tiering.plan import PLAN_BATCH_ROWS, Usage, make_plan
from tiering.policy import load_policy
from tiering.scan import iter_snapshot

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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--batch", type=int, default=1 << 20)
    ap.add_argument("--policy", default=str(Path(__file__).parent / "policies" / "ten-rules.toml"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--snapshot", help=argparse.SUPPRESS)
    ap.add_argument("--now", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.snapshot:  # the timed child
        now = int(args.now)
        policy = load_policy(args.policy)
        start = time.perf_counter()
        plan = make_plan(iter_snapshot(args.snapshot, batch_rows=PLAN_BATCH_ROWS), None, policy, now,
                         usage=Usage(100 << 40, 90 << 40),
                         default_tier="capacity")
        seconds = time.perf_counter() - start
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"seconds": seconds, "actions": len(plan), "rss_mb": rss}))
        return
    now = time.time_ns()
    with tempfile.TemporaryDirectory(prefix="tiering-plan-") as tmp:
        snapshot = Path(tmp) / "inventory.parquet"
        rng = np.random.default_rng(7)
        with pq.ParquetWriter(snapshot, SCHEMA) as writer:
            for s in range(0, args.rows, args.batch):
                writer.write_batch(synthetic_batch(rng, min(args.batch, args.rows - s), s, now))
        runs = [json.loads(subprocess.run(
            [sys.executable, "-m", "bench.plan_eval", "--snapshot", str(snapshot), "--now", str(now),
             "--policy", args.policy], check=True, capture_output=True, text=True).stdout)
            for _ in range(args.rounds)]
    med = statistics.median(r["seconds"] for r in runs)
    print(f"policy {args.policy}: {len(load_policy(args.policy).rules)} rules")
    print(f"rows {args.rows:,}  median {med:.2f}s of {args.rounds}  -> {args.rows / med / 1e6:.2f} M rows/s")
    print(f"actions chosen: {runs[0]['actions']:,}; peak RSS of the planner {max(r['rss_mb'] for r in runs):,.0f} MB")


if __name__ == "__main__":
    main()
