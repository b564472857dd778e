"""The ``[daemon]`` table: how ``tiering run`` and ``tiering daemon`` behave unattended.

Every key is optional; these are the defaults::

    [daemon]
    interval = "1h"             # a full cycle (recover, scan, plan, apply) this often
    watermark_check = "5s"      # look at the hot tier's used space this often; above the
                                # policy's high watermark a cycle starts at once
    rescan = "15m"              # incremental rescan: catches accesses and writes whose
                                # file events were dropped (inotify overflow, watch limits);
                                # skipped while `changes` keeps the inventory current
    debounce = "2s"             # file events are batched into the catalog this often
    auto_archive = 0            # > 0: archive (not release) files closed after writing
                                # and quiet this long (like FSx/CPFS auto-export); 0: off
    # auto_archive_tier = "oss" # the tier auto-archive copies to (default: default_tier)
    metrics_port = 9478         # Prometheus text metrics on http://ADDRESS:PORT/metrics; 0: off
    metrics_address = "127.0.0.1"   # an IP literal; loopback unless you mean to expose them
    # log_file = "/var/log/tiering.log"  # default: stderr (reopened after logrotate moves it)
    log_level = "info"          # debug | info | warning | error
    stop_timeout = "10s"        # on SIGTERM, in-flight actions get this long before they are
                                # abandoned (the journal lets the next start settle them)
    keep_snapshots = 4          # inventory snapshots kept beside the catalog (older ones pruned)
    changes = "auto"            # how the inventory stays current between full scans: "fanotify"
                                # (filesystem-wide events into delta partitions; refuse to start where
                                # they are not delivered), "rescan" (periodic full scans), "auto" (the
                                # first where it works, else the second)
    full_scan = "24h"           # while `changes` follows the hot tier, a cycle plans on the latest
                                # snapshot merged with its deltas and scans in full only this often
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tiering.config.values import Table
from tiering.core.errors import UserError

DAEMON_KEYS = ("interval", "watermark_check", "rescan", "debounce", "auto_archive", "auto_archive_tier",
               "metrics_port", "metrics_address", "log_file", "log_level", "stop_timeout", "keep_snapshots", "changes",
               "full_scan")
DURATION_KEYS = frozenset({"interval", "watermark_check", "rescan", "debounce", "auto_archive", "stop_timeout",
                           "full_scan"})
LOG_LEVELS = ("debug", "info", "warning", "error")
CHANGE_MODES = ("auto", "fanotify", "rescan")
#: What a SIGHUP cannot change in a running daemon.
_RESTART_ONLY = ("hot_path", "catalog_path", "catalog_url")
_RESTART_ONLY_DAEMON = ("metrics_port", "metrics_address", "log_file", "debounce", "changes")


@dataclass(frozen=True)
class DaemonConfig:
    """The resolved ``[daemon]`` table (durations in seconds)."""

    interval: float = 3600.0
    watermark_check: float = 5.0
    rescan: float = 900.0
    debounce: float = 2.0
    auto_archive: float = 0.0  # quiet seconds before a written file is archived; 0: off
    auto_archive_tier: str | None = None
    metrics_port: int = 9478  # 0: no metrics endpoint
    metrics_address: str = "127.0.0.1"
    log_file: Path | None = None  # None: stderr
    log_level: str = "info"
    stop_timeout: float = 10.0
    keep_snapshots: int = 4
    changes: str = "auto"  # auto | fanotify | rescan (``tiering.daemon.changes``)
    full_scan: float = 86400.0  # while following changes: a cycle's full scan at most this often


def parse_daemon(table: Table, base: Path, tiers: dict[str, Any]) -> DaemonConfig:
    """Check and resolve the ``[daemon]`` table (``tiers``: the configured tier names)."""
    table.check_keys(DAEMON_KEYS)
    d = DaemonConfig()
    return DaemonConfig(
        interval=_positive(table, "interval", d.interval),
        watermark_check=_positive(table, "watermark_check", d.watermark_check),
        rescan=_positive(table, "rescan", d.rescan),
        debounce=_positive(table, "debounce", d.debounce),
        auto_archive=table.duration("auto_archive", d.auto_archive),
        auto_archive_tier=_tier(table, tiers),
        metrics_port=table.integer("metrics_port", d.metrics_port, minimum=0, maximum=65535),
        metrics_address=_address(table),
        log_file=table.path("log_file", base, None),
        log_level=table.choice("log_level", LOG_LEVELS, d.log_level),
        stop_timeout=table.duration("stop_timeout", d.stop_timeout),
        keep_snapshots=table.integer("keep_snapshots", d.keep_snapshots, minimum=2),  # rescans diff the last two
        changes=table.choice("changes", CHANGE_MODES, d.changes),
        full_scan=_positive(table, "full_scan", d.full_scan),
    )


def daemon_values(d: DaemonConfig) -> dict[str, Any]:
    """The table as ``describe`` prints it (unset optional keys left out)."""
    values = {key: getattr(d, key) for key in DAEMON_KEYS}
    return {k: v for k, v in values.items() if v is not None}


def check_reloadable(old, new) -> None:
    """Refuse a reload (``UserError``) that changes what a running daemon cannot: ``old``/``new`` are Configs."""
    changed = [k for k in _RESTART_ONLY if getattr(old, k) != getattr(new, k)]
    changed += [f"[daemon] {k}" for k in _RESTART_ONLY_DAEMON if getattr(old.daemon, k) != getattr(new.daemon, k)]
    if changed:
        raise UserError(f"{new.path}: {', '.join(changed)} changed; restart the daemon to apply that")


def _positive(table: Table, key: str, default: float) -> float:
    value = table.duration(key, default)
    if value <= 0:
        raise table.error(key, f"{value:g}s is not positive", "expected a duration above zero, like '5s'")
    return value


def _tier(table: Table, tiers: dict[str, Any]) -> str | None:
    name = table.string("auto_archive_tier", None)
    if name is not None and name not in tiers:
        raise table.error("auto_archive_tier", f"{name!r} is not a configured tier", "expected one of: " + ", ".join(tiers))
    return name


def _address(table: Table) -> str:
    value = table.string("metrics_address", DaemonConfig.metrics_address)
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise table.error("metrics_address", f"{value!r} is not an IP address",
                          "expected an IP literal such as \"127.0.0.1\" (loopback) or \"::1\"") from None
