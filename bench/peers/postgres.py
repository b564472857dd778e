"""A real PostgreSQL server on a free loopback port, for benchmarks: Debian's ``postgresql`` binaries.

``initdb`` + ``pg_ctl`` on a temporary cluster, password authentication, loopback only, durable
commits (``fsync=on``, ``synchronous_commit`` at its default ``on``), stopped and removed at the end.
PostgreSQL refuses to run as root, so as root the cluster belongs to the ``postgres`` OS user and every
server command runs through ``runuser``. (tests/pg_fixtures.py is the test suite's twin, as fixtures.)
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

USER = "tiering"


def pg_bin(name: str) -> str | None:
    """A server binary: on PATH, else Debian's /usr/lib/postgresql/<version>/bin (newest)."""
    found = shutil.which(name)
    if found:
        return found
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return found[-1] if found else None


class PostgresServer:
    """``with PostgresServer() as pg: url = pg.create_database()``; the password is in ``pg.password``."""

    def __init__(self) -> None:
        self.initdb, self.pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
        if not (self.initdb and self.pg_ctl):
            raise RuntimeError("PostgreSQL server binaries not found: make postgres (apt-get install postgresql)")
        self.run_as: list[str] = []
        if os.geteuid() == 0:
            pwd.getpwnam("postgres")  # KeyError: no user to run the server as
            self.run_as = ["runuser", "-u", "postgres", "--"]
        self.password = secrets.token_hex(12)
        self.base = Path(tempfile.mkdtemp(prefix="tiering-bench-pg-"))
        self.port = 0

    def __enter__(self) -> PostgresServer:
        datadir, pwfile = self.base / "data", self.base / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self.run_as:
            pg = pwd.getpwnam("postgres")
            for p in (self.base, pwfile):
                os.chown(p, pg.pw_uid, pg.pw_gid)
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "check": True}
        subprocess.run([*self.run_as, self.initdb, "-D", str(datadir), "-U", USER, f"--pwfile={pwfile}",
                        "--auth=scram-sha-256", "-E", "UTF8", "--locale=C"], **quiet)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.base} -c fsync=on"
        try:
            subprocess.run([*self.run_as, self.pg_ctl, "-D", str(datadir), "-o", options, "-l",
                            str(self.base / "log"), "-w", "-t", "30", "start"], **quiet)
        except BaseException:
            shutil.rmtree(self.base, ignore_errors=True)
            raise
        return self

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        return f"postgresql://{USER}:{password or self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; its name."""
        import psycopg

        name = "b_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return name

    def __exit__(self, *exc) -> None:
        subprocess.run([*self.run_as, self.pg_ctl, "-D", str(self.base / "data"), "-m", "fast", "-w", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.base, ignore_errors=True)
