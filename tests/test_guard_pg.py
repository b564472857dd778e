"""The access guard on a PostgreSQL catalog: its restores are journaled in the shared catalog, as a run of its own.

Real parts only: the hot tier is the session's loop-mounted ext4, the capacity tier a posix folder, the catalog
the session's PostgreSQL server (tests/pg_fixtures.py), the guard a real ``tiering guard`` (keeper and forked
worker), the readers and the other writers real processes. A worker is stopped at an exact step of its restore
with ``TIERING_CRASH_AT=step`` and ``TIERING_CRASH_SIGNAL=STOP`` (it stops itself there, holding its claim).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import guard_setup
import pytest
from conftest import is_root
from guard_setup import Guarded, guarded_setup, read_in_process
from pg_fixtures import PG_PASSWORD, pg_server, pg_url  # noqa: F401 - fixtures

from tiering.catalog import Catalog

pytestmark = pytest.mark.skipif(not is_root(), reason="fanotify permission events need root")

NAME = "d/f.bin"


@pytest.fixture
def gpg(ext4_loop, tmp_path, pg_url, monkeypatch) -> Guarded:
    """A guarded hot tier on ext4, a posix capacity tier, the catalog on PostgreSQL (its password as
    ``${PGCAT_TEST_PW}``); one released file, ``NAME``; the guard not started."""
    monkeypatch.setitem(guard_setup.ENV, "PGCAT_TEST_PW", PG_PASSWORD)
    cap = tmp_path / "cap"
    cap.mkdir()
    g = guarded_setup(ext4_loop / tmp_path.name, tmp_path, "", tier=f'url = "{cap}"\n')
    ref = pg_url.replace(f":{PG_PASSWORD}@", ":${PGCAT_TEST_PW}@")
    text = g.config.read_text().replace("[catalog]\n", f'[catalog]\nurl = "{ref}"\n', 1)
    g.config.write_text(text + '[daemon]\nlog_level = "debug"\n')
    g.url = pg_url
    g.write({NAME: os.urandom(300_000)})
    g.release()
    yield g
    g.stop_guard()
    shutil.rmtree(g.guard_dir, ignore_errors=True)
    shutil.rmtree(g.hot, ignore_errors=True)


def start_stopping_guard(g: Guarded, monkeypatch, step: str) -> None:
    """Start the guard with its worker set to stop itself (SIGSTOP) at ``step`` of its first restore."""
    with monkeypatch.context() as m:
        m.setitem(guard_setup.ENV, "TIERING_CRASH_AT", step)
        m.setitem(guard_setup.ENV, "TIERING_CRASH_SIGNAL", "STOP")
        g.start_guard()


def wait_stopped(pid: int, wait: float = 20.0) -> None:
    """Until process ``pid`` is stopped (state T)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat", "rb") as f:
            if f.read().rpartition(b")")[2].split()[0] == b"T":
                return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} did not stop at its crash point")


def restores(url: str, rel: bytes) -> list[tuple[str, str, str, bool, str | None]]:
    """(status, step, run's command, in place, recovered) of every restore of ``rel`` in the catalog, oldest first."""
    with Catalog.open(url) as cat:
        commands = dict(cat._read("SELECT id, command FROM runs"))
        return [(e.status, e.step, commands.get(e.run_id), bool(e.detail.get("in_place")), e.detail.get("recovered"))
                for e in reversed(cat.history(rel)) if e.action == "restore"]


def test_a_plain_open_restores_through_the_guard_and_the_catalog_shows_it_at_once(gpg):
    g = gpg
    g.start_guard()
    out = read_in_process(["cat", str(g.hot / NAME)])
    assert out.returncode == 0 and out.stdout == g.files[NAME], out.stderr
    # Right after the open returned: in the shared catalog, no ledger, no writer in between.
    assert restores(g.url, NAME.encode()) == [("done", "filling", "guard", True, None)]
    with Catalog.open(g.url) as cat:
        assert cat.get(NAME.encode()).state == "archived" and cat.open_entries() == []
        [(host, pid, ended)] = cat._read("SELECT host, pid, ended_at FROM runs WHERE command = 'guard'")
    assert pid == g.status()["worker"] and ended is None  # the worker's own run, alive
    status = g.tiering("status", str(g.hot / NAME))  # any node's `tiering status FILE` reads the server
    assert status.returncode == 0 and f"{NAME}: archived" in status.stdout, status.stdout + status.stderr
    assert list(g.guard_dir.glob("*.db")) == []  # no ledger was created
    log = g.stop_guard()
    assert "restored for a reader" in log  # (the log is at debug level: it says a lot)
    assert PG_PASSWORD not in log and PG_PASSWORD not in (g.guard_dir / f"{os.uname().nodename.split('.')[0]}.lock").read_text()
    with Catalog.open(g.url) as cat:  # the worker's run ended with it
        assert cat._read("SELECT count(*) FROM runs WHERE command = 'guard' AND ended_at IS NULL") == [(0,)]


