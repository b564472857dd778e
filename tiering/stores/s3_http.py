"""A small asyncio HTTP/1.1 client for the S3 requests that carry small objects.

Why not obstore for these: each obstore coroutine hands its request to a tokio
thread and the answer back, and every hand-off wakes a thread and takes the
GIL. Measured on the target machine kind (2 cores shared with a loopback
SeaweedFS; 10,000 GETs of 64 KiB objects, 32 in flight): obstore's
``get_async`` + ``bytes_async`` used 3.7-4.3 CPU-seconds and 110,000 context
switches and took 3.7-4.3 s; the same GETs on the event loop's own thread,
through this client, used 0.85 CPU-seconds and 4,600 context switches and took
2.0 s. For large objects the bytes, not the hand-offs, dominate, so ranged
parallel GETs and multipart uploads stay on obstore.

Scope, kept small on purpose: one request at a time per connection, its whole
response in memory (a body longer than the caller's ``max_body`` is left
unread and its connection dropped), ``Content-Length`` or chunked bodies,
keep-alive connections pooled per event loop, plain TCP or TLS with the
system's trust store, header-signed SigV4 (``sigv4``). No proxies: a store
whose endpoint would go through one does not use this client.

``BlockingRanges`` is the same idea for worker threads: the ranged GETs of a
large download, read from the socket straight into the caller's aligned
buffer (``http.client``, one connection per thread).

Failures of the connection itself (refused, reset, timed out, a response
that is not HTTP) raise ``NetworkError``. A request that fails on a reused
connection before any byte of its response came back (the server closed the
connection while it sat idle) is sent once more on a new connection; any
other retry is the caller's.
"""

from __future__ import annotations

import asyncio
import http.client
import ssl
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

from tiering.core.aio import PerLoop
from tiering.stores.sigv4 import (
    EMPTY_SHA256,
    UNSIGNED_PAYLOAD,
    S3Credentials,
    Signer,
    quote_path,
)

#: Idle connections are closed after this long: before the server's own idle
#: timeout (S3 and most peers allow 20 s or more), so a request rarely meets a
#: connection the server is closing.
IDLE_SECONDS = 4.0
_MAX_HEAD = 64 * 1024
_KEEP_IDLE = 256
_USER_AGENT = "tiering"
#: A request body up to this size goes out in the same send as its head.
_JOIN_BELOW = 256 * 1024


