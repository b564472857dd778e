"""The access guard's worker: a plain ``open()`` of a released file gets its bytes.

The kernel holds every open of a file in a marked directory (``FAN_OPEN_PERM``,
see ``access.fanotify``) until this process answers. Per event:

- our own opens (the restore's), a file with bytes, a file without our stub
  mark: allowed at once, without the catalog. Only folders that hold stubs
  are marked, so opens elsewhere never reach us;
- the open of a stub by the process restoring it right now (it holds the
  file's restore lock: a ``tiering restore`` in another process): allowed,
  or the two would wait on each other;
- any other open of a stub: the file is restored into the stub's own inode
  (``Mover.restore_async(in_place=True)``, the same verified restore as
  ``tiering restore``), then the open is allowed. Opens of one stub wait on
  one restore; different stubs restore in parallel, as many at once as the
  tier's ``jobs``. The restore is journaled in the catalog itself when it is
  a server (the guard is a run of its own there, its restores claimed like
  any writer's: one that finds the file claimed by another writer tries
  again while its reader waits), else in the guard's ledger
  (``mover.handoff``).

An open is allowed only if the file it opened is no longer a stub when we
answer; a failed restore, or one that outlasts ``[guard] timeout``, fails
the open with EIO (EPERM on kernels before 6.14): a reader gets an error,
never empty or wrong bytes.

Threads: the reader (reads events, answers the cheap ones itself), the
announcer (marks directories other processes' releases announce), and the
asyncio loop (restores). Every stub event we take is written to the pending
log before anything else happens to it, so a worker restarted after a crash
can answer what its predecessor left waiting (``Worker.sweep_orphans``).
"""

from __future__ import annotations

import asyncio
import bisect
import errno
import logging
import os
import select
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tiering.access.fanotify import FAN_Q_OVERFLOW, Event, FanotifyUnsupported, Group
from tiering.core.display import show_path
from tiering.core.errors import PathError, TieringError
from tiering.core.states import FileState
from tiering.mover.outcome import DONE, FAILED, NOOP, SKIPPED
from tiering.mover.restorelock import holder_of
from tiering.mover.stub import is_stub
from tiering.stores.base import SupportsRestore
from tiering.stores.options import ARCHIVE_CLASSES

log = logging.getLogger("tiering.guard")

#: How often the worker looks in the catalog for files released by other processes and nodes.
FOLLOW_EVERY = 2.0
#: After a restore, how long an opener's view of the file may lag (a networked filesystem's client
#: caches attributes: SeaweedFS's FUSE mount for 1 s) before "still a stub" is believed.
VIEW_LAG = 3.0
#: How long a folder's list of stubs (for read-ahead) is used before it is listed again.
LISTING_TTL = 30.0
#: A stub mark on a file that still has bytes is a release under way (the mark is set just before the
#: truncate): an opener waits this long for it to settle before being let through to the bytes.
RELEASE_SETTLE = 2.0


@dataclass
class Counters:
    """What the guard did since it started (the status file and the metrics show them)."""

    allowed: int = 0  # opens let through at once (not stubs, or ours)
    restored: int = 0  # stubs restored for a reader
    waited: int = 0  # opens that waited on a restore
    denied: int = 0  # opens failed: restore failed, timed out, or not ours
    failures: list[str] = field(default_factory=list)  # the last few reasons

    def failed(self, why: str) -> None:
        self.denied += 1
        self.failures = (self.failures + [why[:300]])[-5:]  # (the status file stays small)


class _Restore:
    """One stub's restore and the opens waiting on it."""

    def __init__(self) -> None:
        self.waiters: list[Event] = []
        self.task: asyncio.Task | None = None


