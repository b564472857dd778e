"""The scanner on real trees: exact paths, symlinks, special files, errors, batches, snapshots, CLI."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pytest

from tiering.core.errors import UserError
from tiering.core.inventory import SCHEMA
from tiering.scan import (
    Scan,
    ScanProgress,
    iter_snapshot,
    snapshot_summary,
    write_snapshot,
)

REPO = Path(__file__).resolve().parents[1]
JOBS = pytest.mark.parametrize("jobs", [1, 2], ids=["in-process", "2-workers"])


def scan_rows(root: Path, **kwargs) -> tuple[dict[bytes, dict], Scan]:
    """Rows by path, and the finished scan (for its summary)."""
    with Scan(root, **kwargs) as scan:
        table = pa.Table.from_batches(list(scan), schema=SCHEMA)
    rows = {row["path"]: row for row in table.to_pylist()}
    assert len(rows) == table.num_rows, "a path was recorded twice"
    return rows, scan


def make_files(directory: Path, count: int, prefix: str = "f") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (directory / f"{prefix}{i:05d}").write_bytes(b"x" * (i % 7))


def children_of_this_process() -> set[int]:
    pids: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        pids.update(int(p) for p in (task / "children").read_text().split())
    return pids


# -- what is recorded ----------------------------------------------------------


@JOBS
def test_odd_filenames_are_recorded_as_exact_bytes(tmp_path, jobs):
    names = [b"new\nline", b"\xff\xfe-not-utf8", b"with space", b"-leading-dash", b"caf\xc3\xa9", b"tab\there"]
    root = os.fsencode(tmp_path)
    os.mkdir(root + b"/sub \xff")
    for name in names:
        for parent in (root, root + b"/sub \xff"):
            with open(parent + b"/" + name, "wb") as f:
                f.write(b"data")
    rows, scan = scan_rows(tmp_path, jobs=jobs)
    expected = {b"sub \xff"} | set(names) | {b"sub \xff/" + name for name in names}
    assert set(rows) == expected
    assert all(rows[p]["type"] == "file" and rows[p]["size"] == 4 for p in expected - {b"sub \xff"})
    assert (scan.summary.files, scan.summary.dirs, scan.summary.bytes) == (12, 1, 48)


@JOBS
def test_symlinks_are_recorded_never_followed(tmp_path, jobs):
    make_files(tmp_path / "real", 3)
    links = {"to_dir": "real", "loop": "loop", "a": "b", "b": "a", "dangling": "nowhere", "abs": "/etc"}
    for name, target in links.items():
        os.symlink(target, tmp_path / name)
    os.symlink("../real", tmp_path / "real" / "up")
    rows, scan = scan_rows(tmp_path, jobs=jobs)
    for name, target in links.items():
        assert rows[name.encode()]["type"] == "symlink"
        assert rows[name.encode()]["size"] == len(target)
    assert rows[b"real/up"]["type"] == "symlink"
    assert not [p for p in rows if p.startswith((b"to_dir/", b"abs/", b"real/up/"))]
    assert (scan.summary.files, scan.summary.dirs, scan.summary.symlinks) == (3, 1, 7)


@JOBS
def test_fifos_sockets_and_devices_are_skipped_and_counted(tmp_path, jobs):
    make_files(tmp_path / "d", 2)
    os.mkfifo(tmp_path / "fifo")
    os.mkfifo(tmp_path / "d" / "fifo2")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock"))
    specials = 3
    if os.geteuid() == 0:
        os.mknod(tmp_path / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        specials += 1
    rows, scan = scan_rows(tmp_path, jobs=jobs)
    assert set(rows) == {b"d", b"d/f00000", b"d/f00001"}
    assert scan.summary.specials == specials
    assert scan.summary.errors == {}


def test_hard_links_show_nlink_two(tmp_path):
    (tmp_path / "one").write_bytes(b"same")
    os.link(tmp_path / "one", tmp_path / "two")
    rows, _ = scan_rows(tmp_path, jobs=1)
    assert rows[b"one"]["nlink"] == rows[b"two"]["nlink"] == 2
    assert rows[b"one"]["ino"] == rows[b"two"]["ino"]


def test_values_equal_lstat(tmp_path):
    make_files(tmp_path / "a" / "b", 20)
    os.symlink("a/b/f00001", tmp_path / "link")
    os.chmod(tmp_path / "a" / "b" / "f00003", 0o4751)
    rows, _ = scan_rows(tmp_path, jobs=1)
    assert len(rows) == 23
    for path, row in rows.items():
        st = os.lstat(os.fsencode(tmp_path) + b"/" + path)
        expected = {"size": st.st_size, "blocks": st.st_blocks, "mode": st.st_mode, "uid": st.st_uid,
                    "gid": st.st_gid, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino,
                    "nlink": st.st_nlink}
        if not stat.S_ISDIR(st.st_mode):  # listing a directory may update its atime
            expected["atime_ns"] = st.st_atime_ns
        assert {k: row[k] for k in expected} == expected, path


@JOBS
def test_state_dir_is_excluded_at_the_root_only(tmp_path, jobs):
    make_files(tmp_path / ".tiering" / "journal", 5)
    make_files(tmp_path / "data" / ".tiering", 1)
    rows, _ = scan_rows(tmp_path, jobs=jobs)
    assert set(rows) == {b"data", b"data/.tiering", b"data/.tiering/f00000"}


# -- errors mid-scan -------------------------------------------------------------


def obeying_permissions(command: list[str]) -> list[str]:
    """``command``, run so that mode 000 really keeps it out."""
    if os.geteuid() != 0:
        return command
    # Root reads through mode 000; without these two capabilities it obeys the
    # permission bits like anyone else (and still owns its own files).
    if not shutil.which("setpriv"):
        pytest.skip("running as root and setpriv (util-linux) is missing: cannot drop CAP_DAC_OVERRIDE")
    drop = "-dac_override,-dac_read_search"
    return ["setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}", *command]


PERMISSION_SCRIPT = """
import json, sys
from tiering.scan import Scan
with Scan(sys.argv[1], jobs=int(sys.argv[2])) as scan:
    rows = sum(batch.num_rows for batch in scan)
