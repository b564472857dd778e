"""Setting up a guarded hot tier for tests: a config, released files, a running ``tiering guard``."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from conftest import OSS_SECRET, S3_BUCKET, S3_KEY, S3_SECRET

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TEST_S3_SECRET": S3_SECRET, "TEST_OSS_SECRET": OSS_SECRET}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Guarded:
    """A hot tier (``hot``), its config, the original bytes of its files, and a guard process once started."""

    hot: Path
    config: Path
    guard_dir: Path
    files: dict[str, bytes] = field(default_factory=dict)
    work: Path | None = None  # where the guard's log goes (the test's own temporary folder)
    proc: subprocess.Popen | None = None
    log: Path | None = None

    def write(self, files: dict[str, bytes]) -> None:
        for name, data in files.items():
            path = self.hot / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        self.files.update(files)

    def tiering(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "tiering", *args, "-c", str(self.config)], capture_output=True,
                              text=True, timeout=timeout, cwd=REPO, check=False,
                              env=ENV)

    def release(self, *names: str) -> None:
        done = self.tiering("release", *[str(self.hot / n) for n in names or self.files])
        assert done.returncode == 0, done.stderr
        for name in names or self.files:
            assert (self.hot / name).stat().st_size == 0, (name, done.stdout, done.stderr)

    def status(self) -> dict:
        try:
            with open(self.guard_dir / f"{os.uname().nodename.split('.')[0]}.lock", "rb") as f:
                return json.loads(f.read() or b"{}")
        except (FileNotFoundError, ValueError):
            return {}

    def start_guard(self, wait: float = 30.0) -> None:
        self.log = (self.work or self.guard_dir.parent) / f"guard-{self.guard_dir.name}.log"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "tiering", "guard", "-c", str(self.config)],
                                         stdout=subprocess.DEVNULL, stderr=out, cwd=REPO,
                                         env=ENV)
        self.wait_ready(wait)

    def wait_ready(self, wait: float = 30.0, not_worker: int | None = None) -> dict:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            st = self.status()
            if st.get("ready") and st.get("worker") != not_worker:
                return st
            assert self.proc is None or self.proc.poll() is None, self.log.read_text() if self.log else ""
            time.sleep(0.05)
        raise AssertionError(f"the guard did not get ready: {self.log.read_text() if self.log else ''}")

    def stop_guard(self) -> str:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.log.read_text() if self.log else ""


def guarded_setup(hot: Path, tmp_path: Path, endpoint: str, timeout: str = "60s", tier: str = "") -> Guarded:
    """A config with its hot tier at ``hot``, an S3 tier at ``endpoint`` (SeaweedFS or the fault proxy),
    or the capacity tier ``tier`` (the body of its table)."""
    hot.mkdir(parents=True, exist_ok=True)
    # Unix socket paths are short (107 bytes): the guard's folder is a short temporary one.
    guard_dir = Path(tempfile.mkdtemp(prefix="tg-", dir="/tmp"))
    cfg = tmp_path / "tiering.toml"
    cfg.write_text(f'default_tier = "cap"\n[hot]\npath = "{hot}"\n[catalog]\npath = "{tmp_path}/state/catalog.db"\n'
                   f'[guard]\ntimeout = "{timeout}"\ndir = "{guard_dir}"\nheat = true\n'
                   f'[retry]\nattempts = 3\nmax_backoff = "0.1s"\ndeadline = "3s"\n'
                   f'[tiers.cap]\n' + (tier or
                   f'url = "s3://{S3_BUCKET}/guard-{tmp_path.name}-{time.time_ns() % 10**8}"\n'
                   f'endpoint = "{endpoint}"\naccess_key_id = "{S3_KEY}"\nsecret_access_key = "${{TEST_S3_SECRET}}"\n'))
    return Guarded(hot, cfg, guard_dir, work=tmp_path)


def read_in_process(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    """A reader as its own process (the guard lets its own process's opens through)."""
    return subprocess.run(argv, capture_output=True, timeout=timeout, check=False)


def guarded_ext4(ext4_loop: Path, tmp_path: Path, endpoint: str) -> Iterator[Guarded]:
    """A fixture's body: a guarded hot tier on the session's ext4 with an S3 tier at ``endpoint`` (the
    guard not started); afterwards the guard is stopped and its folders removed."""
    setup = guarded_setup(ext4_loop / tmp_path.name, tmp_path, endpoint)
    yield setup
    setup.stop_guard()
    shutil.rmtree(setup.guard_dir, ignore_errors=True)
    shutil.rmtree(setup.hot, ignore_errors=True)
