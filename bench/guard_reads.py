"""What the access guard costs, and what a reader of a released file waits (root; SeaweedFS on loopback).

    python -m bench.guard_reads [--hot DIR] [--resident 100000] [--small-stubs 50] [--large-stubs 5]
                                [--loader-files 1000] [--rounds 3]

(a) open+read of N resident 4 KiB files by one process: no guard, a guard
    with ``[guard] heat = false``, and one with heat (every open on the
    filesystem is a notification event it reads); in a folder the guard does
    not watch (no stub in it: the common case) and in one it watches (one stub
    among the residents: each open is a round trip to the guard). Medians over
    rounds, and per-open p99 from a sample of timed opens.
(b) first-read latency of released 64 KiB and 64 MiB files through the guard:
    open() to the last byte, median and p99 over the files.
(c) a 4-process dataloader-style read of released files (each process reads
    its share, 1 MiB at a time): through the guard, against
    ``tiering restore --manifest`` first and then the same read.

Every figure is wall time on this machine; the table says which. The hot tier
is ``--hot`` (default: a temporary folder on the filesystem of /var/tmp).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.peers.seaweed import SeaweedServer
from bench.peers.tools import BUCKET, KEY, SECRET, binary, rotation

READER = r"""
import os, sys, time
paths = open(sys.argv[2], "rb").read().split(b"\n")[:-1]
sample = int(sys.argv[1])
lat = []
t0 = time.perf_counter()
for i, p in enumerate(paths):
    s = time.perf_counter() if i % sample == 0 else 0
    fd = os.open(p, os.O_RDONLY)
    while os.read(fd, 1 << 20):
        pass
    os.close(fd)
    if s:
        lat.append(time.perf_counter() - s)