class Worker:
    """Serves one fanotify group over one hot tier, with one mover (its catalog: the server catalog, or a
    ``GuardLedger``; ``mover.handoff.open_guard_catalog``)."""

    def __init__(self, group: Group, mover, *, timeout: float, pending_log: Path,
                 listener: socket.socket | None = None, catalog=None, guard_dir: Path | None = None,
                 read_ahead: int = 0, report=None) -> None:
        self.group = group
        self.mover = mover
        self.hot = os.fsencode(mover.hot) + b"/"
        self.timeout = timeout
        self.counters = Counters()
        self.listener = listener
        #: Stubs after an opened one (in its folder, by name) restored before they are opened; 0: none.
        self.read_ahead = read_ahead
        #: Told the counters every ``FOLLOW_EVERY`` seconds (the keeper's status file), if set.
        self.report = report
        self._listings: dict[bytes, tuple[float, list[bytes]]] = {}  # folder -> (when listed, its stubs' names)
        #: The catalog (read-only) whose new released files are followed (``FOLLOW_EVERY``); None: none here.
        self.catalog = catalog
        self._followed = 0.0
        #: Where every host's stub-directory log is (``GuardPaths.stubdirs``), and how far each was read.
        self.guard_dir = guard_dir
        self._log_offsets: dict[Path, int] = {}
        self._pid = os.getpid()
        self._host = socket.gethostname()
        self._marked: set[tuple[int, int]] = set()
        self._restores: dict[tuple[int, int], _Restore] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_r, self._stop_w = os.pipe2(os.O_CLOEXEC)
        self._pending_path = pending_log
        self._pending = os.open(pending_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self._orphans: dict[int, bytes] = {}  # a crashed predecessor's unanswered events: fd number -> file
        self._held: list[int] = []  # their numbers, held open until they are answered
        self._deferred: list[tuple[Event, os.stat_result, bytes | None]] | None = []  # stub opens during start-up
        self.trace = None  # a ``tiering.trace.log.TraceLog`` the restores for readers go to, if any
        #: Stages in the rest of a dataset a reader missed in (``access.stagein.StageIn``); None: off.
        self.stage_in = None
        self._stage_slots: asyncio.Semaphore | None = None

    # -- marks -------------------------------------------------------------------

    def mark(self, dir_fd: int) -> None:
        """Watch the directory ``dir_fd`` (``FanotifyUnsupported`` when its filesystem refuses)."""
        st = os.fstat(dir_fd)
        key = (st.st_dev, st.st_ino)
        if key not in self._marked:
            self.group.mark_dir(dir_fd)
            self._marked.add(key)

    def follow_releases(self) -> int:
        """Watch the directories of files released since the last look, by any process on any node:
        from the catalog where this node can read it, and from every host's stub-directory log."""
        count = 0
        if self.catalog is not None:
            new = self.catalog.released_since(self._followed)
            if new:
                self._followed = new[-1][1]
                self.mark_stubs(rel for rel, _ in new)
            count += len(new)
        for log_path in sorted(self.guard_dir.glob("*.stubdirs")) if self.guard_dir else ():
            dirs = self._tail(log_path)
            self.mark_stubs(d + b"/-" if d else b"-" for d in dirs)  # (a name in the directory: its parent is marked)
            count += len(dirs)
        return count

    def _tail(self, log_path: Path) -> list[bytes]:
        """The directories appended to ``log_path`` since the last look (whole lines only)."""
        at = self._log_offsets.get(log_path, 0)
        try:
            with open(log_path, "rb") as f:
                f.seek(at)
                data = f.read()
        except FileNotFoundError:
            return []
        whole = data[:data.rfind(b"\n") + 1]
        self._log_offsets[log_path] = at + len(whole)
        dirs = []
        for line in whole.split():
            try:
                dirs.append(b"" if line == b"." else bytes.fromhex(line.decode()))
            except ValueError:
                continue  # a torn line from a writer that died: its directory comes again with its next release
        return dirs

    def mark_stubs(self, rels: Iterable[bytes]) -> int:
        """Watch the directories of these files (the released ones); returns how many directories."""
        for rel in rels:
            try:
                with self.mover.hot_root.entry(rel) as where:
                    self.mark(where.dir_fd)
            except (OSError, PathError) as exc:
                if isinstance(exc, FanotifyUnsupported):
                    raise
                log.warning("%s: not watched: %s", show_path(rel), exc)
        return len(self._marked)

    # -- life --------------------------------------------------------------------

    def serve(self, startup=None) -> None:
        """Answer events until ``stop()``; restores run on this thread's event loop.

        ``startup``: a blocking function run (on a worker thread) once events are
        being read, before any stub is restored: ``recover`` and marking the
        released files' directories open files on the hot tier, and the guard
        must be there to let its own opens through.
        """
        asyncio.run(self._serve(startup))

    def stop(self) -> None:
        os.write(self._stop_w, b"x")

    async def _serve(self, startup) -> None:
        self._loop = asyncio.get_running_loop()
        stopped = self._loop.create_future()
        threads = [threading.Thread(target=self._read_events, args=(stopped,), name="guard-events", daemon=True)]
        if self.listener is not None:
            threads.append(threading.Thread(target=self._announcements, name="guard-marks", daemon=True))
        for thread in threads:
            thread.start()
        if startup is not None:
            await asyncio.to_thread(startup)
        await self._settle_orphans()
        deferred, self._deferred = self._deferred or [], None
        for args in deferred:
            self._stub_opened(*args)
        follower = asyncio.ensure_future(self._follow(stopped))
        await stopped
        follower.cancel()
        for job in list(self._restores.values()):
            if job.task is not None:
                await asyncio.wait([job.task], timeout=self.timeout)

    async def _follow(self, stopped: asyncio.Future) -> None:
        while not stopped.done():
            try:
                await asyncio.to_thread(self.follow_releases)
            except FanotifyUnsupported as exc:
                log.error("new released files cannot be watched: %s", exc.reason)
            except Exception as exc:  # a catalog being rewritten, say: the next look tries again
                log.warning("could not look for newly released files: %s", exc)
            if self.report is not None:
                c = self.counters
                self.report(counts={"allowed": c.allowed, "restored": c.restored, "waited": c.waited,
                                    "denied": c.denied, "failures": c.failures})
            await asyncio.sleep(FOLLOW_EVERY)

    # -- the reader thread -----------------------------------------------------------

    def _read_events(self, stopped: asyncio.Future) -> None:
        poller = select.poll()
        poller.register(self.group.fd, select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        try:
            while True:
                ready = {fd for fd, _ in poller.poll()}
                if self._stop_r in ready:
                    return
                try:
                    events = self.group.read()
                except OSError as exc:
                    # The kernel could not open one event's file for us (it was removed, say): that
                    # event is gone (a permission event is denied by the kernel itself); read on.
                    if exc.errno in (errno.EMFILE, errno.ENFILE):
                        log.error("out of file descriptors reading events: %s", exc)
                        time.sleep(0.1)
                    continue
                for event in events:
                    self._triage(event)
        except Exception:  # the worker must not go on half-alive: the keeper restarts it
            log.exception("the guard's event reader failed")
            os._exit(70)
        finally:
            self._loop.call_soon_threadsafe(lambda: stopped.done() or stopped.set_result(None))

    def _triage(self, event: Event) -> None:
        """Answer an event at once unless it is the open of a stub; hand those to the loop."""
        if event.fd < 0 or event.mask & FAN_Q_OVERFLOW:
            return
        closed = False
        try:
            if event.pid != self._pid:
                st = os.fstat(event.fd)
                if stat.S_ISREG(st.st_mode) and is_stub(event.fd):
                    rel = self._rel(event.fd)
                    os.write(self._pending, b"+%d %s\n" % (event.fd, (rel or b"").hex().encode()))
                    self._loop.call_soon_threadsafe(self._stub_opened, event, st, rel)
                    return
            # Closed before the answer: the opener may take a lease the moment it is let through (a release
            # does), and our descriptor of its file would refuse it. The kernel matches the answer by number;
            # only this thread reads events, so the number cannot be handed to another event in between.
            os.close(event.fd)
            closed = True
            self.group.answer(event.fd, True)
            self.counters.allowed += 1
        except OSError as exc:
            log.warning("an open could not be answered as checked (%s); failing it with EIO", exc)
            try:
                self.group.answer(event.fd, False)
            except OSError:
                pass  # (the kernel no longer waits on it)
            if not closed:
                os.close(event.fd)

    def _answer(self, event: Event, allow: bool) -> None:
        try:
            self.group.answer(event.fd, allow)
        finally:
            os.close(event.fd)

    # -- restores, on the loop -------------------------------------------------------

    def _rel(self, fd: int) -> bytes | None:
        """The path under the hot tier of the open file ``fd`` (None: it is not under it)."""
        link = os.fsencode(os.readlink(f"/proc/self/fd/{fd}"))
        return link[len(self.hot):] if link.startswith(self.hot) else None

    def _stub_opened(self, event: Event, st: os.stat_result, rel: bytes | None) -> None:
        if self._deferred is not None:
            self._deferred.append((event, st, rel))  # restores wait until start-up is done
            return
        if not rel:
            return self._settle([event], "a stub outside the hot tier was opened; not ours to restore")
        if self._opened_by_restorer(rel, event.pid):
            self._settle([event], "", allow=True)
            return
        key = (st.st_dev, st.st_ino)
        job = self._restores.get(key)
        if job is None:
            job = self._begin(key, rel)
            if self.stage_in is not None:  # a miss in a dataset: the rest of it follows (``access.stagein``)
                asyncio.ensure_future(self._stage_dataset(rel))
        else:
            self.counters.waited += 1
        job.waiters.append(event)
        self._loop.call_later(self.timeout, self._expire, job, event, rel)
        if self.read_ahead:
            asyncio.ensure_future(self._read_ahead(rel))

    def _begin(self, key: tuple[int, int], rel: bytes) -> _Restore:
        job = self._restores[key] = _Restore()
        job.task = asyncio.ensure_future(self._restore(key, rel, job))
        return job

    async def _read_ahead(self, rel: bytes) -> None:
        """Start restoring the ``read_ahead`` stubs that follow ``rel`` in its folder (in name order):
        a dataloader reads a folder through, and each of its opens then finds its file on the way."""
        folder, _, name = rel.rpartition(b"/")
        listed = self._listings.get(folder)
        if listed is None or time.monotonic() - listed[0] > LISTING_TTL:
            try:
                listed = self._listings[folder] = (time.monotonic(), await asyncio.to_thread(self._stubs_in, folder))
            except (OSError, PathError):
                return
        names = listed[1]
        at = bisect.bisect_right(names, name)
        for follower in names[at:at + self.read_ahead]:
            path = folder + b"/" + follower if folder else follower
            try:
                with self.mover.hot_root.entry(path) as where:
                    st = where.lstat()
            except (OSError, PathError):
                continue
            key = (st.st_dev, st.st_ino)
            if st.st_size == 0 and key not in self._restores:
                self._begin(key, path)

    async def _stage_dataset(self, rel: bytes) -> None:
        """Restore the rest of ``rel``'s dataset, ``stage_in.slots`` at a time, behind readers' own restores."""
        try:
            files = await asyncio.to_thread(self.stage_in.files, rel)
        except (TieringError, OSError) as exc:
            log.warning("%s: its dataset is not staged in: %s", show_path(rel), exc)
            return
        if files:
            log.info("%s: staging in %d more file(s) of its dataset", show_path(rel), len(files))
        if self._stage_slots is None:  # one set of slots for every dataset being staged in
            self._stage_slots = asyncio.Semaphore(self.stage_in.slots)
        slots = self._stage_slots
        for path in files:
            await slots.acquire()
            try:
                with self.mover.hot_root.entry(path) as where:
                    st = where.lstat()
            except (OSError, PathError):
                slots.release()
                continue
            key = (st.st_dev, st.st_ino)
            if st.st_size or key in self._restores:  # restored meanwhile, or a reader's restore runs
                slots.release()
                continue
            self._begin(key, path).task.add_done_callback(lambda _: slots.release())

    def _stubs_in(self, folder: bytes) -> list[bytes]:
        """The names of the stubs in ``folder`` (under the hot tier), sorted."""
        if len(self._listings) > 1024:
            self._listings.clear()
        with self.mover.hot_root.entry(folder + b"/-" if folder else b"-") as where:
            fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=where.dir_fd)
        names = []
        with os.scandir(fd) as entries:
            for entry in entries:
                try:
                    if (entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_size == 0
                            and is_stub(f"/proc/self/fd/{fd}/{entry.name}", follow_symlinks=False)):
                        names.append(os.fsencode(entry.name))
                except OSError:
                    continue
        os.close(fd)
        return sorted(names)

    def _opened_by_restorer(self, rel: bytes, pid: int) -> bool:
        try:
            with self.mover.hot_root.entry(rel) as where:
                holder = holder_of(where, self.mover.host_locks)
        except (OSError, PathError):
            return False
        return holder is not None and holder.pid == pid and holder.host == self._host

    async def _restore(self, key: tuple[int, int], rel: bytes, job: _Restore) -> None:
        why = ""
        try:
            if await self._settled_release(job):
                return  # it has its bytes: a stale mark (a release that failed after marking), no stub
            if why := await asyncio.to_thread(self._object_asleep, rel, False):
                return  # (finally answers: an error at once, not a wait of hours)
            outcome = await self._restore_when_free(job, rel)
            if outcome.stop and getattr(self.mover.catalog, "_fenced", ""):
                # Another node's recover declared this worker's run dead (it was paused too long): the catalog
                # refuses its begins for good. A new worker is a new run (the keeper starts one).
                log.error("%s; the worker stops so that a new one takes over", outcome.reason)
                self.stop()
            if outcome.status == DONE:
                self.counters.restored += 1
                if self.trace is not None:  # the access trace: this reader's open is a miss
                    self.trace.record("restore", [rel], outcome.bytes, outcome.tier)
                log.info("%s: restored for a reader (%s)", show_path(rel), outcome.reason)
            elif outcome.status != NOOP:
                why = (await asyncio.to_thread(self._object_asleep, rel, True)
                       or await self._unless_filled(job, f"{show_path(rel)}: {outcome.reason}"))
        except (TieringError, OSError) as exc:
            why = await self._unless_filled(job, f"{show_path(rel)}: {exc}")
        except Exception as exc:  # never leave a reader waiting on a bug
            log.exception("restore of %s failed", show_path(rel))
            why = f"{show_path(rel)}: {type(exc).__name__}: {exc}"
        finally:
            if not why:
                await self._until_seen(job)
            self._restores.pop(key, None)
            self._settle(job.waiters, why)
            job.waiters = []

    async def _restore_when_free(self, job: _Restore, rel: bytes):
        """The in-place restore of ``rel``, tried again while another writer of a server catalog holds the
        file and a reader still waits on the stub: a ``tiering restore`` elsewhere has it claimed (it ends,
        one way or the other, and lets go), or a release has truncated it and not yet committed its end.
        Up to ``timeout`` for a claim, ``RELEASE_SETTLE`` for a release; then the last outcome stands."""
        started, pause = time.monotonic(), 0.02
        while True:
            outcome = await self.mover.restore_async(rel, in_place=True)
            waited = time.monotonic() - started
            if outcome.status == SKIPPED:
                again = waited + pause < self.timeout
            elif outcome.status == FAILED and not outcome.stop:
                again = waited + pause < RELEASE_SETTLE and await asyncio.to_thread(self._unreleased, rel)
            else:
                return outcome
            if not (again and getattr(self.mover.catalog, "claims", False) and self._still_stub(job)):
                return outcome
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)

    def _unreleased(self, rel: bytes) -> bool:
        """Whether the catalog does not (yet) call ``rel`` released."""
        rec = self.mover.catalog.get(rel)
        return rec is None or rec.state != FileState.RELEASED

    @staticmethod
    def _still_stub(job: _Restore) -> bool:
        """Whether a reader still waits on the job's file and it is still an empty, marked stub."""
        try:
            return bool(job.waiters) and os.fstat(job.waiters[0].fd).st_size == 0 and is_stub(job.waiters[0].fd)
        except OSError:
            return False

    async def _unless_filled(self, job: _Restore, why: str) -> str:
        """``why`` this guard's restore did not succeed, or '' when the openers' file has its bytes anyway.

        On a filesystem shared by nodes another node's guard may have restored
        the file while this one looked at a stale view of it (and then found
        "the stub changed"): the reader must get the bytes, not EIO. Bytes
        without the stub mark are whole (a fill takes the mark off only after
        its bytes are durable), so they are the file's own.
        """
        if await self._openers_see(job, lambda fd: os.fstat(fd).st_size > 0 and not is_stub(fd)):
            log.info("%s; the file has its bytes now (restored by another restorer): the reader gets them", why)
            return ""
        return why

    async def _until_seen(self, job: _Restore) -> None:
        """Wait (up to ``VIEW_LAG``) until the openers' view of the restored file shows its bytes."""
        await self._openers_see(job, lambda fd: os.fstat(fd).st_size > 0)

    @staticmethod
    async def _openers_see(job: _Restore, shown: Callable[[int], bool]) -> bool:
        """Whether the openers' view of their file (the first waiter's descriptor) satisfies ``shown``
        within ``VIEW_LAG`` seconds (a networked client's view of another node's change lags); False when
        it does not, when its descriptor fails, or when no opener waits any more."""
        deadline = time.monotonic() + VIEW_LAG
        while job.waiters:
            try:
                if shown(job.waiters[0].fd):
                    return True
            except OSError:
                return False
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return False

    def _object_asleep(self, rel: bytes, failed: bool) -> str:
        """If the file's object sits in an archive class (OSS Archive/ColdArchive, S3 GLACIER/DEEP_ARCHIVE)
        and cannot be read yet: ask the store to restore it, note that in the ledger, and say so ('' if not).

        Looked at before a restore when the catalog says the class is one of those (no GET that would
        fail), or after one ``failed`` (the class was not known).
        """
        rec = self.mover.catalog.get(rel)
        if rec is None or not rec.tier or not rec.object_key:
            return ""
        if not failed and rec.storage_class not in ARCHIVE_CLASSES:
            return ""
        store = self.mover.store(rec.tier)
        if not isinstance(store, SupportsRestore):
            return ""
        try:
            info = store.head(rec.object_key)
            if info.readable:
                return ""
            store.restore(rec.object_key)
        except (TieringError, OSError) as exc:
            return f"{show_path(rel)}: its object is archived and could not be restored: {exc}" if failed else ""
        entry = self.mover.catalog.begin("object-restore", rel, "requested", tier=rec.tier, object_key=rec.object_key)
        self.mover.catalog.end(entry, "done", storage_class=info.storage_class)
        return (f"{show_path(rel)}: its object is in {rec.tier}'s {info.storage_class} class: restore of the object "
                f"requested at {time.strftime('%Y-%m-%d %H:%M:%S')}; the file can be opened once it is back")

    async def _settled_release(self, job: _Restore) -> bool:
        """Wait while a marked file still has bytes: a release is between its mark and its truncate.
        True if it still has them after ``RELEASE_SETTLE`` seconds (then it is no stub: let it be read)."""
        deadline = time.monotonic() + RELEASE_SETTLE
        while job.waiters:
            if os.fstat(job.waiters[0].fd).st_size == 0:
                return False
            if time.monotonic() >= deadline:
                return True
            await asyncio.sleep(0.01)
        return False

    def _expire(self, job: _Restore, event: Event, rel: bytes) -> None:
        if event in job.waiters:
            job.waiters.remove(event)
            self._settle([event], f"{show_path(rel)}: not restored within {self.timeout:g}s (the restore goes on)")

    def _settle(self, events: list[Event], why: str, allow: bool = False) -> None:
        """Answer ``events``: allowed only if their file is no longer a stub (or ``allow``: the restorer's own)."""
        for event in events:
            ok = allow
            if not ok and not why:
                try:  # a stub is empty: bytes are the file's own (restored, or never released)
                    ok = os.fstat(event.fd).st_size > 0
                except OSError:
                    ok = False
                if not ok:
                    why = "the file is still a stub after its restore"
            if not ok:
                self.counters.failed(why)
                log.error("open denied (EIO): %s", why)
            self._answer(event, ok)
            os.write(self._pending, b"-%d\n" % event.fd)

    # -- crash recovery ---------------------------------------------------------------

    def sweep_orphans(self, limit: int = 4096) -> int:
        """First thing a worker does, before it reads an event or opens a file on the hot tier:
        deal with the events a crashed predecessor took and never answered.

        Their fds died with it, but the kernel still waits on their numbers (the
        keeper kept the group open), and matches an answer by number alone. Those
        the pending log names are kept for ``_settle_orphans`` (restored, then
        answered, once the reader runs); their numbers are held open here on
        /dev/null so no new event can be given one of them before then. Every
        other number up to ``limit`` is denied now (the kernel ignores numbers it
        does not wait on): an event taken in the instant before it was logged,
        or a resident file's open that was being let through; its reader gets
        EIO once. Returns how many such answers the kernel took.
        """
        try:
            lines = self._pending_path.read_bytes().split(b"\n")
        except FileNotFoundError:
            lines = []
        for line in lines:
            fd, _, rel = line[1:].partition(b" ")
            if line[:1] == b"+" and fd.isdigit():
                self._orphans[int(fd)] = bytes.fromhex(rel.decode())
            elif line[:1] == b"-" and fd.isdigit():
                self._orphans.pop(int(fd), None)
        denied = 0
        for fd in range(0, max([limit, *self._orphans]) + 1):
            if fd not in self._orphans:
                denied += self.group.answer(fd, False)
        null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        for fd in self._orphans:
            try:
                os.fstat(fd)  # already one of ours: it cannot be handed out either
            except OSError:
                os.dup2(null, fd, inheritable=False)
                self._held.append(fd)
        os.close(null)
        os.ftruncate(self._pending, 0)
        return denied

    async def _settle_orphans(self) -> None:
        """Restore what the orphans opened (in place: they opened those inodes), then answer them."""
        for fd, rel in self._orphans.items():
            ok = False
            if rel:
                try:
                    await self.mover.restore_async(rel, in_place=True)
                    with self.mover.hot_root.entry(rel) as where:
                        ok = where.lstat().st_size > 0 and not is_stub(where.fd_path())
                except (TieringError, OSError) as exc:
                    log.error("%s: a reader left waiting by a crashed worker gets EIO: %s", show_path(rel), exc)
            self.group.answer(fd, ok)
            log.warning("%s: answered a reader left waiting by a crashed worker (%s)", show_path(rel),
                        "restored" if ok else "EIO")
        self._orphans.clear()
        for fd in self._held:
            os.close(fd)
        self._held.clear()

    # -- the announcer thread -----------------------------------------------------------

    def _announcements(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve_releaser, args=(conn,), name="guard-releaser", daemon=True).start()

    def _serve_releaser(self, conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    msg, fds, _, _ = socket.recv_fds(conn, 64, 4)
                except OSError:
                    return
                if not msg:
                    return
                answer = b"ok\n"
                try:
                    for fd in fds:
                        self._check_ours(fd)
                        self.mark(fd)
                    if not fds:
                        answer = b"no: no directory was sent\n"
                except (OSError, PathError) as exc:
                    answer = f"no: {exc}\n".encode()
                finally:
                    for fd in fds:
                        os.close(fd)
                try:
                    conn.sendall(answer)
                except OSError:
                    return

    def _check_ours(self, dir_fd: int) -> None:
        """Only directories of the hot tier are marked (whoever sends them)."""
        where = os.readlink(f"/proc/self/fd/{dir_fd}").encode() + b"/"
        if not (where.startswith(self.hot) or where == self.hot) or not stat.S_ISDIR(os.fstat(dir_fd).st_mode):
            raise PathError(f"{os.fsdecode(where)}: not a directory of the hot tier {os.fsdecode(self.hot)}")


def released_files(catalog) -> Iterable[bytes]:
    """The catalog's released files (whose directories the guard watches from the start)."""
    for rec in catalog.records(FileState.RELEASED):
        yield rec.path



def work(config, group: Group, listener: socket.socket | None, ready=lambda watched, heat: None,
         heat_fd: int | None = None, heat_off: str = "", note=None) -> int:
    """A worker's life (run by the keeper in a forked child): settle what a crash left, mark, serve.

    Returns the exit status: 0 after SIGTERM.
    """
    import signal

    from tiering.mover.beneath import HotRoot
    from tiering.mover.guardlink import GuardPaths
    from tiering.mover.handoff import open_guard_catalog, read_catalog
    from tiering.mover.ops import Mover
    from tiering.mover.recover import recover

    paths = GuardPaths.of(config)
    # A server catalog: the guard is a writer of it like any other (a run, claims); SQLite: its own ledger.
    ledger = open_guard_catalog(config, paths.ledger, HotRoot(config.hot_path))
    mover = Mover(config, ledger, check_writers=False)  # type: ignore[arg-type]  (a catalog by duck typing)
    try:
        worker = Worker(group, mover, timeout=config.guard.timeout, pending_log=paths.pending, listener=listener,
                        guard_dir=paths.dir, read_ahead=config.guard.read_ahead, report=note)
        if denied := worker.sweep_orphans():
            log.warning("failed %d open(s) a crashed worker had taken and not logged (EIO)", denied)

        def startup() -> None:
            for outcome in recover(mover):
                log.info("recovered: %s %s: %s", outcome.action, show_path(outcome.path), outcome.reason)
            main = read_catalog(ledger)
            worker.catalog, worker._followed = main, time.time() - 60  # (a minute back: what the scan may miss)
            dirs = worker.mark_stubs(released_files(main)) if main is not None else 0
            worker.follow_releases()  # and every host's stub-directory log, from its start
            dirs = len(worker._marked)
            log.info("guarding %s: %d director%s with released files watched", config.hot_path, dirs,
                     "y" if dirs == 1 else "ies")
            ready(dirs, heat is not None)

        heat = _heat_watch(config, paths, heat_fd, heat_off)
        worker.trace = _trace_log(config)
        worker.stage_in = _stage_in(config, mover)
        signal.signal(signal.SIGTERM, lambda *_: worker.stop())
        signal.signal(signal.SIGINT, lambda *_: worker.stop())
        try:
            worker.serve(startup)
        finally:
            if heat is not None:
                heat.stop()
            if worker.trace is not None:
                worker.trace.close()
        return 0
    finally:
        mover.close()
        ledger.close()


def _heat_watch(config, paths, fd: int | None, off: str):
    """Heat from every open on this node (``access.heat``), or None (one log line says why)."""
    from tiering.access.heat import HeatWatch

    if fd is None:
        log.warning("heat from fanotify: off (%s); the daemon's file events still count accesses", off)
        return None
    watch = HeatWatch(fd, config.hot_path, paths.heat)
    watch.start()
    return watch


def _stage_in(config, mover):
    """The dataset stage-in (``access.stagein``) when ``[guard] stage_datasets`` and the policy's datasets
    call for it, else None (a policy that cannot be read: one log line, and the guard serves without it)."""
    from tiering.access.stagein import StageIn
    from tiering.policy import load_policy

    if config.guard.stage_datasets is False or config.policy_path is None:
        return None
    try:
        policy = load_policy(config.policy_path, config)
    except TieringError as exc:
        log.warning("datasets are not staged in: the policy cannot be read: %s", exc)
        return None
    if not policy.datasets:
        if config.guard.stage_datasets:
            log.warning("[guard] stage_datasets: the policy %s declares no datasets; nothing to stage in",
                        config.policy_path)
        return None

    def size_of(rel: bytes) -> int:
        rec = mover.catalog.get(rel)
        return (rec.size or 0) if rec is not None else 0

    return StageIn(config.hot_path, policy.datasets, policy.watermark.high if policy.watermark else None, size_of,
                   slots=max(1, mover.transfer_jobs // 2))


def _trace_log(config):
    """The access trace restores are recorded into (``[trace]``), or None."""
    from tiering.trace.log import TraceLog

    return TraceLog.of(config)
