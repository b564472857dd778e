"""A small Alibaba OSS-protocol server for tests, driven by the real ``oss2`` client.

Written from the OSS API reference: path-style requests (what oss2 sends to an
IP endpoint), V4 and V1 signatures (``oss_auth``), XML without namespaces
(``oss_xml``), errors with Code/Message/RequestId/HostId and an
``x-oss-request-id`` header (for HEAD, the error body rides base64-encoded in
``x-oss-err``, as OSS does), CRC-64/ECMA-182 in ``x-oss-hash-crc64ecma``,
storage classes and the RestoreObject life cycle of archived objects.

Object bytes live in files under ``root``; names and metadata live in memory
(``oss_model``).
Test hooks: ``corrupt_crc`` (report wrong CRCs), ``fail()`` (inject errors or
dropped connections into named operations), ``counts`` (requests served per
operation) and ``restores`` (the RestoreObject requests received).

Modes that copy how other OSS-protocol servers misbehave (attributes, or for
one block ``with server.mode(drop_user_meta=True): ...``):

- ``drop_user_meta``: objects written meanwhile keep their bytes but lose every
  ``x-oss-meta-*`` header, as Alibaba's own ``oss-emulator`` does. A store's
  ``head()`` then has no ``FileMeta`` (``ObjectInfo.meta`` None, ``checksum``
  ""): what a mover must see before it releases a file.
- ``omit_is_truncated``: object listings carry no ``IsTruncated`` element (the
  same emulator), which ``oss2`` cannot parse.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, unquote

from . import oss_xml as X
from .oss_auth import AuthFailure, verify
from .oss_model import (
    ARCHIVED,
    CHUNK,
    DAY,
    MIN_PART,
    STORAGE_CLASSES,
    TIERS,
    Blob,
    Bucket,
    Obj,
    OssError,
    Upload,
    crc64,
    no_such_key,
    not_restored,
)

__all__ = ["OssError", "OssServer", "crc64"]

@dataclass
class _Fault:
    operation: str
    status: int  # 0: drop the connection without answering
    code: str
    times: int


class OssServer:
    """An OSS endpoint on 127.0.0.1 for tests: ``start()``, use ``endpoint``, ``stop()``."""

    def __init__(
        self, root: Path, access_key_id: str, access_key_secret: str, restore_delay: float = 1.0,
        region: str = "cn-hangzhou",
    ) -> None:
        self.root = Path(root)
        self.region = region
        self.restore_delay = restore_delay
        self.credentials = {access_key_id: access_key_secret}
        self.buckets: dict[str, Bucket] = {}
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.restores: list[tuple[str, int | None, str | None]] = []
        self.corrupt_crc = False
        self.drop_user_meta = False
        self.omit_is_truncated = False
        self.endpoint = ""
        self._faults: list[_Fault] = []
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        self._httpd = _HttpServer(("127.0.0.1", 0), self)
        self.endpoint = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="oss-test-server"
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, end open connections and join every thread."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.close_connections()
        self._httpd.server_close()  # joins the handler threads
        self._thread.join()
        self._httpd = self._thread = None

    def create_bucket(self, name: str) -> None:
        with self.lock:
            self.buckets.setdefault(name, Bucket())

    @contextlib.contextmanager
    def mode(self, *, drop_user_meta: bool = False, omit_is_truncated: bool = False) -> Iterator[OssServer]:
        """Misbehave like another server for one block (see the module's docstring), then behave again."""
        before = (self.drop_user_meta, self.omit_is_truncated)
        self.drop_user_meta, self.omit_is_truncated = drop_user_meta, omit_is_truncated
        try:
            yield self
        finally:
            self.drop_user_meta, self.omit_is_truncated = before

    def fail(self, operation: str, status: int = 503, code: str = "ServiceUnavailable", times: int = 1) -> None:
        """Answer the next ``times`` requests for ``operation`` with an error (status 0: hang up)."""
        with self.lock:
            self._faults.append(_Fault(operation, status, code, times))

    def take_fault(self, operation: str) -> _Fault | None:
        with self.lock:
            for fault in self._faults:
                if fault.operation == operation and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    def finish_restores(self) -> int:
        """Make every restore under way complete now (a test's "some hours later"); how many there were."""
        now, finished = time.time(), 0
        with self.lock:
            for bucket in self.buckets.values():
                for obj in bucket.objects.values():
                    if obj.restore_state(now) == "ongoing":
                        obj.restore_until = now + (obj.restore_until - obj.restore_ready)
                        obj.restore_ready = now
                        finished += 1
        return finished

    def crc_text(self, crc: int) -> str:
        return str(crc ^ 1 if self.corrupt_crc else crc)

    def new_blob_path(self) -> Path:
        return self.root / "blobs" / uuid.uuid4().hex


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins every handler thread
    block_on_close = True

    def __init__(self, address: tuple[str, int], oss: OssServer) -> None:
        self.oss = oss
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request, client_address) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake handlers waiting on idle keep-alive connections so they can end."""
        with self._connections_lock:
            connections = list(self._connections)
        for sock in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


# (method, query parameter that marks the operation) -> operation; first match wins.
_OBJECT_OPS = [
    ("PUT", "partNumber", "UploadPart"), ("PUT", None, "PutObject"),
    ("GET", "uploadId", "ListParts"), ("GET", None, "GetObject"),
    ("HEAD", "objectMeta", "GetObjectMeta"), ("HEAD", None, "HeadObject"),
    ("DELETE", "uploadId", "AbortMultipartUpload"), ("DELETE", None, "DeleteObject"),
    ("POST", "uploads", "InitiateMultipartUpload"), ("POST", "uploadId", "CompleteMultipartUpload"),
    ("POST", "restore", "RestoreObject"),
]
_BUCKET_OPS = [
    ("GET", "uploads", "ListMultipartUploads"), ("GET", "list-type", "ListObjectsV2"), ("GET", None, "ListObjects"),
    ("POST", "delete", "DeleteMultipleObjects"),
]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as oss2's connection pool expects
    server: _HttpServer

    def version_string(self) -> str:
        return "AliyunOSS"

    def log_message(self, format: str, *args) -> None:
        pass  # tests stay quiet

    def do_GET(self) -> None:
        self.request_id = uuid.uuid4().hex[:24].upper()
        self.hdrs = {k.lower(): v for k, v in self.headers.items()}
        self.chunked = "chunked" in self.hdrs.get("transfer-encoding", "").lower()
        self.left = 0 if self.chunked else int(self.hdrs.get("content-length") or 0)
        self.chunk_left = 0
        self.started = False
        try:
            self._route()
        except OssError as exc:
            self._fail(exc)
        except X.BadXml as exc:
            self._fail(OssError(400, "MalformedXML", str(exc)))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 -- a server bug must still answer, and visibly
            self._fail(OssError(500, "InternalError", f"{type(exc).__name__}: {exc}"))

    do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

    @property
    def oss(self) -> OssServer:
        return self.server.oss

    # -- plumbing ----------------------------------------------------------------

    def _target(self) -> tuple[str, str, list[tuple[str, str]]]:
        path, _, query = self.path.partition("?")
        bucket, _, raw_key = path[1:].partition("/")
        try:
            # Percent-decoding happens exactly once, and only here: "\\" stays a backslash.
            key = unquote(raw_key, errors="strict")
            pairs = parse_qsl(query, keep_blank_values=True, errors="strict")
        except UnicodeDecodeError:
            raise OssError(400, "InvalidObjectName", "The object name is not valid UTF-8.") from None
        if len(key.encode()) > 1023 or key[:1] in ("/", "\\"):
            raise OssError(400, "InvalidObjectName", "The specified object is not valid.")
        return bucket, key, pairs

    def _operation(self, key: str, query: dict[str, str]) -> str:
        for method, marker, op in _OBJECT_OPS if key else _BUCKET_OPS:
            if method == self.command and (marker is None or marker in query):
                if op == "PutObject" and "x-oss-copy-source" in self.hdrs:
                    return "CopyObject"
                return op
        raise OssError(405, "MethodNotAllowed", "The specified method is not allowed against this resource.")

    def _route(self) -> None:
        bucket_name, key, pairs = self._target()
        query = dict(pairs)
        try:
            verify(self.command, bucket_name, key, pairs, self.hdrs, self.oss.credentials.get, self.oss.region)
        except AuthFailure as exc:
            raise OssError(exc.status, exc.code, exc.message) from None
        op = self._operation(key, query)
        with self.oss.lock:
            self.oss.counts[op] += 1
        if (fault := self.oss.take_fault(op)) is not None:
            if fault.status == 0:
                self.close_connection = True
                return
            raise OssError(fault.status, fault.code, f"Injected {fault.code} for {op}.")
        bucket = self.oss.buckets.get(bucket_name)
        if bucket is None:
            raise OssError(404, "NoSuchBucket", "The specified bucket does not exist.", BucketName=bucket_name)
        self.bucket_name = bucket_name
        getattr(self, f"_{op}")(bucket, key, query)

    def _read(self, limit: int) -> bytes:
        """The next piece of the request body (Content-Length or chunked); b"" at its end."""
        if self.chunked and not self.chunk_left:
            size = int(self.rfile.readline().split(b";")[0] or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                self.chunked = False
                return b""
            self.chunk_left = size
        want = min(limit, self.chunk_left if self.chunked else self.left)
        data = self.rfile.read(want) if want else b""
        if want and not data:
            raise ConnectionResetError("client went away mid-body")
        if self.chunked:
            self.chunk_left -= len(data)
            if not self.chunk_left:
                self.rfile.readline()  # the CRLF that ends a chunk
        else:
            self.left -= len(data)
        return data

    def _drain(self) -> None:
        while self._read(CHUNK):
            pass

    def _body(self, limit: int = CHUNK) -> bytes:
        data = b""
        while piece := self._read(CHUNK):
            data += piece
            if len(data) > limit:
                raise OssError(400, "InvalidArgument", "The request body is too large.")
        return data

    def _reply(self, status: int, headers: dict | None = None, body: bytes = b"", length: int | None = None) -> None:
        self._drain()  # keep the connection in step before answering
        self.send_response(status)
        self.send_header("x-oss-request-id", self.request_id)
        if body:
            self.send_header("Content-Type", "application/xml")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.started = True
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _fail(self, exc: OssError) -> None:
        if self.started:  # mid-body: all that is left is to hang up
            self.close_connection = True
            return
        host = self.hdrs.get("host", "127.0.0.1")
        body = X.error(exc.code, exc.message, self.request_id, host, **exc.extra)
        headers = {"x-oss-err": base64.b64encode(body).decode()} if self.command == "HEAD" else {}
        self._reply(exc.status, headers, body)

    def _receive(self) -> Blob:
        """The request body, streamed to a new blob file."""
        path, md5, crc, size = self.oss.new_blob_path(), hashlib.md5(), 0, 0
        try:
            with open(path, "wb") as f:
                while chunk := self._read(CHUNK):
                    size += len(chunk)
                    md5.update(chunk)
                    crc = crc64(chunk, crc)
                    f.write(chunk)
            given = self.hdrs.get("content-md5")
            if given and given != base64.b64encode(md5.digest()).decode():
                raise OssError(400, "InvalidDigest", "The Content-MD5 you specified did not match what we received.")
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return Blob(path, size, md5.digest(), crc)

    def _storage_class(self, default: str = "Standard") -> str:
        value = self.hdrs.get("x-oss-storage-class", default)
        if value not in STORAGE_CLASSES:
            raise OssError(400, "InvalidArgument", f"Invalid storage class {value!r}.")
        return value

    def _user_meta(self) -> dict[str, str]:
        if self.oss.drop_user_meta:
            return {}
        return {k: v for k, v in self.hdrs.items() if k.startswith("x-oss-meta-")}

    def _content_type(self) -> str:
        return self.hdrs.get("content-type", "application/octet-stream")

    def _object(self, bucket: Bucket, key: str) -> Obj:
        obj = bucket.objects.get(key)
        if obj is None:
            raise no_such_key(key)
        return obj

    def _publish(self, bucket: Bucket, key: str, obj: Obj) -> None:
        with self.oss.lock:
            old = bucket.objects.get(key)
            bucket.objects[key] = obj
        if old is not None and old.blob.path != obj.blob.path:
            old.blob.path.unlink(missing_ok=True)  # open readers keep their file (POSIX)

    def _object_headers(self, obj: Obj) -> dict[str, str]:
        headers = {
            "Content-Type": obj.content_type, "ETag": f'"{obj.etag}"', "Accept-Ranges": "bytes",
            "Last-Modified": formatdate(obj.mtime, usegmt=True), "x-oss-object-type": obj.kind,
            "x-oss-storage-class": obj.storage_class, "x-oss-hash-crc64ecma": self.oss.crc_text(obj.blob.crc),
            **obj.meta,
        }
        state = obj.restore_state(time.time())
        if state == "ongoing":
            headers["x-oss-restore"] = 'ongoing-request="true"'
        elif state == "restored":
            expiry = formatdate(obj.restore_until, usegmt=True)
            headers["x-oss-restore"] = f'ongoing-request="false", expiry-date="{expiry}"'
        return headers

    # -- objects -----------------------------------------------------------------

    def _PutObject(self, bucket: Bucket, key: str, query: dict) -> None:
        storage_class = self._storage_class()
        blob = self._receive()
        obj = Obj(blob, blob.etag, "Normal", storage_class, self._user_meta(), self._content_type())
        self._publish(bucket, key, obj)
        self._reply(200, {"ETag": f'"{blob.etag}"', "Content-MD5": base64.b64encode(blob.md5).decode(),
                          "x-oss-hash-crc64ecma": self.oss.crc_text(blob.crc)})

    def _range(self, size: int) -> tuple[int, int] | None:
        """The byte range to send; None for the whole object (OSS ignores ranges it cannot serve)."""
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", self.hdrs.get("range", "").strip())
        if not m or not (m[1] or m[2]):
            return None
        standard = self.hdrs.get("x-oss-range-behavior", "").lower() == "standard"
        if m[1]:
            start, end = int(m[1]), int(m[2]) if m[2] else size - 1
        else:
            start, end = size - int(m[2]), size - 1
            if start < 0 and standard:
                start = 0
        if start >= size and standard:
            raise OssError(416, "InvalidRange", "The requested range cannot be satisfied.")
        if end >= size and standard:
            end = size - 1
        return (start, end) if 0 <= start <= end < size else None

    def _GetObject(self, bucket: Bucket, key: str, query: dict) -> None:
        with self.oss.lock:  # open under the lock: a concurrent overwrite unlinks the old file
            obj = self._object(bucket, key)
            if not obj.readable(time.time()):
                raise not_restored()
            f = open(obj.blob.path, "rb")  # noqa: SIM115 -- closed by the "with f" below
        with f:
            if (match := self.hdrs.get("if-match")) and match.strip('"').upper() != obj.etag:
                raise OssError(412, "PreconditionFailed", "At least one of the pre-conditions did not hold.")
            headers = self._object_headers(obj)
            span = self._range(obj.size)
            if span is None:
                self._reply(200, headers, length=obj.size)
                self._send_file(f, 0, obj.size)
                return
            headers["Content-Range"] = f"bytes {span[0]}-{span[1]}/{obj.size}"
            self._reply(206, headers, length=span[1] - span[0] + 1)
            self._send_file(f, span[0], span[1] - span[0] + 1)

    def _send_file(self, f, start: int, length: int) -> None:
        f.seek(start)
        while length:
            chunk = f.read(min(CHUNK, length))
            if not chunk:
                raise RuntimeError("blob shorter than recorded")
            self.wfile.write(chunk)
            length -= len(chunk)

    def _HeadObject(self, bucket: Bucket, key: str, query: dict) -> None:
        obj = self._object(bucket, key)
        self._reply(200, self._object_headers(obj), length=obj.size)

    def _GetObjectMeta(self, bucket: Bucket, key: str, query: dict) -> None:
        obj = self._object(bucket, key)
        headers = {"ETag": f'"{obj.etag}"', "Last-Modified": formatdate(obj.mtime, usegmt=True)}
        self._reply(200, headers, length=obj.size)

    def _DeleteObject(self, bucket: Bucket, key: str, query: dict) -> None:
        with self.oss.lock:
            obj = bucket.objects.pop(key, None)
        if obj is not None:
            obj.blob.path.unlink(missing_ok=True)
        self._reply(204)

    def _CopyObject(self, bucket: Bucket, key: str, query: dict) -> None:
        src_bucket, _, src_key = unquote(self.hdrs["x-oss-copy-source"]).lstrip("/").partition("/")
        directive = self.hdrs.get("x-oss-metadata-directive", "COPY").upper()
        if directive not in ("COPY", "REPLACE"):
            raise OssError(400, "InvalidArgument", "x-oss-metadata-directive must be COPY or REPLACE.")
        storage_class = self._storage_class()
        with self.oss.lock:
            source = self.oss.buckets.get(src_bucket)
            if source is None:
                raise OssError(404, "NoSuchBucket", "The specified bucket does not exist.", BucketName=src_bucket)
            src = self._object(source, src_key)
            if not src.readable(time.time()):
                raise not_restored()  # an archived source must be restored before it can be copied
            path = self.oss.new_blob_path()
            os.link(src.blob.path, path)  # blobs never change, so sharing the bytes is safe
        meta, ctype = (src.meta, src.content_type) if directive == "COPY" else (self._user_meta(), self._content_type())
        blob = replace(src.blob, path=path, mtime=time.time())
        self._publish(bucket, key, Obj(blob, src.etag, src.kind, storage_class, dict(meta), ctype))
        body = X.document("CopyObjectResult", [("LastModified", X.iso8601(blob.mtime)), ("ETag", f'"{src.etag}"')])
        self._reply(200, {"ETag": f'"{src.etag}"', "x-oss-hash-crc64ecma": self.oss.crc_text(blob.crc)}, body)

    def _RestoreObject(self, bucket: Bucket, key: str, query: dict) -> None:
        obj = self._object(bucket, key)
        if obj.storage_class not in ARCHIVED:
            raise OssError(400, "OperationNotSupported", "The operation is not supported for this resource.")
        body = self._body()
        days, tier = X.parse_restore(body) if body.strip() else (None, None)
        self.oss.restores.append((key, days, tier))
        days = 1 if days is None else days
        if not 1 <= days <= (7 if obj.storage_class == "Archive" else 365):
            raise OssError(400, "InvalidArgument", f"Days {days} is out of range for {obj.storage_class}.")
        if tier is not None and (tier not in TIERS or (obj.storage_class == "DeepColdArchive" and tier == "Bulk")):
            raise OssError(400, "InvalidArgument", f"The restore tier {tier!r} is not valid for {obj.storage_class}.")
        now = time.time()
        with self.oss.lock:
            state = obj.restore_state(now)
            if state == "ongoing":
                raise OssError(409, "RestoreAlreadyInProgress", "The restore operation is in progress.")
            if state == "restored":  # a repeat extends the restored copy's life
                obj.restore_until = now + days * DAY
            else:
                obj.restore_ready = now + self.oss.restore_delay
                obj.restore_until = obj.restore_ready + days * DAY
        self._reply(200 if state == "restored" else 202)

    # -- multipart ----------------------------------------------------------------

    def _upload(self, bucket: Bucket, key: str, query: dict) -> Upload:
        upload = bucket.uploads.get(query.get("uploadId", ""))
        if upload is None or upload.key != key:
            raise OssError(404, "NoSuchUpload", "The specified upload does not exist. The upload ID may be invalid, "
                           "or the upload may have been aborted or completed.", UploadId=query.get("uploadId", ""))
        return upload

    def _InitiateMultipartUpload(self, bucket: Bucket, key: str, query: dict) -> None:
        upload_id = uuid.uuid4().hex.upper()
        upload = Upload(key, self._storage_class(), self._user_meta(), self._content_type())
        with self.oss.lock:
            bucket.uploads[upload_id] = upload
        content = [("Bucket", self.bucket_name), ("Key", key), ("UploadId", upload_id)]
        self._reply(200, body=X.document("InitiateMultipartUploadResult", content))

    def _UploadPart(self, bucket: Bucket, key: str, query: dict) -> None:
        upload = self._upload(bucket, key, query)
        number = query["partNumber"]
        if not number.isdigit() or not 1 <= int(number) <= 10000:
            raise OssError(400, "InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive.")
        blob = self._receive()
        with self.oss.lock:
            old = upload.parts.get(int(number))
            upload.parts[int(number)] = blob
        if old is not None:
            old.path.unlink(missing_ok=True)
        self._reply(200, {"ETag": f'"{blob.etag}"', "x-oss-hash-crc64ecma": self.oss.crc_text(blob.crc)})

    def _chosen_parts(self, upload: Upload, listed: list[tuple[int, str]]) -> list[Blob]:
        numbers = [n for n, _ in listed]
        if not listed or numbers != sorted(set(numbers)):
            raise OssError(400, "InvalidPartOrder", "The list of parts was not in ascending order.")
        chosen = []
        for number, etag in listed:
            part = upload.parts.get(number)
            if part is None or part.etag != etag:
                raise OssError(400, "InvalidPart", "One or more of the specified parts could not be found or the "
                               "specified entity tag might not have matched the part's entity tag.",
                               PartNumber=str(number))
            chosen.append(part)
        if any(p.size < MIN_PART for p in chosen[:-1]):
            raise OssError(400, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size.")
        return chosen

    def _CompleteMultipartUpload(self, bucket: Bucket, key: str, query: dict) -> None:
        upload = self._upload(bucket, key, query)
        parts = self._chosen_parts(upload, X.parse_complete(self._body()))
        path, crc, size = self.oss.new_blob_path(), 0, 0
        with open(path, "wb") as out:
            for part in parts:
                with open(part.path, "rb") as f:
                    while chunk := f.read(CHUNK):
                        crc, size = crc64(chunk, crc), size + len(chunk)
                        out.write(chunk)
        etag = hashlib.md5(b"".join(p.md5 for p in parts)).hexdigest().upper() + f"-{len(parts)}"
        with self.oss.lock:
            bucket.uploads.pop(query["uploadId"], None)
        for part in upload.parts.values():
            part.path.unlink(missing_ok=True)
        blob = Blob(path, size, b"", crc)
        self._publish(bucket, key, Obj(blob, etag, "Multipart", upload.storage_class, upload.meta, upload.content_type))
        body = X.document("CompleteMultipartUploadResult", [
            ("Location", f"{self.oss.endpoint}/{self.bucket_name}/{key}"), ("Bucket", self.bucket_name),
            ("Key", key), ("ETag", f'"{etag}"')])
        self._reply(200, {"ETag": f'"{etag}"', "x-oss-hash-crc64ecma": self.oss.crc_text(crc)}, body)

    def _AbortMultipartUpload(self, bucket: Bucket, key: str, query: dict) -> None:
        upload = self._upload(bucket, key, query)
        with self.oss.lock:
            bucket.uploads.pop(query["uploadId"], None)
        for part in upload.parts.values():
            part.path.unlink(missing_ok=True)
        self._reply(204)

    def _ListParts(self, bucket: Bucket, key: str, query: dict) -> None:
        upload = self._upload(bucket, key, query)
        marker = int(query.get("part-number-marker") or 0)
        max_parts = _bounded_int(query.get("max-parts"), 1000, "max-parts")
        parts = sorted((n, p) for n, p in upload.parts.items() if n > marker)
        body = X.list_parts(self.bucket_name, key, query["uploadId"], marker, parts[:max_parts], max_parts,
                            len(parts) > max_parts)
        self._reply(200, body=body)

    def _ListMultipartUploads(self, bucket: Bucket, key: str, query: dict) -> None:
        prefix, enc = query.get("prefix", ""), X.encoder(query.get("encoding-type") == "url")
        key_marker, id_marker = query.get("key-marker", ""), query.get("upload-id-marker", "")
        limit = _bounded_int(query.get("max-uploads"), 1000, "max-uploads")
        with self.oss.lock:
            found = sorted((u.key, uid, u.initiated) for uid, u in bucket.uploads.items() if u.key.startswith(prefix))
        found = [u for u in found if u[0] > key_marker or (u[0] == key_marker and id_marker and u[1] > id_marker)]
        page, truncated = found[:limit], len(found) > limit
        content = [("Bucket", self.bucket_name), ("KeyMarker", enc(key_marker)), ("UploadIdMarker", id_marker),
                   ("NextKeyMarker", enc(page[-1][0]) if truncated else ""),
                   ("NextUploadIdMarker", page[-1][1] if truncated else ""), ("Delimiter", ""),
                   ("Prefix", enc(prefix)), ("MaxUploads", limit), ("IsTruncated", str(truncated).lower())]
        if query.get("encoding-type") == "url":
            content.append(("EncodingType", "url"))
        content += [("Upload", [("Key", enc(k)), ("UploadId", uid), ("Initiated", X.iso8601(t))]) for k, uid, t in page]
        self._reply(200, body=X.document("ListMultipartUploadsResult", content))

    # -- listings ------------------------------------------------------------------

    def _listing(self, bucket: Bucket, query: dict, after: str):
        prefix, delimiter = query.get("prefix", ""), query.get("delimiter", "")
        max_keys = _bounded_int(query.get("max-keys"), 100, "max-keys")
        with self.oss.lock:
            candidates = sorted((k, o) for k, o in bucket.objects.items() if k.startswith(prefix) and k > after)
        entries, prefixes = [], []
        for k, obj in candidates:
            cut = k.find(delimiter, len(prefix)) if delimiter else -1
            common = k[: cut + len(delimiter)] if cut >= 0 else None
            if common is not None and (common <= after or (prefixes and prefixes[-1] == common)):
                continue  # rolled up into a common prefix already returned
            if len(entries) + len(prefixes) == max_keys:
                return entries, prefixes, True, max_keys
            if common is None:
                entries.append((k, obj))
            else:
                prefixes.append(common)
        return entries, prefixes, False, max_keys

    def _listing_body(self, root: str, head: list, entries: list, prefixes: list, enc, owner: bool = True) -> bytes:
        if self.oss.omit_is_truncated:
            head = [(name, value) for name, value in head if name != "IsTruncated"]
        content = head + [X.object_entry(k, o, enc, owner) for k, o in entries]
        content += [("CommonPrefixes", [("Prefix", enc(p))]) for p in prefixes]
        return X.document(root, content)

    def _ListObjects(self, bucket: Bucket, key: str, query: dict) -> None:
        url = query.get("encoding-type") == "url"
        enc, marker = X.encoder(url), query.get("marker", "")
        entries, prefixes, truncated, max_keys = self._listing(bucket, query, marker)
        head = [("Name", self.bucket_name), ("Prefix", enc(query.get("prefix", ""))), ("Marker", enc(marker)),
                ("MaxKeys", max_keys), ("Delimiter", enc(query.get("delimiter", ""))),
                *([("EncodingType", "url")] if url else []), ("IsTruncated", str(truncated).lower())]
        if truncated:
            head.append(("NextMarker", enc(max([e[0] for e in entries] + prefixes))))
        self._reply(200, body=self._listing_body("ListBucketResult", head, entries, prefixes, enc))

    def _ListObjectsV2(self, bucket: Bucket, key: str, query: dict) -> None:
        url = query.get("encoding-type") == "url"
        enc, token = X.encoder(url), query.get("continuation-token", "")
        after = _decode_token(token) if token else query.get("start-after", "")
        entries, prefixes, truncated, max_keys = self._listing(bucket, query, after)
        head = [("Name", self.bucket_name), ("Prefix", enc(query.get("prefix", ""))), ("MaxKeys", max_keys),
                ("Delimiter", enc(query.get("delimiter", ""))), *([("EncodingType", "url")] if url else []),
                ("IsTruncated", str(truncated).lower()), ("KeyCount", len(entries) + len(prefixes))]
        if token:
            head.insert(2, ("ContinuationToken", token))
        elif "start-after" in query:
            head.insert(2, ("StartAfter", enc(after)))
        if truncated:
            last = max([e[0] for e in entries] + prefixes)
            head.append(("NextContinuationToken", base64.urlsafe_b64encode(last.encode()).decode()))
        owner = query.get("fetch-owner") == "true"  # V2 lists owners only when asked
        self._reply(200, body=self._listing_body("ListBucketResult", head, entries, prefixes, enc, owner))

    def _DeleteMultipleObjects(self, bucket: Bucket, key: str, query: dict) -> None:
        body = self._body()
        given = self.hdrs.get("content-md5")
        if not given or given != base64.b64encode(hashlib.md5(body).digest()).decode():
            raise OssError(400, "InvalidDigest", "The Content-MD5 you specified was missing or did not match the body.")
        quiet, keys = X.parse_delete(body)
        for k in keys:
            with self.oss.lock:
                obj = bucket.objects.pop(k, None)
            if obj is not None:
                obj.blob.path.unlink(missing_ok=True)
        enc = X.encoder(query.get("encoding-type") == "url")
        content = [("EncodingType", "url")] if query.get("encoding-type") == "url" else []
        content += [] if quiet else [("Deleted", [("Key", enc(k))]) for k in keys]
        self._reply(200, body=X.document("DeleteResult", content))


def _bounded_int(value: str | None, default: int, name: str) -> int:
    if value in (None, ""):
        return default
    if not value.isdigit() or not 1 <= int(value) <= 1000:
        raise OssError(400, "InvalidArgument", f"{name} must be between 1 and 1000.")
    return int(value)


def _decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise OssError(400, "InvalidArgument", "The continuation token provided is incorrect.") from None
