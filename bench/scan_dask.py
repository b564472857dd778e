"""Scan speed on a real Dask cluster: one process against ``tiering scan --executor dask://`` with 1 and 2 workers.

    python -m bench.scan_dask --files 20000 --fs ext4,fuse --workers 1,2 --rounds 3
    python -m bench.scan_dask --files 1000000 --fs ext4 --tree /big/disk/tree --keep   # made once, reused

The tree is skewed like a training namespace: a few huge directories
(``--huge`` of them, holding half the files between them) and many small
ones (``SMALL_PER_DIR`` files each, ``FANOUT`` directories a parent), with a
few odd names (spaces, newlines, bytes that are not UTF-8) among them.

On each filesystem (``ext4``: a folder of the local disk, ``--tree`` or a
temporary one; ``fuse``: SeaweedFS ``weed mini`` mounted with ``weed mount``,
``bench.peers``, where every metadata call is a round trip, as on a parallel
filesystem) each round runs, in a rotated order:

- ``one process``: ``tiering scan --jobs 1`` (the scanner's ``[hot] io``
  default: threads over the FUSE mount, inline on ext4);
- ``dask N``: ``tiering scan --executor dask://...`` against a real
  ``dask scheduler`` and N ``dask worker`` processes (one thread each, no
  nanny), started by this script and stopped at the end (``DaskCluster``).

Every run is a fresh process timed as a whole (interpreter and imports
included, as a user waits). The snapshots' rows are compared with the
one-process scan's (sorted by path; a directory's atime left out: reading a
directory may move it). Printed: medians of ``--rounds`` of seconds and
rows/s, peak RSS (``VmHWM``) of the scanning CLI process and of each worker
in that run (a worker's peak is reset between runs through
``/proc/PID/clear_refs``), and the speed-up of 2 workers over 1 and over one
process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

#: Files of each small directory, and directories under each parent of small ones.
SMALL_PER_DIR = 40
FANOUT = 50
#: Threads making the tree (a create on the FUSE mount is a round trip; these overlap them).
MAKE_THREADS = 32
#: The kernel's FUSE attribute timeout is 1 s: wait longer before each timed run on the mount.
FUSE_SETTLE = 1.5
ODD_NAMES = ("with space.bin", "new\nline.bin", "tab\there.bin", "caf\u00e9.bin")
FILER_PATH = "/bench-scan-dask"
_KEY, _SECRET, _BUCKET = "bench-scan-dask-key", "bench-scan-dask-secret", "bench-scan-dask"
_ROOT = Path(__file__).resolve().parents[1]


# -- a real cluster ---------------------------------------------------------------------------------------------------

class DaskCluster:
    """``dask scheduler`` and ``workers`` ``dask worker`` processes (one thread each, no nanny) on loopback,
    each in its own process group; ``address`` is ``dask://127.0.0.1:PORT``. Workers run ``python`` (which
    must import tiering) in ``cwd`` with ``env`` (default: ours); ``stop`` kills every process group, whatever
    state the cluster is in."""

    def __init__(self, work: Path, workers: int, *, python: str = sys.executable, cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.work = Path(work)
        self.env = env
        self.workers = workers
        self.python = python
        self.cwd = cwd or self.work
        self.procs: list[subprocess.Popen] = []
        self.address = ""

    def start(self, timeout: float = 60.0) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        file = self.work / "scheduler.json"
        file.unlink(missing_ok=True)
        try:
            self._spawn("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                      "--scheduler-file", str(file)])
            deadline = time.monotonic() + timeout
            while not _complete_json(file):
                self._check_alive(deadline)
            self.address = "dask://" + json.loads(file.read_text())["address"].removeprefix("tcp://")
            for i in range(self.workers):
                self._spawn(f"worker-{i}", ["worker", "--scheduler-file", str(file), "--nworkers", "1",
                                            "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1",
                                            "--name", f"worker-{i}", "--local-directory", str(self.work / f"w{i}")])
            self._wait_for_workers(file, deadline)
        except BaseException:
            self.stop()
            raise

    def _wait_for_workers(self, file: Path, deadline: float) -> None:
        from distributed import Client

        with Client(scheduler_file=str(file), timeout=max(1.0, deadline - time.monotonic()),
                    set_as_default=False) as client:
            while len(client.scheduler_info(n_workers=-1)["workers"]) < self.workers:
                self._check_alive(deadline)

    def _spawn(self, name: str, args: list[str]) -> None:
        with open(self.work / f"{name}.log", "ab") as log:
            self.procs.append(subprocess.Popen([self.python, "-m", "dask", *args], stdout=log,
                                               stderr=subprocess.STDOUT, cwd=self.cwd, env=self.env,
                                               start_new_session=True))

    def _check_alive(self, deadline: float) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"dask {proc.args[3]} exited with {proc.returncode}; see {self.work}/*.log")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Dask cluster did not come up; see {self.work}/*.log")
        time.sleep(0.1)

    @property
    def worker_pids(self) -> list[int]:
        return [p.pid for p in self.procs[1:]]

    def stop(self) -> None:
        """SIGTERM the workers, then the scheduler (a worker whose scheduler went first waits to reconnect);
        SIGKILL whatever process group is left after 5 s."""
        for group in (self.procs[1:], self.procs[:1]):
            for proc in group:
                _signal_group(proc, signal.SIGTERM)
            deadline = time.monotonic() + 5
            for proc in group:
                try:
                    proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    _signal_group(proc, signal.SIGKILL)
                    proc.wait()
        self.procs = []

    def __enter__(self) -> DaskCluster:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def _complete_json(file: Path) -> bool:
    try:
        return "address" in json.loads(file.read_text())
    except (OSError, ValueError):
        return False


# -- the tree ---------------------------------------------------------------------------------------------------------

def tree_layout(root: Path, files: int, huge: int, odd_bytes: bool) -> list[tuple[Path, int]]:
    """(directory, files in it): ``huge`` directories holding half the files, the rest ``SMALL_PER_DIR`` a
    directory, ``FANOUT`` small directories a parent."""
    big = files // 2 if huge else 0
    dirs = [(root / f"huge-{i}", big // huge + (i < big % huge)) for i in range(huge)]
    rest = files - big
    for i in range((rest + SMALL_PER_DIR - 1) // SMALL_PER_DIR):
        dirs.append((root / f"small-{i // FANOUT:04d}" / f"{i % FANOUT:02d}", min(SMALL_PER_DIR, rest - i * SMALL_PER_DIR)))
    return dirs


def make_tree(root: Path, files: int, huge: int, odd_bytes: bool) -> float | None:
    """Make the tree under ``root`` with ``MAKE_THREADS`` threads; its seconds, or None when ``root`` already
    holds this tree (a marker beside it says so: the tree is reused)."""
    marker = root.with_name(root.name + ".bench-scan-dask")
    wanted = json.dumps({"files": files, "huge": huge, "small": SMALL_PER_DIR, "fanout": FANOUT})
    if marker.exists() and marker.read_text() == wanted and root.is_dir():
        return None
    if marker.exists():  # another tree of ours: made again
        shutil.rmtree(root, ignore_errors=True)
    elif root.exists() and any(root.iterdir()):
        raise SystemExit(f"{root} is not empty and was not made by this bench: name a new --tree")
    start = time.perf_counter()
    dirs = tree_layout(root, files, huge, odd_bytes)
    names = [os.fsencode(n) for n in ODD_NAMES] + ([b"not utf-8 \xff\xfe.bin"] if odd_bytes else [])
    # Deal the files round-robin over the directories, so threads seldom create in one directory at once.
    jobs = [(d, n) for d, count in dirs for n in range(count)]
    jobs.sort(key=lambda job: job[1])

    def create(job: tuple[Path, int]) -> None:
        directory, n = job
        name = names[n] if directory.name == "00" and n < len(names) else b"f%06d" % n
        os.close(os.open(os.fsencode(directory) + b"/" + name, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))

    with ThreadPoolExecutor(MAKE_THREADS) as pool:
        list(pool.map(lambda d: d[0].mkdir(parents=True, exist_ok=True), dirs))
        list(pool.map(create, jobs, chunksize=256))
    seconds = time.perf_counter() - start
    marker.write_text(wanted)
    return seconds


# -- one timed run ----------------------------------------------------------------------------------------------------

def peak_rss_kib(pid: int | str = "self") -> int:
    """``VmHWM`` of ``pid``: its peak RSS (``ru_maxrss`` would carry a parent's peak over fork and exec)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def reset_peak(pid: int) -> None:
    """Start ``pid``'s ``VmHWM`` again from its current RSS (Linux >= 4.0; needs the right to ptrace it)."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def child(rss_file: str, args: list[str]) -> None:
    """``python -m tiering ARGS`` in this process (run as that module is: bench never imports the CLI); its
    peak RSS goes to ``rss_file`` at the end, whatever the exit."""
    import runpy

    sys.argv = ["tiering", *args]
    try:
        runpy.run_module("tiering", run_name="__main__", alter_sys=True)
    finally:
        Path(rss_file).write_text(str(peak_rss_kib()))


@dataclass
class Run:
    seconds: float
    rows: int
    cli_kib: int
    worker_kib: list[int]


def run_scan(config: Path, out: Path, executor: str | None, workers: list[int], buckets: int) -> Run:
    """``tiering scan`` in a fresh process (``--jobs 1`` without an executor), timed as a whole."""
    args = ["scan", "-c", str(config), "--out", str(out), "--buckets", str(buckets), "--json"]
    args += ["--executor", executor] if executor else ["--jobs", "1"]
    rss = out.with_name(out.name + ".rss")
    for pid in workers:
        reset_peak(pid)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bench.scan_dask", "--child", str(rss), *args], cwd=_ROOT,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"tiering {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    entries = summary["files"] + summary["dirs"] + summary["symlinks"]
    return Run(seconds, entries, int(rss.read_text()), [peak_rss_kib(pid) for pid in workers])


def sorted_rows(snapshot: Path):
    """Every row sorted by path; a directory's atime left out (reading a directory may move it)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from tiering.scan import Snapshot

    table = pa.Table.from_batches(list(Snapshot(snapshot)))
    is_dir = pc.equal(table["type"].cast(pa.string()), "dir")
    atime = pc.if_else(is_dir, pa.scalar(0, pa.int64()), table["atime_ns"])
    table = table.set_column(table.schema.get_field_index("atime_ns"), "atime_ns", atime)
    return table.sort_by([("path", "ascending")])


# -- a filesystem's rounds --------------------------------------------------------------------------------------------

def measure(fs: str, root: Path, work: Path, args: argparse.Namespace) -> None:
    work.mkdir(parents=True, exist_ok=True)
    config = work / "tiering.toml"
    config.write_text(f'default_tier = "cap"\n[hot]\npath = "{root}"\n[catalog]\npath = "{work / "state" / "catalog.db"}"\n'
                      f'[tiers.cap]\nurl = "{work / "cap"}"\n')
    settle = FUSE_SETTLE if fs == "fuse" else 0.0
    with ExitStack() as stack:
        clusters = {n: stack.enter_context(DaskCluster(work / f"dask-{n}", n, cwd=work)) for n in args.workers}
        names = ["one process", *(f"dask {n}" for n in args.workers)]
        runs: dict[str, list[Run]] = {name: [] for name in names}
        expected = None
        if not settle:
            run_scan(config, work / "warm.parquet", None, [], args.buckets)  # warm the dentry and inode caches
            shutil.rmtree(work / "warm.parquet", ignore_errors=True)
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                time.sleep(settle)
                cluster = clusters.get(int(name.split()[1])) if name.startswith("dask") else None
                out = work / f"{name.replace(' ', '-')}.parquet"
                runs[name].append(run_scan(config, out, cluster and cluster.address,
                                           cluster.worker_pids if cluster else [], args.buckets))
                found = sorted_rows(out)
                if name == "one process" and expected is None:
                    expected = found
                elif expected is not None and not found.equals(expected):
                    raise SystemExit(f"{fs}: the rows of {name} differ from the one-process scan's")
                shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink()
    report(fs, runs, args)


def report(fs: str, runs: dict[str, list[Run]], args: argparse.Namespace) -> None:
    medians = {name: statistics.median(r.seconds for r in rs) for name, rs in runs.items()}
    print(f"{fs}: {runs['one process'][0].rows:,} rows a scan, identical in every run; medians of {args.rounds} rounds")
    print(f"  {'':12} {'median':>8} {'rows/s':>10}  {'peak RSS MiB: cli':>17}  {'workers':>12}  runs (s)")
    for name, rs in runs.items():
        workers = "/".join(f"{max(r.worker_kib[i] for r in rs) / 1024:.0f}" for i in range(len(rs[0].worker_kib)))
        print(f"  {name:12} {medians[name]:7.2f}s {rs[0].rows / medians[name]:10,.0f}  "
              f"{max(r.cli_kib for r in rs) / 1024:17.0f}  {workers or '-':>12}  "
              f"{', '.join(f'{r.seconds:.2f}' for r in rs)}")
    if "dask 1" in medians and "dask 2" in medians:
        print(f"  speed-up: dask 2 vs dask 1 {medians['dask 1'] / medians['dask 2']:.2f}x; "
              f"dask 2 vs one process {medians['one process'] / medians['dask 2']:.2f}x")


def on_ext4(args: argparse.Namespace) -> None:
    with ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="scan-dask-"))
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        root = args.tree.absolute() if args.tree else work / "tree"
        if args.tree and not args.keep:
            stack.callback(shutil.rmtree, root, ignore_errors=True)
            stack.callback(root.with_name(root.name + ".bench-scan-dask").unlink, missing_ok=True)
        made = make_tree(root, args.files, args.huge, odd_bytes=True)
        tell_made("ext4", root, args.files, made)
        measure("ext4", root, work, args)


