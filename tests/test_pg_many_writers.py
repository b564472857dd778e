"""Many writers on one PostgreSQL catalog, in real processes (tests/pg_fixtures.py starts the server).

Two movers on overlapping plans never both act on one file; ``recover`` settles a SIGKILLed run's claims
and leaves a live run's alone (another host: its heartbeat is fresh), and fences a run it declared dead;
a second cycle gets the lock code naming the first while hand-run writers go on beside it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from pg_fixtures import PG_PASSWORD, pg_server, pg_url  # noqa: F401 - fixtures

from tiering.catalog import Catalog
from tiering.catalog.postgres import holder_of
from tiering.stores.checksum import checksum_bytes
from tiering.stores.keys import encode_key

TIERING = str(Path(sys.executable).with_name("tiering"))
EXIT_BUSY = 4
ARCHIVE_ALL = '[[rules]]\nname = "all"\nmatch = \'type == "file"\'\naction = "archive"\n[safety]\nmin_age = "0s"\n'


def setup(tmp_path: Path, url: str, files: int = 0, size: int = 2000) -> tuple[Path, dict[bytes, bytes]]:
    """A config whose catalog is ``url`` (password as ``${PGCAT_TEST_PW}``), one posix tier, ``files`` files."""
    hot, cap = tmp_path / "hot", tmp_path / "cap"
    (hot / "d").mkdir(parents=True)
    cap.mkdir()
    data = {}
    for i in range(files):
        rel = f"d/f{i:03d}".encode()
        data[rel] = os.urandom(size + i)
        (hot / os.fsdecode(rel)).write_bytes(data[rel])
    (tmp_path / "policy.toml").write_text(ARCHIVE_ALL)
    ref = url.replace(f":{PG_PASSWORD}@", ":${PGCAT_TEST_PW}@")
    cfg = tmp_path / "tiering.toml"
    cfg.write_text(f'default_tier = "cap"\npolicy = "policy.toml"\n[hot]\npath = "{hot}"\n[catalog]\n'
                   f'path = "{tmp_path}/state/catalog.db"\nurl = "{ref}"\n[concurrency]\njobs = 4\n'
                   f'[tiers.cap]\nurl = "{cap}"\n')
    return cfg, data


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("TIERING_CONFIG", "TIERING_HOME")}
    return {**clean, "PGCAT_TEST_PW": PG_PASSWORD}


def tiering(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([TIERING, *args], capture_output=True, text=True, timeout=60, env=env())


#: A mover process: opens the catalog, says "ready", waits for "go" on stdin, then releases the files named
#: on its command line (archiving each first) and prints its outcomes' counts as JSON.
MOVER = textwrap.dedent("""
    import json, sys
    from collections import Counter
    from tiering.catalog import Catalog
    from tiering.config import load_config
    from tiering.mover.executor import Task, execute
    from tiering.mover.ops import Mover
    config = load_config(sys.argv[1])
    with Catalog.open(config.catalog_target, writer=True, purpose="release") as cat:
        mover = Mover(config, cat)
        print("ready", flush=True)
        sys.stdin.readline()
        result = execute(mover, [Task(p.encode(), "release") for p in sys.argv[2:]], jobs=4)
        mover.close()
    print(json.dumps({f"{a} {s}": n for (a, s), n in result.counts.items()}), flush=True)