print(time.perf_counter() - t0, *lat)
"""


def config(work: Path, hot: Path, endpoint: str, prefix: str, heat: bool = False, read_ahead: int = 16) -> Path:
    guard = Path(tempfile.mkdtemp(prefix="tgb-", dir="/tmp"))  # (short: Unix socket paths are limited)
    GUARD_DIRS.append(guard)
    cfg = work / f"{prefix}-{int(heat)}-{read_ahead}.toml"
    cfg.write_text(f'default_tier = "s3"\n[hot]\npath = "{hot}"\n[catalog]\npath = "{work}/state-{prefix}/catalog.db"\n'
                   f'[guard]\ndir = "{guard}"\ntimeout = "10m"\nheat = {str(heat).lower()}\nread_ahead = {read_ahead}\n'
                   f'[concurrency]\njobs = 16\n'
                   f'[tiers.s3]\nurl = "s3://{BUCKET}/{prefix}"\nendpoint = "{endpoint}"\n'
                   f'access_key_id = "{KEY}"\nsecret_access_key = "${{AWS_SECRET_ACCESS_KEY}}"\n')
    return cfg


ENV = {**os.environ, "AWS_SECRET_ACCESS_KEY": SECRET}
GUARD_DIRS: list[Path] = []


def tiering(cfg: Path, *args: str) -> None:
    done = subprocess.run([binary("tiering"), *args, "-c", str(cfg)], capture_output=True, text=True, check=False,
                          env=ENV)
    if done.returncode:
        raise SystemExit(f"tiering {args[0]} failed: {done.stderr[-2000:]}")


class Guard:
    def __init__(self, cfg: Path) -> None:
        self.proc = subprocess.Popen([binary("tiering"), "guard", "-c", str(cfg)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=ENV)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = subprocess.run([binary("tiering"), "status", "--json", "-c", str(cfg)], capture_output=True, text=True,
                                  env=ENV)
            if '"state": "active"' in done.stdout:
                time.sleep(0.5)  # its worker marks the released files' folders
                return
            time.sleep(0.2)
        raise SystemExit("the guard did not start")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


def listed(paths: list[Path]) -> str:
    """A file naming ``paths`` one per line (the readers take their list from it: argv is too short)."""
    fd, name = tempfile.mkstemp(prefix="guard-bench-", suffix=".list")
    with os.fdopen(fd, "wb") as f:
        f.write(b"".join(os.fsencode(p) + b"\n" for p in paths))
    return name


def read_all(paths: list[Path], sample: int = 50) -> tuple[float, list[float]]:
    names = listed(paths)
    try:
        out = subprocess.run([sys.executable, "-c", READER, str(sample), names], capture_output=True, text=True,
                             check=True).stdout.split()
    finally:
        os.unlink(names)
    return float(out[0]), [float(x) for x in out[1:]]


def loader(paths: list[Path], procs: int = 4) -> float:
    names = [listed(paths[i::procs]) for i in range(procs)]
    start = time.perf_counter()
    running = [subprocess.Popen([sys.executable, "-c", READER, "1000000", n], stdout=subprocess.DEVNULL) for n in names]
    failed = [p.wait() for p in running]
    took = time.perf_counter() - start
    for n in names:
        os.unlink(n)
    if any(failed):
        raise SystemExit("a loader process failed")
    return took


def p99(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(0.99 * len(xs)))] if xs else float("nan")


def make(folder: Path, n: int, size: int, prefix: str = "f") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    block = os.urandom(size)
    paths = []
    for i in range(n):
        p = folder / f"{prefix}{i:07d}"
        p.write_bytes(block[i % 97:] + block[:i % 97])
        paths.append(p)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hot", type=Path, default=None)
    ap.add_argument("--resident", type=int, default=100_000)
    ap.add_argument("--small-stubs", type=int, default=50)
    ap.add_argument("--large-stubs", type=int, default=5)
    ap.add_argument("--loader-files", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the guard needs root")
    work = Path(tempfile.mkdtemp(prefix="guard-bench-", dir="/var/tmp"))
    hot = args.hot or work / "hot"
    hot.mkdir(parents=True, exist_ok=True)
    with SeaweedServer(work / "seaweed", KEY, SECRET, (BUCKET,)) as server:
        cfg = config(work, hot, server.endpoint, "g")
        print(f"# {os.cpu_count()} cores, Python {sys.version.split()[0]}, hot tier {hot}, SeaweedFS S3 on loopback")

        # (a) resident opens: no guard, a guard without heat, a guard with heat (every open is an event)
        warm = config(work, hot, server.endpoint, "g", heat=True)
        plain = make(hot / "resident", args.resident, 4096)
        mixed = make(hot / "mixed", args.resident // 10, 4096)
        stub_beside = make(hot / "mixed", 1, 4096, prefix="stub")
        tiering(cfg, "release", *map(str, stub_beside))  # one stub makes its folder watched
        read_all(plain)  # warm the page cache
        runs: dict[str, tuple[list[float], list[float], list[float]]] = {k: ([], [], []) for k in ("none", "off", "on")}
        for r in range(args.rounds):
            for kind in rotation(("none", "off", "on"), r):
                guard = Guard(warm if kind == "on" else cfg) if kind != "none" else None
                try:
                    t, lat = read_all(plain)
                    runs[kind][0].append(t)
                    runs[kind][1].extend(lat)
                    runs[kind][2].append(read_all(mixed)[0])
                finally:
                    if guard:
                        guard.stop()
        print("\n## (a) open+read of resident 4 KiB files, one process (median of rounds)")
        print("| files | where | no guard | guard, heat off | guard, heat on | p99 per open (none / off / on) |")
        print("|---|---|---|---|---|---|")
        base = statistics.median(runs["none"][0])
        cells = [f"{statistics.median(runs[k][0]):.2f} s ({100 * (statistics.median(runs[k][0]) / base - 1):+.0f} %)"
                 for k in ("off", "on")]
        print(f"| {len(plain)} | unwatched folder | {base:.2f} s | {cells[0]} | {cells[1]} | "
              + " / ".join(f"{p99(runs[k][1]) * 1e6:.0f} µs" for k in ("none", "off", "on")) + " |")
        base = statistics.median(runs["none"][2])
        cells = [f"{statistics.median(runs[k][2]):.2f} s ({100 * (statistics.median(runs[k][2]) / base - 1):+.0f} %)"
                 for k in ("off", "on")]
        print(f"| {len(mixed)} | watched folder (a stub in it) | {base:.2f} s | {cells[0]} | {cells[1]} | |")

        # (b) first read of released files
        small = make(hot / "small", args.small_stubs, 64 * 1024)
        large = make(hot / "large", args.large_stubs, 64 * 1024 * 1024)
        tiering(cfg, "release", *map(str, small + large))
        os.sync()
        guard = Guard(config(work, hot, server.endpoint, "g", read_ahead=0))  # each file's own first read
        try:
            _, lat_small = read_all(small, sample=1)
            _, lat_large = read_all(large, sample=1)
        finally:
            guard.stop()
        print("\n## (b) first read of a released file through the guard (open to last byte; no read-ahead)")
        print("| size | files | median | p99 |")
        print("|---|---|---|---|")
        for label, lat in (("64 KiB", lat_small), ("64 MiB", lat_large)):
            print(f"| {label} | {len(lat)} | {statistics.median(lat) * 1e3:.1f} ms | {p99(lat) * 1e3:.1f} ms |")

        # (c) dataloader: the guard (with read-ahead 0, 16, 64) vs restore-then-read
        settings = (0, 16, 64)
        through: dict[int, list[float]] = {n: [] for n in settings}
        staged = []
        for r in range(args.rounds):
            for n in settings:
                files = make(hot / f"loader{r}-{n}", args.loader_files, 256 * 1024)
                tiering(cfg, "release", *map(str, files))
                guard = Guard(config(work, hot, server.endpoint, "g", read_ahead=n))
                try:
                    through[n].append(loader(files))
                finally:
                    guard.stop()
            files2 = make(hot / f"staged{r}", args.loader_files, 256 * 1024)
            tiering(cfg, "release", *map(str, files2))
            manifest = work / f"m{r}.txt"
            manifest.write_text("".join(f"{p.relative_to(hot)}\n" for p in files2))
            start = time.perf_counter()
            tiering(cfg, "restore", "--manifest", str(manifest))
            loader(files2)
            staged.append(time.perf_counter() - start)
        ms = statistics.median(staged)
        print(f"\n## (c) 4 processes read {args.loader_files} released 256 KiB files (median of {args.rounds})")
        print("| through the guard, read-ahead | time | `tiering restore --manifest`, then read | ratio |")
        print("|---|---|---|---|")
        for n in settings:
            mt = statistics.median(through[n])
            print(f"| {n} | {mt:.2f} s | {ms:.2f} s | {ms / mt:.2f}x |")
    shutil.rmtree(work, ignore_errors=True)
    for folder in GUARD_DIRS:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
