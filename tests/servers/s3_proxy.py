"""A fault-injecting HTTP proxy between an S3 client and an S3 server (SeaweedFS), for tests.

It runs as its own process (``S3Proxy.start``), listens on a loopback port
that the store under test uses as its endpoint, and forwards each HTTP/1.1
request unchanged (SigV4 signatures stay valid: path-style requests name the
upstream's bucket, and the Host header is passed through as sent). A test
steers it through a small JSON control API on a second port:

- ``rules``: what to do to which requests. A rule matches an S3 operation
  (``ListObjectsV2``, ``PutObject``, ``GetObject``, ``HeadObject``,
  ``UploadPart``, ... or ``*``), optionally only requests carrying one of
  ``query`` parameters (``["continuation-token", "start-after"]``: every
  listing page but a first one), lets ``skip`` matching requests through, then
  acts on ``times`` of them (``None``: all), each with probability ``chance``
  (a seeded generator, so runs repeat). Actions:

  ``reset``   read the request, then reset the connection without a byte of answer;
  ``status``  answer ``status`` with an S3 error body of ``code`` (``503`` ``SlowDown``,
              ``500`` ``InternalError``), the request never reaching the server;
  ``cut``     forward, then send the response head and half its body, and reset;
  ``stall``   wait ``seconds`` before forwarding (a slow or hung server).

  A rule with ``over`` acts only while more than ``over`` requests (of any
  operation, this one included) are in flight through the proxy: a store that
  throttles when it is overloaded, so a client that sends fewer at once is
  throttled less.

- ``refuse``: stop listening (connections are refused, open ones reset) or listen again.
- ``stats``: requests seen per operation, how often each rule acted, and the most requests that were
  in flight at once (``peak``).

Only the standard library: the process is started with ``sys.executable``.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

_MAX_HEAD = 64 * 1024

# (method, query parameter that marks it) -> operation, for a request naming an object; first match wins.
_OBJECT_OPS = [
    ("PUT", "partNumber", "UploadPart"), ("PUT", None, "PutObject"),
    ("GET", "uploadId", "ListParts"), ("GET", None, "GetObject"), ("HEAD", None, "HeadObject"),
    ("DELETE", "uploadId", "AbortMultipartUpload"), ("DELETE", None, "DeleteObject"),
    ("POST", "uploads", "CreateMultipartUpload"), ("POST", "uploadId", "CompleteMultipartUpload"),
]
_BUCKET_OPS = [
    ("GET", "uploads", "ListMultipartUploads"), ("GET", "list-type", "ListObjectsV2"), ("GET", None, "ListObjects"),
    ("HEAD", None, "HeadBucket"), ("POST", "delete", "DeleteObjects"),
]


def operation(method: str, target: str) -> tuple[str, dict[str, str]]:
    """The S3 operation of a path-style request, and its query."""
    path, _, query = target.partition("?")
    params = dict(parse_qsl(query, keep_blank_values=True))
    _bucket, _, key = path.lstrip("/").partition("/")
    for m, marker, op in _OBJECT_OPS if key else _BUCKET_OPS:
        if m == method and (marker is None or marker in params):
            return op, params
    return f"{method}?", params


class Rule:
    def __init__(self, spec: dict) -> None:
        self.op = spec.get("op", "*")
        self.query = tuple(spec.get("query") or ())
        self.skip = int(spec.get("skip", 0))
        self.times = spec.get("times")
        self.chance = float(spec.get("chance", 1.0))
        self.action = spec["action"]
        self.status = int(spec.get("status", 503))
        self.code = spec.get("code", "SlowDown")
        self.seconds = float(spec.get("seconds", 0))
        self.over = spec.get("over")
        self.seen = self.hits = 0

    def wants(self, op: str, params: dict, rng: random.Random, in_flight: int) -> bool:
        if self.op not in ("*", op) or (self.query and not any(q in params for q in self.query)):
            return False
        if self.over is not None and in_flight <= self.over:
            return False
        self.seen += 1
        if self.seen <= self.skip or (self.times is not None and self.hits >= self.times):
            return False
        if self.chance < 1.0 and rng.random() >= self.chance:
            return False
        self.hits += 1
        return True


class State:
    """The rules and counters, shared by every connection thread and the control API."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rules: list[Rule] = []
        self.counts: dict[str, int] = {}
        self.rng = random.Random(15)
        self.in_flight = self.peak = 0

    def match(self, op: str, params: dict) -> Rule | None:
        """The rule for a request now starting (``done`` when its answer is sent)."""
        with self.lock:
            self.counts[op] = self.counts.get(op, 0) + 1
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            for rule in self.rules:
                if rule.wants(op, params, self.rng, self.in_flight):
                    return rule
        return None

    def done(self) -> None:
        with self.lock:
            self.in_flight -= 1


