"""Helpers for the tests of ``tiering run`` and ``tiering daemon``: real processes on real files."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MiB = 1 << 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_setup(tmp_path: Path, policy: str, daemon: str = "", hot: Path | None = None) -> Path:
    """A config (hot tier, catalog, one posix capacity tier, ``[daemon]`` lines) and its policy."""
    hot = hot or tmp_path / "hot"
    hot.mkdir(exist_ok=True)
    (tmp_path / "capacity").mkdir(exist_ok=True)
    (tmp_path / "policy.toml").write_text(policy)
    cfg = tmp_path / "tiering.toml"
    cfg.write_text(f'default_tier = "cap"\npolicy = "policy.toml"\n[hot]\npath = "{hot}"\n'
                   f'[catalog]\npath = "state/catalog.db"\n[concurrency]\njobs = 2\n'
                   f'[daemon]\n{daemon}\n[tiers.cap]\nurl = "capacity"\n')
    return cfg


def tiering(*args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    """``tiering ARGS`` as a subprocess (the installed entry point's code, via ``python -m``)."""
    return subprocess.run([sys.executable, "-m", "tiering", *args], check=False, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, **kw)


def start(*args: str, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "tiering", *args], stdout=subprocess.DEVNULL, stderr=out,
                                cwd=REPO)


def stop(proc: subprocess.Popen, timeout: float = 20) -> int:
    """SIGTERM (then SIGKILL) and reap: no process outlives its test."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def wait_for(check: Callable[[], object], timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def query(catalog: Path, sql: str, args: tuple = ()) -> list[tuple]:
    """A read-only query of the catalog while another process writes it."""
    if not catalog.exists():
        return []
    conn = sqlite3.connect(f"file:{catalog}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError:
        return []  # not created yet
    finally:
        conn.close()


def states(catalog: Path) -> dict[bytes, str]:
    return dict(query(catalog, "SELECT path, state FROM files"))


def heat(catalog: Path, rel: bytes) -> float:
    rows = query(catalog, "SELECT heat FROM files WHERE path = ?", (rel,))
    return rows[0][0] if rows else 0.0


def make_file(path: Path, size: int, age: float = 3600.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(os.urandom(min(size, MiB)) * (size // MiB) + os.urandom(size % MiB))
    past = time.time() - age
    os.utime(path, (past, past))
    return path


def listening(port: int) -> set[str]:
    """Local addresses (kernel hex) of the TCP sockets listening on ``port``, IPv4 and IPv6."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in list(f)[1:]:
                fields = line.split()
                address, hex_port = fields[1].rsplit(":", 1)
                if fields[3] == "0A" and int(hex_port, 16) == port:
                    found.add(address)
    return found
