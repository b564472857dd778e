"""The Store contract, run against every capacity store (see conftest.store_case)."""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tiering.errors import (
    IntegrityError,
    InvalidKeyError,
    NotFoundError,
    CredentialsError,
    PermissionDeniedError,
    SourceChangedError,
    StoreError,
)
from tiering.stores.base import FileMeta, call_async
from tiering.stores.checksum import checksum_bytes
from tiering.stores.keys import decode_key, encode_key

ODD_NAMES = [
    b"plain.bin",
    b"with space/and more spaces .txt",
    "ünïcødé/数据集/émoji-🙂.jpg".encode(),
    b"new\nline",
    b"tab\there",
    b"not-utf8-\xff\xfe\x80",
    b"-leading-dash",
    b"--double-dash",
    b"percent%41%2F%",
    b"back\\slash",
    b"hash#question?amp&eq=plus+",
    b"quotes'\"`<>|{}[]^~",
    b"trailing space ",
    b".hidden/..dots..",
    b"deep/" * 8 + b"leaf",
]


def make_file(tmp_path: Path, data: bytes, name: str = "src.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def put(case, tmp_path: Path, relpath: bytes | str, data: bytes) -> tuple[str, FileMeta]:
    src = make_file(tmp_path, data)
    key = encode_key(relpath)
    info = case.store.put_file(src, key, FileMeta.from_stat(src.stat(), key))
    return key, info.meta


def call(store, method: str, *args, via: str):
    """``store.<method>(*args)``: called directly, or from an event loop (``call_async``)."""
    if via == "loop":
        return asyncio.run(call_async(store, method, *args))
    return getattr(store, method)(*args)


def read_back(case, tmp_path: Path, key: str, via: str = "direct") -> bytes:
    out = tmp_path / "back.bin"
    call(case.store, "get_file", key, out, via=via)
    data = out.read_bytes()
    out.unlink()
    return data


@pytest.mark.parametrize("size_kind", ["empty", "small", "one_part", "multi_part"])
def test_round_trip_sizes(store_case, tmp_path, size_kind):
    size = {"empty": 0, "small": 1000, "one_part": store_case.threshold,
            "multi_part": store_case.threshold + 2 * store_case.part_size + 12345}[size_kind]
    data = os.urandom(size)
    seen = []
    src = make_file(tmp_path, data)
    key = encode_key(f"sizes/{size_kind}.bin")
    info = store_case.store.put_file(src, key, FileMeta.from_stat(src.stat(), key), progress=seen.append)
    assert info.size == size and info.checksum == checksum_bytes(data)
    assert sum(seen) == size
    got = []
    out = tmp_path / "out.bin"
    store_case.store.get_file(key, out, progress=got.append)
    assert out.read_bytes() == data
    assert sum(got) == size
    assert store_case.store.head(key).size == size


@pytest.mark.parametrize("via", ["direct", "loop"])
def test_odd_filenames_round_trip_exactly(store_case, tmp_path, via):
    keys = {}
    for i, name in enumerate(ODD_NAMES):
        data = f"payload {i}".encode()
        src = make_file(tmp_path, data)
        key = encode_key(name)
        call(store_case.store, "put_file", src, key, FileMeta.from_stat(src.stat(), key), via=via)
        keys[key] = (name, data)
    listed = [o.key for o in store_case.store.list()]
    assert sorted(listed) == sorted(keys) and listed == sorted(listed)
    for key, (name, data) in keys.items():
        assert decode_key(key) == name
        assert call(store_case.store, "head", key, via=via).meta.path == key
        assert read_back(store_case, tmp_path, key, via) == data


@pytest.mark.parametrize("bad", ["../escape", "a/../../escape", "/etc/passwd", "a//b", "./x", "a/%2E%2E/b", "pct%4a"])
def test_keys_cannot_escape_the_prefix(store_case, tmp_path, bad):
    src = make_file(tmp_path, b"x")
    with pytest.raises(InvalidKeyError):
        store_case.store.put_file(src, bad, FileMeta.from_stat(src.stat(), "x"))
    with pytest.raises(InvalidKeyError):
        store_case.store.head(bad)
    assert list(store_case.store.list()) == []


def test_metadata_round_trip(store_case, tmp_path):
    src = make_file(tmp_path, b"metadata!" * 100)
    os.chmod(src, 0o640)
    os.utime(src, ns=(1_600_000_000_123_456_789, 1_500_000_000_987_654_321))
    key = encode_key("meta/file.bin")
    meta = FileMeta.from_stat(src.stat(), key)
    info = store_case.store.put_file(src, key, meta)
    head = store_case.store.head(key)
    assert head.meta == info.meta
    assert (head.meta.size, head.meta.mtime_ns, head.meta.mode) == (900, 1_500_000_000_987_654_321, src.stat().st_mode)
    assert (head.meta.uid, head.meta.gid, head.meta.path) == (os.getuid(), os.getgid(), key)
    assert head.meta.checksum == checksum_bytes(src.read_bytes())


def test_ranged_and_streaming_reads(store_case, tmp_path):
    data = os.urandom(store_case.threshold + store_case.part_size + 777)
    key, _ = put(store_case, tmp_path, "ranges.bin", data)
    read = store_case.store.read_range
    assert read(key, 0, 10) == data[:10]
    assert read(key, 12345, 4096) == data[12345:12345 + 4096]
    assert read(key, len(data) - 5, 100) == data[-5:]
    assert read(key, len(data), 10) == b""
    assert read(key, len(data) + 100, 10) == b""
    assert read(key, 3, 0) == b""
    with store_case.store.open(key) as f:
        head = f.read(1000)
        rest = f.read()
    assert head + rest == data
    with pytest.raises(NotFoundError):
        read("missing.bin", 0, 10)


def test_listing_paginates_past_1000_keys(store_case, tmp_path):
    src = make_file(tmp_path, b"tiny")
    names = [f"many/{i:05d}" for i in range(1100)] + ["manz", "man/1", "other/x"]

    def upload(name: str) -> None:
        key = encode_key(name)
        store_case.store.put_file(src, key, FileMeta.from_stat(src.stat(), key))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(upload, names))
    listed = [o.key for o in store_case.store.list("many/")]
    assert listed == [f"many/{i:05d}" for i in range(1100)]
    assert [o.key for o in store_case.store.list("man")][-1] == "manz"
    assert len([o for o in store_case.store.list("man")]) == 1102
    assert len(list(store_case.store.list())) == len(names)
    assert all(o.size == 4 for o in store_case.store.list("many/00"))


