"""The mover's hot-tier tests again, with the hot tier on the SeaweedFS FUSE mount and an S3 capacity tier.

A networked hot tier (every metadata call a round trip to the filer; inode
numbers past 2**63; no atime; st_blocks from the size) must archive, release,
stub and restore exactly as ext4 does. The tests are test_mover's own, run here
with ``mover`` overridden; skipped with one line where FUSE is unavailable.
"""

from __future__ import annotations

import pytest
from test_mover import (  # noqa: F401  (collected here again, on FUSE)
    test_a_file_changing_during_the_copy_is_not_archived,
    test_a_file_open_for_writing_is_skipped,
    test_a_restore_waits_a_bounded_time_for_a_stub_held_open_then_fails_it,
    test_a_stub_takes_no_blocks_of_its_own,
    test_a_stub_written_to_is_kept_and_marked_dirty,
    test_archive_release_restore_round_trip_keeps_bytes_and_attributes,
    test_release_archives_first_and_a_changed_file_is_archived_again,
    test_restore_refuses_a_damaged_capacity_copy_and_keeps_the_stub,
    test_unmovable_entries_are_skipped_with_a_reason,
)


@pytest.fixture
def mover(fuse_mover):
    return fuse_mover
