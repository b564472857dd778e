"""The scanner's tests again, on a tree on the SeaweedFS FUSE mount (``tmp_path`` overridden by ``fuse_hot``).

A subset that covers what a networked filesystem could change: lstat values
(inode numbers past 2**63 in the uint64 column), symlinks, special files, hard
links, the state directory, permission errors, a snapshot with worker
processes, the CLI. Names must be valid UTF-8 here: SeaweedFS stores a name
as a string and replaces invalid bytes (see bench/peers/weed_mount.py).

Here ``io="auto"`` picks "threads" (many reads in flight, ``tiering.scan.inflight``),
so all of the above also runs that mode; the threaded rows are compared with
the inline scan's on a skewed tree.
"""

from __future__ import annotations

import os

import pytest
from test_scan_inflight import (  # noqa: F401  (collected here again, on FUSE)
    assert_deletions_mid_scan_are_counted,
    assert_same_scan,
    make_skewed_tree,
)
from test_scan import (  # noqa: F401  (collected here again, on FUSE)
    JOBS,
    scan_rows,
    test_cli_scan_json_writes_a_snapshot_and_points_latest_at_it,
    test_fifos_sockets_and_devices_are_skipped_and_counted,
    test_hard_links_show_nlink_two,
    test_snapshot_round_trip_equals_the_scan,
    test_state_dir_is_excluded_at_the_root_only,
    test_symlinks_are_recorded_never_followed,
    test_unreadable_directory_is_counted_as_a_permission_error,
    test_values_equal_lstat,
)


@pytest.fixture
def tmp_path(fuse_hot):
    return fuse_hot


@JOBS
def test_odd_utf8_filenames_are_recorded_as_exact_bytes(tmp_path, jobs):
    names = [b"new\nline", b"with space", b"-leading-dash", b"caf\xc3\xa9", b"tab\there", b"\xe2\x80\xae-rtl"]
    root = os.fsencode(tmp_path)
    os.mkdir(root + b"/sub \xc3\xbc")
    for name in names:
        for parent in (root, root + b"/sub \xc3\xbc"):
            with open(parent + b"/" + name, "wb") as f:
                f.write(b"data")
    rows, _ = scan_rows(tmp_path, jobs=jobs)
    assert set(rows) == {b"sub \xc3\xbc"} | set(names) | {b"sub \xc3\xbc/" + name for name in names}
    assert max(row["ino"] for row in rows.values()) > 0


def test_auto_reads_many_directories_at_once_on_fuse(tmp_path):
    from tiering.scan import Scan

    assert Scan(tmp_path).io == "threads"


@JOBS
def test_threads_give_the_inline_rows_on_a_skewed_tree_on_fuse(tmp_path, jobs):
    # creating files costs a round trip each here: a smaller "huge" directory, read in smaller chunks
    make_skewed_tree(tmp_path, utf8_only=True, huge=1100, depth=20)
    assert_same_scan(tmp_path, jobs, batch_rows=400)


def test_entries_deleted_mid_scan_are_counted_as_vanished_on_fuse(tmp_path):
    assert_deletions_mid_scan_are_counted(tmp_path, 30)