""")


def test_two_movers_on_overlapping_plans_never_act_on_one_file_twice(tmp_path, pg_url):
    cfg, data = setup(tmp_path, pg_url, files=240)
    names = sorted(os.fsdecode(rel) for rel in data)
    # Both start on the 120 files they share, in the same order, at the same instant: they race for each.
    plans = (names[60:180] + names[:60], names[60:180] + names[180:])
    movers = [subprocess.Popen([sys.executable, "-c", MOVER, str(cfg), *plan], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, env=env()) for plan in plans]
    try:
        for proc in movers:
            assert proc.stdout.readline().strip() == "ready"
        for proc in movers:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        counts = [json.loads(proc.communicate(timeout=60)[0]) for proc in movers]
    finally:
        for proc in movers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert [proc.returncode for proc in movers] == [0, 0]
    total = {k: sum(c.get(k, 0) for c in counts) for k in {k for c in counts for k in c}}
    assert total.get("release done") == 240 and "release failed" not in total, counts
    assert total.get("release skipped", 0) + total.get("release noop", 0) == 120, counts  # the shared ones, once each
    with Catalog.open(pg_url) as cat:
        for rel, want in data.items():
            acted = [(e.action, e.run_id) for e in cat.history(rel) if e.status == "done"]
            assert sorted(a for a, _ in acted) == ["archive", "release"], (rel, cat.history(rel))
            assert len({run for _, run in acted}) == 1  # archived and released by one run
            rec = cat.get(rel)
            assert rec.state == "released" and rec.checksum == checksum_bytes(want)
            assert (tmp_path / "cap" / encode_key(rel)).read_bytes() == want  # the bytes, exact
            assert (tmp_path / "hot" / os.fsdecode(rel)).stat().st_size == 0
        assert cat.open_entries() == [] and cat._read("SELECT count(*) FROM claims") == [(0,)]
        runs = {e.run_id for rel in data for e in cat.history(rel)}
    assert len(runs) == 2  # both movers did part of the work


def test_a_mover_killed_mid_race_loses_nothing_and_recover_from_a_third_process_finishes(tmp_path, pg_url):
    """Mover B is SIGKILLed at its 15th truncate-before-journal (``release:stubbed``) with others in flight;
    mover A skips what B held; ``tiering recover`` settles B's entries; a last pass does the rest: each file
    archived once and released once, the bytes exact."""
    cfg, data = setup(tmp_path, pg_url, files=120)
    names = sorted(os.fsdecode(rel) for rel in data)
    crash = {**env(), "TIERING_CRASH_AT": "release:stubbed:15"}
    movers = [subprocess.Popen([sys.executable, "-c", MOVER, str(cfg), *names], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, env=e) for e in (env(), crash)]
    try:
        for proc in movers:
            assert proc.stdout.readline().strip() == "ready"
        for proc in movers:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outs = [proc.communicate(timeout=60)[0] for proc in movers]
    finally:
        for proc in movers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert [proc.returncode for proc in movers] == [0, -signal.SIGKILL], outs
    with Catalog.open(pg_url) as cat:
        left = cat.open_entries()
        assert left and cat._read("SELECT count(*) FROM claims") == [(len(left),)]  # B's, held by a dead run
    done = tiering("recover", "-c", str(cfg))
    assert done.returncode == 0, done.stderr
    last = subprocess.run([sys.executable, "-c", MOVER, str(cfg), *names], input="go\n", capture_output=True,
                          text=True, env=env(), timeout=60)
    assert last.returncode == 0 and "failed" not in last.stdout, last.stdout + last.stderr
    with Catalog.open(pg_url) as cat:
        for rel, want in data.items():
            done_entries = sorted(e.action for e in cat.history(rel) if e.status == "done")
            assert done_entries == ["archive", "release"], (rel, cat.history(rel))
            assert cat.get(rel).state == "released" and (tmp_path / "cap" / encode_key(rel)).read_bytes() == want
            assert (tmp_path / "hot" / os.fsdecode(rel)).stat().st_size == 0
        assert cat.open_entries() == [] and cat._read("SELECT count(*) FROM claims") == [(0,)]


#: A run that begins two archives and dies (SIGKILL) the instant they are journaled.
KILLED = textwrap.dedent("""
    import os, signal, sys
    from tiering.catalog import Catalog
    cat = Catalog.open(sys.argv[1], writer=True, purpose="archive")
    for name in (b"d/k0", b"d/k1"):
        cat.begin("archive", name, "copying", tier="cap", object_key=name.decode(), expect=None)
    print(cat.run_id, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")

#: A run that stays alive, heartbeating every 0.2 s, with one archive open; it says it runs on another host.
#: On "begin" it tries to journal one more action and prints what happened.
LIVE = textwrap.dedent("""
    import sys
    import tiering.catalog.db as db
    db.HEARTBEAT_EVERY = 0.2
    from tiering.catalog import Catalog, FileRecord
    cat = Catalog.open(sys.argv[1], writer=True, purpose="archive")
    entry = cat.begin("archive", b"d/l0", "copying", tier="cap", object_key="d/l0", expect=None)
    cat._write(lambda conn: conn.execute("UPDATE runs SET host = 'other-node' WHERE id = ?", (cat.run_id,)))
    print(cat.run_id, flush=True)
    sys.stdin.readline()
    try:  # its copy "verified": the end that would record it archived
        cat.end(entry, record=FileRecord(b"d/l0", "archived", tier="cap", object_key="d/l0", size=1), checksum="x")
        print("ended", flush=True)
    except Exception as exc:
        print(type(exc).__name__, exc, flush=True)
    try:
        cat.begin("archive", b"d/l1", "copying", tier="cap", object_key="d/l1", expect=None)
        print("began", flush=True)
    except Exception as exc:
        print(type(exc).__name__, exc, flush=True)
""")


def test_recover_settles_a_killed_runs_claims_and_leaves_a_live_runs_on_another_host_alone(tmp_path, pg_url):
    cfg, _ = setup(tmp_path, pg_url)
    Catalog.open(pg_url, writer=True).close()  # the tables
    killed = subprocess.run([sys.executable, "-c", KILLED, pg_url], capture_output=True, text=True, timeout=30)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    live = subprocess.Popen([sys.executable, "-c", LIVE, pg_url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        live_run = live.stdout.readline().strip()
        time.sleep(0.5)  # a few of its heartbeats
        done = tiering("recover", "-c", str(cfg))
        assert done.returncode == 0, done.stderr
        with Catalog.open(pg_url) as cat:
            [still] = cat.open_entries()
            assert (still.path, still.run_id) == (b"d/l0", live_run)
            assert cat._read("SELECT path, run_id FROM claims") == [(b"d/l0", live_run)]
            assert {(e.path, e.status) for p in (b"d/k0", b"d/k1") for e in cat.history(p)} == {
                (b"d/k0", "rolled_back"), (b"d/k1", "rolled_back")}
        with Catalog.open(pg_url, writer=True, purpose="archive") as other:  # another writer cannot take l0
            with pytest.raises(Exception, match=f"run {live_run} \\(archive, pid {live.pid} on other-node\\)"):
                other.begin("archive", b"d/l0", "copying")

        # Frozen past six of its heartbeats, the live run is dead on any host: recover settles its entry,
        # and once it thaws, the end it was about to write changes nothing (the claim is no longer its own),
        # and its heartbeat finds its run ended and it starts nothing more.
        os.kill(live.pid, signal.SIGSTOP)
        try:
            time.sleep(1.6)
            done = tiering("recover", "-c", str(cfg))
            assert done.returncode == 0, done.stderr
            with Catalog.open(pg_url) as cat:
                assert cat.open_entries() == [] and cat._read("SELECT count(*) FROM claims") == [(0,)]
                assert cat.history(b"d/l0")[0].status == "rolled_back"
        finally:
            os.kill(live.pid, signal.SIGCONT)
        time.sleep(0.6)
        out, _ = live.communicate("begin\n", timeout=30)
        ended, began = out.splitlines()
        assert ended.startswith("CatalogError") and "taken over by another process's recover" in ended, out
        assert began.startswith("CatalogError") and "declared dead" in began, out
        with Catalog.open(pg_url) as cat:  # as recover left it: rolled back, no record
            assert cat.history(b"d/l0")[0].status == "rolled_back" and cat.get(b"d/l0") is None
    finally:
        if live.poll() is None:
            live.kill()
            live.wait()


def test_a_second_cycle_gets_the_lock_code_naming_the_first_while_hand_run_writers_go_on(tmp_path, pg_url):
    cfg, _ = setup(tmp_path, pg_url, files=40)
    (tmp_path / "hot" / "e").mkdir()
    (tmp_path / "hot" / "e" / "mine").write_bytes(b"by hand" * 100)
    Catalog.open(pg_url, writer=True).close()  # the tables (a writer stopped while it migrates holds up the rest)
    first = subprocess.Popen([TIERING, "run", "--json", "-c", str(cfg)], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, env=env())
    try:
        deadline = time.monotonic() + 30
        while (holder_of(pg_url) or {}).get("pid") != first.pid:
            assert time.monotonic() < deadline and first.poll() is None, "the first run never took the cycle lock"
            time.sleep(0.005)
        os.kill(first.pid, signal.SIGSTOP)
        second = tiering("run", "-c", str(cfg))
        assert second.returncode == EXIT_BUSY, second.stderr
        assert f"pid {first.pid}" in second.stderr and "(run)" in second.stderr and second.stderr.count("\n") == 1
        by_hand = tiering("archive", "--json", "-c", str(cfg), str(tmp_path / "hot" / "e" / "mine"))
        assert by_hand.returncode == 0, by_hand.stderr
        assert json.loads(by_hand.stdout.strip().splitlines()[-1])["actions"] == {"archive": {"done": 1}}
    finally:
        os.kill(first.pid, signal.SIGCONT)
        out, _ = first.communicate(timeout=60)
    assert first.returncode == 0
    assert json.loads(out.strip().splitlines()[-1])["failed"] == 0
    with Catalog.open(pg_url) as cat:
        assert cat.counts()["archived"][0] == 41 and cat.open_entries() == []


@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("distributed")
    with pytest.MonkeyPatch.context() as env:  # the workers' own environment holds the password (it never travels)
        env.setenv("PGCAT_TEST_PW", PG_PASSWORD)
        with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=2, dashboard_address=":0",
                                      silence_logs=40) as cluster:
            yield cluster.scheduler_address.replace("tcp://", "dask://")


def test_dask_workers_journal_their_own_steps_to_the_server(tmp_path, pg_url, dask_cluster, monkeypatch):
    """With a server catalog each action runs whole on a worker process, which writes its own journal
    entries under its own run (pid, host, heartbeat): the coordinator is no funnel."""
    from tiering.config import load_config
    from tiering.mover.distributed import open_executor
    from tiering.mover.executor import Task, execute
    from tiering.mover.ops import Mover

    monkeypatch.setenv("PGCAT_TEST_PW", PG_PASSWORD)
    cfg, data = setup(tmp_path, pg_url, files=40)
    config = load_config(cfg)
    executor = open_executor(dask_cluster)
    try:
        with Catalog.open(config.catalog_target, writer=True, purpose="release") as cat:
            mover = Mover(config, cat)
            result = execute(mover, [Task(rel, "release") for rel in data], jobs=4, executor=executor)
            mover.close()
    finally:
        executor.close()
    assert result.counts == {("release", "done"): 40} and result.bytes_moved == sum(map(len, data.values()))
    with Catalog.open(pg_url) as cat:
        runs = {e.run_id for rel in data for e in cat.history(rel)}
        marks = ", ".join("?" for _ in runs)
        who = cat._read(f"SELECT command, pid FROM runs WHERE id IN ({marks})", tuple(runs))
        for rel, want in data.items():
            assert cat.get(rel).state == "released" and (tmp_path / "cap" / encode_key(rel)).read_bytes() == want
        assert cat.open_entries() == [] and cat._read("SELECT count(*) FROM claims") == [(0,)]
    assert who and {command for command, _ in who} == {"worker"} and os.getpid() not in {pid for _, pid in who}
