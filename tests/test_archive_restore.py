"""Restoring files whose objects sit in archive classes, end to end through the CLI: ``restore`` asks the
store for the object (RestoreObject at a restore tier), says when it should be ready and exits 75 (pending);
a later ``restore`` or ``run`` brings the file back once the object is readable; ``status`` shows the request.

Against the OSS-protocol test server (``servers.oss``), which keeps the RestoreObject life cycle of
Archive/ColdArchive/DeepColdArchive objects; SeaweedFS has no archive classes. A restore takes an hour
of the server's time here, until the test says it is done (``finish_restores``).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import OSS_BUCKET, OSS_KEY, OSS_SECRET, write_config

BIN = Path(sys.executable).with_name("tiering")
PENDING = 75
NOTHING = '[[rules]]\nname = "none"\nmatch = \'size > 1TiB\'\naction = "release"\n'


@pytest.fixture
def slow_restores(oss_server):
    """The session's OSS server, its restores taking an hour until ``finish_restores``."""
    before = oss_server.restore_delay
    oss_server.restore_delay = 3600.0
    try:
        yield oss_server
    finally:
        oss_server.restore_delay = before


def _workspace(tmp_path: Path, server, storage_class: str, extra: str = "") -> Path:
    (tmp_path / "policy.toml").write_text(NOTHING)
    cfg = write_config(tmp_path, f'url = "oss://{OSS_BUCKET}/thaw-{tmp_path.name}-{time.time_ns() % 10**9}"\n'
                                 f'endpoint = "{server.endpoint}"\naccess_key_id = "{OSS_KEY}"\n'
                                 f'access_key_secret = "${{TEST_OSS_SECRET}}"\nstorage_class = "{storage_class}"\n'
                                 f'{extra}')
    cfg.write_text('policy = "policy.toml"\n' + cfg.read_text())
    return cfg


def _tiering(cfg: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN), *args[:1], "-c", str(cfg), *args[1:]], capture_output=True, text=True,
                          timeout=60, cwd=cfg.parent, env={**os.environ, "TEST_OSS_SECRET": OSS_SECRET})


def _released(cfg: Path, files: dict[str, bytes]) -> None:
    hot = cfg.parent / "hot"
    for name, data in files.items():
        (hot / name).parent.mkdir(parents=True, exist_ok=True)
        (hot / name).write_bytes(data)
    done = _tiering(cfg, "release", *(str(hot / name) for name in files))
    assert done.returncode == 0, done.stderr
    assert all((hot / name).stat().st_size == 0 for name in files)


def test_restore_requests_the_object_says_when_then_a_later_restore_brings_the_file_back(tmp_path, slow_restores):
    server = slow_restores
    cfg = _workspace(tmp_path, server, "ColdArchive")
    data = os.urandom(30_000)
    _released(cfg, {"cold.bin": data})
    target = str(tmp_path / "hot" / "cold.bin")
    asked = len(server.restores)

    first = _tiering(cfg, "restore", target, "--restore-tier", "bulk")
    assert first.returncode == PENDING, (first.stdout, first.stderr)
    # ColdArchive's Bulk restores take 12 h in the default prices (``config.prices``).
    assert "pending: restore cold.bin: requested from ColdArchive (Bulk), ready in about 12 hours" in first.stderr
    assert first.stdout.strip().endswith("1 pending (object restore requested), 0 failed"), first.stdout
    assert [tier for _, _, tier in server.restores[asked:]] == ["Bulk"]
    assert (tmp_path / "hot" / "cold.bin").stat().st_size == 0  # still a stub

    status = _tiering(cfg, "status", target)
    assert "released" in status.stdout and "object restore requested at" in status.stdout, status.stdout
    assert "(ColdArchive, Bulk); ready in about 12 hours" in status.stdout, status.stdout

    again = _tiering(cfg, "restore", target, "--json")
    assert again.returncode == PENDING, again.stderr
    assert "under way since" in again.stderr and json.loads(again.stdout)["pending"] == 1
    assert len(server.restores) == asked + 1  # not asked (and paid for) twice

    assert server.finish_restores() >= 1
    done = _tiering(cfg, "restore", target)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert (tmp_path / "hot" / "cold.bin").read_bytes() == data
    status = _tiering(cfg, "status", target)
    assert "archived" in status.stdout and "requested" not in status.stdout, status.stdout


