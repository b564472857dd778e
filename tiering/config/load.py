"""The configuration file: load, validate and resolve it.

A configuration is one TOML file (see ``configs/example.toml``)::

    default_tier = "hdd"           # optional; defaults to the first tier

    [hot]
    path = "${TIERING_HOME:-../var/demo}/hot"     # the hot tier (a POSIX path)
    io = "auto"                    # hot-tier metadata calls: "inline" on the mover's event loop,
                                   # "threads" on a bounded pool (a networked filesystem, where each
                                   # call is a round trip), "auto": by the mount's type

    [catalog]
    path = "${TIERING_HOME:-../var/demo}/state/catalog.db"
    # url = "postgresql://tiering:${TIERING_PG_PASSWORD}@db:5432/tiering"  # a shared catalog server instead

    [concurrency]                  # all optional, these are the defaults
    jobs = 16                      # files in flight
    part_size = "64MiB"            # large files move in parts of this size
    multipart_threshold = "64MiB"
    part_jobs = 4                  # parallel parts per large file

    [scan]                         # optional: `plan`/`apply` rescan rather than plan on
    max_age = "1h"                 # an inventory older than this (0: always rescan)
    executor = "threads"           # or "dask://HOST:PORT": scan and plan on that Dask cluster

    [retry]                        # all optional, these are the defaults
    attempts = 6
    max_backoff = "5s"
    deadline = "30s"

    [daemon]                       # all optional: `tiering run` / `tiering daemon`
    interval = "1h"                # (every key: tiering.config.daemon)

    [guard]                        # all optional: the access guard (every key: tiering.config.guard)
    mode = "auto"

    [cost]                         # optional: prices (every key: tiering.config.cost)
    hot_per_gb_month = 0.20

    [tiers.hdd]                    # one table per capacity tier
    url = "${TIERING_HOME:-../var/demo}/capacity"
    cost.per_gb_month = 0.015      # optional: this tier's prices over its kind's defaults

    [tiers.s3]
    url = "s3://bucket/prefix"
    endpoint = "http://127.0.0.1:8333"
    access_key_id = "${AWS_ACCESS_KEY_ID}"
    secret_access_key = "${AWS_SECRET_ACCESS_KEY}"

Rules:

- Every string may use ``${VAR}`` or ``${VAR:-default}``; an unset (or empty)
  ``VAR`` without a default is an error.
- Relative paths (``hot.path``, ``catalog.path``, local tier URLs,
  ``checkpoint_dir``) are taken from the config file's folder, not the cwd.
- Secrets (``secret_access_key``, ``access_key_secret``, ``session_token``,
  ``security_token``) must be ``"${VAR}"`` references; ``describe`` masks them.
- Sizes are bytes or strings like ``"64MiB"``; durations are seconds or strings
  like ``"500ms"``, ``"30d"`` (``tiering.core.units``). Booleans are TOML booleans.
- The keys a tier takes depend on its URL (``tiering.config.tiers``); unknown
  keys anywhere are errors that suggest the closest valid key.

Every mistake is one ``ConfigError`` line:
``<file>: [section] key: <what was wrong>; <what was expected>``.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tiering.config.catalog_url import parse_catalog_url, redact
from tiering.config.cost import CostModel, describe_cost, parse_cost
from tiering.config.daemon import DURATION_KEYS as _DAEMON_DURATIONS
from tiering.config.daemon import DaemonConfig, daemon_values, parse_daemon
from tiering.config.guard import DURATION_KEYS as _GUARD_DURATIONS
from tiering.config.guard import GuardConfig, guard_values, parse_guard
from tiering.config.locations import check_hot_tier, check_locations
from tiering.config.trace import TraceConfig, parse_trace, trace_values
from tiering.config.bench import BenchConfig, bench_values, parse_bench
from tiering.config.tiers import SCHEME_OPTIONS, PartDefaults, TierConfig, parse_tier
from tiering.config.values import SECRET_KEYS, Table
from tiering.core.errors import ConfigError, UserError
from tiering.core.mounts import HOT_IO_MODES
from tiering.stores import Store, open_store
from tiering.stores.retry import RetryPolicy
from tiering.core.units import format_duration, format_size

__all__ = ["Config", "TierConfig", "load_config", "find_config", "open_tier", "describe", "check_locations", "check_hot_tier",
           "CONFIG_ENV"]

CONFIG_ENV = "TIERING_CONFIG"
#: Where ``find_config`` looks, in order, when no file is named (relative to the cwd).
DEFAULT_LOCATIONS = ("tiering.toml", "configs/local.toml")

_TOP_KEYS = ("default_tier", "policy", "hot", "catalog", "heat", "scan", "concurrency", "retry", "daemon", "guard", "trace", "cost", "bench", "tiers")
_CONCURRENCY_KEYS = ("jobs", "part_size", "multipart_threshold", "part_jobs")
_RETRY_KEYS = ("attempts", "max_backoff", "deadline")


def _store_keys(kind: str) -> frozenset[str]:
    """The tier keys of one kind (``size``, ``duration``) that any store declares."""
    return frozenset(o.config_key for options in SCHEME_OPTIONS.values() for o in options if o.kind == kind)


_SIZE_KEYS = frozenset({"part_size", "multipart_threshold", "max_bytes"}) | _store_keys("size")
_DURATION_KEYS = (frozenset({"max_backoff", "deadline", "half_life", "max_age", "rotate"}) | _DAEMON_DURATIONS | _GUARD_DURATIONS
                  | _store_keys("duration"))


@dataclass(frozen=True)
class Config:
    """A loaded, validated configuration; paths absolute, units resolved."""

    path: Path  # the config file (absolute)
    hot_path: Path
    catalog_path: Path
    tiers: dict[str, TierConfig] = field(hash=False)
    default_tier: str
    jobs: int
    part_size: int
    multipart_threshold: int
    part_jobs: int
    retry: RetryPolicy
    policy_path: Path | None = None  # the policy `plan`/`apply`/`run` use unless told otherwise
    heat_half_life: float = 7 * 86400.0  # seconds; heat halves over this long without access
    daemon: DaemonConfig = field(default_factory=DaemonConfig)  # `run` and `daemon` settings
    guard: GuardConfig = field(default_factory=GuardConfig)  # the access guard (`tiering guard`)
    scan_max_age: float = 3600.0  # seconds; `plan`/`apply` rescan rather than plan on an older inventory
    scan_executor: str = "threads"  # "threads" (this host) or "dask://HOST:PORT": where scan and plan run
    hot_io: str = "auto"  # "auto" | "inline" | "threads": see ``tiering.core.mounts.hot_io``
    catalog_url: str | None = None  # a PostgreSQL catalog (``tiering.config.catalog_url``); None: the file
    cost: CostModel = field(default_factory=CostModel)  # prices: ``[cost]``, ``[tiers.NAME.cost]`` (``config.cost``)
    trace: TraceConfig = field(default_factory=TraceConfig)  # the access trace (``tiering.config.trace``)
    bench: BenchConfig = field(default_factory=BenchConfig)  # what `tiering bench` may do (``tiering.config.bench``)

    @property
    def catalog_target(self) -> str | Path:
        """What ``Catalog.open`` is given: the server's URL if there is one, else the SQLite file."""
        return self.catalog_url or self.catalog_path

    def tier(self, name: str | None = None) -> TierConfig:
        """The named tier (the default tier when ``name`` is None)."""
        name = self.default_tier if name is None else name
        try:
            return self.tiers[name]
        except KeyError:
            known = ", ".join(self.tiers)
            raise UserError(f"{self.path}: unknown tier {name!r}; known tiers: {known}") from None


