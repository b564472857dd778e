"""The mover never leaves the hot tier: no symlink is followed at any component, even when called directly.

The CLI refuses such operands up front; these tests call ``Mover`` itself with
the relative path, as a manifest, a plan or a library caller would.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from conftest import tier_config

from tiering.catalog import Catalog
from tiering.config import load_config
from tiering.core.errors import PathError
from tiering.mover.beneath import HotRoot
from tiering.mover.ops import Mover
from tiering.stores.checksum import checksum_bytes


def stored_keys(m: Mover) -> list[str]:
    return [o.key for o in m.store("cap").list()]


def outside_file(tmp_path: Path, data: bytes) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.bin").write_bytes(data)
    return outside


def test_releasing_through_a_symlinked_directory_is_refused_and_the_target_untouched(mover, tmp_path):
    """The issue's case: `release hot/outdir_link/secret.bin` truncated outside/secret.bin to a stub."""
    data = os.urandom(70_000)
    outside = outside_file(tmp_path, data)
    os.symlink(outside, mover.hot / "outdir_link")
    out = mover.release(b"outdir_link/secret.bin")
    assert out.status == "failed"
    assert "outdir_link/secret.bin" in out.reason and "outdir_link is a symbolic link" in out.reason
    assert (outside / "secret.bin").read_bytes() == data
    assert os.listxattr(outside / "secret.bin") == []
    assert mover.catalog.get(b"outdir_link/secret.bin") is None
    assert stored_keys(mover) == []


@pytest.mark.skipif(not Path("/etc/hostname").is_file(), reason="no /etc/hostname here")
def test_archiving_through_a_link_to_etc_copies_nothing(mover):
    """The issue's case: `archive hot/etc_link/hostname` copied /etc/hostname into the capacity tier."""
    os.symlink("/etc", mover.hot / "etc_link")
    out = mover.archive(b"etc_link/hostname")
    assert out.status == "failed" and "etc_link is a symbolic link" in out.reason
    assert stored_keys(mover) == []
    assert mover.catalog.get(b"etc_link/hostname") is None


def test_an_alias_cannot_split_one_file_into_two_records(mover):
    """Releasing through `link_dir/in.bin` used to leave the real `d/in.bin` reading `resident, 0B`."""
    (mover.hot / "d").mkdir()
    (mover.hot / "d" / "in.bin").write_bytes(b"real bytes" * 100)
    os.symlink("d", mover.hot / "link_dir")
    assert mover.release(b"link_dir/in.bin").status == "failed"
    assert (mover.hot / "d" / "in.bin").read_bytes() == b"real bytes" * 100
    assert mover.catalog.get(b"link_dir/in.bin") is None
    out = mover.archive(b"d/in.bin")
    assert out.status == "done" and mover.catalog.get(b"d/in.bin").checksum == checksum_bytes(b"real bytes" * 100)


def test_restoring_through_a_directory_replaced_by_a_symlink_writes_nothing_outside(mover, tmp_path):
    (mover.hot / "d").mkdir()
    data = os.urandom(5000)
    (mover.hot / "d" / "secret.bin").write_bytes(data)
    assert mover.release(b"d/secret.bin").status == "done"
    outside = outside_file(tmp_path, b"theirs")
    os.rename(mover.hot / "d", mover.hot / "d.real")
    os.symlink(outside, mover.hot / "d")
    out = mover.restore(b"d/secret.bin")
    assert out.status == "failed" and "d is a symbolic link" in out.reason
    assert (outside / "secret.bin").read_bytes() == b"theirs"
    assert sorted(os.listdir(outside)) == ["secret.bin"]  # no temp file left there either
    assert mover.catalog.get(b"d/secret.bin").state == "released"


def test_a_directory_swapped_for_a_symlink_mid_copy_never_redirects_the_release(tmp_path, request, monkeypatch):
    """The swap happens while the copy runs; the stub is made in the directory that was checked, or nowhere."""
    config = load_config(tier_config("posix", tmp_path, request, monkeypatch))
    data = os.urandom(48 * 1024 * 1024)
    (config.hot_path / "d").mkdir()
    (config.hot_path / "d" / "secret.bin").write_bytes(data)
    outside = outside_file(tmp_path, b"x" * len(data))  # same size: an identity check by size alone would pass
    staging = tmp_path / "capacity" / ".tiering" / "tmp"

    def swap_when_the_copy_starts() -> None:
        deadline = time.monotonic() + 20
        while not (staging.is_dir() and any(staging.iterdir())) and time.monotonic() < deadline:
            time.sleep(0.001)
        os.rename(config.hot_path / "d", config.hot_path / "d.real")
        os.symlink(outside, config.hot_path / "d")

    with Catalog.open(config.catalog_path, writer=True) as cat:
        m = Mover(config, cat)
        swapper = threading.Thread(target=swap_when_the_copy_starts)
        swapper.start()
        out = m.release(b"d/secret.bin")
        swapper.join()
        assert (config.hot_path / "d").is_symlink()  # the swap did happen during the run
        assert (outside / "secret.bin").read_bytes() == b"x" * len(data)
        assert os.listxattr(outside / "secret.bin") == []
        real = config.hot_path / "d.real" / "secret.bin"
        if out.status == "done":  # the file it checked was released, in its real directory
            assert real.stat().st_size == 0
        else:
            assert real.read_bytes() == data
        assert m.restore(b"d/secret.bin").status in ("failed", "noop")  # the name now leads through a link
        m.close()


def test_plain_paths_only(tmp_path):
    """`..`, `.`, empty components, absolute paths and NUL are refused before anything is opened."""
    (tmp_path / "hot").mkdir()
    root = HotRoot(tmp_path / "hot")
    for rel in (b"../x", b"a/../../x", b"./x", b"a//b", b"/etc/passwd", b"", b"a\0b", b"a/"):
        with pytest.raises(PathError, match="not a plain path"):
            root.entry(rel)
    root.close()


def test_the_walk_without_openat2_refuses_the_same_paths(tmp_path, monkeypatch):
    """Kernels without openat2 get the O_NOFOLLOW walk; it must refuse exactly what openat2 refuses."""
    from tiering.mover import beneath

    hot = tmp_path / "hot"
    (hot / "d" / "e").mkdir(parents=True)
    (hot / "d" / "e" / "f").write_bytes(b"ok")
    os.symlink(tmp_path, hot / "d" / "up")
    os.symlink("e", hot / "d" / "alias")
    cases = {b"d/e/f": True, b"d/up/hot/d/e/f": False, b"d/alias/f": False}
    for use_openat2 in (True, False):
        if not use_openat2:
            monkeypatch.setattr(beneath, "_openat2", lambda: None)
        root = HotRoot(hot)
        for rel, allowed in cases.items():
            if allowed:
                with root.entry(rel) as where:
                    assert where.lstat().st_size == 2
            else:
                with pytest.raises(PathError, match="is a symbolic link"):
                    root.entry(rel)
        root.close()
