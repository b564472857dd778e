"""Faults with real parts: the S3 server dies mid-run, then comes back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from bench.peers.seaweed import SeaweedServer
from tiering.catalog import Catalog
from tiering.config import load_config, open_tier
from tiering.core.errors import UserError

KEY, SECRET, BUCKET = "fault-key", "fault-secret", "faults"


def tiering(*args: str, env: dict) -> subprocess.Popen:
    # SIGINT back to its default in the child: a suite started in the background (`cmd &` from a
    # script) inherits it ignored, and Python then never turns it into a KeyboardInterrupt.
    return subprocess.Popen([sys.executable, "-c", "from tiering.cli import main; main()", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def states(config) -> dict[bytes, str]:
    try:
        with Catalog.open(config.catalog_path) as cat:
            return {r.path: r.state for r in cat.records()}
    except UserError:  # not created yet, or the run is still creating it
        return {}


def test_s3_server_killed_mid_run_fails_cleanly_and_the_next_run_completes(tmp_path):
    server = SeaweedServer(tmp_path / "weed", KEY, SECRET, (BUCKET,))
    server.start()
    try:
        hot = tmp_path / "hot"
        originals = {}
        for i in range(240):
            rel = f"shards/part-{i:04d}.bin"
            (hot / rel).parent.mkdir(parents=True, exist_ok=True)
            originals[rel] = os.urandom(512 * 1024)
            (hot / rel).write_bytes(originals[rel])
        cfg_path = tmp_path / "tiering.toml"
        cfg_path.write_text(f'default_tier = "s3"\n[hot]\npath = "hot"\n[catalog]\npath = "state/catalog.db"\n'
                            f'[concurrency]\njobs = 2\n[retry]\nattempts = 3\nmax_backoff = "200ms"\ndeadline = "2s"\n'
                            f'[tiers.s3]\nurl = "s3://{BUCKET}/run"\nendpoint = "{server.endpoint}"\n'
                            f'access_key_id = "{KEY}"\nsecret_access_key = "${{FAULT_SECRET}}"\n')
        env = {**os.environ, "FAULT_SECRET": SECRET}
        config = load_config(cfg_path, env)

        run = tiering("release", "--json", "-c", str(cfg_path), *[str(hot / r) for r in originals], env=env)
        deadline = time.monotonic() + 60
        while sum(s == "released" for s in states(config).values()) < 10:
            assert run.poll() is None and time.monotonic() < deadline, "the run ended before the server was killed"
            time.sleep(0.02)
        server.kill()
        killed_at = time.monotonic()
        out, err = run.communicate(timeout=120)
        assert time.monotonic() - killed_at < 60  # bounded retries, not minutes of patience
        assert run.returncode == 3, err  # the tier is unreachable: the documented 3
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["failed"] > 0
        assert "cannot reach the server" in err and "Traceback" not in err
        after_kill = states(config)
        # Nothing released without a verified copy: every stub's bytes are on the (restarted) server.
        server.start()
        store = open_tier(config, "s3")
        with Catalog.open(config.catalog_path) as cat:
            for rec in cat.records():
                if rec.state == "released":
                    assert (hot / os.fsdecode(rec.path)).stat().st_size == 0
                    head = store.head(rec.object_key)
                    assert (head.size, head.checksum) == (rec.size, rec.checksum)
                else:
                    assert (hot / os.fsdecode(rec.path)).read_bytes() == originals[os.fsdecode(rec.path)]
        assert any(s != "released" for s in after_kill.values()) or len(after_kill) < len(originals)

        again = tiering("release", "-c", str(cfg_path), *[str(hot / r) for r in originals], env=env)
        out, err = again.communicate(timeout=120)
        assert again.returncode == 0, err
        assert set(states(config).values()) == {"released"} and len(states(config)) == len(originals)
        back = tiering("restore", "-c", str(cfg_path), *[str(hot / r) for r in originals], env=env)
        out, err = back.communicate(timeout=120)
        assert back.returncode == 0, err
        for rel, data in originals.items():
            assert (hot / rel).read_bytes() == data
        store.close()
    finally:
        server.stop()


def test_ctrl_c_finishes_what_is_in_flight_says_so_and_loses_nothing(tmp_path):
    """SIGINT at the 40th release (an operator's Ctrl-C): exit 130, a line and the summary; every file intact."""
    hot, cold = tmp_path / "hot", tmp_path / "cold"
    hot.mkdir()
    cold.mkdir()
    originals = {f"f{i:03d}": os.urandom(4096 + i) for i in range(200)}
    for name, data in originals.items():
        (hot / name).write_bytes(data)
    cfg = tmp_path / "tiering.toml"
    cfg.write_text(f'default_tier = "cold"\n[hot]\npath = "{hot}"\n[catalog]\npath = "{tmp_path}/state/catalog.db"\n'
                   f'[concurrency]\njobs = 2\n[tiers.cold]\nurl = "{cold}"\n')
    env = {**os.environ, "TIERING_CRASH_AT": "release:end:40", "TIERING_CRASH_SIGNAL": "INT"}
    out, err = tiering("release", "--json", "-c", str(cfg), *[str(hot / n) for n in originals],
                       env=env).communicate(timeout=120)
    summary = json.loads(out.strip().splitlines()[-1])
    assert "interrupted" in err and "Traceback" not in err
    assert summary["stopped"].startswith("interrupted") and 40 <= summary["files"] < len(originals)
    with Catalog.open(tmp_path / "state" / "catalog.db") as cat:
        assert cat.open_entries() == []  # what was in flight finished and was journaled
        released = {os.fsdecode(r.path) for r in cat.records("released")}
    assert len(released) == summary["actions"]["release"]["done"]
    for name, data in originals.items():
        assert (hot / name).read_bytes() == (b"" if name in released else data)
    back = tiering("restore", "-c", str(cfg), *[str(hot / n) for n in released], env=dict(os.environ))
    back.communicate(timeout=120)
    assert back.returncode == 0
    assert all((hot / n).read_bytes() == d for n, d in originals.items())
