"""Adaptive concurrency against a store that throttles when overloaded (the fault-injecting proxy over SeaweedFS).

The proxy answers ``503 SlowDown`` to 30 % of the PUTs that arrive while more
than 4 requests are in flight, as a real store sheds load. A ``tiering archive``
of 300 files (a real process) completes with every byte exact both ways; at a
fixed concurrency of 16 it keeps hammering and is throttled far more often than
with ``concurrency = "auto"``, whose limit is cut to what the store takes.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

from conftest import S3_BUCKET, S3_KEY, S3_SECRET

from bench.throttle_storm import REPO, storm_archive, storm_rule
from tiering.stores import open_store
from tiering.stores.base import FileMeta
from tiering.stores.limiter import reset_limits
from tiering.stores.retry import RetryPolicy

FILES, JOBS, OVER, CHANCE = 300, 16, 4, 0.3


def test_an_archive_through_a_slowdown_storm_backs_off_and_retries_less(s3_proxy, seaweed, tmp_path):
    runs = {}
    for mode in (str(JOBS), '"auto"'):
        name = "auto" if "auto" in mode else "fixed"
        url = f"s3://{S3_BUCKET}/storm-{name}-{time.time_ns() % 10**9}"
        runs[name] = run = storm_archive(s3_proxy, seaweed.endpoint, tmp_path / name, url, S3_KEY, S3_SECRET,
                                         files=FILES, jobs=JOBS, concurrency=mode, over=OVER, chance=CHANCE)
        assert run.returncode == 0 and run.exact, (name, run.stderr)
    fixed, auto = runs["fixed"], runs["auto"]
    assert fixed.retries >= 0.15 * FILES  # the storm is real at a fixed 16 in flight
    assert auto.retries * 2 < fixed.retries, (auto, fixed)
    assert fixed.limit == {"adaptive": False, "limit": JOBS, "ceiling": JOBS, "throttles": fixed.retries, "cuts": 0}
    assert auto.limit["adaptive"] and auto.limit["cuts"] >= 1 and auto.limit["limit"] < JOBS
    assert auto.limit["throttles"] == auto.retries  # every 503 the proxy sent reached the limiter


def test_the_limit_is_cut_in_the_storm_and_grows_back_to_the_ceiling_after_it(s3_proxy, tmp_path):
    reset_limits()  # a limiter of its own, not one an earlier test of this process left cut
    store = open_store(f"s3://{S3_BUCKET}/storm-grow-{time.time_ns() % 10**9}",
                       {"endpoint": s3_proxy.endpoint, "access_key_id": S3_KEY, "secret_access_key": S3_SECRET},
                       retry=RetryPolicy(attempts=12, base=0.01, cap=0.1, deadline=20))
    limiter = store.retry.limiter
    source = tmp_path / "one.bin"
    source.write_bytes(os.urandom(1000))
    meta = FileMeta.from_stat(source.stat(), "k")

    async def puts(n: int) -> None:
        left = [n]

        async def worker(w: int) -> None:
            while left[0] > 0:
                left[0] -= 1
                await store.put_file_async(source, f"k{w}-{left[0]}", meta)

        await asyncio.gather(*(worker(w) for w in range(JOBS)))

    try:
        s3_proxy.rules(storm_rule(OVER, CHANCE))
        asyncio.run(puts(200))
        in_storm = limiter.state()
        s3_proxy.rules()
        # Grown back within a bounded number of calm batches (on a loaded machine the latency brake may
        # cut once more on the way up; it must not keep the limit down once the store answers again).
        for _ in range(10):
            asyncio.run(puts(200))
            after = limiter.state()
            if after.limit == after.ceiling:
                break
    finally:
        store.close()
        reset_limits()
    # (AIMD saws between the cut and a little above what the store takes: at most half the ceiling here)
    assert in_storm.cuts >= 1 and in_storm.limit <= JOBS // 2 and in_storm.ceiling == JOBS
    assert after.limit == after.ceiling == JOBS  # recovered: uncapped again


def test_a_cycle_through_the_storm_reports_its_limit_in_the_summary_and_in_status(s3_proxy, tmp_path):
    from bench.throttle_storm import make_files, write_config
    from tiering.cli.render import summary_lines
    from tiering.config import load_config
    from tiering.ops.status import tier_summary

    url = f"s3://{S3_BUCKET}/storm-status-{time.time_ns() % 10**9}"
    cfg = write_config(tmp_path, s3_proxy.endpoint, url, S3_KEY, S3_SECRET, jobs=8, concurrency='"auto"')
    (tmp_path / "policy.toml").write_text('[[rules]]\nname = "all"\nmatch = \'type == "file"\'\naction = "archive"\n'
                                          '[safety]\nmin_age = "0s"\n')
    cfg.write_text('policy = "policy.toml"\n' + cfg.read_text())
    make_files(tmp_path / "hot", 40)
    s3_proxy.rules(storm_rule(2, 0.5))
    env = {**os.environ, "STORM_SECRET": S3_SECRET}
    done = subprocess.run([sys.executable, "-m", "tiering", "run", "-c", str(cfg), "--json"], capture_output=True,
                          text=True, timeout=120, cwd=REPO, env=env, check=False)
    s3_proxy.rules()
    assert done.returncode == 0, done.stderr
    limit = json.loads(done.stdout.strip().splitlines()[-1])["concurrency"][s3_proxy.endpoint]
    assert limit["adaptive"] and limit["throttles"] >= 1 and limit["cuts"] >= 1 and limit["limit"] < limit["ceiling"]
    config = load_config(cfg, env=env)
    shown = "\n".join(summary_lines(tier_summary(config), config))
    assert (f"; concurrency {s3_proxy.endpoint}: {limit['limit']}/{limit['ceiling']} "
            f"(auto, {limit['throttles']} throttled, {limit['cuts']} cuts)") in shown, shown
