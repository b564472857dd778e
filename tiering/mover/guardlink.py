"""Where a host's access guard keeps its files, and how a mover tells it about a new stub.

The guard (``tiering.access.guard``) holds every open of a file in a marked
directory until it has restored the file. A release in any process must make
sure the stub's directory is marked *before* the file becomes a stub, or a
reader could open the stub unseen and read nothing. ``GuardLink.announce``
sends the directory's descriptor (``SCM_RIGHTS``: the very directory, not a
name that could be swapped) over the guard's Unix socket and waits for "ok".
No guard listening: nothing to tell (the release goes on as without a guard;
``tiering status`` says the guard is inactive). A guard that answers "no"
fails that file's release: a stub it cannot watch would read as empty.

One connection per mover, kept open; directories already marked by the guard
at the other end are not sent again.

Guards on other nodes of a shared filesystem see only their own node's opens
and cannot be told over a socket: each release also appends the stub's
directory (once per directory and mover) to this host's *stub-directory log*
in ``[guard] dir`` (``HOST.stubdirs``: one hex-encoded path under the hot tier
per line, ``.`` for its top folder). Every guard follows every host's log, so on many nodes that folder
must be one every node can reach.
"""

from __future__ import annotations

import array
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

#: How long a release waits for the guard's answer before failing the file.
ANSWER_WAIT = 10.0


@dataclass(frozen=True)
class GuardPaths:
    """The files of one host's guard, in the ``[guard] dir`` folder."""

    dir: Path
    host: str

    @classmethod
    def of(cls, config) -> GuardPaths:
        """The paths for ``config`` (a ``Config``) on this host."""
        base = config.guard.dir or config.catalog_path.parent / "guard"
        return cls(Path(base), socket.gethostname().split(".")[0] or "localhost")

    @property
    def socket(self) -> Path:
        return self.dir / f"{self.host}.sock"

    @property
    def lock(self) -> Path:
        """flock'ed by the running guard's keeper; holds its status as JSON."""
        return self.dir / f"{self.host}.lock"

    @property
    def pending(self) -> Path:
        """Events a worker has taken and not yet answered (a restarted worker answers them)."""
        return self.dir / f"{self.host}.pending"

    @property
    def stubdirs(self) -> Path:
        """This host's stub-directory log (directories that hold stubs, as releases here announced them)."""
        return self.dir / f"{self.host}.stubdirs"

    @property
    def heat(self) -> Path:
        """This host's heat log: the hot-tier files opened here, one hex-encoded path per line (``access.heat``)."""
        return self.dir / f"{self.host}.heat"

    @property
    def ledger(self) -> Path:
        """The guard's own catalog: its restore journal and the restores it hands to the catalog's owner."""
        return self.dir / f"{self.host}.db"


class GuardRefused(Exception):
    """The guard could not watch the directory; the message says why."""


class GuardLink:
    """A mover's connection to its host's guard (thread-safe)."""

    def __init__(self, paths: GuardPaths, hot: Path) -> None:
        self.paths = paths
        self.hot = os.fsencode(hot) + b"/"
        self._logged: set[tuple[int, int]] = set()  # directories written to the stub-directory log
        self._sock: socket.socket | None = None
        self._sent: set[tuple[int, int]] = set()  # directories marked by the guard at the other end
        self._lock = threading.Lock()

    def announce(self, dir_fd: int) -> None:
        """Make sure the guard watches directory ``dir_fd``; ``GuardRefused`` when it cannot."""
        st = os.fstat(dir_fd)
        key = (st.st_dev, st.st_ino)
        with self._lock:
            if key not in self._logged:
                self._log(dir_fd)
                self._logged.add(key)
            if key in self._sent:
                return
            for attempt in (1, 2):  # a guard restarted since we connected: connect again, once
                sock = self._connect(fresh=attempt == 2)
                if sock is None:
                    return  # no guard running on this host
                try:
                    sock.sendmsg([b"mark\n"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [dir_fd]))])
                    answer = _read_line(sock)
                except OSError:
                    self._drop()
                    continue
                if answer == b"ok":
                    self._sent.add(key)
                    return
                raise GuardRefused(answer.decode(errors="replace").removeprefix("no: ") or "no answer")
            return  # the guard went away between two tries: as without a guard

    def _log(self, dir_fd: int) -> None:
        """Append the directory to this host's stub-directory log, for the guards of other nodes."""
        where = os.fsencode(os.readlink(f"/proc/self/fd/{dir_fd}")) + b"/"
        if not where.startswith(self.hot):
            raise GuardRefused(f"{os.fsdecode(where)} is not under the hot tier")
        rel = where[len(self.hot):].rstrip(b"/")
        if not self.paths.dir.is_dir():
            return  # no guard has run with this configuration on any node: nobody follows the log
        fd = os.open(self.paths.stubdirs, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, (rel.hex() or ".").encode() + b"\n")  # ".": the hot tier's own top folder
        finally:
            os.close(fd)

    def _connect(self, fresh: bool) -> socket.socket | None:
        if fresh:
            self._drop()
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            sock.settimeout(ANSWER_WAIT)
            try:
                sock.connect(str(self.paths.socket))
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                return None
            self._sock, self._sent = sock, set()
        return self._sock

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def close(self) -> None:
        with self._lock:
            self._drop()


def _read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(512)
        if not chunk:
            raise ConnectionResetError("the guard closed the connection")
        data += chunk
    return data.strip()
