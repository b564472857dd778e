"""Crash safety: a real mover SIGKILLed at >= 30 injected points loses and corrupts nothing."""

from __future__ import annotations

import os
import zlib

import pytest

from bench.crashlab import points, run_trial

POINTS = points(36, seed=11)


@pytest.mark.parametrize("point,kill_after", POINTS, ids=[f"{p}@{k:.1f}s" if k else p for p, k in POINTS])
def test_sigkill_then_recover_loses_nothing(tmp_path, point, kill_after):
    result = run_trial(tmp_path / "lab", point, files=24, seed=zlib.crc32(point.encode()) % 1000, kill_after=kill_after)
    assert result.problems == []
    assert result.lost == [] and result.corrupt == []
    if point.split(":")[0] != "random" and not point.startswith("any"):
        assert result.killed, f"{point} was never reached"


S3_POINTS = ["upload:part:2", "upload:part:5", "archive:begin:2", "archive:copied:1", "archive:copied:4", "release:begin:3", "restore:begin:2",
             "restore:fetched:3"]


@pytest.mark.parametrize("point", S3_POINTS)
def test_sigkill_with_an_s3_tier_leaves_no_unfinished_uploads(tmp_path, seaweed, monkeypatch, point):
    from conftest import S3_BUCKET, S3_KEY, S3_SECRET

    monkeypatch.setenv("CRASH_S3_SECRET", S3_SECRET)
    tier = (f'url = "s3://{S3_BUCKET}/crash-{zlib.crc32(str(tmp_path).encode())}"\nendpoint = "{seaweed.endpoint}"\n'
            f'access_key_id = "{S3_KEY}"\nsecret_access_key = "${{CRASH_S3_SECRET}}"')
    result = run_trial(tmp_path / "lab", point, files=12, seed=zlib.crc32(point.encode()), tier_toml=tier,
                       big=12 * 1024 * 1024)
    assert result.problems == [] and result.lost == [] and result.corrupt == []
    assert result.killed


# -- restore in place (the access guard's restore): SIGKILLed at each step of the fill ----------------------

_INPLACE_DRIVER = """
import os, sys
from tiering.config import load_config
from tiering.mover import stub
from tiering.ops.session import mover_session

stub.FILL_CHUNK = 1 << 20  # several chunks per file, so a kill can land between two
with mover_session(load_config(sys.argv[1]), "crash-inplace") as (mover, _):
    for rel in sys.argv[2:]:
        mover.restore(os.fsencode(rel), in_place=True)
"""

#: (kill point, drop the temp file before recovering, what recover must leave the first file: archived/released)
INPLACE_POINTS = [
    ("restore:begin:1", False, "released"),
    ("restore:fetched:1", False, "released"),
    ("restore:filling:1", False, "archived"),  # nothing copied yet: finished from the verified temp file
    ("restore:fill-chunk:1", False, "archived"),
    ("restore:fill-chunk:3", False, "archived"),
    ("restore:fill-chunk:3", True, "released"),  # partly filled and no copy to finish from: emptied again
    ("restore:filled:1", False, "archived"),
    ("restore:filled:1", True, "archived"),  # the inode holds every byte: closed as done
    ("restore:end:1", False, "archived"),
    ("restore:fill-chunk:5", False, "archived"),  # in the second file (the first has four chunks)
]