class NetworkError(Exception):
    """The request got no usable HTTP response: connection refused or lost, a timeout, or garbage."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]  # names in lower case; repeated headers joined with ", "
    body: bytes | bytearray | None  # None: longer than the request's max_body, left unread

    def error_code(self) -> str:
        """The ``<Code>`` of an S3 error body ("" when there is none)."""
        body = bytes(self.body or b"")
        start = body.find(b"<Code>")
        end = body.find(b"</Code>", start)
        return body[start + 6 : end].decode("utf-8", "replace") if start >= 0 and end > start else ""


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: ``exchange`` sends a request and resolves to its ``Response``."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reusable = False
        self.idle_since = 0.0
        self.answered = False  # some byte of the current response has arrived
        self._buf = bytearray()
        self._waiter: asyncio.Future | None = None
        self._max_body = 0
        self._no_body = False
        self._reset_response()

    def _reset_response(self) -> None:
        self._status = 0
        self._headers: dict[str, str] | None = None
        self._keep_alive = False
        self._length = 0
        self._chunk: int | None = None  # chunked: bytes left in this chunk; None: a size line is next; -1: trailers
        self._chunks: bytearray | None = None

    # -- asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.reusable = False
        self._fail(NetworkError(f"connection lost ({exc})" if exc else "the server closed the connection"))

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        self.answered = True
        self._buf += data
        try:
            self._advance()
        except NetworkError as exc:
            self.close()
            self._fail(exc)

    # -- one exchange ------------------------------------------------------------

    def exchange(self, head: bytes, body: bytes | memoryview | None, max_body: int, no_body: bool) -> asyncio.Future:
        self._waiter = asyncio.get_running_loop().create_future()
        self._max_body, self._no_body = max_body, no_body
        self.answered = False
        self.reusable = False
        self._reset_response()
        if body and len(body) <= _JOIN_BELOW:
            self.transport.write(head + body)  # one send, not two: a copy costs less than a system call here
        else:
            self.transport.write(head)
            if body:
                self.transport.write(body)
        return self._waiter

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)

    def _finish(self, body: bytes | bytearray | None) -> None:
        self.reusable = body is not None and self._keep_alive and not self._buf
        if not self.reusable:
            self.close()
        if not self._waiter.done():
            self._waiter.set_result(Response(self._status, self._headers, body))

    # -- parsing -----------------------------------------------------------------

    def _advance(self) -> None:
        if self._headers is None and not self._read_head():
            return
        if self._chunks is not None:
            self._read_chunks()
        elif len(self._buf) >= self._length:
            if len(self._buf) == self._length:
                body, self._buf = self._buf, bytearray()  # the usual case: hand the buffer over, no copy
            else:
                body = self._buf[: self._length]
                del self._buf[: self._length]
            self._finish(body)

    def _read_head(self) -> bool:
        """Parse the status line and headers once they are all here; True when they were."""
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > _MAX_HEAD:
                raise NetworkError("response headers too long")
            return False
        lines = bytes(self._buf[:end]).decode("latin-1").split("\r\n")
        del self._buf[: end + 4]
        version, _, rest = lines[0].partition(" ")
        try:
            status = int(rest[:3])
        except ValueError as exc:
            raise NetworkError(f"not an HTTP response: {lines[0][:80]!r}") from exc
        if not version.startswith("HTTP/1."):
            raise NetworkError(f"not an HTTP/1.x response: {lines[0][:80]!r}")
        if 100 <= status < 200:  # informational; the real response follows
            return self._read_head()
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise NetworkError(f"malformed response header {line[:80]!r}")
            name, value = name.strip().lower(), value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        self._status, self._headers = status, headers
        self._keep_alive = version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
        if self._no_body or status in (204, 304):
            self._length = 0
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._chunks = bytearray()
        elif "content-length" in headers:
            try:
                self._length = int(headers["content-length"])
            except ValueError as exc:
                raise NetworkError(f"bad Content-Length {headers['content-length']!r}") from exc
            if self._length > self._max_body:
                self._finish(None)
        else:
            raise NetworkError("response has neither a length nor chunked encoding")
        return not self._waiter.done()

    def _read_chunks(self) -> None:
        buf = self._buf
        while not self._waiter.done():
            if self._chunk is None or self._chunk == -1:  # a size line, or a trailer line
                eol = buf.find(b"\r\n")
                if eol < 0:
                    if len(buf) > _MAX_HEAD:
                        raise NetworkError("chunk header too long")
                    return
                line = bytes(buf[:eol])
                del buf[: eol + 2]
                if self._chunk == -1:
                    if not line:  # the blank line after the trailers: done
                        self._finish(self._chunks)
                    continue
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError as exc:
                    raise NetworkError(f"bad chunk size {line[:40]!r}") from exc
                if len(self._chunks) + size > self._max_body:
                    self._finish(None)
                    return
                self._chunk = size if size else -1
            else:
                if len(buf) < self._chunk + 2:
                    return
                if buf[self._chunk : self._chunk + 2] != b"\r\n":
                    raise NetworkError("chunk not followed by CRLF")
                self._chunks += buf[: self._chunk]
                del buf[: self._chunk + 2]
                self._chunk = None


class _Pool:
    """Keep-alive connections to one host, for one event loop."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None, connect_timeout: float,
                 request_timeout: float) -> None:
        self._host, self._port, self._tls = host, port, tls
        self._connect_timeout, self._request_timeout = connect_timeout, request_timeout
        self._idle: list[_Connection] = []
        self._loop = asyncio.get_running_loop()
        # Closes idle connections as they age, and all of them when the loop shuts down
        # (asyncio.run cancels every task before it closes the loop).
        self._reaper = self._loop.create_task(self._reap())

    async def request(self, head: bytes, body: bytes | memoryview | None, max_body: int, no_body: bool) -> Response:
        for attempt in (1, 2):
            conn, reused = await self._acquire()
            try:
                async with asyncio.timeout(self._request_timeout):
                    response = await conn.exchange(head, body, max_body, no_body)
            except NetworkError:
                conn.close()
                if reused and not conn.answered and attempt == 1:
                    continue  # the server had closed this idle connection: once more on a new one
                raise
            except TimeoutError as exc:
                conn.close()
                raise NetworkError(f"no response within {self._request_timeout:g} s (timed out)") from exc
            except BaseException:
                conn.close()  # cancelled mid-exchange: the connection is out of step
                raise
            if conn.reusable and len(self._idle) < _KEEP_IDLE:
                conn.idle_since = self._loop.time()
                self._idle.append(conn)
            else:
                conn.close()
            return response
        raise AssertionError("unreachable")

    async def _acquire(self) -> tuple[_Connection, bool]:
        while self._idle:
            conn = self._idle.pop()
            if conn.reusable and not conn.transport.is_closing():
                return conn, True
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await self._loop.create_connection(
                    _Connection, self._host, self._port, ssl=self._tls,
                    server_hostname=self._host if self._tls else None)
        except TimeoutError as exc:
            raise NetworkError(f"cannot connect to {self._host}:{self._port} (timed out)") from exc
        except OSError as exc:
            raise NetworkError(f"cannot connect to {self._host}:{self._port} ({exc.strerror or exc})") from exc
        return conn, False

    async def _reap(self) -> None:
        try:
            while True:
                await asyncio.sleep(IDLE_SECONDS / 2)
                now = self._loop.time()
                for conn in [c for c in self._idle if now - c.idle_since > IDLE_SECONDS]:
                    self._idle.remove(conn)
                    conn.close()
        finally:
            for conn in self._idle:
                conn.close()
            self._idle.clear()