class Proxy:
    def __init__(self, upstream: tuple[str, int], port: int) -> None:
        self.upstream = upstream
        self.state = State()
        self.port = port
        self.listener: socket.socket | None = None
        self.refusing = False
        self.clients: set[socket.socket] = set()
        self.clients_lock = threading.Lock()
        self._listen()

    def _listen(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(128)
        sock.settimeout(0.05)
        self.port = sock.getsockname()[1]
        self.listener = sock

    def refuse(self, on: bool) -> None:
        with self.clients_lock:
            if on and not self.refusing:
                self.refusing = True
                self.listener.close()
                for client in list(self.clients):
                    _hang_up(client)
            elif not on and self.refusing:
                self._listen()
                self.refusing = False

    def serve_forever(self) -> None:
        while True:
            with self.clients_lock:
                listener = None if self.refusing else self.listener
            if listener is None:
                time.sleep(0.05)
                continue
            try:
                client, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            client.settimeout(None)
            with self.clients_lock:
                self.clients.add(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = None
        reader = client.makefile("rb")
        try:
            while True:
                head = _read_head(reader)
                if head is None:
                    return
                method, target, headers = _parse_request(head)
                body = _read_body(reader, headers, method=method, response=False)
                op, params = operation(method, target)
                rule = self.state.match(op, params)
                try:
                    if rule is not None and rule.action == "reset":
                        _reset(client, reader)
                        return
                    if rule is not None and rule.action == "status":
                        client.sendall(_error(rule.status, rule.code, method))
                        continue
                    if rule is not None and rule.action == "stall":
                        time.sleep(rule.seconds)
                    if upstream is None:
                        upstream = socket.create_connection(self.upstream)
                        up_reader = upstream.makefile("rb")
                    upstream.sendall(head + body)
                    status_head, keep = self._relay(up_reader, client, reader, method,
                                                    cut=rule is not None and rule.action == "cut")
                finally:
                    self.state.done()
                if status_head is None:
                    return
                if not keep:
                    upstream.close()
                    upstream = None
        except (OSError, ValueError):
            return
        finally:
            with self.clients_lock:
                self.clients.discard(client)
            try:
                reader.close()
                client.close()
            except OSError:
                pass
            if upstream is not None:
                upstream.close()

    def _relay(self, up_reader, client: socket.socket, reader, method: str, *, cut: bool):
        """Pass one response from upstream to the client (``cut``: half its body, then a reset)."""
        while True:
            head = _read_head(up_reader)
            if head is None:
                _reset(client, reader)
                return None, False
            status = int(head.split(b" ", 2)[1])
            if 100 <= status < 200 and status != 101:
                client.sendall(head)
                continue
            break
        headers = _headers(head)
        body = _read_body(up_reader, headers, method=method, response=True, status=status)
        if cut:
            client.sendall(head + body[: len(body) // 2])
            _reset(client, reader)
            return None, False
        client.sendall(head + body)
        keep = "close" not in headers.get("connection", "").lower() and ("content-length" in headers or
                                                                         "chunked" in headers.get("transfer-encoding", "") or method == "HEAD" or status in (204, 304))
        return head, keep


def _reset(sock: socket.socket, reader) -> None:
    """Close with a TCP reset (no orderly FIN): what a dropped connection looks like to the client.

    The socket's file object goes first: while it is open, ``close`` only drops a reference.
    """
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        reader.close()
        sock.close()
    except OSError:
        pass


def _hang_up(sock: socket.socket) -> None:
    """End a connection another thread serves: it wakes to the end of its input and closes (with a reset)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _read_head(reader) -> bytes | None:
    lines = []
    size = 0
    while True:
        line = reader.readline(_MAX_HEAD)
        if not line:
            return None if not lines else b"".join(lines)
        if not lines and line in (b"\r\n", b"\n"):
            continue  # stray blank line between requests
        lines.append(line)
        size += len(line)
        if line in (b"\r\n", b"\n") or size > _MAX_HEAD:
            return b"".join(lines)


def _headers(head: bytes) -> dict[str, str]:
    found = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, sep, value = line.partition(":")
        if sep:
            found[name.strip().lower()] = value.strip()
    return found


def _parse_request(head: bytes) -> tuple[str, str, dict[str, str]]:
    method, target, _version = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
    return method, target, _headers(head)


def _read_body(reader, headers: dict[str, str], *, method: str, response: bool, status: int = 200) -> bytes:
    if response and (method == "HEAD" or status in (204, 304)):
        return b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts = []
        while True:
            line = reader.readline(_MAX_HEAD)
            parts.append(line)
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, up to the blank line
                    trailer = reader.readline(_MAX_HEAD)
                    parts.append(trailer)
                    if trailer in (b"\r\n", b"\n", b""):
                        return b"".join(parts)
            parts.append(reader.read(size + 2))
    if "content-length" in headers:
        length = int(headers["content-length"])
        data = reader.read(length)
        if len(data) != length:
            raise ValueError("short body")
        return data
    return reader.read() if response else b""


def _error(status: int, code: str, method: str) -> bytes:
    body = b"" if method == "HEAD" else (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>injected by the test proxy</Message><RequestId>proxy</RequestId></Error>").encode()
    reason = {500: "Internal Server Error", 503: "Service Unavailable"}.get(status, "Error")
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
            f"Content-Length: {len(body)}\r\nx-amz-request-id: proxy\r\n\r\n")
    return head.encode() + body


def _control(proxy: Proxy) -> ThreadingHTTPServer:
    class Control(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def _answer(self, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            state = proxy.state
            with state.lock:
                self._answer({"counts": dict(state.counts), "hits": [r.hits for r in state.rules],
                              "refusing": proxy.refusing, "peak": state.peak})

        def do_POST(self) -> None:
            spec = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            state = proxy.state
            if self.path == "/rules":
                with state.lock:
                    state.rules = [Rule(r) for r in spec.get("rules", [])]
                    state.counts = {}
                    state.peak = state.in_flight
                    state.rng = random.Random(spec.get("seed", 15))
            elif self.path == "/refuse":
                proxy.refuse(bool(spec.get("on", True)))
            self._answer({"ok": True})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Control)
    server.daemon_threads = True
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the S3 server")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    host, _, port = args.upstream.rpartition(":")
    proxy = Proxy((host, int(port)), args.port)
    control = _control(proxy)
    threading.Thread(target=control.serve_forever, daemon=True).start()
    print(f"PROXY {proxy.port} {control.server_address[1]}", flush=True)
    proxy.serve_forever()


# -- the test side ------------------------------------------------------------------


class S3Proxy:
    """The proxy process, as a test drives it: ``start()``, point a store at ``endpoint``, set ``rules``."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream  # http://HOST:PORT
        self.proc: subprocess.Popen | None = None
        self.port = self.control_port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        where = urlsplit(self.upstream)
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--upstream", f"{where.hostname}:{where.port}"],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        deadline = time.monotonic() + timeout
        line = self.proc.stdout.readline()
        if not line.startswith("PROXY ") or time.monotonic() > deadline:
            self.stop()
            raise RuntimeError(f"the S3 proxy did not start: {line!r}")
        _, port, control = line.split()
        self.port, self.control_port = int(port), int(control)

    def _post(self, path: str, payload: dict) -> dict:
        request = urllib.request.Request(f"http://127.0.0.1:{self.control_port}{path}",
                                         data=json.dumps(payload).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def rules(self, *rules: dict, seed: int = 15) -> None:
        """Replace the rules (and zero the counters); no rules: forward everything."""
        self._post("/rules", {"rules": list(rules), "seed": seed})

    def clear(self) -> None:
        self.rules()
        self.refuse(False)

    def refuse(self, on: bool = True) -> None:
        """Stop listening (refused connections, open ones reset), or listen again."""
        self._post("/refuse", {"on": on})

    def stats(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.control_port}/", timeout=10) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc.stdout.close()
            self.proc = None


if __name__ == "__main__":
    main()
