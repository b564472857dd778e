"""A real PostgreSQL server for the catalog's tests: Debian's ``postgresql`` binaries, started once per
session on a temporary cluster bound to 127.0.0.1 (a free port), password authentication, stopped at the end.

PostgreSQL refuses to run as root, so as root the cluster belongs to the ``postgres`` OS user and every
server command runs through ``runuser``. Without the binaries (or that user) the tests that need the server
skip, saying why. Import the fixtures into a test module: ``from pg_fixtures import pg_server, pg_url``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.peers.postgres import pg_bin  # (one lookup of Debian's server binaries for tests and benches)

PG_USER = "tiering"
PG_PASSWORD = "pg-test-secret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgServer:
    port: int
    datadir: Path

    def url(self, database: str = "postgres", password: str = PG_PASSWORD) -> str:
        return f"postgresql://{PG_USER}:{password}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)


def _runner() -> list[str]:
    """How to run the server's commands: as ourselves, or (root) as the postgres user."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no 'postgres' OS user to run PostgreSQL as")
    if not shutil.which("runuser"):
        pytest.skip("running as root and runuser is missing")
    return ["runuser", "-u", "postgres", "--"]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'tiering[postgres]')")
    run_as = _runner()
    base = Path(tempfile.mkdtemp(prefix="tiering-pg-"))
    datadir, pwfile = base / "data", base / "pwfile"
    pwfile.write_text(PG_PASSWORD + "\n")
    if run_as:
        pg = pwd.getpwnam("postgres")
        for p in (base, pwfile):
            os.chown(p, pg.pw_uid, pg.pw_gid)
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "check": True}
    subprocess.run([*run_as, initdb, "-D", str(datadir), "-U", PG_USER, f"--pwfile={pwfile}",
                    "--auth=scram-sha-256", "--no-sync", "-E", "UTF8", "--locale=C"], **quiet)
    port = _free_port()
    # Loopback only; the socket folder is the cluster's own (not /var/run/postgresql, which may not exist).
    options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={base} -c fsync=on"
    subprocess.run([*run_as, pg_ctl, "-D", str(datadir), "-o", options, "-l", str(base / "log"), "-w",
                    "-t", "30", "start"], **quiet)
    try:
        yield PgServer(port, datadir)
    finally:
        subprocess.run([*run_as, pg_ctl, "-D", str(datadir), "-m", "immediate", "-w", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server) -> str:
    """The URL of a fresh, empty database on the session's server."""
    return pg_server.create_database()