def _inplace_lab(root, tier_toml: str):
    """A hot tier of two released files (3 MiB + 5 and 70 kB), their bytes and stub inodes."""
    from conftest import write_config

    from tiering.catalog import Catalog
    from tiering.config import load_config
    from tiering.mover.ops import Mover

    root.mkdir(parents=True, exist_ok=True)
    cfg = write_config(root, tier_toml)
    config = load_config(cfg)
    files = {b"a/big.bin": os.urandom(3 * 1024 * 1024 + 5), b"small.bin": os.urandom(70_000)}
    with Catalog.open(config.catalog_path, writer=True) as cat:
        mover = Mover(config, cat)
        for rel, data in files.items():
            path = config.hot_path / os.fsdecode(rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            assert mover.release(rel).status == "done"
        mover.close()
    inodes = {rel: (config.hot_path / os.fsdecode(rel)).stat().st_ino for rel in files}
    return cfg, config, files, inodes


def _inplace_trial(root, point: str, drop_temp: bool, tier_toml: str = 'url = "capacity"'):
    import subprocess
    import sys

    from tiering.catalog import Catalog
    from tiering.mover.ops import RESTORE_TMP_PREFIX
    from tiering.mover.stub import is_stub

    if "s3://" not in tier_toml:
        (root / "capacity").mkdir(parents=True)
    cfg, config, files, inodes = _inplace_lab(root, tier_toml)
    proc = subprocess.run([sys.executable, "-c", _INPLACE_DRIVER, str(cfg), *map(os.fsdecode, files)],
                          env={**os.environ, "TIERING_CRASH_AT": point}, capture_output=True)
    assert proc.returncode == -9, f"{point} was never reached: {proc.stderr.decode()[-500:]}"
    temps = [p for p in config.hot_path.rglob(f"{RESTORE_TMP_PREFIX}*") if "lock" not in p.name]
    if drop_temp:
        assert temps, "no temp file to drop"
        for t in temps:
            t.unlink()
    recover = subprocess.run([sys.executable, "-c", "from tiering.cli import main; main()", "recover", "-c", str(cfg)],
                             capture_output=True)
    assert recover.returncode == 0, recover.stderr.decode()[-500:]
    assert [p.name for p in config.hot_path.rglob(f"{RESTORE_TMP_PREFIX}*")] == []  # no temp file, no lock
    with Catalog.open(config.catalog_path) as cat:
        assert cat.open_entries() == []
        states = {rel: cat.get(rel).state for rel in files}
    for rel, data in files.items():
        path = config.hot_path / os.fsdecode(rel)
        st = path.stat()
        assert st.st_ino == inodes[rel]  # in place: always the stub's own inode
        if states[rel] == "archived":
            assert path.read_bytes() == data and not is_stub(path), rel
        else:
            assert states[rel] == "released" and st.st_size == 0 and is_stub(path), rel  # never a partial fill
    rerun = subprocess.run([sys.executable, "-c", _INPLACE_DRIVER, str(cfg), *map(os.fsdecode, files)],
                           capture_output=True)
    assert rerun.returncode == 0, rerun.stderr.decode()[-500:]
    for rel, data in files.items():
        assert (config.hot_path / os.fsdecode(rel)).read_bytes() == data
    return states


@pytest.mark.parametrize("point,drop_temp,first", INPLACE_POINTS,
                         ids=[f"{p}{'-temp-lost' if d else ''}" for p, d, _ in INPLACE_POINTS])
def test_sigkill_during_an_in_place_restore_then_recover_finishes_or_rolls_back(tmp_path, point, drop_temp, first):
    states = _inplace_trial(tmp_path / "lab", point, drop_temp)
    assert states[b"a/big.bin"] == first


def test_sigkill_mid_fill_with_an_s3_tier_is_finished_by_recover(tmp_path, seaweed, monkeypatch):
    from conftest import S3_BUCKET, S3_KEY, S3_SECRET

    monkeypatch.setenv("CRASH_S3_SECRET", S3_SECRET)
    tier = (f'url = "s3://{S3_BUCKET}/inplace-{zlib.crc32(str(tmp_path).encode())}"\nendpoint = "{seaweed.endpoint}"\n'
            f'access_key_id = "{S3_KEY}"\nsecret_access_key = "${{CRASH_S3_SECRET}}"')
    states = _inplace_trial(tmp_path / "lab", "restore:fill-chunk:2", False, tier)
    assert states[b"a/big.bin"] == "archived"
