"""``tiering reconcile``: every kind of disagreement between hot tier, catalog and a real tier, broken on
purpose, found, and repaired only where that is safe (posix and SeaweedFS S3 tiers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest

from tiering.core.states import FileState
from tiering.mover.stub import STUB_XATTR
from tiering.ops.reconcile import KINDS, reconcile
from tiering.stores.base import FileMeta
from tiering.stores.keys import encode_key


def _file(m, rel: bytes, data: bytes):
    path = m.hot_path(rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _check(m, fix: bool = False, deep: bool = False):
    return reconcile(m.config, m.catalog, fix=fix, deep=deep, archive=m.archive)


def _by_path(report) -> dict[bytes, tuple[str, str]]:
    return {f.path: (f.kind, f.fixed) for f in report.findings}


def test_a_tier_in_agreement_has_nothing_to_report(mover):
    for i in range(3):
        _file(mover, f"ok/{i}.bin".encode(), os.urandom(1000 + i))
    assert mover.archive(b"ok/0.bin").status == "done"
    assert mover.release(b"ok/1.bin").status == "done"
    report = _check(mover, deep=True)
    assert report.findings == []
    assert report.checked == {"files": 2, "stubs": 1, "entries": 2, "objects": 2, "tiers": 1}


def test_each_kind_is_found_and_only_the_safe_ones_are_fixed(mover):
    m = mover
    data = {name: os.urandom(2000 + i) for i, name in enumerate(
        [b"lost.bin", b"gone-copy.bin", b"changed.bin", b"written.bin", b"vanished.bin", b"unknown-stub.bin",
         b"adoptable.bin"])}
    for rel, body in data.items():
        _file(m, rel, body)
    for rel in (b"lost.bin", b"written.bin", b"unknown-stub.bin"):
        assert m.release(rel).status == "done"
    for rel in (b"gone-copy.bin", b"changed.bin", b"vanished.bin", b"adoptable.bin"):
        assert m.archive(rel).status == "done"
    store = m.store("cap")
    store.delete(m.catalog.get(b"lost.bin").object_key)  # a released file's only copy: gone
    store.delete(m.catalog.get(b"gone-copy.bin").object_key)  # an archived file's copy: gone, bytes still here
    with open(m.hot_path(b"changed.bin"), "ab") as f:
        f.write(b"more")
    written = m.hot_path(b"written.bin")
    os.removexattr(written, STUB_XATTR)
    written.write_bytes(b"new bytes in the stub")
    m.hot_path(b"vanished.bin").unlink()
    m.catalog.forget(b"unknown-stub.bin")
    m.catalog.forget(b"adoptable.bin")
    stray = _file(m, b"stray-src.bin", os.urandom(100))  # an object whose path has no file: a stray
    store.put_file(stray, encode_key(b"elsewhere/stray.bin"), FileMeta.from_stat(stray.stat(), "elsewhere/stray.bin"))
    stray.unlink()

    found = _check(m)
    assert _by_path(found) == {
        b"lost.bin": ("missing-object", ""), b"gone-copy.bin": ("missing-object", ""),
        b"changed.bin": ("changed", ""), b"written.bin": ("written-stub", ""), b"vanished.bin": ("vanished", ""),
        b"unknown-stub.bin": ("stub-unknown", ""), b"adoptable.bin": ("orphan", ""),
        b"elsewhere/stray.bin": ("orphan", ""),
    }
    assert [f.kind for f in found.findings] == sorted((f.kind for f in found.findings), key=list(KINDS).index)
    assert "only copy is gone" in next(f.detail for f in found.findings if f.path == b"lost.bin")

    fixed = _check(m, fix=True)
    assert _by_path(fixed) == {
        b"lost.bin": ("missing-object", ""),  # nothing can bring it back: reported, left alone
        b"gone-copy.bin": ("missing-object", "archived again to cap"),
        b"changed.bin": ("changed", "archived again to cap"),
        b"written.bin": ("written-stub", "archived again to cap"),
        b"vanished.bin": ("vanished", "catalog entry forgotten; its object stays in cap"),
        b"unknown-stub.bin": ("stub-unknown", f"adopted as released (object {encode_key(b'unknown-stub.bin')} in cap)"),
        b"adoptable.bin": ("orphan", "adopted as the archived copy of adoptable.bin"),
        b"elsewhere/stray.bin": ("orphan", ""),  # proves nothing: never deleted, never adopted
    }
    assert m.catalog.get(b"changed.bin").size == len(data[b"changed.bin"]) + 4
    assert m.catalog.get(b"written.bin").state == FileState.ARCHIVED
    assert m.catalog.get(b"adoptable.bin").state == FileState.ARCHIVED
    # The adopted stub restores: the catalog entry made from its object is the real one.
    assert m.restore(b"unknown-stub.bin").status == "done"
    assert m.hot_path(b"unknown-stub.bin").read_bytes() == data[b"unknown-stub.bin"]

    again = _check(m)
    assert _by_path(again) == {b"lost.bin": ("missing-object", ""),
                               b"vanished.bin": ("orphan", ""),  # its object stayed, for a person to delete
                               b"elsewhere/stray.bin": ("orphan", "")}


def test_deep_finds_an_object_whose_checksum_is_not_the_catalogs(mover):
    _file(mover, b"a.bin", os.urandom(3000))
    assert mover.release(b"a.bin").status == "done"
    rec = mover.catalog.get(b"a.bin")
    mover.catalog.put(replace(rec, checksum="blake3:" + "0" * 64))
    assert _check(mover).findings == []  # a listing shows sizes only
    (finding,) = _check(mover, deep=True).findings
    assert finding.kind == "object-checksum" and finding.path == b"a.bin"


@pytest.mark.parametrize("mover", ["s3"], indirect=True)
def test_a_listing_that_fails_stops_reconcile_before_it_judges_or_fixes_anything(mover, request):
    from conftest import closed_port
    from tiering.core.errors import TierUnavailableError

    _file(mover, b"a.bin", os.urandom(500))
    assert mover.archive(b"a.bin").status == "done"
    mover.hot_path(b"a.bin").unlink()
    tier = mover.config.tiers["cap"]
    down = replace(tier, options={**tier.options, "endpoint": f"http://127.0.0.1:{closed_port()}"})
    config = replace(mover.config, tiers={"cap": down}, retry=replace(mover.config.retry, attempts=1))
    with pytest.raises(TierUnavailableError):
        reconcile(config, mover.catalog, fix=True, archive=mover.archive)
    assert mover.catalog.get(b"a.bin") is not None  # the vanished file's entry is not forgotten on a failed look


@pytest.mark.parametrize("mover", ["posix"], indirect=True)
def test_the_command_exits_1_while_disagreements_are_left_and_0_once_fixed(mover, tmp_path):
    _file(mover, b"a.bin", os.urandom(500))
    assert mover.archive(b"a.bin").status == "done"
    with open(mover.hot_path(b"a.bin"), "ab") as f:
        f.write(b"x")
    mover.catalog.close()
    cmd = [sys.executable, "-m", "tiering", "reconcile", "-c", str(tmp_path / "tiering.toml")]
    out = subprocess.run([*cmd, "--json", "--parquet", str(tmp_path / "r.parquet")], capture_output=True, text=True)
    assert out.returncode == 1, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert lines[0]["kind"] == "changed" and lines[-1]["left"] == 1 and lines[-1]["by_kind"] == {"changed": 1}
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "r.parquet").column("kind").to_pylist() == ["changed"]
    fixed = subprocess.run([*cmd, "--fix"], capture_output=True, text=True)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "1 fixed, 0 left" in fixed.stdout.splitlines()[-1]
    clean = subprocess.run(cmd, capture_output=True, text=True)
    assert clean.returncode == 0 and clean.stdout.strip().endswith("all agree"), clean.stdout + clean.stderr
    assert "Traceback" not in out.stderr + fixed.stderr + clean.stderr


def test_a_lost_catalog_is_rebuilt_from_the_tiers_objects_and_the_hot_tier(mover, tmp_path):
    """After the catalog is lost, every stub whose object its mark names and every archived file whose object
    proves it (size, mtime, whole checksum) are known again; a released file restores from the rebuilt entry."""
    data = {f"d/{i}.bin".encode(): os.urandom(1500 + i) for i in range(4)}
    for rel, body in data.items():
        _file(mover, rel, body)
    assert mover.release(b"d/0.bin").status == "done" and mover.release(b"d/1.bin").status == "done"
    assert mover.archive(b"d/2.bin").status == "done"  # d/3.bin stays resident: nothing to know about it
    before = {rel: mover.catalog.get(rel) for rel in data}
    mover.catalog.close()
    for name in os.listdir(tmp_path / "state"):
        if name.startswith("catalog.db"):
            os.unlink(tmp_path / "state" / name)
    cmd = [sys.executable, "-m", "tiering", "reconcile", "-c", str(tmp_path / "tiering.toml")]
    built = subprocess.run([*cmd, "--rebuild-catalog"], capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    assert "3 fixed, 0 left" in built.stdout.splitlines()[-1], built.stdout
    refused = subprocess.run([*cmd, "--rebuild-catalog"], capture_output=True, text=True)
    assert refused.returncode == 2 and "rebuilds into an empty catalog only" in refused.stderr
    from tiering.catalog import Catalog

    with Catalog.open(mover.config.catalog_path) as cat:
        after = {rel: cat.get(rel) for rel in data}
    for rel in (b"d/0.bin", b"d/1.bin", b"d/2.bin"):
        assert (after[rel].state, after[rel].object_key, after[rel].checksum, after[rel].size) == \
               (before[rel].state, before[rel].object_key, before[rel].checksum, before[rel].size)
    assert after[b"d/3.bin"] is None
    restored = subprocess.run([sys.executable, "-m", "tiering", "restore", "-c", str(tmp_path / "tiering.toml"),
                               str(mover.hot_path(b"d/0.bin"))], capture_output=True, text=True)
    assert restored.returncode == 0, restored.stderr
    assert mover.hot_path(b"d/0.bin").read_bytes() == data[b"d/0.bin"]
