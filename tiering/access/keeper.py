"""``tiering guard``: the process that keeps the access guard's fanotify group alive.

When the last descriptor of a fanotify group closes, the kernel *allows*
every open still waiting on it: a reader of a stub would read an empty file.
So the group is held by a small keeper that does no I/O on the hot tier and
no restores, and the work is done by a worker it forks. If the worker dies
(a bug, an OOM kill, SIGKILL), the group stays open, the readers stay
blocked, and the keeper starts a new worker, which settles its
predecessor's journal (``recover``: a half-filled stub is finished or
emptied again; on a server catalog the dead worker's run is any dead run,
whose entries any node's ``tiering recover`` may settle as well),
answers the events its predecessor left (``Worker.settle_orphans``) and goes
on. Only if the keeper itself dies do waiting opens go through to the stub;
``tiering status`` then says "guard: inactive" at once (the keeper's
``flock`` is gone with it) and the systemd unit in ``configs/systemd``
restarts it.

The keeper's lock file (``[guard] dir``/HOST.lock) holds its status as JSON;
only one guard runs per host.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass

from tiering.access.fanotify import FanotifyUnsupported, Group, check_marks
from tiering.access.heat import heat_group
from tiering.catalog.lock import read_holder
from tiering.core.errors import CatalogBusyError, UserError
from tiering.mover.guardlink import GuardPaths

log = logging.getLogger("tiering.guard")

#: Set (to its pid) by a process that starts a guard which must stop when that process dies.
WITH_PARENT_ENV = "TIERING_GUARD_PARENT"
#: A worker that dies this soon after its start, this many times in a row, is not restarted again.
QUICK_DEATH, QUICK_DEATHS = 5.0, 5


@dataclass(frozen=True)
class GuardStatus:
    """What ``tiering status`` says about this host's guard."""

    state: str  # active | inactive | unsupported
    detail: str = ""
    info: dict | None = None

    def line(self) -> str:
        return f"guard: {self.state}" + (f": {self.detail}" if self.detail else "")


def guard_status(config, probe: bool = True) -> GuardStatus:
    """Is a guard serving this host's hot tier? (``probe``: when not, say whether one could.)"""
    paths = GuardPaths.of(config)
    info = read_holder(paths.lock)
    if info is not None:
        restarts = info.get("restarts", 0)
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
        detail = f"pid {info.get('pid')}, since {since}"
        if info.get("heat"):
            detail += ", heat from every open (fanotify)"
        counts = info.get("counts") or {}
        if counts.get("restored") or counts.get("denied"):
            detail += f"; {counts.get('restored', 0)} restored for readers, {counts.get('denied', 0)} opens failed"
        if restarts:
            detail += f", worker restarted {restarts}x"
        if not info.get("errno_responses", True):
            detail += ", failed opens get EPERM (kernel < 6.14)"
        return GuardStatus("active", detail, info)
    if probe:
        reason = unsupported_reason(config)
        if reason:
            return GuardStatus("unsupported", reason)
    return GuardStatus("inactive", "opens of released files read as empty; start `tiering guard` or `tiering daemon`")


