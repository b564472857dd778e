"""Local file I/O: direct-I/O part writes (byte for byte what was given, direct or not, full disk or not), small-source reads."""

from __future__ import annotations

import errno
import os
import random
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from tiering.stores.directio import ALIGN, DIRECT_MIN, BufferPool, PartWriter

KiB = 1024
PART = 256 * KiB


def _write_parts(path, content: bytes, pool: BufferPool, part: int = PART) -> bool:
    """Write ``content`` as parts in a shuffled order from 4 threads; whether writes still went direct."""
    starts = list(range(0, len(content), part))
    random.Random(len(content)).shuffle(starts)
    with open(path, "w+b") as f, PartWriter(path, f.fileno(), pool, len(content)) as writer:
        f.truncate(len(content))
        with ThreadPoolExecutor(4) as threads:
            list(threads.map(lambda s: writer.write(memoryview(content)[s:s + part], s), starts))
        return writer.direct


@pytest.mark.parametrize("size", [PART * 6, PART * 6 + 777, ALIGN - 1, 3 * ALIGN + 1])
def test_parts_written_in_any_order_make_the_file(tmp_path, size):
    content = os.urandom(size)
    path = tmp_path / "download"
    direct = _write_parts(path, content, BufferPool(PART))
    assert path.read_bytes() == content
    # the test filesystem (ext4 or tmpfs on Linux) takes O_DIRECT: the direct path really ran, for files big enough
    assert direct == (size >= DIRECT_MIN)


def test_a_stream_of_odd_chunks_is_gathered_and_written_in_order(tmp_path):
    content = os.urandom(5 * PART + 4321)
    rng = random.Random(7)
    cuts = sorted(rng.sample(range(1, len(content)), 40))
    chunks = [content[a:b] for a, b in zip([0, *cuts], [*cuts, len(content)])]
    path = tmp_path / "stream"
    with open(path, "wb") as f, PartWriter(path, f.fileno(), BufferPool(PART), len(content)) as writer:
        assert writer.write_stream(iter(chunks)) == len(content)
    assert path.read_bytes() == content


class _UnalignedPool(BufferPool):
    """Buffers at an address the kernel refuses for direct I/O (a bytearray this big sits 16 bytes into a page)."""

    def take(self):
        return bytearray(self.size)

    def give(self, buf) -> None:
        pass


def test_a_refused_direct_write_falls_back_to_the_page_cache(tmp_path):
    content = os.urandom(PART * 5 + 100)  # big enough to be written direct, were it allowed
    path = tmp_path / "refused"
    direct = _write_parts(path, content, _UnalignedPool(PART))
    assert not direct  # the kernel said EINVAL, so the writer stopped trying
    assert path.read_bytes() == content


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_disk_is_an_error_not_a_short_file(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    try:
        with pytest.raises(OSError) as err:
            _write_parts(mnt / "big", os.urandom(PART * 8), BufferPool(PART))
        assert err.value.errno == errno.ENOSPC
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_a_pool_reuses_its_buffers_and_keeps_only_so_many():
    pool = BufferPool(PART, keep=1)
    a, b = pool.take(), pool.take()
    assert len(a) == PART and a is not b
    pool.give(a)
    pool.give(b)  # beyond ``keep``: unmapped
    assert pool.take() is a and b.closed
    pool.close()


@pytest.mark.parametrize(("actual", "expect"), [(0, 0), (5000, 5000), (5001, 5000), (9000, 5000), (4000, 5000)])
def test_reading_a_small_source_returns_it_whole_or_shows_it_changed(tmp_path, actual, expect):
    """A file that grew comes back longer than expected, one that shrank shorter: never silently cut to size."""
    from tiering.stores.localfile import read_source

    content = os.urandom(actual)
    (tmp_path / "src").write_bytes(content)
    data = read_source(tmp_path / "src", expect)
    assert data == content[: expect + 1]
    assert (len(data) == expect) == (actual == expect)


def test_sparse_writes_leave_holes_only_for_zeros_and_set_the_size(tmp_path):
    """Parts at odd offsets, zeros across block edges, a hole at the end: the bytes exactly, holes where zeros fill
    whole blocks."""
    from tiering.stores.localfile import HOLE_BLOCK

    size = 64 * HOLE_BLOCK
    content = bytearray(size)
    islands = [(0, 10), (5 * HOLE_BLOCK - 3, 7), (20 * HOLE_BLOCK, HOLE_BLOCK), (40 * HOLE_BLOCK + 100, 2 * HOLE_BLOCK)]
    for start, length in islands:
        content[start:start + length] = os.urandom(length)
    path = tmp_path / "sparse.bin"
    with open(path, "wb") as f, PartWriter(path, f.fileno(), BufferPool(PART), size, sparse=True) as writer:
        assert not writer.direct
        for start in range(0, size, 12345):  # parts that straddle blocks
            writer.write(memoryview(content)[start:start + 12345], start)
    assert path.read_bytes() == bytes(content)
    touched = {b for start, length in islands for b in range(start // HOLE_BLOCK, (start + length - 1) // HOLE_BLOCK + 1)}
    assert os.stat(path).st_blocks * 512 <= len(touched) * HOLE_BLOCK  # (7 blocks of 64)


def test_a_dense_file_stays_dense(tmp_path):
    content = os.urandom(PART) + bytes(4 * PART)
    path = tmp_path / "dense.bin"
    with open(path, "wb") as f, PartWriter(path, f.fileno(), BufferPool(PART), len(content)) as writer:
        writer.write_stream([content])
    assert path.read_bytes() == content and os.stat(path).st_blocks * 512 >= len(content)
