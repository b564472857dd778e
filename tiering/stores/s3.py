"""A capacity tier on any S3-compatible object store, through obstore.

Client choice, measured on the target machine kind (2 cores, loopback
SeaweedFS, 10,000 x 64 KiB PUTs): obstore (Rust ``object_store``) ran at
~1,460-1,515 files/s against s5cmd's ~1,240, where s3fs manages ~500 and
boto3 ~330. fsspec stays for URL handling and the ``tiered://`` layer.

Objects live at ``<prefix>/<key>``; file metadata rides in user metadata
(``x-amz-meta-tiering-*``). Uploads up to ``multipart_threshold`` are one PUT
whose ETag (the MD5 of the body on S3 and its peers) is checked against the
MD5 of what we sent; larger files go as a multipart upload of ``part_size``
parts, ``jobs`` at a time, with the BLAKE3 checksum taken in a first pass (it
must be in the metadata, which is fixed when the upload starts) and checked
again over the bytes actually sent. Large downloads are parallel ranged GETs,
read straight into the aligned buffers they are written from
(``s3_http.BlockingRanges``).

From an event loop (``*_async``), objects up to ``INLINE_MAX`` travel through
``s3_http`` instead: the same requests, signed and sent on the loop's own
thread, which costs a quarter of the CPU of obstore's thread hand-offs.

Options: ``S3_OPTIONS`` (``tiering.stores.options``, each with its default and
doc); credentials and the endpoint default to the ``AWS_*`` environment variables.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

import obstore
import obstore.exceptions as oe
from obstore.store import S3Store as _ObStore

from tiering.core.errors import (
    CredentialsError,
    FatalError,
    IntegrityError,
    RefusedError,
    SourceChangedError,
    StoreError,
)
from tiering.core.faults import crash_point
from tiering.stores.base import INLINE_MAX, AsyncTransfers, FileMeta, ObjectInfo, Progress, WritesBackEarly
from tiering.stores.checksum import CHUNK, Hasher, verify_object, verify_source
from tiering.stores.codes import classify_answer
from tiering.stores.directio import BufferPool, PartWriter
from tiering.stores.keys import join_key, shown_key, split_key
from tiering.stores.listing import whole_listing
from tiering.stores.options import S3_OPTIONS, S3_STORAGE_CLASSES
from tiering.stores.localfile import (
    open_source,
    read_source,
    start_writeback,
    with_holes,
    write_all,
    write_sparse,
)
from tiering.stores.retry import DEFAULT_RETRY, RetryPolicy
from tiering.stores.s3_http import (
    BlockingRanges,
    NetworkError,
    Response,
    S3Endpoint,
    S3Http,
)
from tiering.stores.s3_listpage import list_page
from tiering.stores.s3_uploads import abort_upload, list_uploads
from tiering.stores.sigv4 import S3Credentials

MiB = 1024 * 1024
_STATUS = re.compile(r"status code: (\d{3})")
_CODE = re.compile(r"<Code>([^<]+)</Code>")
def translate(exc: Exception, url: str, key: str) -> StoreError:
    """The project error for an obstore exception or a ``NetworkError``: the one table for this store."""
    text = str(exc)
    status = int(m.group(1)) if (m := _STATUS.search(text)) else 0
    code = m.group(1) if (m := _CODE.search(text)) else ""
    return classify(url, key, status, code, text.splitlines()[0][:160] if text else type(exc).__name__,
                    not_found=isinstance(exc, (oe.NotFoundError, FileNotFoundError)),
                    denied=isinstance(exc, (oe.PermissionDeniedError, oe.UnauthenticatedError)),
                    network=isinstance(exc, NetworkError) or (not status and _looks_like_network(text)))


def classify(url: str, key: str, status: int, code: str, text: str = "", *, not_found: bool = False,
             denied: bool = False, network: bool = False) -> StoreError:
    """The project error for an S3 failure: HTTP ``status``, S3 error ``code`` and a fallback ``text``.

    The same answers mean the same on OSS (``stores.oss.translate``): see ``tiering.core.errors`` for
    what each class tells the caller to do.
    """
    return classify_answer(f"{url}: {shown_key(key)}", url, key, status, code, text, not_found=not_found,
                           denied=denied, network=network)


def _looks_like_network(text: str) -> bool:
    lowered = text.lower()
    return any(s in lowered for s in ("error sending request", "timed out", "connection", "broken pipe", "reset"))


class S3Store(AsyncTransfers, WritesBackEarly):
    """Store protocol over an S3-compatible bucket, with its own coroutines for small objects."""

    storage_classes = S3_STORAGE_CLASSES
    OPTIONS = S3_OPTIONS

    def __init__(self, url: str, options: dict, *, retry: RetryPolicy = DEFAULT_RETRY) -> None:
        parts = urlsplit(url)
        self.bucket, self.prefix = parts.netloc, parts.path.strip("/")
        self.url = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.retry = retry
        self.storage_class = options.get("storage_class") or S3_OPTIONS.default("storage_class")
        self.part_size = int(options.get("part_size") or S3_OPTIONS.default("part_size"))
        # Ranged GETs have no 5 MiB floor or 10,000-part ceiling: smaller parts keep
        # more streams busy and let writing and hashing overlap (64 MiB: ~370 MB/s,
        # 16 MiB: ~650 MB/s for one 256 MiB object from a loopback SeaweedFS).
        self.get_part_size = min(self.part_size, 16 * MiB)
        self.threshold = int(options.get("multipart_threshold") or S3_OPTIONS.default("multipart_threshold"))
        self.jobs = int(options.get("jobs") or S3_OPTIONS.default("jobs"))
        #: Start each downloaded part's disk write as it lands: for callers that fsync what they
        #: download (the mover's restores), so the disk write overlaps the download instead of
        #: following it. Off by default: without an fsync it only moves the kernel's work earlier.
        self.write_back_early = False
        # Aligned buffers for direct writes: one per part in flight, for a few files at once.
        self._buffers = BufferPool(self.get_part_size, keep=4 * self.jobs)
        self._obs = _ObStore(self.bucket, **self._client_config(options))

    def _client_config(self, options: dict) -> dict:
        env = os.environ
        key_id = options.get("access_key_id") or env.get("AWS_ACCESS_KEY_ID")
        secret = options.get("secret_access_key") or env.get("AWS_SECRET_ACCESS_KEY")
        if not key_id or not secret:
            raise CredentialsError(
                f"{self.url}: no credentials: set access_key_id/secret_access_key for the tier "
                "or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in the environment",
                store=self.url,
            )
        endpoint = options.get("endpoint") or env.get("AWS_ENDPOINT_URL") or ""
        default_region = S3_OPTIONS.default("region")
        aws_region = options.get("region") or env.get("AWS_REGION")
        self._endpoint = endpoint or f"https://s3.{aws_region or default_region}.amazonaws.com"
        region = aws_region or env.get("AWS_DEFAULT_REGION") or default_region
        token = options.get("session_token") or env.get("AWS_SESSION_TOKEN")
        self._creds = S3Credentials(key_id, secret, token, region)
        config = {
            "access_key_id": key_id,
            "secret_access_key": secret,
            "region": region,
            "virtual_hosted_style_request": bool(options.get("virtual_hosted_style",
                                                             S3_OPTIONS.default("virtual_hosted_style"))),
        }
        if token:
            config["session_token"] = token
        if endpoint:
            config["endpoint"] = endpoint
        allow_http = bool(options.get("allow_http", endpoint.startswith("http://")))
        connect_timeout = float(options.get("connect_timeout", S3_OPTIONS.default("connect_timeout")))
        request_timeout = float(options.get("request_timeout", S3_OPTIONS.default("request_timeout")))
        client = {
            "allow_http": allow_http,
            "connect_timeout": timedelta(seconds=connect_timeout),
            "timeout": timedelta(seconds=request_timeout),
            "pool_max_idle_per_host": "256",
        }
        #: Small-object requests from an event loop, and the parts of large downloads read straight
        #: into aligned buffers (see ``s3_http`` for why); None where a proxy is configured for the
        #: endpoint, which only obstore honours.
        self._http = self._ranges = None
        if S3Endpoint.usable(self._endpoint, allow_http):
            where = S3Endpoint(self._endpoint, self.bucket, self._creds,
                               virtual_hosted=config["virtual_hosted_style_request"])
            self._http = S3Http(where, connect_timeout=connect_timeout, request_timeout=request_timeout)
            self._ranges = BlockingRanges(where, request_timeout=request_timeout)
        # Retries happen in RetryPolicy, once; the SDK's own are off.
        retry = {"max_retries": 0, "retry_timeout": timedelta(seconds=1)}
        return {"config": config, "client_options": client, "retry_config": retry}

    def _name(self, key: str) -> str:
        return join_key(self.prefix, key)

    def _call(self, key: str, fn, *, retry: bool = True):
        """``fn()`` with SDK errors translated, and transient ones retried unless ``retry`` is off."""
        def attempt():
            try:
                return fn()
            except (oe.BaseError, OSError, ValueError, NetworkError) as exc:
                if (error := self._error(exc, key)) is exc:
                    raise
                raise error from exc

        return self.retry.call(attempt) if retry else attempt()

    async def _call_async(self, key: str, fn):
        async def attempt():
            try:
                return await fn()
            except (oe.BaseError, OSError, ValueError, NetworkError) as exc:
                if (error := self._error(exc, key)) is exc:
                    raise
                raise error from exc

        return await self.retry.call_async(attempt)

    async def _request(self, key: str, method: str, **kwargs) -> Response:
        """One ``S3Http`` request for ``key``, retried by the policy; a status of 300 or more raises."""
        async def send() -> Response:
            response = await self._http.request(method, self._name(key), **kwargs)
            if response.status >= 300:
                raise classify(self.url, key, response.status, response.error_code())
            return response

        return await self._call_async(key, send)

    def _error(self, exc: Exception, key: str) -> Exception:
        """A local file error as it is (it is not the store's); anything else as the project's error."""
        if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError) and exc.errno:
            return exc
        return translate(exc, self.url, key)

    # -- put -------------------------------------------------------------------

    def _attributes(self, meta: FileMeta) -> dict[str, str]:
        attrs = {"Content-Type": "application/octet-stream", **meta.to_headers()}
        if self.storage_class:
            attrs["Storage-Class"] = self.storage_class
        return attrs

    def put_file(self, local: str | Path, key: str, meta: FileMeta, progress: Progress | None = None) -> ObjectInfo:
        name = self._name(key)
        meta = with_holes(local, meta)
        if meta.size <= self.threshold:
            return self._put_single(Path(local), key, name, meta, progress)
        return self._put_multipart(Path(local), key, name, meta, progress)

    def _put_single(self, local: Path, key: str, name: str, meta: FileMeta, progress: Progress | None) -> ObjectInfo:
        data, stored = self._single_body(local, key, meta)
        result = self._call(key, lambda: obstore.put(self._obs, name, data, attributes=self._attributes(stored), use_multipart=False))
        etag = (result.get("e_tag") or "").strip('"')
        info = self._stored(key, data, stored, etag)
        if info is None:
            self.delete(key)
            raise _etag_mismatch(self.url, key, etag)
        if progress:
            progress(len(data))
        return info

    async def put_file_async(self, local: str | Path, key: str, meta: FileMeta) -> ObjectInfo:
        """``put_file`` as a coroutine: small files go up from the event loop (``S3Http``), large ones on a thread.

        The body's MD5 travels as ``Content-MD5``, so a server that checks it
        refuses bytes damaged on the way; the ETag is checked against it as well.
        """
        if meta.size > INLINE_MAX or self._http is None:
            return await asyncio.to_thread(self.put_file, local, key, meta)
        data, stored = self._single_body(Path(local), key, with_holes(local, meta))
        md5 = hashlib.md5(data, usedforsecurity=False)
        headers = {"content-type": "application/octet-stream", "content-md5": base64.b64encode(md5.digest()).decode()}
        headers |= {f"x-amz-meta-{name}": value for name, value in stored.to_headers().items()}
        if self.storage_class:
            headers["x-amz-storage-class"] = self.storage_class
        response = await self._request(key, "PUT", headers=headers, body=data)
        etag = response.headers.get("etag", "").strip('"')
        info = self._stored(key, data, stored, etag, md5.hexdigest())
        if info is None:
            await self.delete_async(key)
            raise _etag_mismatch(self.url, key, etag)
        return info

    def _single_body(self, local: Path, key: str, meta: FileMeta) -> tuple[bytes, FileMeta]:
        """The whole file, and the metadata to store with it (checksum taken over exactly these bytes)."""
        data = read_source(local, meta.size)
        hasher = Hasher()
        hasher.update(data)
        return data, verify_source(hasher, meta, key, self.url)

    def _stored(self, key: str, data: bytes, stored: FileMeta, etag: str, md5: str = "") -> ObjectInfo | None:
        """What a single PUT stored; None if its MD5 ETag says the server has other bytes than ``data``."""
        md5_etag = re.fullmatch(r"[0-9a-f]{32}", etag) is not None
        if md5_etag and etag != (md5 or hashlib.md5(data, usedforsecurity=False).hexdigest()):
            return None
        return ObjectInfo(key, len(data), etag=etag, storage_class=self.storage_class, meta=stored, verified=md5_etag)

    def _put_multipart(self, local: Path, key: str, name: str, meta: FileMeta, progress: Progress | None) -> ObjectInfo:
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

    # -- get -------------------------------------------------------------------

    def get_file(self, key: str, local: str | Path, progress: Progress | None = None) -> ObjectInfo:
        local = Path(local)
        try:
            info, hasher, first = self._call(key, lambda: self._get_streamed(key, local, progress))
            if hasher is None:  # too big for one stream: the rest in parallel ranged GETs
                hasher = self._get_parallel(key, info.size, local, progress, first, sparse=_sparse(info))
            verify_object(hasher, info.meta, key, self.url)
        except BaseException:
            local.unlink(missing_ok=True)
            raise
        return info

    async def get_file_async(self, key: str, local: str | Path) -> ObjectInfo:
        """``get_file`` as a coroutine: small objects come down on the event loop, large ones on a thread.

        The GET goes out through ``S3Http``. Callers that know the size send
        large objects to ``get_file`` themselves (``call_async(..., size=)``);
        should a response still announce more than ``INLINE_MAX`` bytes, its
        body is left unread and ``get_file`` fetches the object on a thread.
        """
        if self._http is None:
            return await asyncio.to_thread(self.get_file, key, local)
        local = Path(local)
        try:
            response = await self._request(key, "GET", max_body=INLINE_MAX)
            if response.body is None:
                return await asyncio.to_thread(self.get_file, key, local)
            info = self._info_of(key, response, len(response.body))
            hasher = Hasher()
            hasher.update(response.body)
            fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
            try:
                if _sparse(info):
                    write_sparse(fd, response.body, 0)
                    os.ftruncate(fd, len(response.body))
                else:
                    write_all(fd, memoryview(response.body), 0)
            finally:
                os.close(fd)
            verify_object(hasher, info.meta, key, self.url)
        except BaseException:
            local.unlink(missing_ok=True)
            raise
        return info

    def _get_streamed(self, key: str, local: Path, progress: Progress | None):
        """One GET: metadata and, for objects up to the threshold, the bytes (hashed on the way).

        For a larger object the response is handed back unread: its first part
        is consumed by ``_get_parallel`` rather than fetched a second time.
        """
        result = obstore.get(self._obs, self._name(key))
        info = self._info(key, result.meta, dict(result.attributes))
        if info.size > self.threshold:
            return info, None, result
        return info, self._stream_into(result, local, progress, sparse=_sparse(info)), None

    def _stream_into(self, result, local: Path, progress: Progress | None, *, sparse: bool = False) -> Hasher:
        """Read GET response ``result`` into ``local``, hashing each chunk as it passes."""
        hasher = Hasher()

        def chunks() -> Iterator[bytes]:
            for chunk in result.stream(min_chunk_size=CHUNK):
                hasher.update(chunk)
                if progress:
                    progress(len(chunk))
                yield chunk

        with open(local, "wb") as f, \
                PartWriter(local, f.fileno(), self._buffers, int(result.meta["size"]), sparse=sparse) as writer:
            writer.write_stream(chunks())
        return hasher

    def _get_parallel(self, key: str, size: int, local: Path, progress: Progress | None, first, *,
                      sparse: bool = False) -> Hasher:
        """The first part from the open response ``first``, the others as ranged GETs ``jobs`` at a time,
        written with direct I/O where the filesystem allows it (``PartWriter``) and hashed in order
        as they land, from the very buffers written."""
        name = self._name(key)
        with open(local, "w+b") as f, PartWriter(local, f.fileno(), self._buffers, size, sparse=sparse) as writer:
            f.truncate(size)
            fd = f.fileno()
            in_order = _InOrder(fd)

            def head_part() -> None:
                buf = self._buffers.take()
                offset = 0
                try:
                    with memoryview(buf) as view:
                        try:
                            for chunk in first.stream(min_chunk_size=CHUNK):
                                chunk = memoryview(chunk)[: self.get_part_size - offset]
                                view[offset:offset + len(chunk)] = chunk
                                offset += len(chunk)
                                if offset >= self.get_part_size:
                                    break  # the rest comes in ranged GETs; this connection is dropped
                        except oe.BaseError:
                            return part(0)  # the open response failed: fetch the part again, with retries
                        writer.write_buffer(buf, offset, 0)
                        self._written(fd, 0, offset, writer)
                        in_order.landed(0, offset, view[:offset])  # first in order: hashed before the buffer goes back
                finally:
                    self._buffers.give(buf)
                if progress:
                    progress(offset)

            connections: dict[int, object] = {}  # thread -> its BlockingRanges connection, for this file

            def part(start: int) -> None:
                length = min(self.get_part_size, size - start)
                if self._ranges is None:
                    data = self._call(key, lambda: obstore.get_range(self._obs, name, start=start, length=length))
                    view = memoryview(data)
                    writer.write(view, start)
                    self._written(fd, start, length, writer)
                    in_order.landed(start, length, view)
                else:
                    conn = connections.get(threading.get_ident())
                    if conn is None:
                        conn = connections[threading.get_ident()] = self._ranges.connection()
                    buf = self._buffers.take()
                    try:
                        view = memoryview(buf)[:length]
                        self._call(key, lambda: self._read_range_into(key, conn, name, start, view))
                        writer.write_buffer(buf, length, start)
                        self._written(fd, start, length, writer)
                    except BaseException:
                        self._buffers.give(buf)
                        raise
                    # The buffer goes back to the pool once the part is hashed (now, or in its turn).
                    in_order.landed(start, length, view, done=lambda: self._buffers.give(buf))
                if progress:
                    progress(length)

            try:
                with ThreadPoolExecutor(self.jobs, thread_name_prefix="s3-get") as pool:
                    step = self.get_part_size
                    futures = [pool.submit(head_part)] + [pool.submit(part, s) for s in range(step, size, step)]
                    for future in futures:
                        future.result()
            finally:
                for conn in connections.values():
                    conn.close()
        return in_order.hasher

    def _read_range_into(self, key: str, conn, name: str, start: int, view: memoryview) -> None:
        response = self._ranges.read_into(conn, name, start, view)
        if response.status != 206:
            raise classify(self.url, key, response.status, response.error_code())

    def _written(self, fd: int, start: int, length: int, writer: PartWriter) -> None:
        """A part is written: start its disk write now if the caller will fsync (direct writes are on their way already)."""
        if self.write_back_early and not writer.direct:
            start_writeback(fd, start, length)

    # -- reads, head, delete, list ----------------------------------------------

    def read_range(self, key: str, start: int, length: int) -> bytes:
        if length <= 0:
            return b""
        name = self._name(key)
        try:
            return bytes(self._call(key, lambda: obstore.get_range(self._obs, name, start=start, length=length)))
        except RefusedError as exc:
            if "InvalidRange" in str(exc) or "HTTP 416" in str(exc):
                self.head(key)  # NotFoundError if the object itself is missing
                return b""  # the range starts at or past the end
            raise

    def open(self, key: str) -> BinaryIO:
        name = self._name(key)
        return self._call(key, lambda: _Reader(obstore.open_reader(self._obs, name, buffer_size=CHUNK),
                                               lambda exc: self._error(exc, key)))

    def head(self, key: str) -> ObjectInfo:
        name = self._name(key)
        result = self._call(key, lambda: obstore.get(self._obs, name, options={"head": True}))
        return self._info(key, result.meta, dict(result.attributes))

    def _info(self, key: str, meta: dict, attrs: dict[str, str]) -> ObjectInfo:
        return ObjectInfo(
            key, meta["size"], etag=(meta.get("e_tag") or "").strip('"'),
            storage_class=attrs.get("Storage-Class", ""), meta=FileMeta.from_headers(attrs),
        )

    def _info_of(self, key: str, response: Response, size: int) -> ObjectInfo:
        """An ``ObjectInfo`` from the headers of an ``S3Http`` GET or HEAD of a ``size``-byte object."""
        h = response.headers
        attrs = {name[11:]: value for name, value in h.items() if name.startswith("x-amz-meta-")}
        return ObjectInfo(key, size, etag=h.get("etag", "").strip('"'), storage_class=h.get("x-amz-storage-class", ""),
                          meta=FileMeta.from_headers(attrs))

    async def head_async(self, key: str) -> ObjectInfo:
        if self._http is None:
            return await asyncio.to_thread(self.head, key)
        response = await self._request(key, "HEAD")
        try:
            size = int(response.headers["content-length"])
        except (KeyError, ValueError) as exc:
            raise FatalError(f"{self.url}: {key}: HEAD answered without a usable Content-Length",
                             store=self.url, key=key) from exc
        return self._info_of(key, response, size)

    def delete(self, key: str) -> None:
        name = self._name(key)
        self._call(key, lambda: obstore.delete(self._obs, name))

    async def delete_async(self, key: str) -> None:
        if self._http is None:
            return await asyncio.to_thread(self.delete, key)
        await self._request(key, "DELETE")

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object under ``prefix``, or an error: never a listing cut short (``stores.listing``).

        A failed page is asked for again from just after the last object seen
        (obstore's ``offset``, S3's ``start-after``), each page under the retry
        policy: re-asking the same stream would get its end, not the page.
        Why obstore and not our own ListObjectsV2: its paging and XML parsing
        are proven, and ``offset`` is all a resume needs.
        """
        return whole_listing(self.url, prefix, self._list(prefix))

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        # object_store lists whole "directories"; narrow to the string prefix here.
        directory = join_key(self.prefix, prefix.rsplit("/", 1)[0]) if "/" in prefix else self.prefix
        stream, after = None, None  # ``after``: the full name of the last object seen

        def page():
            nonlocal stream
            try:
                if stream is None:
                    stream = obstore.list(self._obs, directory or None, offset=after, chunk_size=1000)
                return next(stream, None)
            except (oe.InvalidPathError, ValueError) as exc:
                if not _unparsable(exc, stream):
                    stream = None
                    raise
            except BaseException:
                stream = None  # a failed stream is spent: a retry starts a new one after ``after``, never its end
                raise
            # A name obstore cannot hold, listed or to start after (``s3_listpage``): this page raw, then go on.
            stream = None
            return list_page(self._endpoint, self._creds, self.bucket, directory, after, url=self.url) or None

        while True:
            batch = self._call(prefix, page)
            if batch is None:
                return
            for item in batch:
                after = item["path"]
                key = split_key(self.prefix, item["path"])
                if key.startswith(prefix):
                    yield ObjectInfo(key, item["size"], etag=(item.get("e_tag") or "").strip('"'))

    def cleanup_incomplete(self, key: str | None = None) -> int:
        """Abort unfinished multipart uploads of ``key`` (or under the whole prefix)."""
        prefix = self._name(key) if key else (self.prefix + "/" if self.prefix else "")
        uploads = list_uploads(self._endpoint, self._creds, self.bucket, prefix, url=self.url, retry=self.retry)
        mine = [(name, upload) for name, upload in uploads if key is None or name == prefix]
        for name, upload_id in mine:
            self.retry.call(lambda: abort_upload(self._endpoint, self._creds, self.bucket, name, upload_id,
                                                 url=self.url))
        return len(mine)

    def close(self) -> None:
        self._buffers.close()


def _sparse(info: ObjectInfo) -> bool:
    """Whether the object's source had holes, so its zeros are written back as holes."""
    return bool(info.meta and info.meta.sparse)


def _unparsable(exc: Exception, stream) -> bool:
    """Whether obstore failed on a name it cannot parse: one listed (``InvalidPathError``), or the offset to
    start after (a ``ValueError`` before any stream exists)."""
    return isinstance(exc, oe.InvalidPathError) or (stream is None and "parse path" in str(exc).lower())


def _etag_mismatch(url: str, key: str, etag: str) -> IntegrityError:
    return IntegrityError(f"{url}: {key}: server stored different bytes (ETag {etag})", store=url, key=key)


class _InOrder:
    """Hashes a file's parts in offset order as they land, while later parts still download.

    A part is hashed once every part before it has landed: from the buffer it
    was written from when it came with one (parts that arrive early are held
    for their turn, up to ``max_held`` bytes), else read back from the file.
    Either way the checksum covers exactly the bytes written,
    and only the last part's hashing is left when the download ends.
    """

    def __init__(self, fd: int, max_held: int = 256 * MiB) -> None:
        self.hasher = Hasher(threaded=True)
        self._fd = fd
        self._next = 0
        self._landed: dict[int, tuple] = {}  # start -> (length, data, held, done)
        self._held = 0
        self._max_held = max_held
        self._lock = threading.Lock()

    def landed(self, start: int, length: int, data: memoryview | None = None,
               done: Callable[[], None] | None = None) -> None:
        """Part ``start`` is written; ``data`` is its bytes, if at hand, and ``done`` is called once they are no
        longer needed (hashed, or left to be read back from the file)."""
        with self._lock:
            early = data is not None and start != self._next
            if early and self._held + length > self._max_held:
                data, early = None, False  # too far ahead: read it back from the file when its turn comes
                if done:
                    done()
                    done = None
            self._held += length if early else 0
            self._landed[start] = (length, data, early, done)
            while self._next in self._landed:
                length, data, early, release = self._landed.pop(self._next)
                try:
                    if data is not None:
                        self.hasher.update(data)
                    else:
                        self._read_back(length)
                finally:
                    if release:
                        release()
                self._held -= length if early else 0
                self._next += length

    def _read_back(self, length: int) -> None:
        offset = self._next
        while length:
            data = os.pread(self._fd, min(length, 4 * CHUNK), offset)
            if not data:
                raise OSError(f"short read at {offset} of a file being downloaded")
            self.hasher.update(data)
            offset += len(data)
            length -= len(data)


class _Reader:
    """A read-only binary file over obstore's ReadableFile; a failed read raises the project's error
    (``error`` translates it), never the SDK's."""

    def __init__(self, raw, error: Callable[[Exception], Exception]) -> None:
        self._raw = raw
        self._error = error

    def read(self, size: int = -1) -> bytes:
        try:
            return bytes(self._raw.read(size) if size is not None and size >= 0 else self._raw.read())
        except (oe.BaseError, OSError, ValueError) as exc:
            if (error := self._error(exc)) is exc:
                raise
            raise error from exc

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