def test_overwrite_replaces_bytes_and_metadata(store_case, tmp_path):
    key, first = put(store_case, tmp_path, "over/write", b"first version")
    _, second = put(store_case, tmp_path, "over/write", b"second, longer version")
    assert first.checksum != second.checksum
    assert read_back(store_case, tmp_path, key) == b"second, longer version"
    assert store_case.store.head(key).meta == second
    assert [o.key for o in store_case.store.list()] == [key]


@pytest.mark.parametrize("via", ["direct", "loop"])
def test_delete_is_idempotent_and_missing_is_not_found(store_case, tmp_path, via):
    call(store_case.store, "delete", encode_key("never/existed"), via=via)
    key, _ = put(store_case, tmp_path, "to/delete", b"bye")
    call(store_case.store, "delete", key, via=via)
    call(store_case.store, "delete", key, via=via)
    with pytest.raises(NotFoundError):
        call(store_case.store, "head", key, via=via)
    out = tmp_path / "out.bin"
    with pytest.raises(NotFoundError):
        call(store_case.store, "get_file", key, out, via=via)
    assert not out.exists()


@pytest.mark.parametrize("via", ["direct", "loop"])
def test_corrupt_object_is_refused_and_nothing_left(store_case, tmp_path, via):
    key, _ = put(store_case, tmp_path, "victim.bin", b"A" * 5000)
    store_case.corrupt(key, b"B" * 5000)
    out = tmp_path / "restored.bin"
    with pytest.raises(IntegrityError, match="corrupt"):
        call(store_case.store, "get_file", key, out, via=via)
    assert not out.exists()