def test_a_manifest_asks_for_every_object_at_once_and_run_finishes_them(tmp_path, slow_restores):
    server = slow_restores
    cfg = _workspace(tmp_path, server, "Archive", 'restore_tier = "Expedited"\n')
    files = {f"ds/shard-{i}.tar": os.urandom(5000 + i) for i in range(3)}
    _released(cfg, files)
    manifest = tmp_path / "dataset.txt"
    manifest.write_text("".join(f"{tmp_path / 'hot' / name}\n" for name in files))
    asked = len(server.restores)

    first = _tiering(cfg, "restore", "--manifest", str(manifest))
    assert first.returncode == PENDING, first.stderr
    # OSS Archive takes no restore tier; its one priced delay (1 h) is what it takes.
    assert first.stderr.count("requested from Archive (Expedited), ready in about an hour") == 3, first.stderr
    assert "3 pending" in first.stdout
    assert len(server.restores) == asked + 3

    server.finish_restores()
    run = _tiering(cfg, "run")
    assert run.returncode == 0, (run.stdout, run.stderr)
    assert "restored 3 files" in run.stdout and "0 failed" in run.stdout, run.stdout
    assert all((tmp_path / "hot" / name).read_bytes() == data for name, data in files.items())
    # Nothing is left to finish: the next run has no restores to do.
    again = _tiering(cfg, "run")
    assert again.returncode == 0 and "restored" not in again.stdout, again.stdout


def test_an_object_moved_to_an_archive_class_behind_our_back_is_requested_when_its_download_is_refused(
        tmp_path, slow_restores, monkeypatch):
    from tiering.config import load_config
    from tiering.stores import open_store

    server = slow_restores
    cfg = _workspace(tmp_path, server, "Standard")
    data = os.urandom(8000)
    _released(cfg, {"moved.bin": data})
    monkeypatch.setenv("TEST_OSS_SECRET", OSS_SECRET)
    tier = load_config(cfg).tier("cap")
    with contextlib.closing(open_store(tier.url, tier.options)) as store:
        store.set_storage_class("moved.bin", "DeepColdArchive")  # a bucket lifecycle rule, say
    target = str(tmp_path / "hot" / "moved.bin")

    first = _tiering(cfg, "restore", target)
    assert first.returncode == PENDING, (first.stdout, first.stderr)
    assert "requested from DeepColdArchive (Standard), ready in about 2 days" in first.stderr, first.stderr
    server.finish_restores()
    done = _tiering(cfg, "restore", target)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "hot" / "moved.bin").read_bytes() == data


def test_on_s3_a_glacier_object_is_asked_for_with_restore_object(tmp_path, s3_proxy, monkeypatch):
    """SeaweedFS keeps an object's GLACIER class but refuses RestoreObject (405): the proxy answers it
    202 Accepted, as S3 does, and counts it; the file is pending, its request journaled."""
    from conftest import S3_BUCKET, S3_KEY, S3_SECRET
    from tiering.catalog import Catalog
    from tiering.config import load_config
    from tiering.mover.ops import Mover

    monkeypatch.setenv("TEST_S3_SECRET", S3_SECRET)
    cfg = write_config(tmp_path, f'url = "s3://{S3_BUCKET}/thaw-{time.time_ns() % 10**9}"\n'
                                 f'endpoint = "{s3_proxy.endpoint}"\naccess_key_id = "{S3_KEY}"\n'
                                 'secret_access_key = "${TEST_S3_SECRET}"\nrestore_tier = "Bulk"\n')
    config = load_config(cfg)
    (tmp_path / "hot" / "g.bin").write_bytes(os.urandom(4000))
    s3_proxy.rules({"op": "POST?", "action": "status", "status": 202, "code": "Accepted"})
    with Catalog.open(config.catalog_path, writer=True) as catalog, contextlib.closing(Mover(config, catalog)) as m:
        assert m.release(b"g.bin", storage_class="GLACIER").status == "done"
        outcome = m.restore(b"g.bin")
        assert (outcome.status, outcome.reason) == ("pending", "requested from GLACIER (Bulk), ready in about 8 hours")
        assert s3_proxy.stats()["hits"] == [1]  # one RestoreObject went out
        assert catalog.get(b"g.bin").state == "released" and (tmp_path / "hot" / "g.bin").stat().st_size == 0
