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

``S3Store`` is composed of one module per idea: ``s3_errors`` (the table for S3
answers), ``s3_client`` (the clients, and every call translated and retried),
``s3_put`` (single and multipart uploads), ``s3_get`` (streamed and parallel
ranged downloads, ranges, file objects), ``s3_list`` (listings, unfinished
uploads); beneath them ``s3_http`` and ``sigv4`` (our own requests),
``s3_listpage`` and ``s3_uploads`` (the requests obstore cannot make).
"""


from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import obstore
from obstore.store import S3Store as _ObStore

from tiering.core.errors import FatalError
from tiering.stores.base import AsyncTransfers, FileMeta, FillsDescriptors, LocalIO, ObjectInfo, WritesBackEarly
from tiering.stores.directio import BufferPool
from tiering.stores.options import S3_OPTIONS, S3_STORAGE_CLASSES
from tiering.stores.retry import DEFAULT_RETRY, RetryPolicy
from tiering.stores.s3_archive import S3Archive, readable_now
from tiering.stores.s3_client import S3Client
from tiering.stores.s3_errors import classify, translate
from tiering.stores.s3_get import S3Gets
from tiering.stores.s3_http import Response
from tiering.stores.s3_list import S3Listing
from tiering.stores.s3_put import S3Puts

__all__ = ["S3Store", "classify", "translate"]  # the error table lives in s3_errors; these names stay importable here

MiB = 1024 * 1024


class S3Store(S3Client, S3Puts, S3Gets, S3Listing, S3Archive, AsyncTransfers, WritesBackEarly, FillsDescriptors):
    """Store protocol over an S3-compatible bucket, with its own coroutines for small objects; storage
    classes and archive restores (``s3_archive``)."""

    #: ``get_file_async`` takes an open file's descriptor for a small object (``FillsDescriptors``).
    fills_descriptors = True

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
        self.restore_tier = str(options.get("restore_tier") or S3_OPTIONS.default("restore_tier"))
        self.restore_days = int(options.get("restore_days") or S3_OPTIONS.default("restore_days"))
        #: Start each downloaded part's disk write as it lands: for callers that fsync what they
        #: download (the mover's restores), so the disk write overlaps the download instead of
        #: following it. Off by default: without an fsync it only moves the kernel's work earlier.
        self.write_back_early = False
        #: Runs the local file reads and writes of small transfers made from an event loop (``OffloadsLocalIO``).
        self.local_io: LocalIO | None = None
        # Aligned buffers for direct writes: one per part in flight, for a few files at once.
        self._buffers = BufferPool(self.get_part_size, keep=4 * self.jobs)
        self._obs = _ObStore(self.bucket, **self._client_config(options))

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
        storage_class, restore = h.get("x-amz-storage-class", ""), h.get("x-amz-restore", "")
        return ObjectInfo(key, size, etag=h.get("etag", "").strip('"'), storage_class=storage_class,
                          meta=FileMeta.from_headers(attrs), readable=readable_now(storage_class, restore),
                          extra={"x-amz-restore": restore} if restore else {})

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

    def close(self) -> None:
        self._buffers.close()
