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
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
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
    must import tiering) in ``cwd``; ``stop`` kills every process group, whatever state the cluster is in."""

    def __init__(self, work: Path, workers: int, *, python: str = sys.executable, cwd: Path | None = None) -> None:
        self.work = Path(work)
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
                                               stderr=subprocess.STDOUT, cwd=self.cwd, start_new_session=True))

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