def test_a_tiering_restore_beside_the_guards_restore_of_the_same_file_does_not_act(gpg, monkeypatch):
    g = gpg
    start_stopping_guard(g, monkeypatch, "restore:fetched")
    worker = g.status()["worker"]
    reader = subprocess.Popen(["cat", str(g.hot / NAME)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_stopped(worker)  # the guard's restore holds the file's claim, its bytes fetched, the stub not filled
        other = g.tiering("restore", str(g.hot / NAME), timeout=60)
        assert "guard" in other.stdout + other.stderr and f"pid {worker}" in other.stdout + other.stderr, \
            other.stdout + other.stderr
        assert (g.hot / NAME).stat().st_size == 0  # it did not act: the stub is as it was
        os.kill(worker, signal.SIGCONT)
        out, err = reader.communicate(timeout=60)
    finally:
        os.kill(worker, signal.SIGCONT)
        if reader.poll() is None:
            reader.kill()
            reader.communicate()
    assert reader.returncode == 0 and out == g.files[NAME], err
    assert restores(g.url, NAME.encode()) == [("done", "filling", "guard", True, None)]  # one restore, the guard's
    with Catalog.open(g.url) as cat:
        assert cat.get(NAME.encode()).state == "archived" and cat.open_entries() == []
        assert cat._read("SELECT count(*) FROM claims") == [(0,)]


def test_an_open_while_tiering_restore_holds_the_file_waits_for_it_and_gets_the_bytes(gpg, monkeypatch):
    g = gpg
    g.start_guard()
    crash = {**guard_setup.ENV, "TIERING_CRASH_AT": "restore:fetched", "TIERING_CRASH_SIGNAL": "STOP"}
    other = subprocess.Popen([guard_setup.sys.executable, "-m", "tiering", "restore", str(g.hot / NAME), "-c",
                              str(g.config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=guard_setup.REPO, env=crash)
    reader = None
    try:
        wait_stopped(other.pid)  # `tiering restore` holds the claim (and the restore lock)
        reader = subprocess.Popen(["cat", str(g.hot / NAME)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(0.5)  # the guard finds the file claimed, and waits for it while the reader waits
        assert reader.poll() is None
        os.kill(other.pid, signal.SIGCONT)
        out, err = reader.communicate(timeout=60)
        other.communicate(timeout=60)
    finally:
        if other.poll() is None:
            os.kill(other.pid, signal.SIGCONT)
        for proc in (other, reader):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert reader.returncode == 0 and out == g.files[NAME], err
    done = [r for r in restores(g.url, NAME.encode()) if r[0] == "done"]
    assert len(done) == 1, restores(g.url, NAME.encode())  # whichever restored it, one did
    assert (g.hot / NAME).read_bytes() == g.files[NAME]
    with Catalog.open(g.url) as cat:
        assert cat.get(NAME.encode()).state == "archived" and cat.open_entries() == []


def test_a_killed_workers_restore_is_settled_by_another_processs_recover_only_once_its_run_is_dead(gpg, monkeypatch):
    g = gpg
    start_stopping_guard(g, monkeypatch, "restore:filling")
    worker = g.status()["worker"]
    reader = subprocess.Popen(["cat", str(g.hot / NAME)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_stopped(worker)  # journaled "filling", the stub not filled yet
        # Alive (paused, its pid here, its heartbeat fresh): recover from another process leaves it alone.
        assert g.tiering("recover").returncode == 0
        assert restores(g.url, NAME.encode()) == [("open", "filling", "guard", True, None)]
        # The reader goes (an open of the stub on this host waits for the guard, and so would recover's), then
        # the keeper, so that no new worker settles the restore itself (its start-up recovers) ...
        reader.kill()
        reader.communicate()
        g.proc.kill()
        g.proc.wait()
        summary = g.tiering("status").stdout
        assert "1 action in progress" in summary and "interrupted" not in summary, summary  # still paused, alive
        os.kill(worker, signal.SIGKILL)  # ... and now its run is dead
        deadline = time.monotonic() + 10
        while "1 interrupted action" not in (summary := g.tiering("status").stdout) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "1 interrupted action" in summary and "in progress" not in summary, summary
        done = g.tiering("recover")
        assert done.returncode == 0, done.stderr
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.communicate()
    [(status, step, command, in_place, recovered)] = restores(g.url, NAME.encode())
    assert (status, step, command, in_place) == ("done", "filling", "guard", True) and recovered, recovered
    assert (g.hot / NAME).read_bytes() == g.files[NAME]  # filled from the verified temp file the worker left
    with Catalog.open(g.url) as cat:
        assert cat.get(NAME.encode()).state == "archived" and cat.open_entries() == []
        assert cat._read("SELECT count(*) FROM claims") == [(0,)]
        assert cat._read("SELECT ended_at IS NOT NULL FROM runs WHERE pid = ?", (worker,)) == [(True,)]


def test_a_guard_that_cannot_reach_the_server_serves_from_the_stubs_and_its_ledger_is_applied_later(gpg):
    g = gpg
    g.config.write_text(g.config.read_text().replace("@127.0.0.1:", "@127.0.0.2:"))  # nothing listens there
    g.start_guard(wait=60)
    out = read_in_process(["cat", str(g.hot / NAME)])
    assert out.returncode == 0 and out.stdout == g.files[NAME], out.stderr  # served from the stub's own mark
    assert len(list(g.guard_dir.glob("*.db"))) == 1
    log = g.stop_guard()
    assert "cannot be reached" in log and "ledger" in log and PG_PASSWORD not in log, log
    g.config.write_text(g.config.read_text().replace("@127.0.0.2:", "@127.0.0.1:"))  # the server is back
    with Catalog.open(g.url) as cat:
        assert cat.get(NAME.encode()).state == "released"
    assert g.tiering("recover").returncode == 0  # the next writer applies the ledger
    with Catalog.open(g.url) as cat:
        assert cat.get(NAME.encode()).state == "archived"
