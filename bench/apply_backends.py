"""``tiering apply`` on the embedded SQLite catalog against the same on a PostgreSQL server (issue 22).

    python -m bench.apply_backends [--files 100000] [--size 4096] [--rounds 3] [--jobs 32] [--dir DIR]

The same hot tier of ``--files`` small files, a posix capacity tier, a policy archiving every file: each
round, for each backend in turn (the order rotates), a fresh catalog (a new SQLite file; a new database on
a PostgreSQL server this script starts on a loopback port, durable commits) and an empty capacity folder,
an untimed ``tiering scan``, then ``tiering apply --no-rescan`` timed from start to exit. The catalog is
checked afterwards (every file archived, no open journal entry) or the run stops. PostgreSQL's path is
the many-writers one: each action claims its file in its ``begin`` and lets go in its ``end``.

Prints each run, then the medians and PostgreSQL's speed as a fraction of SQLite's (issue 22's target:
at least 0.8x at 100,000 actions).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.peers.postgres import PostgresServer

POLICY = '[[rules]]\nname = "all"\nmatch = \'type == "file"\'\naction = "archive"\n[safety]\nmin_age = "0s"\n'
TIERING = str(Path(sys.executable).with_name("tiering"))


def make_hot(hot: Path, files: int, size: int) -> None:
    """``files`` files of ``size`` random-ish bytes, 1,000 per folder (reused when already there)."""
    stamp = hot.with_name(hot.name + ".made")  # beside the tier, not in it
    if stamp.exists() and stamp.read_text() == f"{files} {size}":
        return
    shutil.rmtree(hot, ignore_errors=True)
    block = os.urandom(size)
    for i in range(files):
        folder = hot / f"d{i // 1000:04d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True)
        (folder / f"f{i:07d}").write_bytes(block[: size - 8] + i.to_bytes(8, "little"))
    stamp.write_text(f"{files} {size}")


def config(work: Path, hot: Path, url: str | None, jobs: int) -> Path:
    cap = work / "cap"
    shutil.rmtree(cap, ignore_errors=True)
    cap.mkdir(parents=True)
    (work / "policy.toml").write_text(POLICY)
    catalog = f'path = "{work}/state/catalog.db"\n' + (f'url = "{url}"\n' if url else "")
    cfg = work / "tiering.toml"
    cfg.write_text(f'default_tier = "cap"\npolicy = "policy.toml"\n[hot]\npath = "{hot}"\n[catalog]\n{catalog}'
                   f'[concurrency]\njobs = {jobs}\n[tiers.cap]\nurl = "{cap}"\n')
    return cfg


def timed(args: list[str], env: dict) -> tuple[float, float, str]:
    """(seconds from start to exit, CPU seconds of the process tree, stdout); a failure stops the bench."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} exited {proc.returncode}: {proc.stderr.strip()[-400:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return seconds, cpu, proc.stdout


def check(cfg: Path, env: dict, files: int) -> None:
    out = subprocess.run([TIERING, "status", "--json", "-c", str(cfg)], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"status failed: {out.stderr.strip()}")
    status = json.loads(out.stdout.strip().splitlines()[-1])
    count = status["by_state"].get("archived", {}).get("files")
    if count != files or status.get("interrupted"):
        raise SystemExit(f"after apply: {count} archived of {files}, interrupted {status.get('interrupted')}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=32)
    ap.add_argument("--dir", type=Path, help="work folder (default: a temporary one under /var/tmp)")
    args = ap.parse_args(argv)
    work = args.dir or Path(tempfile.mkdtemp(prefix="tiering-apply-backends-", dir="/var/tmp"))
    hot = work / "hot"
    t = time.perf_counter()
    make_hot(hot, args.files, args.size)
    print(f"hot tier: {args.files:,} files of {args.size} B ({time.perf_counter() - t:.0f}s)", flush=True)
    times: dict[str, list[float]] = {"sqlite": [], "postgresql": []}
    with PostgresServer() as pg:
        env = {**os.environ, "BENCH_PG_PW": pg.password}
        env.pop("TIERING_CONFIG", None)
        for r in range(args.rounds):
            order = ["sqlite", "postgresql"] if r % 2 == 0 else ["postgresql", "sqlite"]
            for backend in order:
                run = work / f"r{r}-{backend}"
                shutil.rmtree(run, ignore_errors=True)
                url = pg.url(pg.create_database(), "${BENCH_PG_PW}") if backend == "postgresql" else None
                cfg = config(run, hot, url, args.jobs)
                subprocess.run([TIERING, "scan", "-q", "-c", str(cfg)], check=True, env=env,
                               stdout=subprocess.DEVNULL)
                subprocess.run(["sync"], check=True)
                seconds, cpu, _ = timed([TIERING, "apply", "--no-rescan", "-q", "--json", "-c", str(cfg)], env)
                check(cfg, env, args.files)
                times[backend].append(seconds)
                print(f"round {r + 1} {backend:10s} apply {seconds:7.1f}s  {args.files / seconds:8.0f} actions/s  "
                      f"(tiering CPU {cpu:.1f}s)",
                      flush=True)
                shutil.rmtree(run / "cap", ignore_errors=True)
    sq, pgm = statistics.median(times["sqlite"]), statistics.median(times["postgresql"])
    print(f"\nmedian apply of {args.files:,} archive actions: SQLite {sq:.1f}s, PostgreSQL {pgm:.1f}s; "
          f"PostgreSQL at {sq / pgm:.2f}x SQLite's speed (target >= 0.8x)")
    if not args.dir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
