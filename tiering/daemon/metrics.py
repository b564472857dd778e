"""The daemon's metrics, in the Prometheus text exposition format (version 0.0.4).

A small registry (counters and gauges, with labels) and an ``http.server``
endpoint, so no client library is needed. ``GET /metrics`` answers; the
server binds the configured address, ``127.0.0.1`` unless told otherwise.
``SERIES`` is the documented list (the README repeats it). The store
endpoints' concurrency limiters (``stores.limiter``) are read live at every
scrape: their limit, ceiling, requests in flight, throttles and cuts.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tiering.stores.limiter import LimitState, limits

log = logging.getLogger("tiering.daemon")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: name -> (type, help). Labels are noted in the help text.
SERIES: dict[str, tuple[str, str]] = {
    "tiering_up": ("gauge", "1 while the daemon runs."),
    "tiering_hot_size_bytes": ("gauge", "Capacity of the hot tier's filesystem."),
    "tiering_hot_used_bytes": ("gauge", "Used space on the hot tier's filesystem."),
    "tiering_hot_used_ratio": ("gauge", "Used fraction of the hot tier."),
    "tiering_watermark_ratio": ("gauge", "The policy's watermarks as fractions of the hot tier (level=high|low)."),
    "tiering_files": ("gauge", "Files the catalog knows, by state."),
    "tiering_bytes": ("gauge", "True size of the files the catalog knows, by state."),
    "tiering_actions_total": ("counter", "Mover actions finished, by action and status (done|noop|skipped|failed)."),
    "tiering_moved_bytes_total": ("counter", "Bytes moved between the tiers, by action."),
    "tiering_errors_total": ("counter", "Errors, by kind (action|cycle|rescan|heat|events|changes|reload)."),
    "tiering_cycles_total": ("counter", "Policy cycles run, by trigger (start|interval|watermark)."),
    "tiering_cycle_duration_seconds": ("gauge", "Wall time of the last policy cycle."),
    "tiering_last_cycle_timestamp_seconds": ("gauge", "Unix time the last policy cycle ended."),
    "tiering_event_queue_depth": ("gauge", "File events waiting for the debouncer."),
    "tiering_heat_events_total": ("counter", "File accesses recorded as heat."),
    "tiering_events_dropped_total": ("counter", "File events dropped because the queue was full."),
    "tiering_events_watching": ("gauge", "1 while file events are being received from the hot tier."),
    "tiering_auto_archive_pending": ("gauge", "Written files waiting to be quiet before auto-archive."),
    "tiering_reloads_total": ("counter", "SIGHUP reloads, by result (ok|rejected)."),
    "tiering_guard_active": ("gauge", "1 while this host's access guard serves opens of released files."),
    "tiering_store_concurrency_limit": ("gauge", "Requests allowed in flight to a store endpoint now, by endpoint "
                                        "and mode (auto|fixed)."),
    "tiering_store_concurrency_ceiling": ("gauge", "The most requests in flight a store endpoint's limit grows "
                                          "back to, by endpoint."),
    "tiering_store_in_flight": ("gauge", "Requests in flight to a store endpoint, by endpoint."),
    "tiering_store_throttles_total": ("counter", "Throttle answers (503 SlowDown, 429 ...) from a store endpoint, "
                                      "by endpoint."),
    "tiering_store_concurrency_cuts_total": ("counter", "Times a store endpoint's limit was cut (a throttle or "
                                             "a latency rise), by endpoint."),
}

#: The limiter series: name -> how to read it from an endpoint's ``LimitState``.
_LIMITER_SERIES: dict[str, Callable[[LimitState], float]] = {
    "tiering_store_concurrency_limit": lambda s: s.limit,
    "tiering_store_concurrency_ceiling": lambda s: s.ceiling,
    "tiering_store_in_flight": lambda s: s.in_flight,
    "tiering_store_throttles_total": lambda s: s.throttles,
    "tiering_store_concurrency_cuts_total": lambda s: s.cuts,
}

Labels = tuple[tuple[str, str], ...]


class Metrics:
    """Thread-safe counters and gauges; ``live`` series are computed when scraped."""

    def __init__(self) -> None:
        self._values: dict[str, dict[Labels, float]] = {name: {} for name in SERIES}
        self._live: dict[str, Callable[[], float | dict[Labels, float]]] = {}
        self._lock = threading.Lock()
        for name, read in _LIMITER_SERIES.items():
            self.live(name, lambda read=read, name=name: _limiter_samples(name, read))

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        key = _labels(labels)
        with self._lock:
            series = self._values[name]
            series[key] = series.get(key, 0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._values[name][_labels(labels)] = value

    def live(self, name: str, read: Callable[[], float | dict[Labels, float]]) -> None:
        """Compute ``name`` at scrape time (a number, or samples keyed by label tuples)."""
        self._live[name] = read

    def value(self, name: str, **labels: str) -> float:
        with self._lock:
            return self._values[name].get(_labels(labels), 0)

    def render(self) -> str:
        """The exposition text: HELP and TYPE for every documented series, then its samples."""
        lines = []
        for name, (kind, text) in SERIES.items():
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
            for labels, value in self._samples(name).items():
                lines.append(f"{name}{_format_labels(labels)} {_number(value)}")
        return "\n".join(lines) + "\n"

    def _samples(self, name: str) -> dict[Labels, float]:
        if name in self._live:
            try:
                got = self._live[name]()
            except Exception:  # a scrape must never fail because one reading did
                log.debug("metrics: could not read %s", name, exc_info=True)
                return {}
            return got if isinstance(got, dict) else {(): got}
        with self._lock:
            return dict(self._values[name])


class MetricsServer:
    """``GET /metrics`` on ``address:port`` from a background thread (port 0: pick a free one)."""

    def __init__(self, metrics: Metrics, address: str, port: int) -> None:
        family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
        server_class = type("_Server", (ThreadingHTTPServer,), {"address_family": family, "daemon_threads": True})
        self._server = server_class((address, port), _handler(metrics))
        self._thread = threading.Thread(target=self._server.serve_forever, name="tiering-metrics", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        return self._server.server_address[:2]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def _handler(metrics: Metrics) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] not in ("/metrics", "/"):
                self.send_error(404, "try /metrics")
                return
            body = metrics.render().encode()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:
            log.debug("metrics: %s %s", self.address_string(), format % args)

    return Handler


def _limiter_samples(name: str, read: Callable[[LimitState], float]) -> dict[Labels, float]:
    """One limiter series over every store endpoint this process has a limiter for."""
    mode = name == "tiering_store_concurrency_limit"
    return {_labels({"endpoint": s.endpoint, **({"mode": "auto" if s.adaptive else "fixed"} if mode else {})}):
            read(s) for s in limits()}


def _labels(labels: dict[str, str]) -> Labels:
    return tuple(sorted((k, str(v)) for k, v in labels.items()))


def _format_labels(labels: Labels) -> str:
    if not labels:
        return ""
    escaped = (v.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n") for _, v in labels)
    return "{" + ",".join(f'{k}="{v}"' for (k, _), v in zip(labels, escaped)) + "}"


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))
