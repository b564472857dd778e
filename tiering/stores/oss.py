"""A capacity tier on Alibaba Cloud OSS, through ``oss2``.

Objects live at ``<prefix>/<key>`` in the bucket of ``oss://bucket/prefix``;
file metadata rides in user metadata (``x-oss-meta-tiering-*``, values
percent-encoded so any path survives an HTTP header). Every transfer is checked
with CRC-64 end to end (oss2 ``enable_crc``). Files below
``multipart_threshold`` are read once, hashed (BLAKE3) and sent in one PUT;
larger ones are hashed first (the checksum must be in the metadata, which is
fixed when the upload starts) and sent as a resumable multipart upload whose
checkpoints live in ``checkpoint_dir``. The server's CRC-64 of the finished
object must equal the CRC-64 of the first pass: if it does not, the file
changed under us, the object is deleted and ``SourceChangedError`` raised.

Requests are signed with V4 (OSS4-HMAC-SHA256, what Alibaba recommends) when
the region is known, and with V1 otherwise (custom endpoints without a region).

Options: ``OSS_OPTIONS`` (``tiering.stores.options``, each with its default and
doc); credentials default to the ``OSS_*`` environment variables, the region to
the one in an ``oss-<region>.aliyuncs.com`` endpoint.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import time
from xml.etree import ElementTree
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, TypeVar
from urllib.parse import quote, unquote, urlsplit

import oss2
import requests
from oss2.credentials import StaticCredentialsProvider
from oss2.models import RestoreConfiguration, RestoreJobParameters

from tiering.core.errors import (
    ConfigError,
    CredentialsError,
    FatalError,
    IntegrityError,
    NeedsRestoreError,
    SourceChangedError,
    StoreError,
    TransientError,
    UserError,
)
from tiering.stores.base import FileMeta, ObjectInfo, OnBytes
from tiering.stores.checksum import CHUNK, Hasher, verify_object, verify_source
from tiering.stores.codes import TRANSIENT_CODES, classify_answer
from tiering.stores.keys import join_key, shown_key, split_key
from tiering.stores.listing import whole_listing
from tiering.stores.localfile import open_source, read_source, with_holes, write_sparse
from tiering.stores.options import OSS_ARCHIVE_CLASSES, OSS_OPTIONS, OSS_STORAGE_CLASSES
from tiering.stores.retry import DEFAULT_RETRY, RetryPolicy

T = TypeVar("T")
META_HEADER = "x-oss-meta-"
# Everything printable in ASCII but "%" and " " passes through a header as itself.
_META_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")
_ALIYUN_HOST = re.compile(r"^oss-([a-z0-9-]+?)(?:-internal)?\.aliyuncs\.com$")
# Retries happen in RetryPolicy, once. oss2's only own retry loop is in its list
# iterators (used by resumable uploads to list parts); make it a single try.
oss2.defaults.request_retries = 1


class _NoDebug(logging.Filter):
    """oss2 logs request headers and strings-to-sign (tokens, signatures) at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


for _name in ("oss2.http", "oss2.auth"):
    logging.getLogger(_name).addFilter(_NoDebug())


def translate(exc: Exception, url: str, key: str) -> StoreError:
    """The project error for an oss2 (or requests) exception: the one table for this store.

    The same server answers mean what they mean on S3 (``stores.s3.classify``, ``stores.codes``).
    """
    where = f"{url}: {shown_key(key)}"
    if isinstance(exc, oss2.exceptions.RequestError):
        return TransientError(f"{where}: cannot reach the server ({type(exc.exception).__name__})", store=url, key=key)
    if isinstance(exc, requests.RequestException):
        return TransientError(f"{where}: connection failed mid-transfer ({type(exc).__name__})", store=url, key=key)
    if isinstance(exc, oss2.exceptions.InconsistentError):
        if "IncompleteRead" in exc.body:
            return TransientError(f"{where}: the server sent fewer bytes than announced", store=url, key=key)
        return IntegrityError(f"{where}: CRC-64 mismatch, data corrupt in transit", store=url, key=key)
    if not isinstance(exc, oss2.exceptions.ServerError):
        detail = exc.body if isinstance(exc, oss2.exceptions.OssError) else type(exc).__name__
        return FatalError(f"{where}: {_one_line(str(detail))}", store=url, key=key)
    # OSS's one extra: oss2's resumable download sends If-Match with each range; an object replaced
    # mid-download answers 412, and a fresh try (checked against the catalog as ever) starts over.
    return classify_answer(where, url, key, exc.status, exc.code or "", note=f" (request {exc.request_id})",
                           transient=TRANSIENT_CODES | {"PreconditionFailed"})


