"""Uploads to S3: one checked PUT up to the multipart threshold, a multipart upload above it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import obstore

from tiering.core.errors import IntegrityError, SourceChangedError
from tiering.core.faults import crash_point
from tiering.stores.base import INLINE_MAX, FileMeta, ObjectInfo, OnBytes
from tiering.stores.checksum import Hasher, verify_source
from tiering.stores.localfile import open_source, read_small_source, with_holes
from tiering.core.aio import finish


class S3Puts:
    """Mixin of ``S3Store``: ``put_file`` and ``put_file_async``."""

    def _attributes(self, meta: FileMeta) -> dict[str, str]:
        attrs = {"Content-Type": "application/octet-stream", **meta.to_headers()}
        if self.storage_class:
            attrs["Storage-Class"] = self.storage_class
        return attrs

    def put_file(self, local: str | Path, key: str, meta: FileMeta, progress: OnBytes | None = None) -> ObjectInfo:
        name = self._name(key)
        if meta.size <= self.threshold:
            return self._put_single(Path(local), key, name, meta, progress)  # (asks for holes in its one open)
        return self._put_multipart(Path(local), key, name, with_holes(local, meta), progress)

    def _put_single(self, local: Path, key: str, name: str, meta: FileMeta, progress: OnBytes | None) -> ObjectInfo:
        async def send(data: bytes, stored: FileMeta) -> tuple[str, str]:
            result = self._call(key, lambda: obstore.put(self._obs, name, data, attributes=self._attributes(stored),
                                                         use_multipart=False))
            return (result.get("e_tag") or "").strip('"'), ""

        async def delete(key: str) -> None:
            self.delete(key)

        info = finish(self._put_checked(key, self._single_body(local, key, meta), send, delete))
        if progress:
            progress(info.size)
        return info

    async def put_file_async(self, local: str | Path, key: str, meta: FileMeta) -> ObjectInfo:
        """``put_file`` as a coroutine: small files go up from the event loop (``S3Http``), large ones on a thread.

        The body's MD5 travels as ``Content-MD5``, so a server that checks it
        refuses bytes damaged on the way; the ETag is checked against it as well.
        """
        if meta.size > INLINE_MAX or self._http is None:
            return await asyncio.to_thread(self.put_file, local, key, meta)

        async def send(data: bytes, stored: FileMeta) -> tuple[str, str]:
            md5 = hashlib.md5(data, usedforsecurity=False)
            headers = _wire_headers(self._attributes(stored))
            headers["content-md5"] = base64.b64encode(md5.digest()).decode()
            response = await self._request(key, "PUT", headers=headers, body=data)
            return response.headers.get("etag", "").strip('"'), md5.hexdigest()

        def body() -> tuple[bytes, FileMeta]:
            return self._single_body(Path(local), key, meta)  # (it asks for holes: one open of the file)

        data = await self.local_io(body) if self.local_io is not None else body()
        return await self._put_checked(key, data, send, self.delete_async)

    async def _put_checked(self, key: str, body: tuple[bytes, FileMeta],
                           send: Callable[[bytes, FileMeta], Awaitable[tuple[str, str]]],
                           delete: Callable[[str], Awaitable[None]]) -> ObjectInfo:
        """One PUT of a whole small file, checked: the one code path of ``put_file`` (driven by ``finish``, with
        obstore) and ``put_file_async`` (with ``S3Http``). ``send(data, stored)`` stores the bytes and answers
        the ETag and the MD5 it sent ("" if none); a mismatch is deleted (``delete``) and raises. ``body``: the
        bytes and the metadata to store with them, as ``_single_body`` read them."""
        data, stored = body
        etag, md5 = await send(data, stored)
        info = self._stored(key, data, stored, etag, md5)
        if info is None:
            await delete(key)
            raise _etag_mismatch(self.url, key, etag)
        return info

    def _single_body(self, local: Path, key: str, meta: FileMeta) -> tuple[bytes, FileMeta]:
        """The whole file, and the metadata to store with it (checksum taken over exactly these bytes)."""
        data, meta = read_small_source(local, meta)  # (holes asked again in the same open: no extra round trip)
        hasher = Hasher()
        hasher.update(data)
        return data, verify_source(hasher, meta, key, self.url)

    def _stored(self, key: str, data: bytes, stored: FileMeta, etag: str, md5: str = "") -> ObjectInfo | None:
        """What a single PUT stored; None if its MD5 ETag says the server has other bytes than ``data``."""
        md5_etag = re.fullmatch(r"[0-9a-f]{32}", etag) is not None
        if md5_etag and etag != (md5 or hashlib.md5(data, usedforsecurity=False).hexdigest()):
            return None
        return ObjectInfo(key, len(data), etag=etag, storage_class=self.storage_class, meta=stored, verified=md5_etag)

    def _put_multipart(self, local: Path, key: str, name: str, meta: FileMeta, progress: OnBytes | None) -> ObjectInfo:
        first = Hasher.of_file(local)
        stored = verify_source(first, meta, key, self.url)
        second = Hasher()

        def chunks(hasher: Hasher) -> Iterator[bytes]:
            with open_source(local) as f:
                while data := f.read(self.part_size):
                    hasher.update(data)
                    if progress:
                        progress(len(data))
                    yield data
                    crash_point("upload:part")

        def put():
            # A retry restarts the upload whole, re-reading the file: its hash starts afresh too.
            nonlocal second
            second = Hasher()
            return obstore.put(self._obs, name, chunks(second), attributes=self._attributes(stored),
                               use_multipart=True, chunk_size=self.part_size, max_concurrency=self.jobs)

        result = self._call(key, put)
        if second.value != first.value or second.size != first.size:
            self.delete(key)
            raise SourceChangedError(f"{self.url}: {key}: source changed during the upload", store=self.url, key=key)
        return ObjectInfo(key, first.size, etag=(result.get("e_tag") or "").strip('"'), storage_class=self.storage_class, meta=stored)


def _etag_mismatch(url: str, key: str, etag: str) -> IntegrityError:
    return IntegrityError(f"{url}: {key}: server stored different bytes (ETag {etag})", store=url, key=key)


def _wire_headers(attributes: dict[str, str]) -> dict[str, str]:
    """The HTTP headers of a PUT for the obstore ``attributes`` of ``S3Puts._attributes``: one mapping of what
    an object carries, whichever client sends it."""
    headers = {"content-type": attributes["Content-Type"]}
    headers |= {f"x-amz-meta-{name}": value for name, value in attributes.items()
                if name not in ("Content-Type", "Storage-Class")}
    if "Storage-Class" in attributes:
        headers["x-amz-storage-class"] = attributes["Storage-Class"]
    return headers
