"""Hashing a parallel download in order: whatever order its parts land in, the checksum is the file's."""

from __future__ import annotations

import os
import random

import pytest

from tiering.stores.checksum import Hasher
from tiering.stores.s3_get import _InOrder

PART = 64 * 1024


@pytest.mark.parametrize("max_held", [1 << 30, 2 * PART, 0])  # all held / some read back / all read back
@pytest.mark.parametrize("with_data", [True, False])
def test_parts_landing_in_any_order_hash_to_the_whole_file(tmp_path, max_held, with_data):
    content = os.urandom(PART * 12 + 777)
    expected = Hasher()
    expected.update(content)
    starts = list(range(0, len(content), PART))
    random.Random(max_held + with_data).shuffle(starts)
    path = tmp_path / "download"
    with open(path, "w+b") as f:
        f.truncate(len(content))
        in_order = _InOrder(f.fileno(), max_held=max_held)
        for start in starts:
            part = memoryview(content)[start:start + PART]
            os.pwrite(f.fileno(), part, start)
            in_order.landed(start, len(part), part if with_data else None)
    assert in_order.hasher.value == expected.value
    assert in_order._held == 0 and not in_order._landed


def test_a_part_hashed_from_its_buffer_is_the_part_written(tmp_path):
    """The held buffer, not the file, is hashed: so it must be what was written (a corrupt write shows)."""
    content = os.urandom(PART * 2)
    with open(tmp_path / "d", "w+b") as f:
        f.truncate(len(content))
        in_order = _InOrder(f.fileno())
        in_order.landed(PART, PART, memoryview(content)[PART:])
        in_order.landed(0, PART)  # read back: the file still holds zeros here
    expected = Hasher()
    expected.update(content)
    assert in_order.hasher.value != expected.value
