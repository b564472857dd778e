"""The ``[tiers.NAME]`` tables: which keys each kind of tier takes, and their checks.

A tier's kind comes from its ``url``: a plain path or ``file://`` (posix, an
HDD/NAS folder), ``s3://bucket/prefix`` or ``oss://bucket/prefix``. The result
is a ``TierConfig`` whose ``options`` are exactly what ``stores.open_store``
reads: resolved strings, sizes in bytes, durations in seconds, and the part
settings inherited from ``[concurrency]`` where the tier does not set its own.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tiering.config.values import SECRET_KEYS, OptionWords, Table, check_path_text
from tiering.core.errors import InvalidKeyError
from tiering.stores import scheme_of
from tiering.stores.keys import decode_key
from tiering.stores.limiter import parse_concurrency
from tiering.stores.options import OPTIONS, StoreOption, StoreOptions
from tiering.core.units import format_size

SUPPORTED_URLS = "a path (HDD/NAS tier), file://PATH, s3://BUCKET[/PREFIX] or oss://BUCKET[/PREFIX]"
#: Every kind of tier's options, as its store declares them (``tiering.stores.options``).
SCHEME_OPTIONS: dict[str, StoreOptions] = OPTIONS
#: The keys a ``[tiers.NAME]`` table of each kind takes: ``url`` and its store's options.
SCHEME_KEYS: dict[str, tuple[str, ...]] = {scheme: options.config_keys() for scheme, options in OPTIONS.items()}
KIND = {scheme: options.store for scheme, options in OPTIONS.items()}
#: Read before the store's own options, and with defaults inherited from ``[concurrency]`` (``_part_options``).
_PARTS = ("part_size", "multipart_threshold", "jobs")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_BUCKET = {
    "s3": re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"),
    "oss": re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$"),
}


@dataclass(frozen=True, repr=False)
class TierConfig:
    """One capacity tier, resolved: what ``open_store(url, options)`` needs.

    ``options`` holds credentials in clear (the store needs them); ``repr``
    masks them, so a logged or printed TierConfig never shows a secret.
    """

    name: str
    url: str  # an absolute path for posix tiers; scheme://bucket[/prefix] otherwise
    scheme: str  # "file", "s3" or "oss" (as ``stores.scheme_of`` names them)
    storage_class: str  # "" when the tier does not set one
    options: dict[str, Any] = field(hash=False)

    def __repr__(self) -> str:
        shown = {k: "****" if k in SECRET_KEYS else v for k, v in self.options.items()}
        return (f"TierConfig(name={self.name!r}, url={self.url!r}, scheme={self.scheme!r}, "
                f"storage_class={self.storage_class!r}, options={shown!r})")


@dataclass(frozen=True)
class PartDefaults:
    """The ``[concurrency]`` settings a tier inherits."""

    part_size: int
    multipart_threshold: int
    part_jobs: int


def parse_tier(table: Table, name: str, base: Path, defaults: PartDefaults) -> TierConfig:
    """Check one ``[tiers.NAME]`` table; relative paths are taken from ``base``."""
    if not _NAME.match(name):
        raise table.error(None, f"tier name {name!r} is not valid", "expected letters, digits, '-' and '_'")
    raw_url = table.string("url", expected=SUPPORTED_URLS)
    scheme = scheme_of(raw_url)
    if scheme not in SCHEME_KEYS:
        raise table.error("url", f"unknown scheme {scheme + '://'!r}", f"expected {SUPPORTED_URLS}")
    table.check_keys(("url", "cost", "concurrency") + SCHEME_KEYS[scheme],  # cost: config.cost
                     elsewhere=_other_kinds(scheme))
    url = _posix_url(table, raw_url, base) if scheme == "file" else _bucket_url(table, raw_url, scheme)
    options = {**_store_options(table, scheme, base, defaults), **_concurrency(table)}
    return TierConfig(name, url, scheme, options.get("storage_class", ""), options)


def store_options(scheme: str, words: Mapping[str, str], option: str, base: Path) -> dict[str, Any]:
    """Command-line ``KEY=VALUE`` options (``--src-option``) for a store of ``scheme``, checked like a tier.

    The same keys and checks as a ``[tiers.NAME]`` table (unknown keys get a
    did-you-mean, values their type and range); only the keys given are
    returned, so a configured tier's or the store's defaults fill the rest.
    ``jobs`` is taken as ``part_jobs``. Every mistake is one ``ConfigError`` naming ``option``.
    """
    declared = SCHEME_OPTIONS[scheme]
    words = {(declared[key].config_key if key in declared else key): value for key, value in words.items()}
    table = OptionWords(option, words)
    hints = {"url": f"the {KIND[scheme]} location is the command's own argument, not an option"}
    table.check_keys(SCHEME_KEYS[scheme] + ("concurrency",), elsewhere={**_other_kinds(scheme), **hints})
    return {**_store_options(table, scheme, base, None), **_concurrency(table)}


def _concurrency(table: Table) -> dict[str, Any]:
    """``concurrency``: "auto" (adaptive, the default) or a fixed number of requests in flight to the tier's
    endpoint (``stores.limiter``); only when set."""
    if "concurrency" not in table.data:
        return {}
    try:
        return {"concurrency": parse_concurrency(table.data["concurrency"])}
    except ValueError:
        raise table.error("concurrency", f"{table.data['concurrency']!r} is not a concurrency",
                          'expected "auto" or a whole number >= 1') from None


def _store_options(table: Table, scheme: str, base: Path, defaults: PartDefaults | None) -> dict[str, Any]:
    """Every option the store of ``scheme`` declares, checked by its kind; unset ones are left out."""
    declared = SCHEME_OPTIONS[scheme]
    storage_class = _read(table, declared["storage_class"], base, default="")
    options: dict[str, Any] = {"storage_class": storage_class} if storage_class else {}
    own = [o.name for o in declared if o.name not in ("storage_class", *_PARTS)]
    values = _set(**{name: _read(table, declared[name], base) for name in own})
    _check_together(table, scheme, values)
    options.update((name, values[name]) for name in own if name in values)  # in declared order
    options.update(_part_options(table, scheme, defaults))
    return options


def _read(table: Table, option: StoreOption, base: Path, default: Any = None) -> Any:
    """``option``'s value from ``table``, checked by its kind; ``default`` when not set (unless required)."""
    key = option.config_key
    if option.required:
        default = table.required()
    if option.kind in ("string", "label"):
        return table.string(key, default)
    if option.kind == "secret":
        return table.secret(key)
    if option.kind == "endpoint":
        return table.endpoint(key, default)
    if option.kind == "boolean":
        return table.boolean(key, default)
    if option.kind == "integer":
        return table.integer(key, default, minimum=int(option.minimum or 0),
                             maximum=None if option.maximum is None else int(option.maximum))
    if option.kind == "size":
        return table.size(key, default)
    if option.kind == "duration":
        return table.duration(key, default)
    if option.kind == "choice":
        return table.choice(key, option.choices, default)
    if option.kind == "path":
        return table.path(key, base, default)
    raise AssertionError(f"option {option.name!r} has no reader for kind {option.kind!r}")


