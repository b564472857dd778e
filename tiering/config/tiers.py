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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tiering.config.values import SECRET_KEYS, OptionWords, Table, check_path_text
from tiering.core.errors import InvalidKeyError
from tiering.stores import scheme_of
from tiering.stores.keys import decode_key
from tiering.core.units import format_size

SUPPORTED_URLS = "a path (HDD/NAS tier), file://PATH, s3://BUCKET[/PREFIX] or oss://BUCKET[/PREFIX]"
COMMON_KEYS = ("url", "storage_class", "part_size", "multipart_threshold", "part_jobs")
SCHEME_KEYS: dict[str, tuple[str, ...]] = {
    "file": ("fsync",),
    "s3": (
        "endpoint", "region", "access_key_id", "secret_access_key", "session_token", "allow_http",
        "virtual_hosted_style", "connect_timeout", "request_timeout",
    ),
    "oss": (
        "endpoint", "region", "access_key_id", "access_key_secret", "security_token", "restore_tier",
        "restore_days", "connect_timeout", "checkpoint_dir",
    ),
}
KIND = {"file": "posix", "s3": "s3", "oss": "oss"}
S3_CLASSES = (
    "STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE",
    "REDUCED_REDUNDANCY",
)
OSS_CLASSES = ("Standard", "IA", "Archive", "ColdArchive", "DeepColdArchive")
RESTORE_TIERS = ("Expedited", "Standard", "Bulk")
#: (smallest, largest) part a service accepts; the last part of an upload may be smaller.
PART_LIMITS = {"file": (1, None), "s3": (5 << 20, 5 << 30), "oss": (100 << 10, 5 << 30)}

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
    table.check_keys(COMMON_KEYS + SCHEME_KEYS[scheme], elsewhere=_other_kinds(scheme))
    url = _posix_url(table, raw_url, base) if scheme == "file" else _bucket_url(table, raw_url, scheme)
    options = _store_options(table, scheme, base, defaults)
    return TierConfig(name, url, scheme, options.get("storage_class", ""), options)


def store_options(scheme: str, words: Mapping[str, str], option: str, base: Path) -> dict[str, Any]:
    """Command-line ``KEY=VALUE`` options (``--src-option``) for a store of ``scheme``, checked like a tier.

    The same keys and checks as a ``[tiers.NAME]`` table (unknown keys get a
    did-you-mean, values their type and range); only the keys given are
    returned, so a configured tier's or the store's defaults fill the rest.
    ``jobs`` is taken as ``part_jobs``. Every mistake is one ``ConfigError`` naming ``option``.
    """
    words = {("part_jobs" if key == "jobs" else key): value for key, value in words.items()}
    table = OptionWords(option, words)
    hints = {"url": f"the {KIND[scheme]} location is the command's own argument, not an option"}
    table.check_keys([k for k in COMMON_KEYS if k != "url"] + list(SCHEME_KEYS[scheme]),
                     elsewhere={**_other_kinds(scheme), **hints})
    return _store_options(table, scheme, base, None)


def _store_options(table: Table, scheme: str, base: Path, defaults: PartDefaults | None) -> dict[str, Any]:
    storage_class = _storage_class(table, scheme)
    options: dict[str, Any] = {"storage_class": storage_class} if storage_class else {}
    options.update(_OPTIONS[scheme](table, base))
    options.update(_part_options(table, scheme, defaults))
    return options


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


def _storage_class(table: Table, scheme: str) -> str:
    if scheme == "s3":
        return table.choice("storage_class", S3_CLASSES, default="")
    if scheme == "oss":
        return table.choice("storage_class", OSS_CLASSES, default="")
    return table.string("storage_class", default="")  # posix: a free label for reports


def _posix_options(table: Table, base: Path) -> dict[str, Any]:
    return _set(fsync=table.boolean("fsync", None))


def _s3_options(table: Table, base: Path) -> dict[str, Any]:
    endpoint = table.endpoint("endpoint", None)
    allow_http = table.boolean("allow_http", None)
    if endpoint and endpoint.startswith("http://"):
        if allow_http is False:
            raise table.error("allow_http", "false, but the endpoint is http://", "expected an https:// endpoint "
                              "or allow_http = true")
        allow_http = True  # an http:// endpoint says it plainly; do not make people say it twice
    return _set(
        endpoint=endpoint,
        region=table.string("region", None),
        **_credentials(table, "secret_access_key", "session_token"),
        allow_http=allow_http,
        virtual_hosted_style=table.boolean("virtual_hosted_style", None),
        connect_timeout=table.duration("connect_timeout", None),
        request_timeout=table.duration("request_timeout", None),
    )


def _oss_options(table: Table, base: Path) -> dict[str, Any]:
    return _set(
        endpoint=table.endpoint("endpoint", table.required()),
        region=table.string("region", None),
        **_credentials(table, "access_key_secret", "security_token"),
        restore_tier=table.choice("restore_tier", RESTORE_TIERS, None),
        restore_days=table.integer("restore_days", None, minimum=1, maximum=365),
        connect_timeout=table.duration("connect_timeout", None),
        checkpoint_dir=table.path("checkpoint_dir", base, None),
    )


def _credentials(table: Table, secret_key: str, token_key: str) -> dict[str, Any]:
    """Key id, secret and token; the id and the secret come as a pair or not at all."""
    key_id = table.string("access_key_id", None)
    secret, token = table.secret(secret_key), table.secret(token_key)
    if (key_id is None) != (secret is None) and not table.partial:  # options may complete a tier's pair
        missing, given = (secret_key, "access_key_id") if secret is None else ("access_key_id", secret_key)
        raise table.error(missing, f"missing while {given} is set", f"expected both {given} and {missing}, or neither")
    return {"access_key_id": key_id, secret_key: secret, token_key: token}


def _part_options(table: Table, scheme: str, defaults: PartDefaults | None) -> dict[str, Any]:
    """Part settings; with ``defaults`` None (command-line options), only those the table sets."""
    d = defaults or _NO_DEFAULTS
    lo, hi = PART_LIMITS[scheme]
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


_OPTIONS: dict[str, Callable[[Table, Path], dict[str, Any]]] = {
    "file": _posix_options,
    "s3": _s3_options,
    "oss": _oss_options,
}
