"""``tiering daemon`` as a real process: watermark relief by heat, signals, auto-archive, metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from unattended import (
    MiB,
    free_port,
    heat,
    listening,
    make_file,
    query,
    start,
    states,
    stop,
    tiering,
    wait_for,
    write_setup,
)

from tiering.daemon.metrics import SERIES
from tiering.plan import Usage
from tiering.stores import open_store
from tiering.stores.keys import encode_key

ARCHIVE_ALL = '[[rules]]\nname = "all"\nmatch = \'type == "file"\'\naction = "archive"\n[safety]\nmin_age = "0s"\n'
NOTHING = '[[rules]]\nname = "none"\nmatch = "false"\naction = "exclude"\n[safety]\nmin_age = "0s"\n'
FAST = 'debounce = "100ms"\nwatermark_check = "250ms"\nmetrics_port = 0\n'


def started(log: Path, proc: subprocess.Popen, cycles: int = 1) -> None:
    """Wait until the daemon is up and has finished ``cycles`` cycles."""
    def ready() -> bool:
        assert proc.poll() is None, log.read_text()
        return log.exists() and log.read_text().count(": done in ") >= cycles

    wait_for(ready, 30, "the daemon's first cycle")


@pytest.fixture
def daemon(tmp_path):
    """Start ``tiering daemon -c CFG`` (call it); every one started is stopped and reaped."""
    procs = []

    def launch(cfg: Path, cycles: int = 1, log: Path | None = None) -> subprocess.Popen:
        proc = start("daemon", "-c", str(cfg), log=tmp_path / "daemon.log")
        procs.append(proc)
        started(log or tmp_path / "daemon.log", proc, cycles)
        return proc

    yield launch
    for proc in procs:
        stop(proc)


@pytest.mark.skipif(os.geteuid() != 0, reason="a small tmpfs hot tier needs root to mount")
def test_above_high_the_coldest_files_go_until_below_low_and_hot_files_stay(tmp_path, daemon):
    hot = tmp_path / "hot"
    hot.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(hot)], check=True)
    reading = threading.Event()
    try:
        cfg = write_setup(tmp_path, '[watermark]\nhigh = "75%"\nlow = "45%"\norder = "heat"\n'
                                    '[safety]\nmin_age = "1s"\n', FAST, hot=hot)
        cold = [make_file(hot / f"cold/{i}", 4 * MiB) for i in range(8)]  # 32 MiB: written before the daemon
        warm = [make_file(hot / f"warm/{i}", 4 * MiB) for i in range(2)]
        proc = daemon(cfg)
        reader = threading.Thread(target=_keep_reading, args=(warm, reading))
        reader.start()
        catalog = tmp_path / "state/catalog.db"
        wait_for(lambda: all(heat(catalog, f"warm/{i}".encode()) >= 5 for i in range(2)), 20, "heat from reads")
        fill = [make_file(hot / f"new/{i}", 4 * MiB, age=0) for i in range(3)]  # 52 of 64 MiB: above 75%
        assert Usage.of(hot).fraction > 0.75
        wait_for(lambda: Usage.of(hot).fraction <= 0.45, 30, "usage back under the low watermark")
        released = {p.decode() for p, s in states(catalog).items() if s == "released"}
        assert released and released <= {f"cold/{i}" for i in range(8)}, released
        for path in warm + fill:
            assert path.stat().st_size == 4 * MiB and path.stat().st_blocks * 512 >= 4 * MiB
    finally:
        reading.set()
        if "reader" in locals():
            reader.join()
        if "proc" in locals():
            stop(proc)  # before the unmount: the daemon watches the tier
        subprocess.run(["umount", str(hot)], check=False)


def _keep_reading(paths: list[Path], done: threading.Event) -> None:
    while not done.wait(0.05):
        for path in paths:
            path.read_bytes()


@pytest.mark.parametrize("stop_timeout", ["0s", "20s"], ids=["abandon", "finish"])
def test_sigterm_during_a_large_archive_exits_in_bounds_and_recover_leaves_it_consistent(tmp_path, stop_timeout):
    hot = tmp_path / "hot"
    big = hot / "big.bin"
    hot.mkdir()
    with open(big, "wb") as f:
        f.truncate(768 * MiB)  # sparse: quick to make, still 768 MiB to copy and fsync
    os.utime(big, (1, 1))  # the oldest: first in the plan
    small = [make_file(hot / f"small/{i}", 64 * 1024) for i in range(20)]
    cfg = write_setup(tmp_path, ARCHIVE_ALL, f'{FAST}stop_timeout = "{stop_timeout}"\n', hot=hot)
    catalog = tmp_path / "state/catalog.db"
    proc = start("daemon", "-c", str(cfg), log=tmp_path / "daemon.log")
    try:
        wait_for(lambda: query(catalog, "SELECT 1 FROM journal WHERE status = 'open' AND path = ?", (b"big.bin",)),
                 30, "the large archive to start", 0.01)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert time.monotonic() - sent < float(stop_timeout[:-1]) + 5
    finally:
        stop(proc)
    log = (tmp_path / "daemon.log").read_text()
    assert ("abandoning in-flight actions" in log) == (stop_timeout == "0s"), log
    recovered = tiering("recover", "-c", str(cfg))
    assert recovered.returncode == 0, recovered.stderr
    assert query(catalog, "SELECT count(*) FROM journal WHERE status = 'open'") == [(0,)]
    _assert_states_match_files(tmp_path, [big, *small])
    big.unlink()
    (tmp_path / "capacity/big.bin").unlink(missing_ok=True)


def _assert_states_match_files(tmp_path: Path, files: list[Path]) -> None:
    store = open_store(str(tmp_path / "capacity"))
    known = states(tmp_path / "state/catalog.db")
    for path in files:
        rel = str(path.relative_to(tmp_path / "hot")).encode()
        copy = tmp_path / "capacity" / rel.decode()
        if known.get(rel) == "archived":
            rows = query(tmp_path / "state/catalog.db", "SELECT size, checksum FROM files WHERE path = ?", (rel,))
            head = store.head(encode_key(rel))
            assert (head.size, head.checksum) == rows[0] and path.stat().st_size == rows[0][0]
        else:
            assert known.get(rel) in (None, "resident") and not copy.exists(), rel
    assert not any((tmp_path / "capacity/.tiering/tmp").glob("*")), "temp files left on the capacity tier"
    store.close()


def test_sighup_with_a_broken_policy_keeps_the_old_one_and_logs_one_clear_line(tmp_path, daemon):
    log_file = tmp_path / "logs/tiering.log"
    cfg = write_setup(tmp_path, ARCHIVE_ALL, f'{FAST}interval = "1s"\nlog_file = "{log_file}"\n')
    proc = daemon(cfg, log=log_file)
    (tmp_path / "policy.toml").write_text('[[rules]]\nname = "all"\nmatch = \'type ==\'\naction = "archive"\n')
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload rejected" in log_file.read_text(), 10, "the rejection")
    make_file(tmp_path / "hot/after-reload", 1000)  # the old policy archives it on the next cycle
    wait_for(lambda: states(tmp_path / "state/catalog.db").get(b"after-reload") == "archived", 15, "the old policy")
    assert proc.poll() is None
    errors = [line for line in log_file.read_text().splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "policy.toml: rule 'all': match: column" in errors[0], errors
    assert "Traceback" not in log_file.read_text()
    (tmp_path / "policy.toml").write_text(NOTHING)
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reloaded" in log_file.read_text(), 10, "the good reload")
    assert stop(proc) == 0


def test_files_closed_after_writing_and_quiet_are_archived_not_released(tmp_path, daemon):
    cfg = write_setup(tmp_path, NOTHING, f'{FAST}auto_archive = "500ms"\n')
    daemon(cfg)
    catalog, hot = tmp_path / "state/catalog.db", tmp_path / "hot"
    (hot / "done.bin").write_bytes(b"x" * 5000)
    with open(hot / "writing.bin", "wb") as writing:
        writing.write(b"partial")
        writing.flush()
        wait_for(lambda: states(catalog).get(b"done.bin") == "archived", 15, "auto-archive")
        assert (hot / "done.bin").stat().st_size == 5000 and (tmp_path / "capacity/done.bin").exists()
        time.sleep(1.5)  # still open for writing: never archived
        assert states(catalog).get(b"writing.bin") == "resident"  # known by its heat, not archived
    wait_for(lambda: states(catalog).get(b"writing.bin") == "archived", 15, "archive once closed and quiet")
    make_file(hot / "read.bin", 100)
    for _ in range(3):
        (hot / "read.bin").read_bytes()
    wait_for(lambda: heat(catalog, b"read.bin") >= 4, 10, "reads counted as heat")  # + the open to write it


def test_metrics_answer_with_the_documented_series_on_loopback_only(tmp_path, daemon):
    port = free_port()
    cfg = write_setup(tmp_path, ARCHIVE_ALL, FAST.replace("metrics_port = 0", f"metrics_port = {port}"))
    make_file(tmp_path / "hot/one", 1234)
    proc = daemon(cfg)

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            return response.read().decode()

    # The cycle's log line comes before the daemon refreshes its gauges from the catalog (and, following
    # changes, writes the new snapshot's first delta): scrape until the counts are in.
    wait_for(lambda: 'tiering_files{state="archived"} 1\n' in scrape(), 20, "the gauges after the first cycle")
    text = scrape()
    for name, (kind, _) in SERIES.items():
        assert f"# TYPE {name} {kind}\n" in text
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    assert samples["tiering_up"] == "1" and int(samples["tiering_hot_used_bytes"]) > 0
    assert samples['tiering_actions_total{action="archive",status="done"}'] == "1"
    assert samples['tiering_moved_bytes_total{action="archive"}'] == "1234"
    assert samples['tiering_files{state="archived"}'] == "1" and samples['tiering_cycles_total{trigger="start"}'] == "1"
    assert listening(port) == {"0100007F"}  # 127.0.0.1, nothing on other addresses or IPv6
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=10)
    missing.value.close()
    status = json.loads(tiering("status", "-c", str(cfg), "--json").stdout)
    assert status["daemon"]["pid"] == proc.pid and status["daemon"]["metrics"].endswith(f":{port}/metrics")
    busy = tiering("run", "-c", str(cfg))
    assert busy.returncode == 4 and f"pid {proc.pid}" in busy.stderr and "(daemon)" in busy.stderr


def test_the_rescan_finds_what_events_missed_reads_by_atime_writes_by_mtime(tmp_path):
    from tiering.daemon.rescan import changes
    from tiering.scan import write_snapshot

    hot = tmp_path / "hot"
    for name in ("read", "written", "untouched", "counted"):
        make_file(hot / name, 10)
    write_snapshot(hot, tmp_path / "a.parquet", jobs=1)
    now = time.time()
    for name in ("read", "counted"):
        os.utime(hot / name, (now, (hot / name).stat().st_mtime))
    os.utime(hot / "written", (now - 7200, now))
    make_file(hot / "new", 10)
    write_snapshot(hot, tmp_path / "b.parquet", jobs=1)
    found = changes(tmp_path / "a.parquet", tmp_path / "b.parquet", already_counted={b"counted"})
    assert found.accessed == [b"read"] and sorted(found.written) == [b"new", b"written"]


def test_the_daemons_own_io_is_not_heat_and_opens_are(tmp_path):
    from watchdog.events import FileClosedEvent, FileOpenedEvent

    from tiering.daemon.events import Debouncer, EventIntake, OwnActions, PendingWrites
    from tiering.mover.executor import Task

    intake, own, writes, recorded = EventIntake(), OwnActions(grace=5), PendingWrites(), []
    writes.enabled = True
    debouncer = Debouncer("/hot", intake, own, recorded.extend, writes, period=60)
    own.started(Task(b"moving", "archive"))
    for path in ("/hot/moving", "/hot/a", "/hot/a", "/hot/.tiering/x", "/elsewhere/b", "/hot/d/.tiering-restore-1"):
        intake.dispatch(FileOpenedEvent(path))
    intake.dispatch(FileClosedEvent("/hot/a"))
    own.finished(Task(b"moving", "archive"), None)
    intake.dispatch(FileOpenedEvent("/hot/moving"))  # just after the action ended: still the mover's
    assert debouncer.flush() == 2 and recorded == [b"a", b"a"]
    assert writes.due(quiet=0) == [b"a"] and debouncer.take_seen() == {b"a"}


PIN_KEEP = ('[[rules]]\nname = "keep"\nmatch = \'name ~ "keep*"\'\naction = "pin"\n' + ARCHIVE_ALL)


def test_metrics_count_the_true_bytes_of_pinned_files(tmp_path, daemon):
    """Issue 15.7: a pinned file counted 0 bytes in tiering_bytes."""
    port = free_port()
    cfg = write_setup(tmp_path, PIN_KEEP, FAST.replace("metrics_port = 0", f"metrics_port = {port}"))
    make_file(tmp_path / "hot/keep.bin", 5000)
    make_file(tmp_path / "hot/one", 1234)
    daemon(cfg)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    assert samples['tiering_files{state="resident"}'] == "1" and samples['tiering_bytes{state="resident"}'] == "5000"
    assert samples['tiering_bytes{state="archived"}'] == "1234"