def unsupported_reason(config) -> str:
    """Why no guard can run here ('' if one can): kernel, privileges, or the hot tier's filesystem."""
    try:
        Group.create().close()  # privileges and the kernel's permission events
    except FanotifyUnsupported as exc:
        return exc.reason
    try:
        fd = os.open(config.hot_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        return f"hot tier {config.hot_path}: {exc.strerror}"
    try:
        check_marks(fd)
    except FanotifyUnsupported as exc:
        return f"hot tier {config.hot_path}: {exc.reason}"
    finally:
        os.close(fd)
    return ""


class Keeper:
    """Holds the group, the lock and the socket; runs workers (``run``)."""

    def __init__(self, config) -> None:
        self.config = config
        self.paths = GuardPaths.of(config)
        self.status: dict = {}
        self._lock_fd = -1
        self.group: Group | None = None
        #: The heat group (``access.heat``), or None where it cannot be had (``heat_off`` says why).
        self.heat_fd: int | None = None
        self.heat_off = ""
        self.listener: socket.socket | None = None

    def open(self) -> None:
        """Take the lock, create the group (checking the hot tier takes marks), listen for releasers.

        ``CatalogBusyError`` if a guard already runs here; ``UserError`` if none can.
        """
        _stop_with_parent()
        reason = unsupported_reason(self.config)
        if reason:
            raise UserError(f"the access guard cannot run here: {reason}")
        self.paths.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.paths.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held = read_holder(self.paths.lock) or {}
            os.close(fd)
            raise CatalogBusyError(f"a guard already serves {self.config.hot_path} on this host "
                                   f"(pid {held.get('pid', '?')}; lock {self.paths.lock})", held) from None
        self._lock_fd = fd
        self.group = Group.create()
        if not self.config.guard.heat:
            self.heat_off = "[guard] heat = false"
        else:
            try:
                # After the permission group, so its descriptor number is higher: a process that dies holding
                # both closes the permission group first, letting waiting readers go before this one goes.
                self.heat_fd = heat_group(self.config.hot_path)
            except FanotifyUnsupported as exc:
                self.heat_off = exc.reason
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            self.paths.socket.unlink()  # a dead keeper's: we hold the lock, nobody else serves it
        except FileNotFoundError:
            pass
        old = os.umask(0o077)  # releasers are root (or the tier's owner): nobody else may mark directories
        try:
            sock.bind(str(self.paths.socket))
        except OSError as exc:
            raise UserError(f"guard socket {self.paths.socket}: {exc.strerror or exc} "
                            "(a shorter [guard] dir may be needed: socket paths are limited to 107 bytes)") from None
        finally:
            os.umask(old)
        sock.listen(64)
        self.listener = sock
        self.status = {"pid": os.getpid(), "host": self.paths.host, "started": time.time(),
                       "hot": str(self.config.hot_path),
                       "errno_responses": self.group.errno_responses, "restarts": 0, "worker": None}
        self._write_status()

    def _write_status(self) -> None:
        data = json.dumps(self.status).encode()
        os.ftruncate(self._lock_fd, 0)
        os.pwrite(self._lock_fd, data, 0)

    def ready(self, watched: int, heat: bool = False) -> None:
        """Called by a worker once it serves: the status says so, how many directories it watches,
        and whether it counts every open as heat."""
        self.note(ready=time.time(), worker=os.getpid(), watched=watched, heat=heat)

    def note(self, **fields) -> None:
        """Put ``fields`` in the status (a worker's counts, say), for ``tiering status`` to show."""
        self.status.update(fields)
        self._write_status()

    def run(self, work) -> int:
        """Run ``work(group, listener)`` in forked workers until SIGTERM/SIGINT; the exit status.

        A worker that crashes is replaced; one that keeps dying at start is not
        (its last exit status is returned).
        """
        stop = {"signal": 0}
        child = {"pid": 0}

        def on_signal(signum, _frame):
            stop["signal"] = signum
            if child["pid"]:
                try:
                    os.kill(child["pid"], signal.SIGTERM)
                except ProcessLookupError:
                    pass

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        quick = 0
        try:
            while not stop["signal"]:
                started = time.monotonic()
                pid = os.fork()
                if pid == 0:  # the worker
                    for s in old:
                        signal.signal(s, signal.SIG_DFL)
                    code = 1
                    try:
                        code = work(self.group, self.listener)
                    except BaseException:  # noqa: BLE001 - reported, and the keeper decides
                        log.exception("the guard's worker failed")
                    finally:
                        os._exit(code)
                child["pid"] = pid
                self.status.update(worker=pid, ready=None)
                self._write_status()
                status = _wait(pid)
                child["pid"] = 0
                if stop["signal"]:
                    break
                code = os.waitstatus_to_exitcode(status)
                quick = quick + 1 if time.monotonic() - started < QUICK_DEATH else 0
                log.error("the guard's worker (pid %d) ended (%s); %s", pid, _how(code),
                          "giving up" if quick >= QUICK_DEATHS else "starting another")
                if quick >= QUICK_DEATHS:
                    return code if code > 0 else 1
                self.status["restarts"] += 1
                self._write_status()
                time.sleep(min(0.1 * 2 ** quick, 2.0))
            return 0
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
            try:
                self.paths.socket.unlink()
            except FileNotFoundError:
                pass
        if self.group is not None:
            self.group.close()  # (first: a reader still waiting is let go before the heat group goes)
        if self.heat_fd is not None:
            os.close(self.heat_fd)
            self.heat_fd = None
        if self._lock_fd >= 0:
            os.ftruncate(self._lock_fd, 0)
            os.close(self._lock_fd)
            self._lock_fd = -1


def _stop_with_parent() -> None:
    """Under ``WITH_PARENT_ENV``: a SIGTERM when that parent dies (``PR_SET_PDEATHSIG``), as a clean stop."""
    parent = os.environ.pop(WITH_PARENT_ENV, "")
    if not parent.isdigit():
        return
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != int(parent):  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _wait(pid: int) -> int:
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except InterruptedError:
            continue
        except ChildProcessError:
            return 0


def _how(code: int) -> str:
    return f"killed by signal {-code}" if code < 0 else f"exit status {code}"
