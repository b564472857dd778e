"""``tiered://`` never returns a byte it has not verified: ranged reads of released files, posix tier and SeaweedFS."""

from __future__ import annotations

import os

import pytest
from test_fs import RELEASED, build

from tiering.core.errors import IntegrityError
from tiering.access.released import VERIFIED, VERIFY_BLOCK


@pytest.fixture(params=["posix", "s3"])
def released(request, tmp_path, monkeypatch):
    ds = build(tmp_path, request.param, request, monkeypatch)
    yield ds
    ds.fs.close()


def flipped(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


def test_a_flipped_byte_fails_a_ranged_read_that_does_not_cover_the_whole_file(released):
    original = RELEASED["data/big.bin"]
    released.corrupt("data/big.bin", flipped(original, 100_000))  # same size and metadata: only one byte differs
    with pytest.raises(IntegrityError) as caught:
        released.fs.cat_file("data/big.bin", start=99_950, end=100_050)
    assert "do not match the archived checksum" in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(IntegrityError), released.fs.open("data/big.bin") as f:  # far from the flip: still refused
        f.seek(10)
        f.read(10)


def test_a_byte_flipped_after_the_first_read_fails_the_read_of_its_block(released):
    """The first read verified the object and remembered its block hashes; a later change is still caught."""
    original = RELEASED["data/big.bin"]
    assert released.fs.cat_file("data/big.bin", start=5, end=25) == original[5:25]
    released.corrupt("data/big.bin", flipped(original, 150_000))
    with pytest.raises(IntegrityError, match="do not match what was verified"):
        released.fs.cat_file("data/big.bin", start=149_990, end=150_010)


def test_ranged_reads_of_a_good_object_return_the_right_bytes_across_verify_blocks(released):
    rel, data = "data/large.bin", os.urandom(2 * VERIFY_BLOCK + 4321)
    path = released.hot(rel)
    path.write_bytes(data)
    mover, catalog = released.mover()
    try:
        assert mover.release(rel.encode()).status == "done"
    finally:
        mover.close()
        catalog.close()
    ranges = [(0, 1), (VERIFY_BLOCK - 7, VERIFY_BLOCK + 9), (2 * VERIFY_BLOCK - 1, len(data)),
              (12_345, 2 * VERIFY_BLOCK), (len(data) - 1, len(data))]
    for start, end in ranges:
        assert released.fs.cat_file(rel, start=start, end=end) == data[start:end], (start, end)
    with released.fs.open(rel, block_size=300_000) as f:  # fsspec's own read-ahead, at offsets of its choosing
        f.seek(VERIFY_BLOCK + 5)
        assert f.read(700_000) == data[VERIFY_BLOCK + 5:VERIFY_BLOCK + 700_005]
        assert f.read() == data[VERIFY_BLOCK + 700_005:]
    rec = released.fs._record(rel)
    remembered = VERIFIED.get((released.fs._handles.store(rec.tier).url, rec.object_key, rec.checksum))
    assert remembered is not None and len(remembered) == 3  # a re-open does not read the whole object again
