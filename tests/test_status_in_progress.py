"""``tiering status`` tells a live run's open actions ("in progress") from a dead run's ("interrupted").

On both backends, with a real mover process stopped (SIGSTOP, by ``TIERING_CRASH_AT`` and
``TIERING_CRASH_SIGNAL=STOP``) in the middle of an archive, then SIGKILLed: the same open journal entry is
in progress while its process lives and interrupted once it is dead (on a server catalog by the rule
``recover`` uses: host, pid and heartbeat).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pg_fixtures import PG_PASSWORD, pg_server  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parents[1]


def setup(tmp_path: Path, url: str | None) -> Path:
    hot, cap = tmp_path / "hot", tmp_path / "cap"
    hot.mkdir()
    cap.mkdir()
    (hot / "a.bin").write_bytes(os.urandom(100_000))
    catalog = f'path = "{tmp_path}/state/catalog.db"\n'
    if url:
        catalog += 'url = "{}"\n'.format(url.replace(f":{PG_PASSWORD}@", ":${PGCAT_TEST_PW}@"))
    cfg = tmp_path / "tiering.toml"
    cfg.write_text(f'default_tier = "cap"\n[hot]\npath = "{hot}"\n[catalog]\n{catalog}[tiers.cap]\nurl = "{cap}"\n')
    return cfg


def env(**more: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("TIERING_CONFIG", "TIERING_HOME", "TIERING_CRASH_AT")}
    return {**clean, "PGCAT_TEST_PW": PG_PASSWORD, **more}


def tiering(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tiering", *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO, env=env(), check=False)


def status(cfg: Path) -> tuple[dict, str]:
    """(``status --json``, the text of ``status``)."""
    as_json, text = tiering("status", "--json", "-c", str(cfg)), tiering("status", "-c", str(cfg))
    assert as_json.returncode == 0 and text.returncode == 0, as_json.stderr + text.stderr
    return json.loads(as_json.stdout), text.stdout


def wait_stopped(proc: subprocess.Popen, wait: float = 60.0) -> None:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the mover ended before its crash point"
        with open(f"/proc/{proc.pid}/stat", "rb") as f:
            if f.read().rpartition(b")")[2].split()[0] == b"T":
                return
        time.sleep(0.02)
    raise AssertionError("the mover did not stop at its crash point")


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request) -> str | None:
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("pg_server").create_database()


def test_a_live_movers_open_action_is_in_progress_and_a_killed_ones_interrupted(tmp_path, catalog_url):
    cfg = setup(tmp_path, catalog_url)
    mover = subprocess.Popen([sys.executable, "-m", "tiering", "archive", str(tmp_path / "hot" / "a.bin"), "-c",
                              str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
                             env=env(TIERING_CRASH_AT="archive:copied", TIERING_CRASH_SIGNAL="STOP"))
    try:
        wait_stopped(mover)  # journaled, copied, not verified: its entry is open, and it lives
        summary, text = status(cfg)
        assert (summary["interrupted"], summary.get("in_progress")) == (0, 1), summary
        assert "1 action in progress" in text and "interrupted" not in text, text
        mover.kill()
        mover.wait()
        summary, text = status(cfg)
        assert (summary["interrupted"], summary.get("in_progress")) == (1, 0), summary
        assert "1 interrupted action" in text and "in progress" not in text, text
    finally:
        if mover.poll() is None:
            mover.kill()
            mover.wait()
