"""``tiering run``: one cron cycle in a real process; a second one at the same time exits with the lock code."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from unattended import REPO, make_file, query, states, tiering, wait_for, write_setup

from tiering.catalog.lock import read_holder
from tiering.config import load_config
from tiering.core.errors import ConfigError

EXIT_FAILED, EXIT_USAGE, EXIT_BUSY = 1, 2, 4
ARCHIVE_ALL = '[[rules]]\nname = "all"\nmatch = \'type == "file"\'\naction = "archive"\n[safety]\nmin_age = "0s"\n'


def test_a_run_recovers_scans_plans_applies_and_reports_one_json_line(tmp_path):
    cfg = write_setup(tmp_path, ARCHIVE_ALL)
    for i in range(5):
        make_file(tmp_path / "hot" / f"d/f{i}", 10_000 + i)
    done = tiering("run", "--json", "-c", str(cfg))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["command"] == "run" and summary["failed"] == 0 and summary["stopped"] is None
    assert summary["actions"] == {"archive": {"done": 5}} and summary["bytes_moved"] == sum(10_000 + i for i in range(5))
    assert "tiering.ops.cycle: run: done" in done.stderr  # logs go to stderr
    assert set(states(tmp_path / "state/catalog.db").values()) == {"archived"}
    status = json.loads(tiering("status", "-c", str(cfg), "--json").stdout)
    assert status["last_run"]["command"] == "run" and status["last_run"]["summary"]["run_id"] == summary["run_id"]
    assert status["daemon"] is None


def test_a_second_run_exits_at_once_naming_the_holder(tmp_path):
    """Deterministic: a helper holds the catalog's writer lock, as a running `tiering run` does."""
    cfg = write_setup(tmp_path, ARCHIVE_ALL)
    make_file(tmp_path / "hot/a", 1000)
    hold = ("import sys; from tiering.catalog import Catalog; "
            f"c = Catalog.open({str(tmp_path / 'state/catalog.db')!r}, writer=True, purpose='run'); "
            "print('held', flush=True); sys.stdin.read(); c.close()")
    holder = subprocess.Popen([sys.executable, "-c", hold], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        busy = tiering("run", "-c", str(cfg))
        assert busy.returncode == EXIT_BUSY and time.monotonic() - started < 15
        lines = busy.stderr.strip().splitlines()
        assert len(lines) == 1 and f"pid {holder.pid}" in lines[0] and "(run), started 20" in lines[0], lines
        assert busy.stdout == ""
    finally:
        holder.stdin.close()
        holder.wait(10)
        holder.stdout.close()
    assert tiering("run", "-c", str(cfg)).returncode == 0


def test_two_runs_at_once_one_works_the_other_gets_the_lock_code(tmp_path):
    """Two real `tiering run`s: the first is frozen (SIGSTOP) while it holds the lock, the second bounces."""
    cfg = write_setup(tmp_path, ARCHIVE_ALL)
    for i in range(200):
        make_file(tmp_path / "hot" / f"many/{i:03d}", 4096)
    lock = tmp_path / "state/catalog.db.lock"
    first = subprocess.Popen([sys.executable, "-m", "tiering", "run", "--json", "-c", str(cfg)], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        wait_for(lambda: (read_holder(lock) or {}).get("pid") == first.pid, 30, "the first run to take the lock", 0.005)
        os.kill(first.pid, signal.SIGSTOP)
        second = tiering("run", "-c", str(cfg))
        assert second.returncode == EXIT_BUSY, second.stderr
        assert f"pid {first.pid}" in second.stderr and second.stderr.count("\n") == 1
    finally:
        os.kill(first.pid, signal.SIGCONT)
        out, _ = first.communicate(timeout=60)
    assert first.returncode == 0
    assert json.loads(out.strip().splitlines()[-1])["actions"] == {"archive": {"done": 200}}
    assert query(tmp_path / "state/catalog.db", "SELECT count(*) FROM runs") == [(1,)]


def test_a_broken_policy_is_one_line_and_the_usage_code(tmp_path):
    cfg = write_setup(tmp_path, '[[rules]]\nname = "x"\nmatch = \'size >\'\naction = "archive"\n')
    done = tiering("run", "-c", str(cfg))
    assert done.returncode == EXIT_USAGE and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "policy.toml: rule 'x': match" in done.stderr


def test_the_daemon_table_is_checked_like_the_rest_of_the_config(tmp_path):
    cfg = write_setup(tmp_path, ARCHIVE_ALL, 'intervall = "5m"\n')
    with pytest.raises(ConfigError, match=r"\[daemon\] unknown key 'intervall'; did you mean 'interval'\?"):
        load_config(cfg)
    cfg = write_setup(tmp_path, ARCHIVE_ALL, 'metrics_address = "localhost"\n')
    with pytest.raises(ConfigError, match=r"\[daemon\] metrics_address: 'localhost' is not an IP address"):
        load_config(cfg)
    cfg = write_setup(tmp_path, ARCHIVE_ALL, 'interval = "10m"\nauto_archive = "30s"\nlog_file = "logs/t.log"\n')
    daemon = load_config(cfg).daemon
    assert (daemon.interval, daemon.auto_archive, daemon.metrics_address) == (600, 30, "127.0.0.1")
    assert daemon.log_file == tmp_path / "logs/t.log"


PIN_ALL = '[[rules]]\nname = "keep"\nmatch = \'type == "file"\'\naction = "pin"\n[safety]\nmin_age = "0s"\n'


def test_pinned_files_report_their_true_size(tmp_path):
    """Issue 15.7: pinned files counted 0 bytes in `status` (and the metrics), and `status FILE` said size null."""
    cfg = write_setup(tmp_path, PIN_ALL)
    make_file(tmp_path / "hot" / "ckpt.bin", 7000)
    make_file(tmp_path / "hot" / "data.bin", 3000)
    done = tiering("run", "-c", str(cfg), "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["actions"] == {"pin": {"done": 2}}, done.stderr
    summary = json.loads(tiering("status", "-c", str(cfg), "--json").stdout)
    assert summary["by_state"] == {"resident": {"files": 2, "bytes": 10_000}}
    one = json.loads(tiering("status", "-c", str(cfg), "--json", str(tmp_path / "hot" / "ckpt.bin")).stdout)
    assert one["pinned"] is True and one["size"] == 7000
