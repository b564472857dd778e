"""Scan with several worker processes that share out directories as they go.

On a local disk threads do not help: per entry the scanner spends about as
long in Python as in ``fstatat``, and the GIL serialises the Python half
(measured: two threads were slower than one); on a networked filesystem they
do, as the wait dominates (see ``threads`` below). Processes help on both:
each worker runs a ``Walker`` over its own stack of directories and sends
full batches back as raw buffers. Workers are fresh interpreters (``python -c``, talking over a
socketpair with ``multiprocessing.connection`` framing): unlike ``fork`` this is
safe whatever threads the parent runs, and unlike multiprocessing's ``spawn``
it never re-imports the caller's ``__main__``. They import only the standard
library, so they start in tens of milliseconds.

Load balancing is work sharing, coordinated by the parent:

- The parent keeps the directories nobody owns yet (at first, the root) and
  hands some to each idle worker.
- When a worker is idle and the parent has nothing to give, the parent asks
  the busy workers to share; each, between two directories, gives away the
  bottom half of its stack (the shallowest directories: the biggest subtrees).
- The scan is over when every worker is idle, nothing is unowned and no share
  request is unanswered; then each worker sends its last rows and its error log.

Memory stays bounded: a worker holds at most one batch and its stack; the
parent holds the unowned directories and one batch at a time (a worker blocks
on the pipe while the parent is busy writing).

With ``threads`` > 0 (``io = "threads"``, a networked filesystem) each worker
keeps that many directory reads in flight (``tiering.scan.inflight``); the
sharing above is unchanged (its stack is the directories not started yet).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from tiering.scan.walker import ErrorLog, RawBatch, Task, Walker

if TYPE_CHECKING:
    from tiering.scan.inflight import InFlight

#: A busy worker reports its counters at least this often (seconds).
PROGRESS_EVERY = 0.2

Counters = tuple[int, ...]
_WORKER_CODE = "import sys; from tiering.scan.pool import worker_main; worker_main(int(sys.argv[1]))"
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])


class _Worker:
    """The parent's view of one worker process."""

    def __init__(self, index: int, root: bytes, batch_rows: int, threads: int) -> None:
        ours, theirs = socket.socketpair()
        self.proc = subprocess.Popen(
            # -P: the caller's working directory must not shadow the package.
            [sys.executable, "-P", "-c", _WORKER_CODE, str(theirs.fileno())],
            pass_fds=[theirs.fileno()], env=_worker_env(), stdin=subprocess.DEVNULL,
        )
        theirs.close()
        self.conn = Connection(ours.detach())
        self.index, self.busy, self.asked = index, False, False
        self.send(("start", root, batch_rows, threads))

    def send(self, message: tuple) -> None:
        try:
            self.conn.send(message)
        except OSError:
            self._died()

    def recv(self) -> tuple:
        try:
            message = self.conn.recv()
        except (EOFError, OSError):
            self._died()
        if message[0] == "failed":
            raise message[1]
        return message

    def _died(self) -> NoReturn:
        try:
            status = self.proc.wait(5)
        except subprocess.TimeoutExpired:  # pragma: no cover - a closed socket means it is exiting
            status = None
        raise RuntimeError(f"scan worker {self.index} exited unexpectedly (status {status})") from None

    def close(self) -> None:
        self.conn.close()
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:  # pragma: no cover - terminate is enough for a healthy worker
            self.proc.kill()
            self.proc.wait()


def _worker_env() -> dict[str, str]:
    # The worker imports this package from wherever the parent did.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_PARENT, env.get("PYTHONPATH")]))
    return env