def _malformed(exc: Exception) -> bool:
    """Whether ``exc`` is oss2 failing to parse a response (it raises ``RuntimeError("parse xml: ...")``)."""
    return isinstance(exc, ElementTree.ParseError) or str(exc).startswith("parse xml")


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]


def _progress_adapter(progress: OnBytes | None) -> Callable[[int, int | None], None] | None:
    """oss2 reports bytes done so far; our callers want the bytes just transferred.

    Only growth is reported, so bytes sent again by a retry are not counted twice.
    """
    if progress is None:
        return None
    done = 0

    def report(consumed: int, total: int | None) -> None:
        nonlocal done
        if consumed > done:
            progress(consumed - done)
            done = consumed

    return report


def _hash_file(path: Path) -> tuple[Hasher, int]:
    """BLAKE3 and CRC-64 (as OSS computes it) of a local file, in one pass."""
    hasher, crc = Hasher(), oss2.utils.Crc64()
    with open_source(path) as f:
        while data := f.read(CHUNK):
            hasher.update(data)
            crc.update(data)
    return hasher, crc.crc


def _drain(result: oss2.models.RequestResult) -> None:
    """Read what oss2 left unread, so the connection goes back to the pool."""
    result.resp.read()


class _Salted:
    """oss2 checkpoints keyed also by what is sent or fetched: a stale one is never resumed."""

    salt = ""

    def make_store_key(self, *args: str) -> str:
        return f"{super().make_store_key(*args)}-{self.salt}"  # type: ignore[misc]


class _UploadCheckpoints(_Salted, oss2.ResumableStore):
    pass


class _DownloadCheckpoints(_Salted, oss2.ResumableDownloadStore):
    pass


