"""Which version of a file the mover copied: ``identity.copied_version`` on real files.

A metadata-only change during a copy (a chmod, an xattr — or, on a networked
filesystem, the server's ctime arriving late) must not fail an archive whose bytes
are still the copy's; any change to the bytes must, even one that puts mtime back.
"""

from __future__ import annotations

import os

import pytest

from tiering.core.errors import SourceChangedError
from tiering.mover.beneath import HotRoot
from tiering.mover.identity import Identity, copied_version
from tiering.stores.checksum import checksum_bytes

DATA = os.urandom(5 * 1024 * 1024 + 7)  # more than one read chunk


@pytest.fixture
def version(tmp_path):
    path = tmp_path / "a file.bin"
    path.write_bytes(DATA)
    root = HotRoot(tmp_path)
    with root.entry(b"a file.bin") as where:
        yield where, path, Identity.of(where.lstat())
    root.close()


def test_an_unchanged_file_is_its_own_copied_version(version):
    where, _, ident = version
    assert copied_version(where, ident, ident, "blake3:not read at all") == ident


def test_a_ctime_only_change_with_the_same_bytes_is_the_copied_version(version):
    where, path, ident = version
    os.setxattr(path, "user.note", b"metadata only")
    os.chmod(path, 0o600)
    after = Identity.of(where.lstat())
    assert after.ctime_ns != ident.ctime_ns and after.mtime_ns == ident.mtime_ns
    assert copied_version(where, ident, after, checksum_bytes(DATA)) == after


def test_bytes_changed_under_a_restored_mtime_are_refused(version):
    where, path, ident = version
    with open(path, "r+b") as f:
        f.write(b"X")
    os.utime(path, ns=(path.stat().st_atime_ns, ident.mtime_ns))  # the mtime put back, as `touch -r` would
    after = Identity.of(where.lstat())
    assert (after.size, after.mtime_ns) == (ident.size, ident.mtime_ns)
    with pytest.raises(SourceChangedError, match=r"changed while it was copied \(ctime\)"):
        copied_version(where, ident, after, checksum_bytes(DATA))


def test_a_write_that_moves_mtime_is_refused_without_reading_and_named(version):
    where, path, ident = version
    with open(path, "ab") as f:
        f.write(b"more")
    after = Identity.of(where.lstat())
    with pytest.raises(SourceChangedError, match=r"size 5242887 -> 5242891"):
        copied_version(where, ident, after, checksum_bytes(DATA))
