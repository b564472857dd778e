"""The access guard records each restore it does for a reader in the access trace (a real guard, real reader)."""

from __future__ import annotations

import os

import pytest

from conftest import is_root
from guard_setup import guarded_ext4, read_in_process
from tiering.trace.read import read_trace

pytestmark = pytest.mark.skipif(not is_root(), reason="fanotify permission events need root")


@pytest.fixture
def g(ext4_loop, tmp_path, seaweed):
    yield from guarded_ext4(ext4_loop, tmp_path, seaweed.endpoint)


def test_a_restore_for_a_reader_is_in_the_trace_with_its_bytes_and_tier(g, tmp_path):
    data = os.urandom(300_000)
    g.write({"ds/shard-0.tar": data, "ds/shard-1.tar": b"kept"})
    g.release("ds/shard-0.tar")
    g.start_guard()
    done = read_in_process(["cat", str(g.hot / "ds/shard-0.tar")])
    assert done.returncode == 0 and done.stdout == data
    g.stop_guard()  # the worker writes what it buffered as it stops
    rows = read_trace(tmp_path / "state" / "trace").to_pylist()
    restores = [r for r in rows if r["kind"] == "restore"]
    assert [(r["path"], r["bytes"], r["tier"]) for r in restores] == [(b"ds/shard-0.tar", len(data), "cap")], rows