class OssStore:
    """Store, SupportsStorageClass and SupportsRestore over an OSS bucket."""

    storage_classes = OSS_STORAGE_CLASSES
    OPTIONS = OSS_OPTIONS

    def __init__(self, url: str, options: dict, *, retry: RetryPolicy = DEFAULT_RETRY) -> None:
        parts = urlsplit(url)
        bucket = parts.netloc.rpartition("@")[2]
        if parts.scheme != "oss" or not bucket:
            raise ConfigError(f"{url!r} is not an OSS tier URL; expected oss://bucket/prefix")
        self.prefix = parts.path.strip("/")
        self.url = f"oss://{bucket}/{self.prefix}".rstrip("/")
        self.retry = retry
        endpoint = str(options.get("endpoint") or "")
        if not endpoint:
            raise ConfigError(f"{self.url}: option 'endpoint' is required (e.g. https://oss-cn-hangzhou.aliyuncs.com)")
        self.storage_class = self._choice(options, "storage_class")
        self.part_size = self._number(options, "part_size")
        self.threshold = self._number(options, "multipart_threshold")
        self.jobs = self._number(options, "jobs")
        self.restore_tier = self._choice(options, "restore_tier")
        self.restore_days = self._number(options, "restore_days")
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        self.checkpoint_dir = Path(options.get("checkpoint_dir") or cache / "tiering" / "oss-checkpoints")
        self._bucket = self._connect(endpoint, bucket, options)

    def _number(self, options: dict, name: str):
        """Option ``name`` as its declared kind (a whole number, or seconds), at least its declared minimum."""
        declared = OSS_OPTIONS[name]
        kind, minimum = (float if declared.kind == "duration" else int), declared.minimum or 0
        value = options.get(name, declared.default)
        try:
            number = kind(value)
        except (TypeError, ValueError):
            number = minimum - 1
        if number < minimum:
            what = "a whole number" if kind is int else "a number"
            raise ConfigError(f"{self.url}: option {name!r} is {value!r}; expected {what} >= {minimum}")
        return number

    def _choice(self, options: dict, name: str, default: str | None = None) -> str:
        """Option ``name``, one of its declared choices (matched without case); ``default``: the declared one."""
        choices = OSS_OPTIONS[name].choices
        value = str(options.get(name) or default or OSS_OPTIONS.default(name))
        for choice in choices:
            if value.lower() == choice.lower():
                return choice
        raise ConfigError(f"{self.url}: option {name!r} is {value!r}; expected one of {', '.join(choices)}")

    def _connect(self, endpoint: str, bucket: str, options: dict) -> oss2.Bucket:
        env = os.environ
        key_id = options.get("access_key_id") or env.get("OSS_ACCESS_KEY_ID")
        secret = options.get("access_key_secret") or env.get("OSS_ACCESS_KEY_SECRET")
        token = options.get("security_token") or env.get("OSS_SESSION_TOKEN") or ""
        if not key_id or not secret:
            raise CredentialsError(
                f"{self.url}: no OSS credentials: set access_key_id/access_key_secret for the tier "
                "or OSS_ACCESS_KEY_ID/OSS_ACCESS_KEY_SECRET in the environment", store=self.url)
        host = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}").hostname or ""
        region = options.get("region") or (m.group(1) if (m := _ALIYUN_HOST.match(host)) else None)
        credentials = StaticCredentialsProvider(str(key_id), str(secret), str(token))
        auth = oss2.ProviderAuthV4(credentials) if region else oss2.ProviderAuth(credentials)
        adapter = requests.adapters.HTTPAdapter(pool_connections=2, pool_maxsize=self.jobs + 4, max_retries=0)
        timeout = (self._number(options, "connect_timeout"), self._number(options, "read_timeout"))
        try:
            return oss2.Bucket(auth, endpoint, bucket, session=oss2.Session(adapter=adapter), connect_timeout=timeout,
                               app_name="tiering", enable_crc=True, region=region)
        except oss2.exceptions.ClientError as exc:  # a malformed endpoint or bucket name
            raise ConfigError(f"{self.url}: {exc.body.removeprefix('ClientError: ')}") from exc

    def _name(self, key: str) -> str:
        return join_key(self.prefix, key)

    def _call(self, key: str, fn: Callable[[], T]) -> T:
        """Run one SDK call under the retry policy, with its errors translated."""

        def attempt() -> T:
            try:
                return fn()
            except (oss2.exceptions.OssError, requests.RequestException) as exc:
                raise translate(exc, self.url, key) from exc
            except (RuntimeError, ElementTree.ParseError) as exc:
                if not _malformed(exc):
                    raise
                raise FatalError(f"{self.url}: {key or '(bucket)'}: the server sent a malformed response "
                                 f"({_one_line(str(exc))})", store=self.url, key=key) from exc

        return self.retry.call(attempt)

    def _headers(self, meta: FileMeta) -> dict[str, str]:
        headers = {META_HEADER + k: quote(v, safe=_META_SAFE) for k, v in meta.to_headers().items()}
        headers["x-oss-storage-class"] = self.storage_class
        headers["Content-Type"] = "application/octet-stream"
        return headers

    def _info(self, key: str, result: oss2.models.HeadObjectResult) -> ObjectInfo:
        headers = result.headers
        storage_class = headers.get("x-oss-storage-class", "Standard")
        user = {k[len(META_HEADER):]: unquote(v) for k, v in headers.items() if k.lower().startswith(META_HEADER)}
        restored = 'ongoing-request="false"' in headers.get("x-oss-restore", "")
        extra = {k: headers[k] for k in ("x-oss-hash-crc64ecma", "x-oss-restore", "x-oss-object-type") if k in headers}
        return ObjectInfo(key, result.content_length, etag=result.etag, storage_class=storage_class,
                          meta=FileMeta.from_headers(user),
                          readable=storage_class not in OSS_ARCHIVE_CLASSES or restored, extra=extra)

    # -- put ---------------------------------------------------------------------------

    def put_file(self, local: str | Path, key: str, meta: FileMeta, progress: OnBytes | None = None) -> ObjectInfo:
        """Upload ``local`` as ``key`` with ``meta``; the checksum is filled in and checked."""
        local, name = Path(local), self._name(key)
        meta = with_holes(local, meta)
        if local.stat().st_size < self.threshold:
            return self._put_single(local, key, name, meta, progress)
        return self._put_multipart(local, key, name, meta, progress)

    def _put_single(self, local: Path, key: str, name: str, meta: FileMeta, progress: OnBytes | None) -> ObjectInfo:
        data = read_source(local, meta.size)
        hasher = Hasher()
        hasher.update(data)
        stored = verify_source(hasher, meta, key, self.url)
        headers = self._headers(stored)
        report = _progress_adapter(progress)  # one for all attempts: a retry does not count bytes twice
        send = lambda: self._bucket.put_object(name, data, headers=headers, progress_callback=report)
        try:
            result = self._call(key, send)
        except IntegrityError:
            self._discard(key, name)  # the server kept bytes that failed the CRC check
            raise
        # oss2 compared the server's CRC-64 of what it stored with ours of what it sent.
        return ObjectInfo(key, len(data), etag=result.etag, storage_class=self.storage_class, meta=stored, verified=True)

    def _put_multipart(self, local: Path, key: str, name: str, meta: FileMeta, progress: OnBytes | None) -> ObjectInfo:
        before = local.stat()
        hasher, crc = _hash_file(local)
        stored = verify_source(hasher, meta, key, self.url)
        headers = self._headers(stored)
        checkpoints = _UploadCheckpoints(root=str(self.checkpoint_dir), dir="upload")
        checkpoints.salt = hashlib.sha256(repr(sorted(headers.items())).encode()).hexdigest()[:16]
        report = _progress_adapter(progress)  # oss2 counts resumed parts as done, so one adapter spans retries
        send = lambda: oss2.resumable_upload(
            self._bucket, name, str(local), store=checkpoints, headers=headers, multipart_threshold=self.threshold,
            part_size=self.part_size, progress_callback=report, num_threads=self.jobs)
        try:
            result = self._call(key, send)
        except BaseException:
            self._abandon_upload(checkpoints, name, local)
            raise
        _drain(result)
        after = local.stat()
        # The server's CRC covers the bytes oss2 actually read; ours, the bytes we hashed.
        if (result.crc is not None and result.crc != crc) or (after.st_size, after.st_mtime_ns) != (
            before.st_size, before.st_mtime_ns):
            self._discard(key, name)
            raise SourceChangedError(f"{self.url}: {key}: source changed during the upload", store=self.url, key=key)
        return ObjectInfo(key, hasher.size, etag=result.etag, storage_class=self.storage_class, meta=stored,
                          verified=result.crc is not None)

    def _abandon_upload(self, checkpoints: _UploadCheckpoints, name: str, local: Path) -> None:
        """After a failure for good: abort the server-side upload and drop its checkpoint."""
        record_key = checkpoints.make_store_key(self._bucket.bucket_name, name, os.path.abspath(local))
        record = checkpoints.get(record_key)
        if not record:
            return
        try:
            self._bucket.abort_multipart_upload(name, record["upload_id"])
        except (oss2.exceptions.OssError, requests.RequestException):
            pass  # best effort: the server may be the reason we failed
        checkpoints.delete(record_key)

    def cleanup_incomplete(self, key: str | None = None) -> int:
        """Abort unfinished multipart uploads of ``key`` (or under the whole prefix)."""
        prefix = self._name(key) if key else (self.prefix + "/" if self.prefix else "")

        mine = [(n, u) for n, u in self._uploads(key or "", prefix) if key is None or n == prefix]
        for name, upload_id in mine:
            self._call(key or "", lambda: self._bucket.abort_multipart_upload(name, upload_id))
        return len(mine)

    def _uploads(self, key: str, prefix: str) -> list[tuple[str, str]]:
        """(name, upload id) of every unfinished upload under ``prefix``, page after page."""
        found, markers = [], ("", "")
        while True:
            page = self._call(key, lambda m=markers: self._bucket.list_multipart_uploads(
                prefix=prefix, key_marker=m[0], upload_id_marker=m[1], max_uploads=1000))
            found += [(u.key, u.upload_id) for u in page.upload_list]
            if not page.is_truncated:
                return found
            markers = (page.next_key_marker, page.next_upload_id_marker)

    def _discard(self, key: str, name: str) -> None:
        try:
            self._bucket.delete_object(name)
        except (oss2.exceptions.OssError, requests.RequestException):
            pass  # best effort; the caller raises the original problem

    # -- get ---------------------------------------------------------------------------

    def get_file(self, key: str, local: str | Path, progress: OnBytes | None = None) -> ObjectInfo:
        """Download ``key`` into exactly ``local``, verified; nothing is left behind on failure."""
        local, name = Path(local), self._name(key)
        info = self.head(key)
        if not info.readable:
            raise self._needs_restore(key, info)
        if info.meta and info.meta.sparse:
            return self._get_sparse(key, name, local, info, progress)
        checkpoints = _DownloadCheckpoints(root=str(self.checkpoint_dir), dir="download")
        checkpoints.salt = hashlib.sha256(f"{info.etag}:{info.size}".encode()).hexdigest()[:16]
        report = _progress_adapter(progress)
        fetch = lambda: oss2.resumable_download(
            self._bucket, name, str(local), multiget_threshold=self.threshold, part_size=self.part_size,
            progress_callback=report, num_threads=self.jobs, store=checkpoints)
        try:
            self._call(key, fetch)
            if local.stat().st_size != info.size:
                raise IntegrityError(f"{self.url}: {key}: object is corrupt (size changed in transit)",
                                     store=self.url, key=key)
            verify_object(Hasher.of_file(local), info.meta, key, self.url)
        except BaseException:
            local.unlink(missing_ok=True)
            self._abandon_download(checkpoints, name, local)
            raise
        return info

    def _get_sparse(self, key: str, name: str, local: Path, info: ObjectInfo, progress: OnBytes | None) -> ObjectInfo:
        """``get_file`` of an object whose source had holes: one streamed GET, zeros written as holes.

        (oss2's resumable download writes every byte itself.) A retry starts the file afresh.
        """
        report = _progress_adapter(progress)
        hasher = Hasher()

        def fetch() -> None:
            nonlocal hasher
            hasher = Hasher()
            with self._bucket.get_object(name) as result, open(local, "wb") as f:
                while chunk := result.read(CHUNK):
                    hasher.update(chunk)
                    write_sparse(f.fileno(), chunk, hasher.size - len(chunk))
                    if report:
                        report(hasher.size, info.size)
                os.ftruncate(f.fileno(), hasher.size)
            if result.client_crc is not None and result.server_crc is not None and result.client_crc != result.server_crc:
                raise IntegrityError(f"{self.url}: {key}: CRC-64 mismatch, data corrupt in transit",
                                     store=self.url, key=key)

        try:
            self._call(key, fetch)
            verify_object(hasher, info.meta, key, self.url)
        except BaseException:
            local.unlink(missing_ok=True)
            raise
        return info

    def _abandon_download(self, checkpoints: _DownloadCheckpoints, name: str, local: Path) -> None:
        record_key = checkpoints.make_store_key(self._bucket.bucket_name, name, os.path.abspath(local))
        record = checkpoints.get(record_key)
        if record:
            Path(f"{local}{record.get('tmp_suffix', '')}").unlink(missing_ok=True)
            checkpoints.delete(record_key)

    def _needs_restore(self, key: str, info: ObjectInfo) -> NeedsRestoreError:
        if "ongoing-request" in info.extra.get("x-oss-restore", ""):
            why = "its restore is still under way; wait for it"
        else:
            why = "run restore first"
        return NeedsRestoreError(f"{self.url}: object {key} is in storage class {info.storage_class}; {why}",
                                 store=self.url, key=key)

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``start``; empty at or past the end."""
        if length <= 0:
            return b""
        name = self._name(key)
        # "standard" makes OSS clip a range running past the end (its default sends the whole object).
        headers = {"x-oss-range-behavior": "standard"}

        def fetch() -> bytes:
            try:
                result = self._bucket.get_object(name, byte_range=(start, start + length - 1), headers=headers)
            except oss2.exceptions.ServerError as exc:
                if exc.status == 416:  # the range starts at or past the end
                    return b""
                raise
            with result:
                return result.read()

        return self._call(key, fetch)

    def open(self, key: str) -> BinaryIO:
        """A streaming read-only file over the whole object, CRC-checked when read to the end."""
        name = self._name(key)
        result = self._call(key, lambda: self._bucket.get_object(name))
        return io.BufferedReader(_ObjectStream(result, self.url, key), buffer_size=CHUNK)  # type: ignore[return-value]

    # -- head, delete, list ----------------------------------------------------------------

    def head(self, key: str) -> ObjectInfo:
        """Size, storage class, restore state and file metadata of ``key``."""
        name = self._name(key)
        return self._info(key, self._call(key, lambda: self._bucket.head_object(name)))

    def delete(self, key: str) -> None:
        """Remove ``key``; OSS answers a missing key with success too."""
        name = self._name(key)
        self._call(key, lambda: self._bucket.delete_object(name))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix``, in key order, a page of 1000 at a time.

        Every key or an error (``stores.listing``): each page is retried with
        its own continuation token, so a retry asks for the same page again.
        """
        return whole_listing(self.url, prefix, self._list(prefix))

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        token = ""
        while True:
            page = self._call(prefix, lambda t=token: self._bucket.list_objects_v2(full, continuation_token=t,
                                                                                   max_keys=1000))
            for o in page.object_list:
                yield ObjectInfo(split_key(self.prefix, o.key), o.size, etag=o.etag, storage_class=o.storage_class)
            if not page.is_truncated:
                return
            token = page.next_continuation_token
            if not token:
                raise FatalError(f"{self.url}: the server said the listing goes on but gave no continuation token",
                                 store=self.url, key=prefix)

    def close(self) -> None:
        self._bucket.session.session.close()

    # -- storage classes and restore ----------------------------------------------------------

    def set_storage_class(self, key: str, storage_class: str) -> None:
        """Move ``key`` to another class by copying it onto itself (archived ones need a restore first)."""
        wanted = next((c for c in OSS_STORAGE_CLASSES if c.lower() == storage_class.lower()), None)
        if wanted is None:
            raise UserError(f"{self.url}: unknown storage class {storage_class!r}; "
                            f"expected one of {', '.join(OSS_STORAGE_CLASSES)}")
        name = self._name(key)
        headers = {"x-oss-storage-class": wanted, "x-oss-metadata-directive": "COPY"}
        _drain(self._call(key, lambda: self._bucket.copy_object(self._bucket.bucket_name, name, name, headers=headers)))

    def restore(self, key: str, *, tier: str | None = None, days: int | None = None) -> None:
        """Ask for a readable copy of an archived object; a restore already under way is fine.

        ``tier`` and ``days`` default to the ``restore_tier`` and ``restore_days`` options.
        """
        tier = self._choice({"restore_tier": tier}, "restore_tier", self.restore_tier)
        days = self._number({"restore_days": days or self.restore_days}, "restore_days")
        info = self.head(key)
        if info.storage_class not in OSS_ARCHIVE_CLASSES:
            return  # readable as it is
        if info.storage_class == "DeepColdArchive" and tier == "Bulk":
            raise UserError(f"{self.url}: {key}: DeepColdArchive cannot be restored with tier Bulk; "
                            "use Standard or Expedited")
        # Only (Deep)ColdArchive takes a priority; for Archive OSS ignores or refuses it.
        job = RestoreJobParameters(tier) if info.storage_class != "Archive" else None
        config = RestoreConfiguration(days, job_parameters=job)
        name = self._name(key)

        def ask() -> None:
            try:
                self._bucket.restore_object(name, input=config)
            except oss2.exceptions.RestoreAlreadyInProgress:
                pass  # idempotent: somebody (maybe us) already asked

        self._call(key, ask)

    def wait_restored(self, key: str, *, timeout: float, poll: float = 5.0) -> ObjectInfo:
        """Poll ``head`` until ``key`` is readable; ``TransientError`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.head(key)
            if info.readable:
                return info
            if "ongoing-request" not in info.extra.get("x-oss-restore", ""):
                raise self._needs_restore(key, info)  # nothing is under way: waiting cannot help
            if time.monotonic() + poll > deadline:
                raise TransientError(f"{self.url}: {key}: still being restored after {timeout:g}s",
                                     store=self.url, key=key)
            time.sleep(poll)


class _ObjectStream(io.RawIOBase):
    """The body of a GetObject response as a raw stream; CRC-64 checked at its end."""

    def __init__(self, result: oss2.models.GetObjectResult, url: str, key: str) -> None:
        self._result, self._url, self._key = result, url, key
        self._checked = False
        self._left = b""  # what a read returned beyond the caller's buffer

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            data = self._left or self._result.read(len(buffer))
        except (oss2.exceptions.OssError, requests.RequestException) as exc:
            raise translate(exc, self._url, self._key) from exc
        if not data:
            self._check()
            return 0
        n = min(len(data), len(buffer))
        buffer[:n], self._left = data[:n], data[n:]
        return n

    def _check(self) -> None:
        client, server = self._result.client_crc, self._result.server_crc
        if not self._checked and client is not None and server is not None and client != server:
            raise IntegrityError(f"{self._url}: {self._key}: object is corrupt (CRC-64 mismatch while reading)",
                                 store=self._url, key=self._key)
        self._checked = True

    def close(self) -> None:
        if not self.closed:
            self._result.close()
        super().close()