s = scan.summary
print(json.dumps({"rows": rows, "errors": s.errors, "examples": {k: [p.decode() for p in v] for k, v in s.error_examples.items()}}))
"""


@JOBS
def test_unreadable_directory_is_counted_as_a_permission_error(tmp_path, jobs):
    make_files(tmp_path / "open", 3)
    make_files(tmp_path / "locked", 3)
    os.chmod(tmp_path / "locked", 0)
    command = obeying_permissions([sys.executable, "-c", PERMISSION_SCRIPT, str(tmp_path), str(jobs)])
    try:
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60, env=_env())
    finally:
        os.chmod(tmp_path / "locked", 0o755)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["errors"] == {"permission": 1}
    assert result["examples"] == {"permission": ["locked"]}
    assert result["rows"] == 5  # open, locked (seen from its parent) and open's 3 files


def test_entries_vanishing_mid_scan_are_counted(tmp_path):
    for d in range(10):
        make_files(tmp_path / f"d{d}", 200)
    deleted = []

    def delete_everything(progress: ScanProgress) -> None:
        if not deleted:  # first call: one batch out, nine directories still to read
            for child in tmp_path.iterdir():
                shutil.rmtree(child)
            deleted.append(progress)

    _, scan = scan_rows(tmp_path, jobs=1, batch_rows=100, progress=delete_everything)
    assert deleted and scan.summary.dirs == 10 and scan.summary.files == 0
    # the 100 listed but not yet stat'ed names, and the 9 directories still to open
    assert scan.summary.errors["vanished"] >= 109
    assert len(scan.summary.error_examples["vanished"]) == 5
    assert set(scan.summary.errors) == {"vanished"}


def test_concurrent_deletion_with_workers_does_not_break_the_scan(tmp_path):
    for d in range(40):
        make_files(tmp_path / f"d{d:02d}", 500)
    before = {p.relative_to(tmp_path).as_posix().encode() for p in tmp_path.rglob("*")}
    stop = threading.Event()

    def delete() -> None:
        for d in sorted(tmp_path.iterdir(), reverse=True):
            if stop.is_set():
                return
            shutil.rmtree(d)

    deleter = threading.Thread(target=delete)
    deleter.start()
    try:
        rows, scan = scan_rows(tmp_path, jobs=2, batch_rows=1000)
    finally:
        stop.set()
        deleter.join()
    assert set(rows) <= before
    assert set(scan.summary.errors) <= {"vanished"}
    assert scan.summary.files + scan.summary.dirs == len(rows)


def test_a_directory_replaced_mid_scan_is_counted_as_changed(tmp_path):
    for d in range(10):
        make_files(tmp_path / f"d{d}", 200)
    swapped = []

    def swap(progress: ScanProgress) -> None:
        if not swapped:
            for d in range(10):
                (tmp_path / f"d{d}").rename(tmp_path / f"old{d}")
                if d % 2:
                    make_files(tmp_path / f"d{d}", 1)  # a new directory: another inode
                else:
                    os.symlink(f"old{d}", tmp_path / f"d{d}")
            swapped.append(progress)

    _, scan = scan_rows(tmp_path, jobs=1, batch_rows=100, progress=swap)
    assert scan.summary.errors["changed"] >= 8
    assert not [p for p in scan.summary.error_examples["changed"] if not p.startswith(b"d")]


def test_missing_root_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such directory"):
        list(Scan(tmp_path / "absent"))
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(UserError, match="not a directory"):
        list(Scan(tmp_path / "file"))


# -- batches, progress, workers --------------------------------------------------


@JOBS
def test_batches_are_bounded_and_carry_the_schema(tmp_path, jobs):
    for d in range(6):
        make_files(tmp_path / f"d{d}", 1000)
    with Scan(tmp_path, jobs=jobs, batch_rows=700) as scan:
        sizes = []
        for batch in scan:
            assert batch.schema == SCHEMA
            sizes.append(batch.num_rows)
    assert sum(sizes) == 6006 and len(sizes) >= 9
    assert max(sizes) <= 700


def test_progress_reports_frozen_totals(tmp_path):
    for d in range(4):
        make_files(tmp_path / f"d{d}", 300)
    seen: list[ScanProgress] = []
    _, scan = scan_rows(tmp_path, jobs=2, batch_rows=200, progress=seen.append)
    assert seen and seen[-1].files == scan.summary.files == 1200 and seen[-1].dirs == 4
    assert all(a.files <= b.files for a, b in itertools.pairwise(seen))
    with pytest.raises(AttributeError):
        seen[0].files = 0  # type: ignore[misc]


def test_stopping_early_ends_the_workers(tmp_path):
    for d in range(8):
        make_files(tmp_path / f"d{d}", 500)
    before = children_of_this_process()
    with Scan(tmp_path, jobs=2, batch_rows=100) as scan:
        next(iter(scan))
        assert children_of_this_process() - before
    assert children_of_this_process() == before
    with pytest.raises(RuntimeError, match="not finished"):
        _ = scan.summary


# -- snapshots ---------------------------------------------------------------------


@JOBS
def test_snapshot_round_trip_equals_the_scan(tmp_path, jobs):
    root = tmp_path / "root"
    for d in range(3):
        make_files(root / f"d{d}", 400)
    os.symlink("d0", root / "link")
    scan_rows(root, jobs=1)  # reading directories may bump their atime once; settle it first
    with Scan(root, jobs=jobs, batch_rows=500) as scan:
        scanned = pa.Table.from_batches(list(scan), schema=SCHEMA)
    out = tmp_path / "snap" / "inventory.parquet"
    out.parent.mkdir()
    summary = write_snapshot(root, out, jobs=jobs, batch_rows=500)
    batches = list(iter_snapshot(out))
    assert all(b.schema.equals(SCHEMA) for b in batches)
    read = pa.Table.from_batches(batches, schema=SCHEMA)
    assert read.sort_by("path").equals(scanned.sort_by("path"))
    assert summary.snapshot == out and summary.files == 1200 and summary.symlinks == 1
    assert snapshot_summary(out)["files"] == 1200
    assert os.listdir(out.parent) == ["inventory.parquet"]


def test_a_failed_snapshot_leaves_nothing_under_its_name(tmp_path):
    make_files(tmp_path / "root" / "d", 500)
    out = tmp_path / "snap" / "inventory.parquet"
    out.parent.mkdir()

    def fail(progress: ScanProgress) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_snapshot(tmp_path / "root", out, jobs=1, batch_rows=100, progress=fail)
    assert os.listdir(out.parent) == []


# -- the command line ------------------------------------------------------------


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TIERING_CONFIG", "TIERING_HOME")}
    env["PYTHONPATH"] = str(REPO)
    return env


def cli(*args: str, unprivileged: bool = False) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from tiering.cli import main; main()", *args]
    command = obeying_permissions(command) if unprivileged else command
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=120, env=_env())


def write_config(tmp_path: Path) -> Path:
    config = tmp_path / "tiering.toml"
    config.write_text('[hot]\npath = "hot"\n[catalog]\npath = "state/catalog.db"\n[tiers.hdd]\nurl = "cap"\n')
    return config


def test_cli_scan_json_writes_a_snapshot_and_points_latest_at_it(tmp_path):
    make_files(tmp_path / "hot" / "d", 10)
    os.symlink("d", tmp_path / "hot" / "link")
    done = cli("scan", "--config", str(write_config(tmp_path)), "--json", "--jobs", "2")
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    summary = json.loads(line)
    assert (summary["files"], summary["dirs"], summary["symlinks"], summary["errors"]) == (10, 1, 1, {})
    snapshot = Path(summary["snapshot"])
    assert snapshot.parent == tmp_path / "state" / "inventory" and snapshot.name.startswith("scan-")
    latest = snapshot.parent / "latest.parquet"
    assert latest.is_symlink() and latest.resolve() == snapshot.resolve()
    assert sum(b.num_rows for b in iter_snapshot(latest)) == 12


def test_cli_scan_out_and_one_line_summary(tmp_path):
    make_files(tmp_path / "hot", 3)
    out = tmp_path / "inv.parquet"
    done = cli("scan", "-c", str(write_config(tmp_path)), "--out", str(out), "--jobs", "1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("scanned 3 files, 0 dirs, 0 symlinks, 3B, 0 errors")
    assert done.stdout.rstrip().endswith(f"-> {out}")
    assert out.is_file() and not (tmp_path / "state").exists()


def test_cli_scan_exits_1_when_entries_could_not_be_read(tmp_path):
    make_files(tmp_path / "hot" / "locked", 2)
    os.chmod(tmp_path / "hot" / "locked", 0)
    try:
        done = cli("scan", "-c", str(write_config(tmp_path)), unprivileged=True)
    finally:
        os.chmod(tmp_path / "hot" / "locked", 0o755)
    assert done.returncode == 1, done.stderr
    assert "1 error [permission 1 (e.g. locked)]" in done.stdout


def test_cli_scan_missing_hot_tier_is_one_line(tmp_path):
    done = cli("scan", "-c", str(write_config(tmp_path)))
    assert done.returncode == 2
    assert done.stderr.strip() == f"tiering: error: {tmp_path / 'hot'}: no such directory (the tree to scan)"


# -- a stale inventory (issue 15.7) ------------------------------------------------------------------------------

STALE_POLICY = '[[rules]]\nname = "all"\nmatch = \'type == "file"\'\naction = "archive"\n[safety]\nmin_age = "0s"\n'


def _stale_setup(tmp_path: Path, scan_section: str) -> tuple[Path, Path]:
    """A scanned hot tier whose latest snapshot is 3 hours old, and a file written since."""
    from unattended import tiering, write_setup

    cfg = write_setup(tmp_path, STALE_POLICY)
    cfg.write_text(cfg.read_text() + scan_section)
    (tmp_path / "hot" / "old.bin").write_bytes(b"o" * 100)
    assert tiering("scan", "-c", str(cfg)).returncode == 0
    latest = tmp_path / "state" / "inventory" / "latest.parquet"
    three_hours_ago = latest.stat().st_mtime - 3 * 3600
    os.utime(latest, (three_hours_ago, three_hours_ago))  # follows the link to the snapshot itself
    (tmp_path / "hot" / "new.bin").write_bytes(b"n" * 100)
    return cfg, latest.resolve()


def test_a_plan_on_an_inventory_older_than_max_age_says_so_and_rescans(tmp_path):
    from unattended import tiering

    cfg, old = _stale_setup(tmp_path, "")  # the default [scan] max_age: 1h
    done = tiering("plan", "-c", str(cfg))
    assert done.returncode == 0, done.stderr
    header = done.stdout.splitlines()[0]
    assert "was 3h00m old, older than [scan] max_age 1h: rescanned" in header, done.stdout
    assert "new.bin" in done.stdout  # planned on the fresh scan
    as_json = tiering("plan", "-c", str(cfg), "--json", "--inventory", str(old))
    assert "new.bin" not in as_json.stdout and as_json.stderr == ""  # a named inventory is used as is, however old


def test_a_plan_within_max_age_uses_the_latest_scan_and_says_how_old_it_is(tmp_path):
    from unattended import tiering

    cfg, _ = _stale_setup(tmp_path, '[scan]\nmax_age = "1d"\n')
    done = tiering("plan", "-c", str(cfg))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("inventory: scan-") and "scanned 3h00m ago" in done.stdout
    assert "old.bin" in done.stdout and "new.bin" not in done.stdout


def test_pick_inventory_rescans_past_max_age(tmp_path):
    from unattended import write_setup

    from tiering.config import load_config
    from tiering.ops.workflow import pick_inventory
    from tiering.scan import fresh_snapshot

    cfg = write_setup(tmp_path, STALE_POLICY)
    cfg.write_text(cfg.read_text() + '[scan]\nmax_age = "10m"\n')
    config = load_config(cfg)
    assert config.scan_max_age == 600
    first = fresh_snapshot(config)
    kept = pick_inventory(config, now=first.stat().st_mtime + 599)
    assert kept.path.resolve() == first and kept.stale is None and 598 < kept.age <= 599
    replaced = pick_inventory(config, now=first.stat().st_mtime + 601)
    assert replaced.stale == first and replaced.path != first and replaced.stale_age > 600