def _check_together(table: Table, scheme: str, options: dict[str, Any]) -> None:
    """The rules that tie two options together: an http:// endpoint, a key id with its secret."""
    endpoint = options.get("endpoint")
    if scheme == "s3" and endpoint and endpoint.startswith("http://"):
        if options.get("allow_http") is False:
            raise table.error("allow_http", "false, but the endpoint is http://", "expected an https:// endpoint "
                              "or allow_http = true")
        options["allow_http"] = True  # an http:// endpoint says it plainly; do not make people say it twice
    secret_key = next((o.name for o in SCHEME_OPTIONS[scheme] if o.kind == "secret"), None)
    if secret_key is None or table.partial:  # command-line options may complete a tier's pair
        return
    key_id, secret = options.get("access_key_id"), options.get(secret_key)
    if (key_id is None) != (secret is None):
        missing, given = (secret_key, "access_key_id") if secret is None else ("access_key_id", secret_key)
        raise table.error(missing, f"missing while {given} is set", f"expected both {given} and {missing}, or neither")


def _other_kinds(scheme: str) -> dict[str, str]:
    """Hints for keys that belong to another kind of tier."""
    hints: dict[str, str] = {}
    for other, keys in SCHEME_KEYS.items():
        for key in keys:
            if other != scheme and key not in SCHEME_KEYS[scheme]:
                hints.setdefault(key, f"{key!r} applies to {KIND[other]} tiers, not to {KIND[scheme]} tiers")
    return hints


