"""Archive through a SlowDown storm: retries and wall time at a fixed concurrency against the adaptive one.

    python -m bench.throttle_storm [--files 300] [--jobs 16] [--over 4] [--chance 0.3] [--rounds 3]

A real SeaweedFS on loopback behind the fault-injecting proxy of the tests
(``tests/servers/s3_proxy.py``), which answers ``503 SlowDown`` to a share
(``--chance``) of the PUTs that arrive while more than ``--over`` requests are
in flight: a store that throttles when it is overloaded. Each round archives
``--files`` small files (``tiering archive``, a real process) once with
``[tiers.cap] concurrency = JOBS`` (fixed: what every run did before the
limiter) and once with ``concurrency = "auto"``; retries are the 503s the
proxy sent. Prints the median of the rounds. ``storm_archive`` is also what
``tests/test_adaptive_storm.py`` runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
AUTO = '"auto"'


@dataclass(frozen=True)
class StormRun:
    concurrency: str
    returncode: int
    retries: int  # 503s the proxy answered: each is one retry of the run
    requests: int  # PUTs that reached the proxy
    peak: int  # the most requests in flight through the proxy at once
    seconds: float
    exact: bool  # every file's capacity copy has the file's bytes
    limit: dict  # the run's summary of its endpoint limiter
    stderr: str


def storm_rule(over: int, chance: float) -> dict:
    return {"op": "PutObject", "action": "status", "status": 503, "code": "SlowDown", "over": over, "chance": chance}


def make_files(hot: Path, count: int, size: int = 2000) -> dict[str, bytes]:
    data = {}
    for i in range(count):
        path = hot / "data" / f"d{i % 10}" / f"f{i:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        data[str(path.relative_to(hot))] = body = os.urandom(size + i % 17)
        path.write_bytes(body)
    return data


def write_config(work: Path, endpoint: str, url: str, key: str, secret: str, *, jobs: int, concurrency: str) -> Path:
    cfg = work / "tiering.toml"
    cfg.write_text(f'default_tier = "cap"\n[hot]\npath = "{work / "hot"}"\n[catalog]\npath = "{work / "catalog.db"}"\n'
                   f'[concurrency]\njobs = {jobs}\n'
                   f'[retry]\nattempts = 12\nmax_backoff = "0.2s"\ndeadline = "20s"\n'
                   f'[tiers.cap]\nurl = "{url}"\nendpoint = "{endpoint}"\naccess_key_id = "{key}"\n'
                   f'secret_access_key = "${{STORM_SECRET}}"\nconcurrency = {concurrency}\n')
    return cfg


def storm_archive(proxy, upstream: str, work: Path, url: str, key: str, secret: str, *, files: int, jobs: int,
                  concurrency: str, over: int, chance: float, seed: int = 15) -> StormRun:
    """Archive ``files`` new files to ``url`` through ``proxy`` under the storm; what it took."""
    from tiering.stores import open_store
    from tiering.stores.checksum import checksum_bytes

    work.mkdir(parents=True)
    data = make_files(work / "hot", files)
    cfg = write_config(work, proxy.endpoint, url, key, secret, jobs=jobs, concurrency=concurrency)
    proxy.rules(storm_rule(over, chance), seed=seed)
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "tiering", "archive", "-c", str(cfg), "--json",
                           str(work / "hot" / "data")], capture_output=True, text=True, timeout=120, cwd=REPO,
                          check=False, env={**os.environ, "STORM_SECRET": secret})
    seconds = time.monotonic() - start
    stats = proxy.stats()
    proxy.rules()
    store = open_store(url, {"endpoint": upstream, "access_key_id": key, "secret_access_key": secret})
    try:
        exact = all(store.head(k).checksum == checksum_bytes(v) for k, v in data.items())
    except Exception:  # a missing copy: not exact
        exact = False
    finally:
        store.close()
    lines = done.stdout.strip().splitlines()
    summary = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    limit = next(iter((summary.get("concurrency") or {}).values()), {})
    return StormRun(concurrency, done.returncode, stats["hits"][0], stats["counts"].get("PutObject", 0),
                    stats.get("peak", 0), seconds, exact, limit, done.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--over", type=int, default=4, help="the proxy throttles above this many requests in flight")
    parser.add_argument("--chance", type=float, default=0.3, help="share of those it answers 503 SlowDown")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    sys.path.insert(0, str(REPO / "tests"))
    from servers.s3_proxy import S3Proxy

    from bench.peers.seaweed import SeaweedServer
    from bench.peers.tools import BUCKET, KEY, SECRET

    with tempfile.TemporaryDirectory(prefix="throttle-storm-") as tmp:
        root = Path(tmp)
        server = SeaweedServer(root / "seaweed", KEY, SECRET, (BUCKET,))
        server.start()
        proxy = S3Proxy(server.endpoint)
        try:
            proxy.start()
            runs: dict[str, list[StormRun]] = {str(args.jobs): [], AUTO: []}
            for r in range(args.rounds):
                for mode in runs:
                    name = f"{'auto' if mode == AUTO else 'fixed'}-{r}"
                    run = storm_archive(proxy, server.endpoint, root / name, f"s3://{BUCKET}/{name}", KEY, SECRET,
                                        files=args.files, jobs=args.jobs, concurrency=mode, over=args.over,
                                        chance=args.chance, seed=15 + r)
                    if run.returncode or not run.exact:
                        print(f"{name}: exit {run.returncode}, exact={run.exact}\n{run.stderr}", file=sys.stderr)
                    runs[mode].append(run)
        finally:
            proxy.stop()
            server.stop()
    print(f"archive of {args.files} files, jobs {args.jobs}, proxy: 503 SlowDown to {args.chance:.0%} of PUTs "
          f"while more than {args.over} requests are in flight; median of {args.rounds} rounds")
    print(f"{'concurrency':<14}{'retries':>9}{'PUTs':>7}{'peak':>6}{'seconds':>9}  exact  final limit")
    for mode, done in runs.items():
        label = "auto" if mode == AUTO else f"fixed {mode}"
        last = done[-1].limit
        print(f"{label:<14}{statistics.median(r.retries for r in done):>9g}"
              f"{statistics.median(r.requests for r in done):>7g}{statistics.median(r.peak for r in done):>6g}"
              f"{statistics.median(r.seconds for r in done):>9.2f}  {all(r.exact for r in done)!s:<5}  "
              f"{last.get('limit', '-')}/{last.get('ceiling', '-')} ({last.get('cuts', 0)} cuts)")


if __name__ == "__main__":
    main()