class S3Endpoint:
    """Where and as whom: host, port, TLS context, request paths and signing, for one bucket.

    Built once per store and shared by ``S3Http`` and ``BlockingRanges`` (one
    TLS context, one signer and its cached day key).
    """

    def __init__(self, endpoint: str, bucket: str, creds: S3Credentials, *, virtual_hosted: bool) -> None:
        url = urlsplit(endpoint)
        self.tls = ssl.create_default_context() if url.scheme == "https" else None
        self.host = f"{bucket}.{url.hostname or ''}" if virtual_hosted else (url.hostname or "")
        self.port = url.port or (443 if self.tls else 80)
        self._host_header = self.host if self.port == (443 if self.tls else 80) else f"{self.host}:{self.port}"
        self._bucket_in_path = None if virtual_hosted else bucket
        self._signer = Signer(creds)

    @staticmethod
    def usable(endpoint: str, allow_http: bool) -> bool:
        """Whether our clients can reach ``endpoint`` as obstore would: no proxy in the way, http only if allowed."""
        url = urlsplit(endpoint)
        if url.scheme not in ("http", "https") or (url.scheme == "http" and not allow_http):
            return False
        proxies = urllib.request.getproxies()
        return not (proxies.get(url.scheme) or proxies.get("all")) or urllib.request.proxy_bypass(url.hostname or "")

    def signed(self, method: str, name: str, headers: dict[str, str], *, body: bool = False) -> tuple[str, dict[str, str]]:
        """The request path of object ``name`` and every header to send (``headers`` signed with the rest).

        A body is sent as ``UNSIGNED-PAYLOAD``: callers protect it with ``content-md5``.
        """
        path = quote_path(self._bucket_in_path, name)
        signed = self._signer.sign(method, self._host_header, path, "", headers,
                                   payload_sha256=UNSIGNED_PAYLOAD if body else EMPTY_SHA256)
        return path, {"user-agent": _USER_AGENT, **signed}


