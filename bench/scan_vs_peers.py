"""Scan speed against its peers: ``tiering scan``, GNU ``find`` and ``fd`` on the same tree, in one run.

    python -m bench.scan_vs_peers --fs fuse [--files 100000] [--repeat 5]
    python -m bench.scan_vs_peers --fs ext4 [--files 100000] [--root DIR]

``--fs ext4`` uses a folder on the local disk (``--root``, kept so a second
run skips making it; default a temporary folder beside the system's temp dir);
``--fs fuse`` starts SeaweedFS (``weed mini``) and mounts its filer with
``weed mount`` (``bench.peers``), a networked filesystem where every metadata
call is a round trip, and makes the tree through the mount.

Each round runs the three in a rotated order; the medians of ``--repeat``
rounds are printed with files/s and our speed ratio to each peer. What runs:

- ours: ``write_snapshot`` (the whole scan into a Parquet snapshot) in a fresh
  process with the scanner's defaults (``--io auto``: threads on the FUSE
  mount, inline on ext4); timed around the process as a whole, interpreter
  and pyarrow start-up included, as a user running ``tiering scan`` waits;
  its time inside the process is shown too.
- ``find ROOT -printf '%s %T@ %A@ %p\\n'``: serial; the size and times make
  it ``lstat`` every entry, as we do.
- ``fdfind --hidden --no-ignore --changed-before 2999-01-01 . ROOT``: fd's
  parallel walk (its default threads: one per core), every entry including
  hidden ones, and the time filter makes it read every entry's metadata
  (an ``lstat``), as we do. Not ``--list-details``: that runs ``ls -l`` on
  batches of results, which adds a process, an ACL/SELinux ``getxattr`` per
  entry and user-name lookups; measured on the FUSE tree it took 12 s, a cost
  of ``ls``, not of fd's walk.

On FUSE each run waits 1.5 s first: the kernel keeps a looked-up entry's
attributes for 1 s, and no tool should ride on the previous one's lookups.
On ext4 an untimed ``find`` warms the caches first and all runs are warm.

On FUSE our scan drops each directory's cached listing before reading it, so
the kernel reads it with READDIRPLUS (names with attributes) and the lstats
that follow need no round trip (``tiering.scan.inflight``); find and fd read
the cached listing and pay one LOOKUP round trip per entry. So that part of
the gain shows apart, find and fd are also timed with every listing dropped
first (untimed), as they would run on a first walk after mounting: rows
"fd (fresh listings)" and "find (fresh listings)".

``fdfind`` is Debian's ``fd-find``: ``make peers`` installs it when root (this
bench does the same when it is missing); else ``apt-get install fd-find``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

from bench.scan_vs_find import FIND_FORMAT, RssSampler, generate_tree

#: The kernel's FUSE entry/attribute timeout is 1 s; wait longer than that before each timed run.
FUSE_SETTLE = 1.5
#: Threads making the FUSE tree (a create is a round trip; these overlap them).
MAKE_THREADS = 32
FILER_PATH = "/bench-scan"
_KEY, _SECRET, _BUCKET = "bench-scan-key", "bench-scan-secret", "bench-scan"


def ensure_fd() -> str:
    """The ``fdfind`` binary; installs Debian's fd-find when missing and root (as ``make peers`` does)."""
    found = shutil.which("fdfind")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fd-find",
                       shell=True, check=False, stdout=subprocess.DEVNULL)
        found = shutil.which("fdfind")
    if found is None:
        raise SystemExit("fdfind is missing: run `make peers` as root, or `apt-get install fd-find`")
    return found