def _posix_url(table: Table, url: str, base: Path) -> str:
    path = url[len("file://") :] if url.lower().startswith("file://") else url
    if not path:
        raise table.error("url", "empty path", f"expected {SUPPORTED_URLS}")
    check_path_text(table, "url", path)
    return os.path.normpath(os.path.join(base, os.path.expanduser(path)))


def _bucket_url(table: Table, url: str, scheme: str) -> str:
    parts = urlsplit(url)
    if "@" in parts.netloc:
        raise table.error("url", "the URL contains credentials (not shown)", "put credentials in their own keys")
    if parts.query or parts.fragment:
        raise table.error("url", f"{url!r} has a query or fragment", f"expected {scheme}://BUCKET[/PREFIX]")
    bucket = parts.netloc
    if not _valid_bucket(bucket, scheme):
        dots = ", dots" if scheme == "s3" else ""
        raise table.error("url", f"{bucket!r} is not a valid {KIND[scheme]} bucket name",
                          f"expected 3-63 lowercase letters, digits, hyphens{dots}, "
                          "starting and ending with a letter or digit")
    prefix = parts.path.strip("/")
    if prefix:
        try:
            decode_key(prefix)
        except InvalidKeyError as exc:
            raise table.error("url", f"prefix {prefix!r} is not a clean relative path ({exc})",
                              "expected segments without '.', '..' or '//'") from None
    return f"{scheme}://{bucket}/{prefix}" if prefix else f"{scheme}://{bucket}"


def _valid_bucket(bucket: str, scheme: str) -> bool:
    if not _BUCKET[scheme].match(bucket) or ".." in bucket:
        return False
    try:
        ipaddress.ip_address(bucket)
    except ValueError:
        return True
    return False  # a bucket may not look like an IP address


def _part_options(table: Table, scheme: str, defaults: PartDefaults | None) -> dict[str, Any]:
    """Part settings; with ``defaults`` None (command-line options), only those the table sets."""
    d = defaults or _NO_DEFAULTS
    limits = SCHEME_OPTIONS[scheme]["part_size"]
    lo, hi = int(limits.minimum or 1), None if limits.maximum is None else int(limits.maximum)
    part_size = table.size("part_size", d.part_size, minimum=1)
    if part_size is not None and (part_size < lo or (hi is not None and part_size > hi)):
        inherited = "" if "part_size" in table.data else " (inherited from [concurrency])"
        span = f"at least {format_size(lo)}" if hi is None else f"between {format_size(lo)} and {format_size(hi)}"
        raise table.error("part_size", f"{format_size(part_size)}{inherited} is out of range for {KIND[scheme]}",
                          f"expected {span}" + ("" if table.partial else f"; set part_size in [{table.section}]"))
    return _set(
        part_size=part_size,
        multipart_threshold=table.size("multipart_threshold", d.multipart_threshold),
        jobs=table.integer("part_jobs", d.part_jobs, minimum=1),
    )


#: No inherited part settings: what command-line options start from.
_NO_DEFAULTS = PartDefaults(None, None, None)  # type: ignore[arg-type]


def _set(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
