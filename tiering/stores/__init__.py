"""Capacity tiers, chosen by URL scheme and imported lazily.

``open_store("/mnt/hdd/tier")``, ``open_store("s3://bucket/prefix", options)``,
``open_store("oss://bucket/prefix", options)``. ``options`` are the tier's
settings from the configuration file (endpoint, region, credentials, storage
class, part sizes), as each store declares them in ``tiering.stores.options``,
plus ``concurrency`` (``"auto"`` or a number): how its endpoint's requests are
limited (``tiering.stores.limiter``), applied here for every kind of store.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from tiering.core.errors import UserError
from tiering.stores.base import FileMeta, ObjectInfo, Store
from tiering.stores.limiter import AUTO, limiter_for
from tiering.stores.retry import DEFAULT_RETRY, RetryPolicy

__all__ = ["FileMeta", "ObjectInfo", "Store", "RetryPolicy", "open_store", "scheme_of", "SCHEMES"]

#: scheme -> (module, class, pip extra that provides its SDK)
SCHEMES: dict[str, tuple[str, str, str]] = {
    "file": ("tiering.stores.posix", "PosixStore", ""),
    "s3": ("tiering.stores.s3", "S3Store", "obstore"),
    "oss": ("tiering.stores.oss", "OssStore", "oss2"),
}


def scheme_of(url: str) -> str:
    """``file`` for plain paths, else the URL's scheme (lower-case)."""
    if "://" not in url:
        return "file"
    return urlsplit(url).scheme.lower()


def open_store(
    url: str,
    options: Mapping[str, Any] | None = None,
    *,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> Store:
    """Open the capacity tier at ``url``; its requests share its endpoint's limiter (``stores.limiter``)."""
    scheme = scheme_of(url)
    if scheme not in SCHEMES:
        raise UserError(f"unknown tier URL scheme {scheme!r} in {url!r}; expected a path, s3:// or oss://")
    module_name, cls_name, package = SCHEMES[scheme]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # an optional SDK is missing
        raise UserError(f"the {scheme}:// tier needs the {package!r} package: pip install {package}") from exc
    options = dict(options or {})
    concurrency = options.pop("concurrency", AUTO)
    endpoint = _endpoint(scheme, options)
    if endpoint:
        retry = retry.limited(limiter_for(endpoint, concurrency))
    return getattr(module, cls_name)(url, options, retry=retry)


def _endpoint(scheme: str, options: dict) -> str:
    """The server a store of ``scheme`` talks to ('' for a local one): the key of its limiter."""
    if scheme == "s3":
        region = options.get("region") or os.environ.get("AWS_REGION") or "us-east-1"
        default = f"https://s3.{region}.amazonaws.com"
        return str(options.get("endpoint") or os.environ.get("AWS_ENDPOINT_URL") or default)
    if scheme == "oss":
        return str(options.get("endpoint") or "")
    return ""
