"""A small PUT is checked against the server's MD5 ETag, blocking or from an event loop: one code path
(``S3Puts._put_checked``). Here a real SeaweedFS is sent other bytes than the file's, as a damaged body
would be: the object must be gone and the put must fail with ``IntegrityError``."""

from __future__ import annotations

import asyncio
import uuid

import obstore
import pytest

from conftest import S3_BUCKET, S3_KEY, S3_SECRET
from tiering.core.errors import IntegrityError, NotFoundError
from tiering.stores import open_store
from tiering.stores.base import FileMeta
from tiering.core.aio import finish


@pytest.fixture
def store(seaweed):
    options = {"endpoint": seaweed.endpoint, "access_key_id": S3_KEY, "secret_access_key": S3_SECRET}
    store = open_store(f"s3://{S3_BUCKET}/checked-{uuid.uuid4().hex[:12]}", options)
    yield store
    store.close()


def _source(tmp_path, key: str):
    local = tmp_path / "small.bin"
    local.write_bytes(b"the bytes of the file " * 100)
    return local, FileMeta.from_stat(local.stat(), key)


def test_a_blocking_put_whose_etag_differs_is_deleted_and_refused(store, tmp_path):
    local, meta = _source(tmp_path, "blocking")

    async def send_other_bytes(data: bytes, stored: FileMeta) -> tuple[str, str]:
        result = obstore.put(store._obs, store._name("blocking"), data[::-1], use_multipart=False)
        return result["e_tag"].strip('"'), ""

    async def delete(key: str) -> None:
        store.delete(key)

    with pytest.raises(IntegrityError, match="server stored different bytes"):
        finish(store._put_checked("blocking", store._single_body(local, "blocking", meta), send_other_bytes, delete))
    with pytest.raises(NotFoundError):
        store.head("blocking")
    assert store.put_file(local, "blocking", meta).verified  # the honest path stores and checks


def test_an_event_loop_put_whose_etag_differs_is_deleted_and_refused(store, tmp_path):
    local, meta = _source(tmp_path, "looping")

    async def send_other_bytes(data: bytes, stored: FileMeta) -> tuple[str, str]:
        import hashlib

        response = await store._request("looping", "PUT", body=data[::-1])
        return response.headers["etag"].strip('"'), hashlib.md5(data, usedforsecurity=False).hexdigest()

    async def put() -> None:
        await store._put_checked("looping", store._single_body(local, "looping", meta), send_other_bytes,
                                 store.delete_async)

    with pytest.raises(IntegrityError, match="server stored different bytes"):
        asyncio.run(put())
    with pytest.raises(NotFoundError):
        store.head("looping")
    assert asyncio.run(store.put_file_async(local, "looping", meta)).verified
