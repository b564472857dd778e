"""``tiered://`` (and the status it shows) again, with the hot tier on the SeaweedFS FUSE mount.

test_fs's own tests, with ``dataset`` (S3 capacity tier) and ``local_dataset``
(posix capacity tier) built on ``fuse_hot``.
"""

from __future__ import annotations

import pytest
from test_fs import (  # noqa: F401  (collected here again, on FUSE)
    build,
    test_a_corrupted_capacity_object_gives_a_clear_error_never_wrong_bytes,
    test_a_deleted_capacity_object_gives_a_clear_error,
    test_a_forked_worker_opens_its_own_catalog_and_stores,
    test_a_stub_the_catalog_does_not_describe_is_refused,
    test_fsspec_open_reads_exact_bytes_of_resident_archived_and_released_files,
    test_ls_info_find_and_glob_show_true_sizes_and_states,
    test_many_threads_share_one_instance,
    test_pyarrow_reads_a_released_parquet_file,
    test_ranged_reads_across_block_boundaries_on_a_released_file,
    test_restore_on_read_leaves_the_file_resident_with_its_bytes,
    test_restore_on_read_streams_when_another_process_holds_the_catalog,
    test_writes_are_refused,
)

from tiering.access.tiered import TieredFileSystem


def _dataset(kind: str, request, tmp_path, monkeypatch, hot):
    ds = build(tmp_path, kind, request, monkeypatch, hot=hot)
    yield ds
    ds.fs.close()
    TieredFileSystem.clear_instance_cache()


@pytest.fixture
def dataset(request, tmp_path, monkeypatch, fuse_hot):
    yield from _dataset("s3", request, tmp_path, monkeypatch, fuse_hot)


@pytest.fixture
def local_dataset(request, tmp_path, monkeypatch, fuse_hot):
    yield from _dataset("posix", request, tmp_path, monkeypatch, fuse_hot)
