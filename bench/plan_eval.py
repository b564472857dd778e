"""How fast the planner evaluates a policy: synthetic inventory rows/s and peak RSS.

    python -m bench.plan_eval [--rows 10000000] [--policy bench/policies/ten-rules.toml]

Generates the inventory in Arrow batches (vectorized, not timed), then times
``make_plan`` over all of them with an empty catalog, and prints rows/s,
actions chosen and the process's peak RSS. Median of ``--rounds`` runs.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from tiering.inventory import SCHEMA
from tiering.plan import Usage, make_plan
from tiering.policy import load_policy

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
    args = ap.parse_args(argv)

    now = time.time_ns()
    rng = np.random.default_rng(7)
    batches = [synthetic_batch(rng, min(args.batch, args.rows - s), s, now) for s in range(0, args.rows, args.batch)]
    policy = load_policy(args.policy)
    usage = Usage(total=100 << 40, used=90 << 40)
    timings, actions = [], 0
    for _ in range(args.rounds):
        start = time.perf_counter()
        plan = make_plan(iter(batches), None, policy, now, usage=usage, default_tier="capacity")
        timings.append(time.perf_counter() - start)
        actions = len(plan)
    med = statistics.median(timings)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"policy {args.policy}: {len(policy.rules)} rules")
    print(f"rows {args.rows:,}  median {med:.2f}s of {args.rounds}  -> {args.rows / med / 1e6:.2f} M rows/s")
    print(f"actions chosen: {actions:,}; peak RSS {rss:,.0f} MB (including the {args.rows:,} generated rows)")


if __name__ == "__main__":
    main()
