"""The scan with many directory reads in flight (``io="threads"``) gives the inline scan's rows.

On ext4/tmpfs here (``io`` forced to "threads"); tests/test_fuse_scan.py runs
the same comparison on the SeaweedFS FUSE mount, where "auto" picks threads.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from test_scan import make_files, scan_rows

from tiering.scan import Scan, ScanProgress, write_snapshot
from tiering.scan.walker import CHUNK

THREADS_JOBS = pytest.mark.parametrize("jobs", [1, 2], ids=["in-process", "2-workers"])
COMPARED = ("type", "size", "blocks", "mode", "uid", "gid", "mtime_ns", "ctime_ns", "ino", "nlink")


def make_skewed_tree(root: Path, *, utf8_only: bool = False, huge: int = CHUNK + 300, depth: int = 40) -> None:
    """One directory bigger than a read chunk, a deep chain, odd names, symlinks, a state dir."""
    names = [b"new\nline", b"tab\there", b"caf\xc3\xa9", b"-dash", b" space "]
    if not utf8_only:
        names.append(b"\xff\xfe-not-utf8")
    broot = os.fsencode(root)
    (root / "huge").mkdir()
    chain = root.joinpath(*[f"c{i}" for i in range(depth)])
    chain.mkdir(parents=True)
    (chain / "bottom").write_bytes(b"deep")
    for i in range(8):
        make_files(root / f"w{i}" / "x", 30)
    with ThreadPoolExecutor(16) as pool:  # creating files is a round trip each on FUSE
        list(pool.map(lambda i: (root / "huge" / f"h{i:05d}").write_bytes(b"z" * (i % 5)), range(huge)))
    os.mkdir(broot + b"/odd " + names[2])
    for name in names:
        for parent in (broot, broot + b"/odd " + names[2]):
            with open(parent + b"/" + name, "wb") as f:
                f.write(b"data")
    links = {"to_dir": "huge", "loop": "loop", "dangling": "nowhere", "abs": "/etc", "up": ".."}
    for name, target in links.items():
        os.symlink(target, root / name)
    os.symlink("../../..", chain / "escape")
    make_files(root / ".tiering", 3)


def comparable(rows: dict[bytes, dict]) -> dict[bytes, tuple]:
    return {path: tuple(row[c] for c in COMPARED) for path, row in rows.items()}


def assert_same_scan(root: Path, jobs: int, threads: int = 8, batch_rows: int = 65536) -> None:
    """The threaded scan's rows and summary equal the inline scan's (``batch_rows`` also sets the read chunk)."""
    scan_rows(root, jobs=1, io="inline")  # reading directories may bump their atime once; settle it first
    inline, inline_scan = scan_rows(root, jobs=jobs, io="inline", batch_rows=batch_rows)
    threaded, threaded_scan = scan_rows(root, jobs=jobs, io="threads", threads=threads, batch_rows=batch_rows)
    assert (inline_scan.io, threaded_scan.io) == ("inline", "threads")
    assert set(threaded) == set(inline)
    assert comparable(threaded) == comparable(inline)
    a, b = inline_scan.summary, threaded_scan.summary
    assert (a.files, a.dirs, a.symlinks, a.specials, a.bytes, a.errors) == \
        (b.files, b.dirs, b.symlinks, b.specials, b.bytes, b.errors)
    assert not any(p.startswith(b".tiering") for p in threaded)
    assert not any(p.startswith((b"to_dir/", b"up/", b"abs/")) or b"/escape/" in p for p in threaded)
    assert threaded[b"to_dir"]["type"] == "symlink"


@THREADS_JOBS
def test_threads_give_the_inline_rows_on_a_skewed_tree(tmp_path, jobs):
    make_skewed_tree(tmp_path)
    assert_same_scan(tmp_path, jobs)


def test_one_thread_and_tiny_batches_still_give_the_same_rows(tmp_path):
    make_skewed_tree(tmp_path, huge=500, depth=10)
    inline, _ = scan_rows(tmp_path, jobs=1, io="inline", batch_rows=7)
    threaded, scan = scan_rows(tmp_path, jobs=1, io="threads", threads=1, batch_rows=7)
    assert comparable(threaded) == comparable(inline)
    assert scan.summary.files == len([r for r in inline.values() if r["type"] == "file"])


def test_auto_is_inline_on_a_local_disk_and_bad_values_are_refused(tmp_path):
    assert Scan(tmp_path).io == "inline"
    assert Scan(tmp_path, io="threads").io == "threads"
    with pytest.raises(ValueError, match="io must be one of"):
        Scan(tmp_path, io="fast")


def test_write_snapshot_passes_io_to_the_scan(tmp_path):
    make_files(tmp_path / "root" / "d", 50)
    readers: set[str] = set()

    def spy(progress: ScanProgress) -> None:
        readers.update(t.name for t in threading.enumerate() if t.name.startswith("scan-read"))

    summary = write_snapshot(tmp_path / "root", tmp_path / "s.parquet", jobs=1, io="threads", batch_rows=10,
                             progress=spy)
    assert summary.files == 50 and readers


def assert_deletions_mid_scan_are_counted(root: Path, per_dir: int) -> None:
    """12 directories, all deleted when the first batch is out: the ones no thread had opened are "vanished"."""
    for d in range(12):
        make_files(root / f"d{d:02d}", per_dir)
    before = {p.relative_to(root).as_posix().encode() for p in root.rglob("*")}
    deleted: list[ScanProgress] = []

    def delete_everything(progress: ScanProgress) -> None:
        if not deleted:  # at the first full batch: at most 4 directories are open, 8 not yet
            for child in root.iterdir():
                shutil.rmtree(child)
            deleted.append(progress)

    rows, scan = scan_rows(root, jobs=1, io="threads", threads=4, batch_rows=per_dir // 2,
                           progress=delete_everything)
    assert deleted
    assert set(rows) <= before and len(rows) == scan.summary.files + scan.summary.dirs
    assert set(scan.summary.errors) == {"vanished"}
    assert scan.summary.errors["vanished"] >= 8  # the directories no thread had opened yet
    assert scan.summary.files < 12 * per_dir


def test_entries_deleted_mid_scan_are_counted_as_vanished(tmp_path):
    assert_deletions_mid_scan_are_counted(tmp_path, 200)


def test_a_directory_swapped_for_a_symlink_mid_scan_is_not_followed(tmp_path):
    for d in range(12):
        make_files(tmp_path / f"d{d:02d}", 200)
    make_files(tmp_path.parent / "outside", 5, prefix="secret")
    swapped: list[ScanProgress] = []

    def swap(progress: ScanProgress) -> None:
        if not swapped:
            for d in range(12):
                shutil.rmtree(tmp_path / f"d{d:02d}")
                os.symlink(tmp_path.parent / "outside", tmp_path / f"d{d:02d}")
            swapped.append(progress)

    rows, scan = scan_rows(tmp_path, jobs=1, io="threads", threads=4, batch_rows=100, progress=swap)
    assert swapped and scan.summary.errors.get("changed", 0) >= 8
    assert not [p for p in rows if b"secret" in p]


def test_open_directories_stay_bounded_by_the_threads(tmp_path):
    for d in range(60):
        make_files(tmp_path / f"d{d:02d}" / "sub", 20)
    base = len(os.listdir("/proc/self/fd"))
    peak = [0]

    def sample(progress: ScanProgress) -> None:
        peak[0] = max(peak[0], len(os.listdir("/proc/self/fd")) - base)

    rows, _ = scan_rows(tmp_path, jobs=1, io="threads", threads=3, batch_rows=10, progress=sample)
    assert len(rows) == 60 * 22
    assert 0 < peak[0] <= 2 * 3 + 1  # each listing: its fd and scandir's dup (+ the root fd)


def test_stopping_early_ends_the_reader_threads_and_closes_every_directory(tmp_path):
    for d in range(30):
        make_files(tmp_path / f"d{d:02d}", 100)
    fds = len(os.listdir("/proc/self/fd"))
    with Scan(tmp_path, jobs=1, io="threads", threads=6, batch_rows=50) as scan:
        next(iter(scan))
        assert [t for t in threading.enumerate() if t.name.startswith("scan-read")]
    assert not [t for t in threading.enumerate() if t.name.startswith("scan-read")]
    assert len(os.listdir("/proc/self/fd")) == fds


RUN_OUT_OF_FDS = """
import errno, os, resource, sys
from tiering.scan import Scan
in_use = len(os.listdir("/proc/self/fd"))
resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 6, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
try:
    with Scan(sys.argv[1], jobs=1, io="threads", threads=8) as scan:
        rows = sum(batch.num_rows for batch in scan)
except OSError as exc:
    print(errno.errorcode[exc.errno])
else:
    print("finished", rows, scan.summary.errors)
"""


def test_running_out_of_file_descriptors_stops_the_scan_not_just_an_entry(tmp_path):
    for d in range(20):
        make_files(tmp_path / f"d{d:02d}", 5)
    done = subprocess.run([sys.executable, "-c", RUN_OUT_OF_FDS, str(tmp_path)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.stdout.strip() == "EMFILE", done.stdout + done.stderr