def on_fuse(args: argparse.Namespace) -> None:
    from bench.peers.weed_mount import fuse_hot_tier

    with fuse_hot_tier("scan-dask-fuse-", FILER_PATH, (_KEY, _SECRET, _BUCKET)) as (server, mountpoint, base):
        root = mountpoint / "tree"
        made = make_tree(root, args.files, args.huge, odd_bytes=False)  # (the filer keeps names as UTF-8)
        tell_made("fuse (SeaweedFS weed mount)", root, args.files, made)
        server.wait_idle()
        measure("fuse", root, base / "work", args)


def tell_made(fs: str, root: Path, files: int, seconds: float | None) -> None:
    if seconds is None:
        print(f"{fs}: reusing the tree of {files:,} files under {root}")
        return
    rate = files / seconds
    print(f"{fs}: made {files:,} files under {root} in {seconds:.1f}s ({rate:,.0f} files/s; "
          f"1,000,000 would take about {1_000_000 / rate / 60:.0f} min)")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child(argv[1], argv[2:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=20_000, help="files in the generated tree")
    ap.add_argument("--huge", type=int, default=3, help="huge directories (half the files between them)")
    ap.add_argument("--fs", default="ext4,fuse", help="comma-separated: ext4 (a local folder), fuse (SeaweedFS)")
    ap.add_argument("--workers", default="1,2", help="comma-separated Dask worker counts")
    ap.add_argument("--rounds", type=int, default=3, help="rounds (rotated order; medians shown)")
    ap.add_argument("--buckets", type=int, default=8, help="partitions of every snapshot")
    ap.add_argument("--tree", type=Path, help="ext4: where the tree lives (reused when it matches; see --keep)")
    ap.add_argument("--keep", action="store_true", help="ext4: keep the --tree for the next run")
    args = ap.parse_args(argv)
    args.workers = [int(n) for n in args.workers.split(",")]
    filesystems = args.fs.split(",")
    if unknown := set(filesystems) - {"ext4", "fuse"}:
        ap.error(f"--fs: unknown {', '.join(sorted(unknown))}")
    print(f"{len(os.sched_getaffinity(0))} CPUs, load {os.getloadavg()[0]:.2f} at start; kernel {os.uname().release}")
    for fs in filesystems:
        (on_ext4 if fs == "ext4" else on_fuse)(args)
    print(f"load {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