def scan_with_workers(root: bytes, root_task: Task, jobs: int, batch_rows: int,
                      report: Callable[[int, Counters], None], errors: ErrorLog,
                      threads: int = 0) -> Iterator[RawBatch]:
    """Raw batches of the tree at ``root`` read by ``jobs`` processes (each with ``threads``
    reads in flight; 0: one at a time); each worker's running counters go to
    ``report(index, counters)``, their error logs into ``errors``."""
    workers: list[_Worker] = []
    try:
        for i in range(jobs):
            workers.append(_Worker(i, root, batch_rows, threads))
        yield from _coordinate(workers, deque([root_task]), report)
        for w in workers:
            w.send(("stop",))
        for w in workers:
            _, raw, counters, log = w.recv()
            report(w.index, counters)
            errors.merge(log)
            if raw.rows:
                yield raw
            w.proc.wait()
    finally:
        for w in workers:
            w.close()


def _coordinate(workers: list[_Worker], unowned: deque[Task],
                report: Callable[[int, Counters], None]) -> Iterator[RawBatch]:
    by_conn = {w.conn: w for w in workers}
    while True:
        _balance(workers, unowned)
        if not unowned and not any(w.busy or w.asked for w in workers):
            return
        for conn in wait(list(by_conn)):
            w = by_conn[conn]
            tag, *rest = w.recv()
            if tag == "batch":
                report(w.index, rest[1])
                yield rest[0]
            elif tag == "progress":
                report(w.index, rest[0])
            elif tag == "idle":
                w.busy = False
                report(w.index, rest[0])
            elif tag == "share":
                w.asked = False
                unowned.extend(rest[0])


def _balance(workers: list[_Worker], unowned: deque[Task]) -> None:
    idle = [w for w in workers if not w.busy]
    for i, w in enumerate(idle):
        if not unowned:
            break
        count = max(1, len(unowned) // (len(idle) - i))
        w.send(("tasks", [unowned.popleft() for _ in range(count)]))
        w.busy = True
    if not unowned and any(not w.busy for w in workers):
        for w in workers:
            if w.busy and not w.asked:
                w.send(("share",))
                w.asked = True


# -- the worker side -----------------------------------------------------------


def worker_main(fd: int) -> None:
    """A worker process: serve the parent's messages on socket ``fd`` until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # on Ctrl-C the parent stops us
    conn = Connection(fd)
    try:
        _, root, batch_rows, threads = conn.recv()
        _serve(conn, root, batch_rows, threads)
    except Exception as exc:  # noqa: BLE001 - whatever it is, the parent re-raises it
        conn.send(("failed", exc))
    finally:
        conn.close()


def _serve(conn: Connection, root: bytes, batch_rows: int, threads: int) -> None:
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    walker = Walker(root_fd, batch_rows)
    inflight = None
    if threads:  # here only: inline workers start without loading the thread pool
        from tiering.scan.inflight import InFlight

        inflight = InFlight(walker, threads)
    stack: list[Task] = []
    try:
        while True:
            message = conn.recv()
            if message[0] == "stop":
                conn.send(("done", walker.take(), walker.counters(), walker.errors))
                return
            if message[0] == "share":  # asked while idle: nothing to give
                conn.send(("share", []))
                continue
            stack.extend(message[1])
            _drain(conn, walker, stack, inflight)
            conn.send(("idle", walker.counters()))
    finally:
        if inflight is not None:
            inflight.close()


def _drain(conn: Connection, walker: Walker, stack: list[Task], inflight: InFlight | None) -> None:
    last = time.monotonic()

    def between() -> None:
        nonlocal last
        if conn.poll():  # the only message a busy worker gets is a share request
            conn.recv()
            half = len(stack) // 2
            conn.send(("share", stack[:half]))
            del stack[:half]
        elif time.monotonic() - last >= PROGRESS_EVERY:
            conn.send(("progress", walker.counters()))
            last = time.monotonic()

    if inflight is not None:
        for raw in inflight.drain(stack, between):
            conn.send(("batch", raw, walker.counters()))
            last = time.monotonic()
        return
    while stack:
        for raw in walker.scan(stack.pop(), stack):
            conn.send(("batch", raw, walker.counters()))
            last = time.monotonic()
        between()