def make_tree_in_parallel(root: Path, files: int, per_dir: int = 300, dirs_per_parent: int = 30) -> float:
    """``generate_tree``'s layout, made by ``MAKE_THREADS`` threads (for a networked mount); seconds taken.

    Files are dealt round-robin over the directories, so threads seldom create
    in one directory at once (measured on SeaweedFS FUSE: 1,380-2,800 files/s
    with 32 threads, against 730-930 files/s with one; an S3 upload of empty
    objects into the filer path with ``s5cmd cp`` did 2,300/s, no faster, and
    would need the mount to be of the bucket's path).
    """
    start = time.perf_counter()
    leaves = [root / f"d{leaf // dirs_per_parent:04d}" / f"s{leaf % dirs_per_parent:02d}"
              for leaf in range((files + per_dir - 1) // per_dir)]

    def create(i: int) -> None:
        leaf, n = i % len(leaves), i // len(leaves)
        os.close(os.open(leaves[leaf] / f"f{n:05d}", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))

    with ThreadPoolExecutor(MAKE_THREADS) as pool:
        list(pool.map(lambda d: d.mkdir(parents=True, exist_ok=True), leaves))
        list(pool.map(create, range(files), chunksize=256))
    return time.perf_counter() - start


def run_peer(args: list[str]) -> tuple[float, int]:
    """Seconds a peer took (wall, whole process) and the lines it printed."""
    start = time.perf_counter()
    done = subprocess.run(args, stdout=subprocess.PIPE, check=True)
    return time.perf_counter() - start, done.stdout.count(b"\n")


def run_ours(root: Path, out: Path, jobs: int | None, io: str) -> tuple[float, dict]:
    """Seconds the scan took (wall, whole process) and what its process reported."""
    args = [sys.executable, "-m", "bench.scan_vs_peers", "--child", str(root), str(out), io, str(jobs or 0)]
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, check=True, cwd=Path(__file__).parents[1])
    return time.perf_counter() - start, json.loads(done.stdout)


def child(root: str, out: str, io: str, jobs: str) -> None:
    """The scanning side: scan ``root`` into ``out``; print seconds, counts and peak RSS as JSON."""
    from tiering.scan import Scan, write_snapshot

    sampler = RssSampler()
    sampler.start()
    start = time.perf_counter()
    try:
        summary = write_snapshot(root, out, jobs=int(jobs) or None, io=io)
    finally:
        seconds = time.perf_counter() - start
        sampler.stop()
    print(json.dumps({"seconds": seconds, "entries": summary.entries, "files": summary.files,
                      "errors": summary.error_count, "io": Scan(root, io=io).io,
                      "rss_total_mb": sampler.total_peak / 1024}))


def measure(root: Path, fs: str, repeat: int, jobs: int | None, io: str, fd: str, work: Path) -> None:
    settle = FUSE_SETTLE if fs == "fuse" else 0.0
    find_args = ["find", str(root), "-printf", FIND_FORMAT]
    fd_args = [fd, "--hidden", "--no-ignore", "--changed-before", "2999-01-01", ".", str(root)]
    if not settle:
        run_peer(find_args)  # warm the dentry and inode caches
    times: dict[str, list[float]] = {"tiering scan": [], "fd": [], "find": []}
    inside: list[float] = []
    counts: dict[str, set[int]] = {name: set() for name in times}
    reports: list[dict] = []

    def ours() -> None:
        seconds, report = run_ours(root, work / "inventory.parquet", jobs, io)
        times["tiering scan"].append(seconds)
        inside.append(report["seconds"])
        counts["tiering scan"].add(report["entries"] + 1)  # find and fd list the root's entries; find also the root
        reports.append(report)

    def peer(name: str, args: list[str], extra: int) -> Callable[[], None]:
        def run() -> None:
            seconds, lines = run_peer(args)
            times[name].append(seconds)
            counts[name].add(lines + extra)
        return run

    order = [ours, peer("fd", fd_args, 1), peer("find", find_args, 0)]
    if fs == "fuse":
        for name, args, extra in (("fd (fresh listings)", fd_args, 1), ("find (fresh listings)", find_args, 0)):
            times[name], counts[name] = [], set()
            order.append(fresh_listings(root, peer(name, args, extra)))
    for i in range(repeat):
        for run in order[i % len(order):] + order[:i % len(order)]:
            time.sleep(settle)
            run()
    medians = {name: statistics.median(values) for name, values in times.items()}
    entries = max(counts["tiering scan"]) - 1
    inside_median = statistics.median(inside)
    print(f"{'':21} {'median':>8}  {'entries/s':>10}  {'ours vs it':>10}  {'(in-process)':>12}  runs")
    for name, values in times.items():
        ratios = ("", "") if name == "tiering scan" else \
            (f"{medians[name] / medians['tiering scan']:.2f}x", f"{medians[name] / inside_median:.2f}x")
        print(f"{name:21} {medians[name]:7.3f}s  {entries / medians[name]:10,.0f}  {ratios[0]:>10}  {ratios[1]:>12}  "
              f"{', '.join(f'{v:.3f}' for v in values)}")
    print(f"tiering scan : io={reports[0]['io']}, {inside_median:.3f} s median inside its process "
          f"({entries / inside_median:,.0f} entries/s; the rest is interpreter and pyarrow start-up); "
          f"peak RSS {max(r['rss_total_mb'] for r in reports):.0f} MB")
    if len(set().union(*counts.values())) != 1 or any(r["errors"] for r in reports):
        print(f"warning: entries seen differ: { {k: sorted(v) for k, v in counts.items()} }, "
              f"scan errors {[r['errors'] for r in reports]}")


def fresh_listings(root: Path, run: Callable[[], None]) -> Callable[[], None]:
    """``run`` after dropping the cached listing of every directory under ``root`` (untimed)."""
    def dropped_then_run() -> None:
        stack = [os.fsencode(root)]
        while stack:
            path = stack.pop()
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                with os.scandir(fd) as entries:
                    stack += [path + b"/" + os.fsencode(e.name) for e in entries if e.is_dir(follow_symlinks=False)]
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # after reading it: what it read is dropped
            finally:
                os.close(fd)
        time.sleep(FUSE_SETTLE)  # and let the entries that walk looked up expire
        run()
    return dropped_then_run


def versions(fd: str) -> str:
    def first_line(args: list[str]) -> str:
        return subprocess.run(args, capture_output=True, text=True).stdout.splitlines()[0]

    return f"{first_line(['find', '--version'])}; {first_line([fd, '--version'])}; kernel {os.uname().release}; " \
           f"{len(os.sched_getaffinity(0))} CPUs, load {os.getloadavg()[0]:.2f}"


def run_ext4(args: argparse.Namespace, fd: str) -> None:
    with ExitStack() as stack:
        if args.root is None:
            base = Path(tempfile.mkdtemp(prefix="scan-vs-peers-"))
            stack.callback(shutil.rmtree, base)
            root = base / "tree"
        else:
            root = args.root.absolute()
        start = time.perf_counter()
        generate_tree(root, args.files)
        from tiering.core.mounts import fs_type

        print(f"tree: {args.files:,} files under {root} ({fs_type(root)}; ready in {time.perf_counter() - start:.1f}s)")
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="scan-bench-", dir=root.parent)))
        measure(root, "ext4", args.repeat, args.jobs, args.io, fd, work)


