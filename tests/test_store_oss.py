"""What only the OSS store has: CRC-64, storage classes, restore, resumable multipart, V4 signing.

Runs the real ``oss2`` client against the OSS-protocol test server (``servers.oss``).
The generic Store contract is in ``test_store_conformance.py``.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import oss2
import pytest
from servers.oss import OssServer, crc64

from tiering.core.errors import (
    ConfigError,
    CredentialsError,
    FatalError,
    IntegrityError,
    NeedsRestoreError,
    NotFoundError,
    PermissionDeniedError,
    SourceChangedError,
    TierUnavailableError,
    TransientError,
    UserError,
)
from tiering.stores import RetryPolicy, open_store
from tiering.stores.base import FileMeta, SupportsRestore, SupportsStorageClass
from tiering.stores.checksum import checksum_bytes
from tiering.stores.oss import OssStore

KEY_ID, SECRET, BUCKET = "oss-unit-key", "oss-unit-secret-do-not-print", "tiering-oss-unit"
KiB = 1024
QUICK = RetryPolicy(attempts=4, base=0.01, cap=0.1, deadline=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = OssServer(tmp_path_factory.mktemp("oss-unit"), KEY_ID, SECRET, restore_delay=0.3)
    srv.start()
    srv.create_bucket(BUCKET)
    yield srv
    srv.stop()


@pytest.fixture
def make_store(server, tmp_path):
    """Open stores on a fresh prefix; V4-signed (region given) unless told otherwise."""
    prefix, stores = f"u-{uuid.uuid4().hex[:10]}", []

    def make(retry: RetryPolicy = QUICK, **overrides) -> OssStore:
        options = {"endpoint": server.endpoint, "region": server.region, "access_key_id": KEY_ID,
                   "access_key_secret": SECRET, "part_size": 100 * KiB, "multipart_threshold": 256 * KiB,
                   "jobs": 4, "checkpoint_dir": str(tmp_path / "checkpoints"), **overrides}
        store = open_store(f"oss://{BUCKET}/{prefix}", {k: v for k, v in options.items() if v is not None}, retry=retry)
        stores.append(store)
        return store

    yield make
    server.corrupt_crc = False
    for store in stores:
        store.close()


def put(store: OssStore, tmp_path: Path, key: str, data: bytes) -> FileMeta:
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    return store.put_file(src, key, FileMeta.from_stat(src.stat(), key)).meta


def checkpoint_files(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "checkpoints").rglob("*") if p.is_file()]


def uploads_in_progress(server: OssServer) -> int:
    return len(server.buckets[BUCKET].uploads)


def test_store_has_the_optional_abilities(make_store):
    store = make_store()
    assert isinstance(store, SupportsStorageClass) and isinstance(store, SupportsRestore)
    assert store.storage_classes == ("Standard", "IA", "Archive", "ColdArchive", "DeepColdArchive")
    assert SECRET not in store.url and store.url.startswith(f"oss://{BUCKET}/u-")


@pytest.mark.parametrize("region", [True, False], ids=["v4", "v1"])
def test_both_signature_versions_round_trip(make_store, server, tmp_path, region):
    store = make_store(region=None if not region else server.region)
    assert isinstance(store._bucket.auth, oss2.ProviderAuthV4) == region
    put(store, tmp_path, "sig.bin", b"signed")
    assert store.read_range("sig.bin", 0, 100) == b"signed"


def test_crc64_header_matches_the_bytes(make_store, tmp_path):
    store = make_store()
    data = os.urandom(300 * KiB)  # multipart: the server combines the parts' CRCs
    put(store, tmp_path, "crc.bin", data)
    assert int(store.head("crc.bin").extra["x-oss-hash-crc64ecma"]) == crc64(data)


@pytest.mark.parametrize("size", [10 * KiB, 300 * KiB], ids=["single", "multipart"])
def test_crc_mismatch_on_upload_leaves_nothing(make_store, server, tmp_path, size):
    store = make_store()
    server.corrupt_crc = True
    with pytest.raises(IntegrityError, match="CRC-64"):
        put(store, tmp_path, "bad-crc.bin", os.urandom(size))
    server.corrupt_crc = False
    with pytest.raises(NotFoundError):
        store.head("bad-crc.bin")
    assert uploads_in_progress(server) == 0 and checkpoint_files(tmp_path) == []


@pytest.mark.parametrize("size", [10 * KiB, 300 * KiB], ids=["single", "ranged"])
def test_crc_mismatch_on_download_leaves_nothing(make_store, server, tmp_path, size):
    store = make_store()
    put(store, tmp_path, "dl.bin", os.urandom(size))
    server.corrupt_crc = True
    out = tmp_path / "out.bin"
    with pytest.raises(IntegrityError, match="CRC-64"):
        store.get_file("dl.bin", out)
    assert not out.exists() and list(tmp_path.glob("out.bin*")) == [] and checkpoint_files(tmp_path) == []
    with store.open("dl.bin") as f, pytest.raises(IntegrityError, match="corrupt"):
        f.read()


def test_storage_class_on_put_head_list_and_change(make_store, tmp_path):
    store = make_store(storage_class="ia")
    put(store, tmp_path, "cls.bin", b"cool data")
    assert store.head("cls.bin").storage_class == "IA"
    assert [(o.key, o.storage_class) for o in store.list()] == [("cls.bin", "IA")]
    store.set_storage_class("cls.bin", "Archive")
    info = store.head("cls.bin")
    assert (info.storage_class, info.readable) == ("Archive", False)
    assert info.meta.checksum == checksum_bytes(b"cool data")  # metadata survives the copy
    with pytest.raises(NeedsRestoreError):  # an archived object must be restored before it moves
        store.set_storage_class("cls.bin", "Standard")
    with pytest.raises(UserError):
        store.set_storage_class("cls.bin", "Glacier")


def test_archive_restore_flow(make_store, server, tmp_path):
    store = make_store(storage_class="Archive")
    data = os.urandom(5000)
    put(store, tmp_path, "cold/a.bin", data)
    out = tmp_path / "out.bin"
    with pytest.raises(NeedsRestoreError, match="storage class Archive; run restore first"):
        store.get_file("cold/a.bin", out)
    assert not out.exists()
    with pytest.raises(NeedsRestoreError):
        store.read_range("cold/a.bin", 0, 10)
    store.restore("cold/a.bin", days=2)
    store.restore("cold/a.bin")  # idempotent while the restore is under way (409 from OSS)
    assert server.restores[-2][1:] == (2, None)  # Archive takes no JobParameters
    assert store.head("cold/a.bin").readable is False
    with pytest.raises(NeedsRestoreError, match="under way"):
        store.get_file("cold/a.bin", out)
    info = store.wait_restored("cold/a.bin", timeout=10, poll=0.05)
    assert info.readable and 'ongoing-request="false"' in info.extra["x-oss-restore"]
    assert store.get_file("cold/a.bin", out).checksum == checksum_bytes(data)
    assert out.read_bytes() == data
    store.restore("cold/a.bin")  # a restored object: OSS extends its life (200)


@pytest.mark.parametrize("tier", ["Expedited", "Standard", "Bulk"])
def test_cold_archive_restore_sends_its_tier(make_store, server, tmp_path, tier):
    store = make_store(storage_class="ColdArchive")
    put(store, tmp_path, "deep.bin", b"x" * 100)
    store.restore("deep.bin", tier=tier, days=3)
    assert server.restores[-1] == (f"{store.prefix}/deep.bin", 3, tier)
    assert store.wait_restored("deep.bin", timeout=10, poll=0.05).readable
    assert store.read_range("deep.bin", 98, 10) == b"xx"


def test_restore_defaults_come_from_the_options(make_store, server, tmp_path):
    store = make_store(storage_class="DeepColdArchive", restore_tier="Expedited", restore_days=5)
    put(store, tmp_path, "d.bin", b"d")
    store.restore("d.bin")
    assert server.restores[-1][1:] == (5, "Expedited")
    with pytest.raises(UserError, match="Bulk"):
        store.restore("d.bin", tier="Bulk")


def test_waiting_without_a_restore_or_past_the_timeout(make_store, tmp_path):
    store = make_store(storage_class="Archive")
    put(store, tmp_path, "w.bin", b"w")
    with pytest.raises(NeedsRestoreError, match="run restore first"):
        store.wait_restored("w.bin", timeout=5, poll=0.01)
    store.restore("w.bin")
    with pytest.raises(TransientError, match="still being restored"):
        store.wait_restored("w.bin", timeout=0.05, poll=0.01)
    put(make_store(), tmp_path, "plain.bin", b"p")
    make_store().restore("plain.bin")  # not archived: nothing to do


def test_resumable_upload_resumes_after_a_failed_part(make_store, server, tmp_path):
    store = make_store()
    data = os.urandom(1000 * KiB + 123)  # 11 parts of 100 KiB
    before = server.counts.copy()
    server.fail("UploadPart", status=503, code="ServiceUnavailable")
    seen: list[int] = []
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    info = store.put_file(src, "big.bin", FileMeta.from_stat(src.stat(), "big.bin"), progress=seen.append)
    done = server.counts - before
    assert done["InitiateMultipartUpload"] == 1 and done["UploadPart"] == 11 + 1  # only the failed part again
    assert done["ListParts"] >= 1 and sum(seen) == len(data)
    assert info.checksum == checksum_bytes(data) and store.head("big.bin").extra["x-oss-object-type"] == "Multipart"
    assert checkpoint_files(tmp_path) == [] and uploads_in_progress(server) == 0
    out = tmp_path / "out.bin"
    got: list[int] = []
    store.get_file("big.bin", out, progress=got.append)  # ranged, parallel, resumable download
    assert out.read_bytes() == data and sum(got) == len(data) and checkpoint_files(tmp_path) == []


def test_failed_multipart_upload_is_aborted(make_store, server, tmp_path):
    store = make_store()
    server.fail("CompleteMultipartUpload", status=403, code="AccessDenied")
    with pytest.raises(PermissionDeniedError):
        put(store, tmp_path, "denied.bin", os.urandom(300 * KiB))
    assert uploads_in_progress(server) == 0 and checkpoint_files(tmp_path) == []


def test_source_changed_during_multipart_upload(make_store, tmp_path):
    store = make_store(jobs=1)
    src = tmp_path / "moving.bin"
    src.write_bytes(b"a" * (500 * KiB))
    stat = src.stat()

    def scribble(_: int) -> None:  # rewrite the tail while earlier parts are being sent, keeping size and mtime
        with open(src, "r+b") as f:
            f.seek(450 * KiB)
            f.write(b"b" * (50 * KiB))
        os.utime(src, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    with pytest.raises(SourceChangedError, match="changed during the upload"):
        store.put_file(src, "moving.bin", FileMeta.from_stat(stat, "moving.bin"), progress=scribble)
    with pytest.raises(NotFoundError):
        store.head("moving.bin")


def test_wrong_credentials_are_refused_and_write_nothing(make_store, tmp_path):
    for options in ({"access_key_id": "nobody"}, {"access_key_secret": "wrong-" + SECRET}):
        bad = make_store(**options)
        with pytest.raises(CredentialsError) as err:
            put(bad, tmp_path, "nope.bin", os.urandom(300 * KiB))
        assert SECRET not in str(err.value) and "\n" not in str(err.value)
    assert list(make_store().list()) == [] and checkpoint_files(tmp_path) == []


def test_missing_credentials_fail_at_construction(monkeypatch, server):
    for name in ("OSS_ACCESS_KEY_ID", "OSS_ACCESS_KEY_SECRET", "OSS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(CredentialsError, match="OSS_ACCESS_KEY_ID/OSS_ACCESS_KEY_SECRET"):
        OssStore(f"oss://{BUCKET}/x", {"endpoint": server.endpoint})
    monkeypatch.setenv("OSS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("OSS_ACCESS_KEY_SECRET", SECRET)
    OssStore(f"oss://{BUCKET}/x", {"endpoint": server.endpoint}).close()


@pytest.mark.parametrize("options, match", [
    ({"endpoint": ""}, "endpoint"),
    ({"storage_class": "Glacier"}, "storage_class"),
    ({"part_size": 1000}, "part_size"),
    ({"jobs": "many"}, "jobs"),
    ({"restore_tier": "Fast"}, "restore_tier"),
])
def test_bad_options_are_config_errors(server, options, match):
    base = {"endpoint": server.endpoint, "access_key_id": KEY_ID, "access_key_secret": SECRET}
    with pytest.raises(ConfigError, match=match):
        OssStore(f"oss://{BUCKET}/x", {**base, **options})


def test_region_comes_from_an_aliyun_endpoint():
    options = {"endpoint": "https://oss-cn-beijing-internal.aliyuncs.com", "access_key_id": "k",
               "access_key_secret": "s"}
    store = OssStore("oss://some-bucket/p", options)
    assert store._bucket.region == "cn-beijing" and isinstance(store._bucket.auth, oss2.ProviderAuthV4)
    store.close()


def test_server_down_is_transient_within_seconds(make_store, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = make_store(retry=RetryPolicy(deadline=2), endpoint=f"http://127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(TierUnavailableError, match="cannot reach the server"):
        put(store, tmp_path, "k", b"x")
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("status", [503, 0], ids=["503", "hang-up"])
def test_transient_server_failures_are_retried(make_store, server, tmp_path, status):
    store = make_store()
    put(store, tmp_path, "r.bin", b"retry me")
    before = server.counts["HeadObject"]
    server.fail("HeadObject", status=status, times=2)
    assert store.head("r.bin").size == 8
    assert server.counts["HeadObject"] - before == 3


def test_debug_logging_shows_no_secrets(make_store, tmp_path, caplog):
    store = make_store(security_token="token-that-must-not-leak")
    caplog.set_level(logging.DEBUG, logger="oss2")
    with pytest.raises(NotFoundError):  # the test server does not check tokens; it is signed all the same
        store.head("anything")
    put(make_store(), tmp_path, "logged.bin", b"x")
    assert "token-that-must-not-leak" not in caplog.text and SECRET not in caplog.text


def test_server_keeps_odd_names_exactly(server):
    """Names reach the server percent-encoded; it decodes them once, backslashes and all."""
    bucket = oss2.Bucket(oss2.Auth(KEY_ID, SECRET), server.endpoint, BUCKET)
    names = ["odd/a b\\c%41%2F#?&=+'\"`<>|.txt", "odd/ünï 数据 🙂", "odd/..%2e/x"]
    try:
        for i, name in enumerate(names):
            bucket.put_object(name, f"{i}".encode())
        listed = [o.key for o in oss2.ObjectIteratorV2(bucket, prefix="odd/")]
        assert listed == sorted(names)
        assert [o.key for o in oss2.ObjectIterator(bucket, prefix="odd/", max_keys=1)] == sorted(names)
        for i, name in enumerate(names):
            assert bucket.get_object(name).read() == f"{i}".encode()
    finally:
        bucket.session.session.close()


def test_server_stop_ends_idle_connections_and_threads(tmp_path):
    before = set(threading.enumerate())
    srv = OssServer(tmp_path / "srv", KEY_ID, SECRET)
    srv.start()
    srv.create_bucket(BUCKET)
    options = {"endpoint": srv.endpoint, "access_key_id": KEY_ID, "access_key_secret": SECRET}
    store = OssStore(f"oss://{BUCKET}/p", options)
    put(store, tmp_path, "k.bin", b"keep-alive")  # leaves a pooled, idle connection open
    srv.stop()
    store.close()
    assert set(threading.enumerate()) <= before


def test_server_protocol_details(server):
    """Listings with delimiters, OSS range rules, multipart validation and error codes, as documented."""
    bucket = oss2.Bucket(oss2.Auth(KEY_ID, SECRET), server.endpoint, BUCKET)
    p = f"proto-{uuid.uuid4().hex[:8]}/"
    try:
        for name in ("a/1", "a/2", "b", "c/x/y"):
            bucket.put_object(p + name, b"0123456789")
        page = bucket.list_objects(prefix=p, delimiter="/", max_keys=2)
        assert (page.prefix_list, [o.key for o in page.object_list], page.is_truncated) == ([p + "a/"], [p + "b"], True)
        page = bucket.list_objects(prefix=p, delimiter="/", marker=page.next_marker)
        assert (page.prefix_list, page.object_list, page.is_truncated) == ([p + "c/"], [], False)
        v2 = bucket.list_objects_v2(prefix=p, max_keys=3)
        rest = bucket.list_objects_v2(prefix=p, continuation_token=v2.next_continuation_token)
        assert [o.key for o in v2.object_list + rest.object_list] == [p + n for n in ("a/1", "a/2", "b", "c/x/y")]
        assert bucket.get_object(p + "b", byte_range=(5, 100)).read() == b"0123456789"  # OSS ignores it by default
        standard = {"x-oss-range-behavior": "standard"}
        assert bucket.get_object(p + "b", byte_range=(5, 100), headers=standard).read() == b"56789"
        with pytest.raises(oss2.exceptions.ServerError) as err:
            bucket.get_object(p + "b", byte_range=(10, 20), headers=standard)
        assert (err.value.status, err.value.code) == (416, "InvalidRange")
        assert bucket.get_object_meta(p + "b").content_length == 10

        upload_id = bucket.init_multipart_upload(p + "mp").upload_id
        small = bucket.upload_part(p + "mp", upload_id, 1, b"x" * 10)
        last = bucket.upload_part(p + "mp", upload_id, 2, b"y" * 10)
        assert [u.upload_id for u in bucket.list_multipart_uploads(prefix=p).upload_list] == [upload_id]
        for parts, code in (
            ([oss2.models.PartInfo(1, "0" * 32), oss2.models.PartInfo(2, last.etag)], "InvalidPart"),
            ([oss2.models.PartInfo(1, small.etag), oss2.models.PartInfo(2, last.etag)], "EntityTooSmall"),
        ):
            with pytest.raises(oss2.exceptions.ServerError) as err:
                bucket.complete_multipart_upload(p + "mp", upload_id, parts)
            assert err.value.code == code
        bucket.abort_multipart_upload(p + "mp", upload_id)
        assert bucket.list_multipart_uploads(prefix=p).upload_list == []
        with pytest.raises(oss2.exceptions.OperationNotSupported):
            bucket.restore_object(p + "b")
        with pytest.raises(oss2.exceptions.NoSuchBucket):
            gone = oss2.Bucket(oss2.Auth(KEY_ID, SECRET), server.endpoint, "no-such-bucket", session=bucket.session)
            gone.get_object("x")
    finally:
        bucket.session.session.close()


# -- servers that misbehave like Alibaba's oss-emulator (OssServer.mode) --------------------------------------


def test_a_listing_without_is_truncated_is_one_fatal_line_naming_the_tier(make_store, server, tmp_path):
    """Before: RuntimeError 'parse xml: IsTruncated could not be found' and a traceback."""
    store = make_store()
    put(store, tmp_path, "listed.bin", b"x")
    with server.mode(omit_is_truncated=True), pytest.raises(FatalError) as err:
        list(store.list())
    message = str(err.value)
    assert store.url in message and "malformed" in message and "IsTruncated" in message and "\n" not in message
    assert [o.key for o in store.list()] == ["listed.bin"]  # the server behaves again


def test_probe_of_a_server_without_is_truncated_says_so_in_one_line(server, tmp_path):
    cfg = tmp_path / "tiering.toml"
    (tmp_path / "hot").mkdir()
    cfg.write_text(f'[hot]\npath = "hot"\n[catalog]\npath = "state/c.db"\n[tiers.oss]\n'
                   f'url = "oss://{BUCKET}/probe"\nendpoint = "{server.endpoint}"\naccess_key_id = "{KEY_ID}"\n'
                   'access_key_secret = "${TEST_OSS_SECRET}"\n')
    with server.mode(omit_is_truncated=True):
        done = subprocess.run([sys.executable, "-m", "tiering", "config", "check", str(cfg), "--probe"],
                              capture_output=True, text=True, timeout=60, env={**os.environ, "TEST_OSS_SECRET": SECRET})
    assert done.returncode == 3 and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and f"oss://{BUCKET}/probe" in done.stderr
    assert "reachable" not in done.stdout


@pytest.mark.parametrize("size", [1000, 300 * KiB], ids=["single", "multipart"])
def test_a_server_that_drops_user_metadata_shows_in_head(make_store, server, tmp_path, size):
    """What the mover checks before it releases: an object without our metadata has no checksum to restore by."""
    store = make_store()
    with server.mode(drop_user_meta=True):
        put(store, tmp_path, "bare.bin", os.urandom(size))
        head = store.head("bare.bin")
    assert head.meta is None and head.checksum == "" and head.size == size
    put(store, tmp_path, "kept.bin", b"with metadata")
    assert store.head("kept.bin").checksum == checksum_bytes(b"with metadata")
