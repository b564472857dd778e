"""The PostgreSQL catalog through the command line: ``[catalog] url``, ``tiering catalog migrate`` and
``export``, and the one-line errors (tests/pg_fixtures.py starts the server)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import closed_port
from pg_fixtures import PG_PASSWORD, pg_server, pg_url  # noqa: F401 - fixtures

from tiering.catalog import Catalog
from tiering.catalog.copy import verify

TIERING = str(Path(sys.executable).with_name("tiering"))


def tiering(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("TIERING_CONFIG", "TIERING_HOME")}
    return subprocess.run([TIERING, *args], capture_output=True, text=True, timeout=60, env={**clean, **env})


def setup(tmp_path: Path, url: str | None = None) -> Path:
    """A config (one posix tier; the catalog at ``url`` if given) and three files on the hot tier."""
    hot, cap = tmp_path / "hot", tmp_path / "cap"
    (hot / "d").mkdir(parents=True)
    cap.mkdir()
    for i in range(3):
        (hot / "d" / f"f{i}.bin").write_bytes(os.urandom(1000 + i))
    cfg = tmp_path / "tiering.toml"
    catalog_url = f'url = "{url}"\n' if url else ""
    cfg.write_text(f'default_tier = "cap"\n[hot]\npath = "{hot}"\n[catalog]\npath = "{tmp_path}/state/catalog.db"\n'
                   f'{catalog_url}[concurrency]\njobs = 2\n[tiers.cap]\nurl = "{cap}"\n')
    return cfg


def _with_ref(url: str) -> str:
    return url.replace(f":{PG_PASSWORD}@", ":${PGCAT_TEST_PW}@")


def test_a_catalog_url_puts_the_whole_catalog_on_the_server(tmp_path, pg_url):
    cfg = setup(tmp_path, _with_ref(pg_url))
    for verb in ("archive", "release"):
        done = tiering(verb, "-c", str(cfg), str(tmp_path / "hot" / "d"), PGCAT_TEST_PW=PG_PASSWORD)
        assert done.returncode == 0, done.stderr
    status = tiering("status", "-c", str(cfg), "--json", PGCAT_TEST_PW=PG_PASSWORD)
    assert status.returncode == 0 and '"released"' in status.stdout, status.stderr
    with Catalog.open(pg_url) as cat:
        assert cat.counts() == {"released": (3, 3003)}
        assert [(e.action, e.status) for e in cat.history(b"d/f0.bin")] == [("release", "done"), ("archive", "done")]
    assert not (tmp_path / "state" / "catalog.db").exists()  # nothing went to the SQLite file
    shown = tiering("config", "check", "-c", str(cfg), PGCAT_TEST_PW=PG_PASSWORD)
    assert "url = " in shown.stdout and PG_PASSWORD not in shown.stdout + shown.stderr


def test_status_on_another_node_names_the_cycle_holding_the_server_catalog(tmp_path, pg_url):
    import json
    import signal

    from test_catalog_pg import CYCLE_HOLDER

    cfg = setup(tmp_path, _with_ref(pg_url))
    proc = subprocess.Popen([sys.executable, "-c", CYCLE_HOLDER, pg_url], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        done = tiering("status", "-c", str(cfg), "--json", PGCAT_TEST_PW=PG_PASSWORD)
        assert done.returncode == 0, done.stderr
        writer = json.loads(done.stdout)["writer"]
        assert (writer["pid"], writer["purpose"]) == (proc.pid, "run")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()


def test_a_password_written_in_the_url_is_refused(tmp_path, pg_url):
    done = tiering("status", "-c", str(setup(tmp_path, pg_url)))
    assert done.returncode == 2 and "password is written in the file" in done.stderr
    assert PG_PASSWORD not in done.stderr


def test_migrate_to_postgresql_and_back_keeps_every_row(tmp_path, pg_url):
    cfg = setup(tmp_path)
    assert tiering("archive", "-c", str(cfg), str(tmp_path / "hot" / "d")).returncode == 0
    assert tiering("release", "-c", str(cfg), str(tmp_path / "hot" / "d" / "f1.bin")).returncode == 0
    sqlite_db = tmp_path / "state" / "catalog.db"
    with Catalog.open(sqlite_db) as cat:
        before = verify(cat)
    done = tiering("catalog", "migrate", "-c", str(cfg), "--to", _with_ref(pg_url), PGCAT_TEST_PW=PG_PASSWORD)
    assert done.returncode == 0, done.stderr
    assert "counts and checksums match" in done.stdout and PG_PASSWORD not in done.stdout
    assert "${PGCAT_TEST_PW}" in done.stdout  # the line to paste into the config keeps the reference
    with Catalog.open(pg_url, writer=True) as cat:
        assert verify(cat) == before and [(c.table, c.rows) for c in before] == [("runs", 0), ("files", 3), ("journal", 4)]
        entry = cat.begin("archive", b"new", "copying")  # journal ids go on after the copied ones
        assert entry == 5
        cat.end(entry, "rolled_back")
    server_cfg = setup(tmp_path / "on-server", _with_ref(pg_url))
    back = tmp_path / "back.db"
    done = tiering("catalog", "migrate", "-c", str(server_cfg), "--to", str(back), PGCAT_TEST_PW=PG_PASSWORD)
    assert done.returncode == 0, done.stderr
    with Catalog.open(back) as cat, Catalog.open(pg_url) as server:
        assert verify(cat) == verify(server)
    again = tiering("catalog", "migrate", "-c", str(cfg), "--to", str(back))
    assert again.returncode == 2 and "is not empty" in again.stderr


def test_export_writes_the_files_table_to_parquet(tmp_path, pg_url):
    import pyarrow.parquet as pq

    cfg = setup(tmp_path, _with_ref(pg_url))
    assert tiering("archive", "-c", str(cfg), str(tmp_path / "hot" / "d"), PGCAT_TEST_PW=PG_PASSWORD).returncode == 0
    out = tmp_path / "files.parquet"
    done = tiering("catalog", "export", "-c", str(cfg), str(out), PGCAT_TEST_PW=PG_PASSWORD)
    assert done.returncode == 0 and "3 rows of files" in done.stdout, done.stderr
    table = pq.read_table(out)
    assert table.num_rows == 3 and set(table.column("state").to_pylist()) == {"archived"}
    assert str(table.schema.field("ino").type) == "uint64" and str(table.schema.field("pinned").type) == "bool"
    assert tiering("catalog", "export", "-c", str(cfg), str(tmp_path / "j.parquet"), "--table", "journal",
                   PGCAT_TEST_PW=PG_PASSWORD).returncode == 0
    assert pq.read_table(tmp_path / "j.parquet").num_rows == 3


@pytest.mark.parametrize("case", ["bad url", "server down", "wrong password"])
def test_catalog_errors_are_one_line_with_their_exit_status(tmp_path, pg_server, case):
    cfg = setup(tmp_path)
    to, status, words = {
        "bad url": ("postgresql://tiering:${PGCAT_TEST_PW}@127.0.0.1:notaport/x", 2, "catalog url"),
        "server down": (f"postgresql://tiering:${{PGCAT_TEST_PW}}@127.0.0.1:{closed_port()}/x", 1, "cannot be reached"),
        "wrong password": (_with_ref(pg_server.url()), 2, "password authentication failed"),
    }[case]
    pw = "wrong" if case == "wrong password" else PG_PASSWORD
    done = tiering("catalog", "migrate", "-c", str(cfg), "--to", to, PGCAT_TEST_PW=pw)
    assert done.returncode == status and words in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert PG_PASSWORD not in done.stderr