class S3Http:
    """Signed S3 object requests over pooled connections, from any event loop."""

    def __init__(self, endpoint: S3Endpoint, *, connect_timeout: float, request_timeout: float) -> None:
        self._endpoint = endpoint
        self._pools: PerLoop[_Pool] = PerLoop(
            lambda: _Pool(endpoint.host, endpoint.port, endpoint.tls, connect_timeout, request_timeout))

    async def request(self, method: str, name: str, *, headers: dict[str, str] | None = None,
                      body: bytes | memoryview | None = None, max_body: int = 1 << 20) -> Response:
        """Send one request for object ``name``; the response, whatever its status.

        ``headers`` (lower-case names) are signed with the rest; a body is
        sent unsigned (``S3Endpoint.signed``).
        """
        extra = dict(headers or {})
        if body is not None:
            extra["content-length"] = str(len(body))
        path, signed = self._endpoint.signed(method, name, extra, body=body is not None)
        lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in signed.items()), "", ""]
        head = "\r\n".join(lines).encode("ascii")
        return await self._pools.get().request(head, body, max_body, method == "HEAD")


class BlockingRanges:
    """Ranged GETs read from the socket straight into the caller's buffer, on the calling thread.

    For the parts of a large download, which run on worker threads. obstore
    hands each part back in a freshly allocated buffer: a page fault per 4 KiB
    touched (330,000-370,000 for 4 GiB) and then a copy into the aligned buffer
    that ``O_DIRECT`` writes from. Here the socket fills that buffer itself.
    The caller keeps one ``connection()`` per thread for as long as it likes
    and closes it; a request that meets a connection the server closed while
    idle is sent once more.
    """

    def __init__(self, endpoint: S3Endpoint, *, request_timeout: float) -> None:
        self._endpoint = endpoint
        self._where = f"{endpoint.host}:{endpoint.port}"
        self._timeout = request_timeout

    def connection(self) -> http.client.HTTPConnection:
        """A connection for ``read_into`` (it connects on first use); the caller closes it."""
        e = self._endpoint
        if e.tls:
            return http.client.HTTPSConnection(e.host, e.port, timeout=self._timeout, context=e.tls)
        return http.client.HTTPConnection(e.host, e.port, timeout=self._timeout)

    def read_into(self, conn: http.client.HTTPConnection, name: str, start: int, view: memoryview) -> Response:
        """Fill ``view`` with the object's bytes from ``start``; the response (``body`` None when it went to ``view``).

        Any status but 206 comes back with its (small) body and nothing
        written to ``view`` that counts.
        """
        end = start + len(view) - 1
        path, headers = self._endpoint.signed("GET", name, {"range": f"bytes={start}-{end}"})
        for attempt in (1, 2):
            reused = conn.sock is not None
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                break
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if reused and attempt == 1 and isinstance(exc, (ConnectionError, http.client.RemoteDisconnected)):
                    continue  # the server had closed this idle connection: once more on a new one
                raise NetworkError(f"cannot reach {self._where} ({exc})") from exc
        found = {header.lower(): value for header, value in response.getheaders()}
        try:
            if response.status != 206:
                body = response.read(_MAX_HEAD)
                if not response.isclosed():
                    conn.close()
                return Response(response.status, found, body)
            if not found.get("content-range", "").startswith(f"bytes {start}-{end}/"):
                raise NetworkError(f"asked for bytes {start}-{end}, got {found.get('content-range') or 'no range'}")
            got = 0
            while got < len(view):
                n = response.readinto(view[got:])
                if not n:
                    raise NetworkError(f"the response ended after {got} of {len(view)} bytes")
                got += n
            if not response.isclosed():
                raise NetworkError("the response is longer than the range asked for")
        except NetworkError:
            conn.close()
            raise
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise NetworkError(f"{self._where}: {exc}") from exc
        return Response(206, found, None)

