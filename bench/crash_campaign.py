"""Hundreds of SIGKILLs: how many files were lost or corrupted (the answer must be 0).

    python -m bench.crash_campaign [--points 300] [--files 24] [--workdir DIR]

Each point is one trial of ``bench.crashlab``: a real subprocess releasing and
restoring files is killed at an injected journal step or at a random instant,
``tiering recover`` runs, and every file is checked against a pristine copy.
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
from pathlib import Path

from bench.crashlab import points, run_trial


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=300)
    ap.add_argument("--files", type=int, default=24)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args(argv)
    start = time.monotonic()
    killed, lost, corrupt, problems, files = 0, 0, 0, [], 0
    by_kind = collections.Counter()
    with tempfile.TemporaryDirectory(prefix="tiering-crash-", dir=args.workdir) as tmp:
        for i, (point, kill_after) in enumerate(points(args.points, args.seed)):
            result = run_trial(Path(tmp) / "lab", point, files=args.files, seed=args.seed + i, kill_after=kill_after)
            files += result.files
            killed += result.killed
            by_kind[point.split(":")[0] if point != "random" else "random instant"] += 1
            lost += len(result.lost)
            corrupt += len(result.corrupt)
            problems += [f"{point}: {p}" for p in result.problems]
            if not result.ok:
                print(f"trial {i} ({point}): lost {result.lost} corrupt {result.corrupt} problems {result.problems}")
    print(f"{args.points} kill points ({killed} actually killed mid-run) over {files:,} file-trials "
          f"in {time.monotonic() - start:.0f}s")
    print("points by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(by_kind.items())))
    print(f"files lost: {lost}; files corrupted: {corrupt}; other invariant violations: {len(problems)}")
    for p in problems[:20]:
        print("  " + p)


if __name__ == "__main__":
    main()
