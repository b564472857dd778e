"""The small-object S3 client (``tiering.stores.s3_http``) and its signer.

The HTTP handling is checked against scripted loopback peers (real sockets,
each answering with exact bytes: chunked bodies, a connection closed while
idle, a stall, garbage); the S3 side of it against SeaweedFS, through the
store conformance suite (``via="loop"``) and the cases here.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import ipaddress
import ssl
import threading
import time
import warnings

import pytest
from conftest import S3_BUCKET, S3_KEY, S3_SECRET, closed_port

from tiering.core.errors import NotFoundError
from tiering.stores import open_store
from tiering.stores.base import call_async
from tiering.stores.s3_http import BlockingRanges, NetworkError, S3Endpoint, S3Http
from tiering.stores.sigv4 import S3Credentials, Signer

EXAMPLE = S3Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", None, "us-east-1")


def test_signature_matches_the_aws_documented_example():
    # "GET Object" in the S3 SigV4 header-signing examples: 20130524, examplebucket, bytes=0-9.
    headers = Signer(EXAMPLE).sign("GET", "examplebucket.s3.amazonaws.com", "/test.txt", "", {"range": "bytes=0-9"},
                                   now=dt.datetime(2013, 5, 24, tzinfo=dt.UTC))
    assert headers["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    assert "x-amz-security-token" not in headers


def test_session_token_is_sent_and_signed():
    creds = S3Credentials("AKID", "secret", "the-token", "eu-west-1")
    headers = Signer(creds).sign("HEAD", "h", "/b/k")
    assert headers["x-amz-security-token"] == "the-token"
    assert "x-amz-security-token" in headers["authorization"].split("SignedHeaders=")[1].split(",")[0]
    assert "secret" not in repr(creds)


# -- scripted peers -------------------------------------------------------------

def ok(body: bytes, *extra: str) -> bytes:
    lines = ["HTTP/1.1 200 OK", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Peer:
    """A loopback server answering each request with the next scripted reply.

    A reply is the bytes to send; ``("then-close", bytes)`` sends them and
    closes the connection without saying so; ``"hang-up"`` closes without an
    answer; ``"stall"`` never answers.
    """

    def __init__(self, *replies, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.replies = list(replies)
        self.requests: list[bytes] = []
        self.connections = 0
        self.closed_by_client = 0

    async def __aenter__(self) -> Peer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    def endpoint(self) -> S3Endpoint:
        scheme = "https" if self.tls else "http"
        return S3Endpoint(f"{scheme}://127.0.0.1:{self.port}", "bkt", EXAMPLE, virtual_hosted=False)

    def client(self, **kwargs) -> S3Http:
        return S3Http(self.endpoint(), **({"connect_timeout": 2.0, "request_timeout": 5.0} | kwargs))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    self.closed_by_client += 1
                    return
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                self.requests.append(head + await reader.readexactly(length))
                reply = self.replies.pop(0)
                if reply == "stall":
                    await asyncio.sleep(3600)
                if reply == "hang-up":
                    return
                close = isinstance(reply, tuple)
                writer.write(reply[1] if close else reply)
                await writer.drain()
                if close:
                    return
        finally:
            writer.close()


def run(coro):
    return asyncio.run(coro)


def test_lengths_chunks_informational_and_head_on_one_connection():
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Amz-Meta-A: 1\r\nX-Amz-Meta-A: 2\r\n\r\n"
               b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nTrailer: x\r\n\r\n")
    replies = [b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"first"), chunked,
               b"HTTP/1.1 200 OK\r\nContent-Length: 123456\r\nETag: \"abc\"\r\n\r\n", ok(b"")]

    async def main():
        async with Peer(*replies) as peer:
            http = peer.client()
            got = [await http.request("GET", "a/b c"), await http.request("GET", "k"),
                   await http.request("HEAD", "k"), await http.request("GET", "empty")]
            return peer, got

    peer, (first, chunks, head, empty) = run(main())
    assert (first.status, bytes(first.body)) == (200, b"first")
    assert bytes(chunks.body) == b"hello, world" and chunks.headers["x-amz-meta-a"] == "1, 2"
    assert head.body == b"" and head.headers["content-length"] == "123456" and head.headers["etag"] == '"abc"'
    assert bytes(empty.body) == b""
    assert peer.connections == 1  # all four on one kept-alive connection
    request = peer.requests[0].decode()
    assert request.startswith("GET /bkt/a/b%20c HTTP/1.1\r\n")
    assert f"host: 127.0.0.1:{peer.port}\r\n" in request and "authorization: AWS4-HMAC-SHA256 " in request


def test_a_body_longer_than_wanted_is_left_unread_and_its_connection_dropped():
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 10485760\r\n\r\n" + b"x" * 1000  # the rest never comes

    async def main():
        async with Peer(big, ok(b"next")) as peer:
            http = peer.client()
            return peer, await http.request("GET", "big", max_body=4096), await http.request("GET", "small")

    peer, big_response, small = run(main())
    assert big_response.status == 200 and big_response.body is None
    assert bytes(small.body) == b"next" and peer.connections == 2


def test_a_request_on_a_connection_the_server_closed_while_idle_is_sent_again():
    async def main():
        # The server closes a kept-alive connection: before our next request (noticed while
        # idle), or just as the request arrives (the race a resend is for).
        async with Peer(("then-close", ok(b"one")), ok(b"two"), "hang-up", ok(b"three")) as peer:
            http = peer.client()
            got = [await http.request("GET", "k")]
            await asyncio.sleep(0.05)
            got += [await http.request("GET", "k"), await http.request("GET", "k")]
            return peer, got

    peer, got = run(main())
    assert [bytes(r.body) for r in got] == [b"one", b"two", b"three"]
    assert peer.connections == 3 and len(peer.requests) == 4


def test_a_new_connection_that_is_hung_up_on_fails_without_a_resend():
    async def main():
        async with Peer("hang-up", ok(b"never asked")) as peer:
            with pytest.raises(NetworkError, match="closed the connection"):
                await peer.client().request("PUT", "k", body=b"payload")
            return peer

    peer = run(main())
    assert len(peer.requests) == 1 and peer.requests[0].endswith(b"\r\n\r\npayload")
    assert b"x-amz-content-sha256: UNSIGNED-PAYLOAD" in peer.requests[0]


def test_no_answer_times_out():
    async def main():
        async with Peer("stall") as peer:
            start = time.monotonic()
            with pytest.raises(NetworkError, match="timed out"):
                await peer.client(request_timeout=0.5).request("GET", "k")
            return time.monotonic() - start

    assert run(main()) < 3


@pytest.mark.parametrize("reply, message", [
    (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "not an HTTP"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed response header"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\n", "bad Content-Length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
    (b"HTTP/1.1 200 OK\r\n\r\nbody until close", "neither a length nor chunked"),
])
def test_responses_that_are_not_usable_http_fail_clearly(reply, message):
    async def main():
        async with Peer(reply) as peer:
            with pytest.raises(NetworkError, match=message):
                await peer.client().request("GET", "k")

    run(main())


def test_nothing_listening_is_a_network_error():
    async def main():
        http = S3Http(S3Endpoint(f"http://127.0.0.1:{closed_port()}", "b", EXAMPLE, virtual_hosted=False),
                      connect_timeout=2, request_timeout=2)
        with pytest.raises(NetworkError, match="cannot connect"):
            await http.request("GET", "k")

    run(main())


def test_connections_close_when_idle_and_when_the_loop_ends(monkeypatch):
    import tiering.stores.s3_http as s3_http

    monkeypatch.setattr(s3_http, "IDLE_SECONDS", 0.2)

    async def main():
        async with Peer(ok(b"a"), ok(b"b"), ok(b"c")) as peer:
            http = peer.client()
            await http.request("GET", "k")
            await asyncio.sleep(0.6)  # the reaper closes the idle connection
            closed_while_idle = peer.closed_by_client
            await http.request("GET", "k")
            await asyncio.gather(http.request("GET", "k"))
            return peer, closed_while_idle

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        peer, closed_while_idle = run(main())
        gc.collect()
    assert closed_while_idle == 1 and peer.connections == 2
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def self_signed(folder) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, as PEM files in ``folder``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tiering test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_tls_endpoints_are_verified_against_the_trust_store(tmp_path, monkeypatch):
    cert, key = self_signed(tmp_path)
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert, key)

    async def main(trusted: bool):
        if trusted:
            monkeypatch.setenv("SSL_CERT_FILE", cert)  # as an administrator would point at a private CA
        else:
            monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        async with Peer(ok(b"over tls"), tls=server_side) as peer:
            http = peer.client()
            if not trusted:
                with pytest.raises(NetworkError, match="cannot connect.*(?i:certificate)"):
                    await http.request("GET", "k")
                return None
            return await http.request("GET", "k")

    assert run(main(trusted=False)) is None
    assert bytes(run(main(trusted=True)).body) == b"over tls"


def test_a_proxy_for_the_endpoint_keeps_requests_on_obstore(monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                 "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert S3Endpoint.usable("http://127.0.0.1:8333", allow_http=True)
    assert not S3Endpoint.usable("http://127.0.0.1:8333", allow_http=False)
    assert S3Endpoint.usable("https://s3.example.com", allow_http=False)
    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    assert not S3Endpoint.usable("https://s3.example.com", allow_http=False)
    monkeypatch.setenv("no_proxy", "s3.example.com")
    assert S3Endpoint.usable("https://s3.example.com", allow_http=False)


# -- against SeaweedFS ----------------------------------------------------------

def test_missing_bucket_and_object_are_not_found_from_the_loop(seaweed, tmp_path):
    from tiering.core.errors import FatalError

    options = {"endpoint": seaweed.endpoint, "access_key_id": S3_KEY, "secret_access_key": S3_SECRET}
    # A missing object fails its item; a missing bucket fails the run (no other key will fare better).
    for url, what, error in ((f"s3://{S3_BUCKET}/http-test", "no such object", NotFoundError),
                             ("s3://no-such-bucket-here/p", "no such bucket", FatalError)):
        store = open_store(url, options)
        with pytest.raises(error, match=what):
            asyncio.run(call_async(store, "get_file", "missing.bin", tmp_path / "out"))
        assert not (tmp_path / "out").exists()
        store.close()


def test_a_body_that_does_not_match_its_content_md5_is_refused_and_not_stored(seaweed):
    import base64
    import hashlib

    from tiering.core.errors import TransientError
    from tiering.stores.s3 import classify

    creds = S3Credentials(S3_KEY, S3_SECRET, None, "us-east-1")
    http = S3Http(S3Endpoint(seaweed.endpoint, S3_BUCKET, creds, virtual_hosted=False),
                  connect_timeout=2, request_timeout=10)
    wrong = base64.b64encode(hashlib.md5(b"what we meant to send").digest()).decode()

    async def main():
        put = await http.request("PUT", "http-test/damaged", headers={"content-md5": wrong}, body=b"what arrived")
        return put, await http.request("HEAD", "http-test/damaged")

    put, head = asyncio.run(main())
    assert (put.status, put.error_code()) == (400, "BadDigest") and head.status == 404
    assert isinstance(classify("s3://b", "k", put.status, put.error_code()), TransientError)  # sent again


# -- ranged GETs into the caller's buffer (BlockingRanges, on plain threads) -----

@contextlib.contextmanager
def peer_on_a_thread(*replies):
    """A ``Peer`` served by an event loop on its own thread, for the blocking client."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    peer = Peer(*replies)
    asyncio.run_coroutine_threadsafe(peer.__aenter__(), loop).result()

    async def shutdown():
        await peer.__aexit__()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    try:
        yield peer
    finally:
        asyncio.run_coroutine_threadsafe(shutdown(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def partial(body: bytes, first: int, total: int, *extra: str) -> bytes:
    last = first + len(body) - 1
    lines = ["HTTP/1.1 206 Partial Content", f"Content-Length: {len(body)}",
             f"Content-Range: bytes {first}-{last}/{total}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def ranges_for(peer: Peer) -> BlockingRanges:
    return BlockingRanges(peer.endpoint(), request_timeout=5)


def test_ranges_land_in_the_callers_buffer_over_one_connection():
    buf = bytearray(10)
    with peer_on_a_thread(partial(b"hello", 0, 10), partial(b"world", 5, 10)) as peer:
        ranges = ranges_for(peer)
        conn = ranges.connection()
        first = ranges.read_into(conn, "obj", 0, memoryview(buf)[:5])
        second = ranges.read_into(conn, "obj", 5, memoryview(buf)[5:])
        conn.close()
    assert (first.status, first.body, second.status) == (206, None, 206)
    assert bytes(buf) == b"helloworld" and peer.connections == 1
    assert b"range: bytes=0-4\r\n" in peer.requests[0] and b"range: bytes=5-9\r\n" in peer.requests[1]


def test_a_range_on_a_connection_closed_while_idle_is_sent_again():
    buf = bytearray(4)
    with peer_on_a_thread(("then-close", partial(b"ab", 0, 4)), partial(b"cd", 2, 4)) as peer:
        ranges = ranges_for(peer)
        conn = ranges.connection()
        ranges.read_into(conn, "obj", 0, memoryview(buf)[:2])
        time.sleep(0.05)
        ranges.read_into(conn, "obj", 2, memoryview(buf)[2:])
        conn.close()
    assert bytes(buf) == b"abcd" and peer.connections == 2


def test_an_error_status_comes_back_with_its_code():
    missing = (b"HTTP/1.1 404 Not Found\r\nContent-Length: 40\r\n\r\n"
               b"<Error><Code>NoSuchKey</Code></Error>   ")
    with peer_on_a_thread(missing) as peer:
        ranges = ranges_for(peer)
        conn = ranges.connection()
        response = ranges.read_into(conn, "obj", 0, memoryview(bytearray(8)))
        conn.close()
    assert (response.status, response.error_code()) == (404, "NoSuchKey")


@pytest.mark.parametrize("reply, message", [
    (partial(b"xxxx", 4, 8), "asked for bytes 0-3"),  # another range than asked for
    (b"HTTP/1.1 206 Partial Content\r\nContent-Length: 4\r\nContent-Range: bytes 0-3/8\r\n\r\nab", "ended"),
])
def test_a_range_that_is_not_the_one_asked_for_fails(reply, message):
    with peer_on_a_thread(("then-close", reply)) as peer:
        ranges = ranges_for(peer)
        conn = ranges.connection()
        with pytest.raises(NetworkError, match=message):
            ranges.read_into(conn, "obj", 0, memoryview(bytearray(4)))
        conn.close()
