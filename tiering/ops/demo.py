"""The demo behind ``make run``: a small training workspace, one full policy cycle.

When the hot tier is empty, ``make_dataset`` writes a workspace that looks
like a training cluster's: an active image dataset (image-sized JPEG-like
files, read yesterday), an old sharded corpus nobody read for weeks, a run's
checkpoints of varied ages, and its logs. Ages are set through atime/mtime.
The cycle is then the production one: scan, plan, apply, status.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

DAY = 86400


@dataclass(frozen=True)
class DemoDataset:
    files: int
    bytes: int


def _write(path: Path, size: int, rng: random.Random, age_days: float, read_days: float | None = None) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(rng.randbytes(size))
    now = time.time()
    os.utime(path, (now - DAY * (age_days if read_days is None else read_days), now - DAY * age_days))
    return size


def make_dataset(hot: Path, seed: int = 7) -> DemoDataset:
    """Write the demo workspace under ``hot`` (about 60 MB); returns what was written."""
    rng = random.Random(seed)
    total = count = 0
    for c in range(8):  # the active dataset: small image files, read a day ago
        for i in range(25):
            total += _write(hot / f"datasets/imagenet-21k/train/n{c:08d}/img_{i:04d}.jpg",
                            rng.randint(60_000, 180_000), rng, age_days=120, read_days=1)
            count += 1
    for i in range(12):  # an old corpus: shards nobody has read for weeks
        total += _write(hot / f"datasets/old-corpus/shards/shard-{i:05d}.tar", 2_000_000, rng, age_days=60,
                        read_days=20 + i)
        count += 1
    for step, age in ((1000, 30), (2000, 21), (3000, 10), (4000, 2), (5000, 0.2)):
        total += _write(hot / f"runs/exp-1/checkpoints/step-{step}.pt", 4_000_000, rng, age_days=age)
        count += 1
    total += _write(hot / "runs/exp-1/logs/train.log", 50_000, rng, age_days=0.1)
    total += _write(hot / "runs/exp-1/config.yaml", 2_000, rng, age_days=45)
    return DemoDataset(count + 2, total)


def is_empty(hot: Path) -> bool:
    return not hot.exists() or not any(p for p in hot.iterdir() if p.name != ".tiering")