def find_config(given: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The config file to use: ``given``, else ``$TIERING_CONFIG``, else the first default that exists."""
    env = os.environ if env is None else env
    if given:
        return Path(given)
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    for candidate in DEFAULT_LOCATIONS:
        if Path(candidate).is_file():
            return Path(candidate)
    raise UserError(f"no configuration found: pass --config FILE, set ${CONFIG_ENV}, or create "
                    f"{' or '.join(DEFAULT_LOCATIONS)}")


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read and check the TOML file at ``path``; ``env`` (default ``os.environ``) feeds ``${VAR}``.

    Besides each value, the locations are checked against each other as they are
    on disk now (``check_locations``): nothing tiering writes may overlap the hot tier.
    """
    shown = str(path)
    top = Table(shown, "", _read_toml(Path(path), shown), env)
    top.check_keys(_TOP_KEYS)
    base = Path(os.path.abspath(path)).parent
    hot, catalog = top.sub("hot"), top.sub("catalog")
    hot.check_keys(("path", "io"))
    catalog.check_keys(("path", "url"))
    conc = top.sub("concurrency")
    conc.check_keys(_CONCURRENCY_KEYS)
    parts = PartDefaults(
        part_size=conc.size("part_size", 64 << 20, minimum=1),
        multipart_threshold=conc.size("multipart_threshold", 64 << 20),
        part_jobs=conc.integer("part_jobs", 4, minimum=1),
    )
    tiers = _tiers(top, base, parts)
    config = Config(
        path=Path(os.path.abspath(path)),
        hot_path=hot.path("path", base),
        hot_io=hot.choice("io", HOT_IO_MODES, "auto"),
        catalog_path=catalog.path("path", base),
        catalog_url=parse_catalog_url(catalog),
        tiers=tiers,
        default_tier=_default_tier(top, tiers),
        jobs=conc.integer("jobs", 16, minimum=1),
        part_size=parts.part_size,
        multipart_threshold=parts.multipart_threshold,
        part_jobs=parts.part_jobs,
        retry=_retry(top.sub("retry")),
        policy_path=top.path("policy", base, None),
        heat_half_life=_heat(top.sub("heat")),
        daemon=parse_daemon(top.sub("daemon"), base, tiers),
        guard=parse_guard(top.sub("guard"), base),
        trace=parse_trace(top.sub("trace"), base),
        bench=parse_bench(top.sub("bench")),
        scan_max_age=_scan(top.sub("scan")),
        scan_executor=_scan_executor(top.sub("scan")),
        cost=parse_cost(top, tiers),
    )
    _check_hot(hot, config.hot_path)
    check_locations(config)
    return config


def _check_hot(table: Table, path: Path) -> None:
    """A hot tier that exists must be a folder (one that does not exist yet is a run-time matter)."""
    if os.path.lexists(path) and not path.is_dir():
        raise table.error("path", f"{path} is not a folder", "expected the hot tier's folder")


def _heat(table: Table) -> float:
    table.check_keys(("half_life",))
    return table.duration("half_life", 7 * 86400.0)


def _scan(table: Table) -> float:
    table.check_keys(("max_age", "executor"))
    return table.duration("max_age", 3600.0)


def _scan_executor(table: Table) -> str:
    executor = table.string("executor", "threads")
    parts = urlsplit(executor)
    if executor != "threads" and (parts.scheme != "dask" or not parts.hostname or not _port(parts)):
        raise table.error("executor", f"{executor!r} is no executor", 'expected "threads" or "dask://HOST:PORT"')
    return executor


def _port(parts) -> int | None:
    try:
        return parts.port
    except ValueError:
        return None


def _read_toml(path: Path, shown: str) -> dict[str, Any]:
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read the file ({exc.strerror}); expected a readable TOML file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{shown}: not UTF-8 text (byte {exc.start}); expected a TOML file") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{shown}: invalid TOML: {exc}; expected TOML syntax (https://toml.io)") from None