def run_fuse(args: argparse.Namespace, fd: str) -> None:
    from bench.peers.weed_mount import fuse_hot_tier

    with fuse_hot_tier("scan-vs-peers-fuse-", FILER_PATH, (_KEY, _SECRET, _BUCKET)) as (server, mountpoint, base):
        root = mountpoint / "tree"
        seconds = make_tree_in_parallel(root, args.files)
        print(f"tree: {args.files:,} files on a SeaweedFS FUSE mount (weed mount), made through it by "
              f"{MAKE_THREADS} threads in {seconds:.1f}s ({args.files / seconds:,.0f} files/s)")
        server.wait_idle()
        measure(root, "fuse", args.repeat, args.jobs, args.io, fd, base)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child(*argv[1:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fs", choices=["ext4", "fuse"], default="ext4", help="where the tree lives")
    ap.add_argument("--files", type=int, default=100_000, help="files in the generated tree")
    ap.add_argument("--root", type=Path, help="ext4 only: where the tree lives (kept); default: a temporary folder")
    ap.add_argument("--jobs", type=int, help="scanner worker processes (default: the scanner's default)")
    ap.add_argument("--io", choices=["auto", "inline", "threads"], default="auto", help="the scan's [hot] io")
    ap.add_argument("--repeat", type=int, default=5, help="rounds (rotated order; medians shown)")
    args = ap.parse_args(argv)
    fd = ensure_fd()
    print(versions(fd))
    (run_fuse if args.fs == "fuse" else run_ext4)(args, fd)


if __name__ == "__main__":
    main()