@pytest.mark.parametrize("via", ["direct", "loop"])
def test_source_that_differs_from_its_checksum_is_not_stored(store_case, tmp_path, via):
    src = make_file(tmp_path, b"what is really on disk")
    key = encode_key("changed.bin")
    meta = FileMeta.from_stat(src.stat(), key, checksum=checksum_bytes(b"what the caller thought"[:22]))
    with pytest.raises(SourceChangedError):
        call(store_case.store, "put_file", src, key, meta, via=via)
    with pytest.raises(NotFoundError):
        store_case.store.head(key)


@pytest.mark.parametrize("via", ["direct", "loop"])
def test_refused_credentials_write_nothing(store_case, tmp_path, via):
    if store_case.refused is None:
        pytest.skip(store_case.refusal_reason)
    bad = store_case.refused()
    src = make_file(tmp_path, b"secret data")
    key = encode_key("refused.bin")
    with pytest.raises((CredentialsError, PermissionDeniedError)) as err:
        call(bad, "put_file", src, key, FileMeta.from_stat(src.stat(), key), via=via)
    assert "\n" not in str(err.value) and "wrong-secret" not in str(err.value)
    if store_case.name != "posix":  # (the refused posix store is another folder: nothing of ours to read)
        existing, _ = put(store_case, tmp_path, "readable.bin", b"only with the right key")
        out = tmp_path / "out.bin"
        for method, args in (("head", (existing,)), ("get_file", (existing, out)), ("delete", (existing,))):
            with pytest.raises((CredentialsError, PermissionDeniedError)) as err:
                call(bad, method, *args, via=via)
            assert "\n" not in str(err.value) and "wrong-secret" not in str(err.value)
        assert not out.exists()
        assert read_back(store_case, tmp_path, existing) == b"only with the right key"
        store_case.store.delete(existing)
    bad.close()
    names = [o.key for o in store_case.store.list()] if store_case.name != "posix" else [o.key for o in bad.list()]
    assert key not in names


@pytest.mark.parametrize("via", ["direct", "loop"])
def test_tier_that_is_down_fails_clearly_within_seconds(store_case, tmp_path, via):
    start = time.monotonic()
    with pytest.raises(store_case.down_error) as err:
        store = store_case.down()
        src = make_file(tmp_path, b"x")
        call(store, "put_file", src, "k", FileMeta.from_stat(src.stat(), "k"), via=via)
    assert time.monotonic() - start < 10
    message = str(err.value)
    assert "\n" not in message and len(message) < 300
    assert not isinstance(err.value, StoreError) or err.value.store


def test_unfinished_uploads_of_a_dead_writer_are_cleaned_up(store_case):
    from tiering.stores.base import SupportsCleanup

    assert isinstance(store_case.store, SupportsCleanup)
    key = encode_key("big/unfinished.bin")
    store_case.start_incomplete(key)
    assert store_case.store.cleanup_incomplete(key if store_case.name != "posix" else None) == 1
    assert store_case.store.cleanup_incomplete(key if store_case.name != "posix" else None) == 0
    assert list(store_case.store.list()) == []


# -- the same contract from an event loop (call_async: the store's coroutines, or its blocking methods on threads)

@pytest.mark.parametrize("told", [False, True], ids=["size-unknown", "size-told"])
@pytest.mark.parametrize("size_kind", ["empty", "small", "multi_part"])
def test_async_round_trip(store_case, tmp_path, size_kind, told):
    size = {"empty": 0, "small": 70_000, "multi_part": store_case.threshold + store_case.part_size + 99}[size_kind]
    data = os.urandom(size)
    src = make_file(tmp_path, data)
    key = encode_key(f"async/{size_kind}.bin")
    out = tmp_path / "out.bin"
    hint = size if told else None  # told: a large object goes straight to a thread; else the store finds out

    async def main():
        info = await call_async(store_case.store, "put_file", src, key, FileMeta.from_stat(src.stat(), key), size=hint)
        head = await call_async(store_case.store, "head", key)
        got = await call_async(store_case.store, "get_file", key, out, size=hint)
        await call_async(store_case.store, "delete", key)
        return info, head, got

    info, head, got = asyncio.run(main())
    assert info.size == head.size == got.size == size
    assert info.checksum == head.checksum == got.checksum == checksum_bytes(data)
    assert out.read_bytes() == data
    with pytest.raises(NotFoundError):
        store_case.store.head(key)
