"""Many writers on one catalog: which runs are alive, and their heartbeats.

On a server catalog every writer process is a run (a ``runs`` row: host,
pid, start, and a heartbeat it refreshes every ``HEARTBEAT_EVERY`` seconds
on the database's clock). Each action claims its file (a ``claims`` row)
in the transaction of its durable journal ``begin`` and lets go in the
transaction that ends it; a claim has no expiry of its own: it holds while
its owner run is alive. So one heartbeat row per run keeps every claim of
that run, instead of a lease per file to renew.

A run is dead, and ``recover`` may settle its open entries, when:

- it has ended (a run that finished, or one another recover declared dead),
  or it has no row at all (an entry copied from an older catalog);
- it ran on this host and its pid is gone (or a zombie);
- its heartbeat is older than ``DEAD_AFTER`` of its own intervals (any
  host: a process that hangs or whose host is gone, or a pid reused here).

A recover takes over a dead run's claim before it settles the entry (one
``UPDATE ... WHERE run_id = <the dead owner>``, so two recoverers never
settle one entry) and marks that run ended: if the run was only paused
(a stopped process, a partitioned host), its next heartbeat finds its run
ended and the catalog refuses its further ``begin``s (the fence).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from tiering.core.processes import pid_exists

#: Seconds between a run's heartbeats.
HEARTBEAT_EVERY = 10.0
#: A run whose heartbeat is this many of its intervals old is dead, wherever it ran.
DEAD_AFTER = 6


@dataclass(frozen=True, slots=True)
class RunLife:
    """What the ``runs`` table says about one run, and the database's clock when it was read."""

    id: str
    host: str
    pid: int
    started_at: float
    ended_at: float | None
    heartbeat_at: float | None
    heartbeat_every: float | None
    now: float

    def why_dead(self, here: str) -> str:
        """Why this run is dead, seen from host ``here``; "" while it may still be acting."""
        if self.ended_at is not None:
            return "its run has ended"
        every = self.heartbeat_every or HEARTBEAT_EVERY
        silent = self.now - (self.heartbeat_at or self.started_at)
        if silent > DEAD_AFTER * every:
            return f"no heartbeat from {self.host} for {silent:.0f}s"
        if self.host == here and not pid_alive(self.pid):
            return f"pid {self.pid} on {self.host} is gone"
        return ""


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (a zombie, killed and not yet reaped, does not)."""
    if not pid_exists(pid):
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] != b"Z"
    except (FileNotFoundError, IndexError):
        return False


class Heartbeat:
    """Calls ``beat`` every ``every`` seconds on a thread of its own until ``stop``."""

    def __init__(self, beat: Callable[[], None], every: float) -> None:
        self._beat = beat
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="catalog-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self._beat()
            except Exception:  # noqa: BLE001 - a missed beat: the run's own writes say what is wrong
                pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def open_entries_by_life(catalog, here: str) -> tuple[int, int]:
    """(open journal entries of live runs, of dead runs) in a server ``catalog`` (a ``Catalog``, read-only
    is enough), judged from host ``here`` by the rule ``recover`` uses (``RunLife.why_dead``): an entry
    belongs to the run holding its claim, else to the run that began it; a run with no row is dead.
    One grouped read of the open entries (the ``journal_open`` index) and the runs they name."""
    # (reads through the catalog's own connection: this helper is part of the catalog package)
    rows = catalog._read(
        "SELECT o.owner, o.n, r.id, r.host, r.pid, r.started_at, r.ended_at, r.heartbeat_at, r.heartbeat_every, "
        f"{catalog._db.now_sql} FROM (SELECT coalesce(c.run_id, j.run_id) AS owner, count(*) AS n FROM journal j "
        "LEFT JOIN claims c ON c.entry_id = j.id WHERE j.status = 'open' GROUP BY coalesce(c.run_id, j.run_id)) o "
        "LEFT JOIN runs r ON r.id = o.owner")
    live = dead = 0
    for _owner, n, *run in rows:
        if run[0] is not None and not RunLife(*run).why_dead(here):
            live += n
        else:
            dead += n
    return live, dead
