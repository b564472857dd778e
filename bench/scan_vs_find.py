"""Scan speed: the scanner beside ``find -printf`` on the same tree, in the same run.

    python -m bench.scan_vs_find --files 500000 [--root DIR] [--jobs N] [--repeat 3]

Generates a tree of empty files (``DIR/dNNNN/sNN/fNNNNN``, a few hundred entries
per directory; kept when ``--root`` is given, so a second run skips this), warms
the page cache with one untimed ``find``, then alternates
``find ROOT -printf '%s %T@ %A@ %p\\n' > /dev/null`` with a full scan into a
Parquet snapshot (``write_snapshot``, in a fresh subprocess so its peak RSS is
its own) and prints the median of each, files/s, the ratio and the scanner's
peak RSS: the main process (``ru_maxrss``), its largest worker and the whole
scan (main plus workers, sampled from ``/proc``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import stat
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

FIND_FORMAT = "%s %T@ %A@ %p\n"


def generate_tree(root: Path, files: int, per_dir: int = 300, dirs_per_parent: int = 30) -> None:
    """``files`` empty files under ``root``, ``per_dir`` to a directory (skipped if already there)."""
    marker = root.with_name(root.name + ".bench-files")
    if marker.exists() and marker.read_text() == str(files):
        return
    made = leaf = 0
    while made < files:
        parent, child = divmod(leaf, dirs_per_parent)
        directory = root / f"d{parent:04d}" / f"s{child:02d}"
        directory.mkdir(parents=True, exist_ok=True)
        count = min(per_dir, files - made)
        for i in range(count):
            os.mknod(directory / f"f{i:05d}", 0o644 | stat.S_IFREG)
        made, leaf = made + count, leaf + 1
    marker.write_text(str(files))


def time_find(root: Path) -> float:
    start = time.perf_counter()
    subprocess.run(["find", str(root), "-printf", FIND_FORMAT], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def time_scan(root: Path, out: Path, jobs: int | None) -> dict:
    """One scan in a child process; its own timing of ``write_snapshot`` and peak RSS."""
    args = [sys.executable, "-m", "bench.scan_vs_find", "--child", str(root), str(out)]
    args += [] if jobs is None else [str(jobs)]
    done = subprocess.run(args, capture_output=True, text=True, check=True, cwd=Path(__file__).parents[1])
    return json.loads(done.stdout)


def child(root: str, out: str, jobs: str | None = None) -> None:
    """The scanning side: scan ``root`` into ``out``; print seconds, counts and peak RSS as JSON."""
    from tiering.scan import write_snapshot

    sampler = RssSampler()
    sampler.start()
    start = time.perf_counter()
    try:
        summary = write_snapshot(root, out, jobs=None if jobs is None else int(jobs))
    finally:
        seconds = time.perf_counter() - start
        sampler.stop()
    main_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "files": summary.files, "entries": summary.entries,
                      "errors": summary.error_count, "rss_main_mb": main_kib / 1024,
                      "rss_worker_mb": sampler.worker_peak / 1024, "rss_total_mb": sampler.total_peak / 1024}))


class RssSampler(threading.Thread):
    """Samples this process's and its children's resident memory every 10 ms.

    ``ru_maxrss`` of a child would not do: it keeps the high-water mark from
    before ``exec``, when the child was still a copy of this (pyarrow-laden)
    process; for the same reason children not yet exec'ed are left out.
    """

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.done = threading.Event()
        self.total_peak = self.worker_peak = 0  # KiB

    def run(self) -> None:
        while not self.done.wait(0.01):
            workers = [_rss_kib(pid) for pid in _children()]
            self.worker_peak = max([self.worker_peak, *workers])
            self.total_peak = max(self.total_peak, _rss_kib(os.getpid()) + sum(workers))

    def stop(self) -> None:
        self.done.set()
        self.join()


def _children() -> list[int]:
    """Child pids, less any still between fork and exec (a copy of us, sharing our pages)."""
    ours = Path("/proc/self/cmdline").read_bytes()
    pids = [int(pid) for task in Path("/proc/self/task").iterdir() for pid in (task / "children").read_text().split()]
    return [pid for pid in pids if _cmdline(pid) not in (ours, b"")]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:  # it just exited
        pass
    return 0


def run(root: Path, files: int, jobs: int | None, repeat: int) -> None:
    from tiering.scan import default_jobs

    jobs_used = default_jobs() if jobs is None else jobs
    start = time.perf_counter()
    generate_tree(root, files)
    print(f"tree: {files:,} files under {root} (ready in {time.perf_counter() - start:.1f}s)")
    time_find(root)  # warm the dentry and inode caches
    find_s, scans = [], []
    with tempfile.TemporaryDirectory(prefix="scan-bench-", dir=root.parent) as tmp:
        for _ in range(repeat):
            find_s.append(time_find(root))
            scans.append(time_scan(root, Path(tmp) / "inventory.parquet", jobs))
    scan_s = statistics.median(s["seconds"] for s in scans)
    found = scans[0]["files"]
    find_rate, scan_rate = found / statistics.median(find_s), found / scan_s
    main_mb = max(s["rss_main_mb"] for s in scans)
    worker_mb = max(s["rss_worker_mb"] for s in scans)
    total_mb = max(s["rss_total_mb"] for s in scans)
    print(f"find -printf : {statistics.median(find_s):7.3f} s  {find_rate:12,.0f} files/s  (runs: {_list(find_s)})")
    print(f"tiering scan : {scan_s:7.3f} s  {scan_rate:12,.0f} files/s  (runs: {_list(s['seconds'] for s in scans)}; "
          f"jobs {jobs_used}; Parquet snapshot written)")
    print(f"ratio        : {scan_rate / find_rate:.2f}x find's files/s (goal >= 0.8x)")
    print(f"peak RSS     : {max(total_mb, main_mb):.0f} MB for the whole scan (goal <= 400 MB): main process "
          f"{main_mb:.0f} MB, largest worker {worker_mb:.0f} MB (sampled every 10 ms)")
    if any(s["errors"] for s in scans) or found != files:
        print(f"warning: scanned {found:,} files with errors {[s['errors'] for s in scans]}")


def _list(values) -> str:
    return ", ".join(f"{v:.3f}" for v in values)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child(*argv[1:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=500_000, help="files in the generated tree")
    ap.add_argument("--root", type=Path, help="where the tree lives (kept); default: a temporary folder")
    ap.add_argument("--jobs", type=int, help="scanner worker processes (default: the scanner's default)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of each (median shown)")
    args = ap.parse_args(argv)
    if args.root is not None:
        return run(args.root.absolute(), args.files, args.jobs, args.repeat)
    base = Path(tempfile.mkdtemp(prefix="scan-vs-find-"))
    try:
        run(base / "tree", args.files, args.jobs, args.repeat)
    finally:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