def _tiers(top: Table, base: Path, parts: PartDefaults) -> dict[str, TierConfig]:
    tiers = top.sub("tiers")
    if not tiers.data:
        raise top.error("tiers", "no capacity tier is configured", "expected at least one [tiers.NAME] table")
    return {name: parse_tier(tiers.sub(name), name, base, parts) for name in tiers.data}


def _default_tier(top: Table, tiers: dict[str, TierConfig]) -> str:
    first = next(iter(tiers))
    name = top.string("default_tier", first)
    if name not in tiers:
        raise top.error("default_tier", f"{name!r} is not a configured tier", "expected one of: " + ", ".join(tiers))
    return name


def _retry(table: Table) -> RetryPolicy:
    table.check_keys(_RETRY_KEYS)
    default = RetryPolicy()
    return RetryPolicy(
        attempts=table.integer("attempts", default.attempts, minimum=1),
        base=default.base,
        cap=table.duration("max_backoff", default.cap),
        deadline=table.duration("deadline", default.deadline),
    )


def open_tier(config: Config, name: str | None = None) -> Store:
    """Open a configured capacity tier (the default one when ``name`` is None)."""
    tier = config.tier(name)
    return open_store(tier.url, tier.options, retry=config.retry)


# -- describe ------------------------------------------------------------------


def describe(config: Config) -> str:
    """The resolved configuration as TOML text, every secret shown as ``****``."""
    lines = [f"# resolved from {config.path}", f"default_tier = {_value('', config.default_tier)}"]
    if config.policy_path:
        lines.append(f"policy = {_value('', config.policy_path)}")
    sections: list[tuple[str, dict[str, Any]]] = [
        ("hot", {"path": config.hot_path, "io": config.hot_io}),
        ("catalog", {"path": config.catalog_path, **({"url": redact(config.catalog_url)} if config.catalog_url else {})}),
        ("heat", {"half_life": config.heat_half_life}),
        ("scan", {"max_age": config.scan_max_age, "executor": config.scan_executor}),
        ("daemon", daemon_values(config.daemon)),
        ("guard", guard_values(config.guard)),
        ("trace", trace_values(config.trace)),
        ("bench", bench_values(config.bench)),
        ("concurrency", {k: getattr(config, k) for k in _CONCURRENCY_KEYS}),
        ("retry", {"attempts": config.retry.attempts, "max_backoff": config.retry.cap,
                   "deadline": config.retry.deadline}),
    ]
    for tier in config.tiers.values():
        declared = SCHEME_OPTIONS[tier.scheme]
        options = {(declared[k].config_key if k in declared else k): v for k, v in tier.options.items()}
        sections.append((f"tiers.{tier.name}", {"url": tier.url, **options}))
    for name, values in sections:
        lines += ["", f"[{name}]"] + [f"{key} = {_value(key, value)}" for key, value in values.items()]
    lines += describe_cost(config.cost)
    return "\n".join(lines) + "\n"


def _value(key: str, value: Any) -> str:
    if key in SECRET_KEYS:
        return '"****"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if key in _SIZE_KEYS:
        return _quote(format_size(value))
    if key in _DURATION_KEYS:
        return _quote(format_duration(value))
    if isinstance(value, int | float):
        return str(value)
    return _quote(str(value))


def _quote(text: str) -> str:
    # A JSON string is a TOML basic string, except that TOML wants DEL escaped too.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")
