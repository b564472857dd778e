"""The two sides of a migration: what the user named, resolved, checked and opened.

A side is a local folder (``/data/set``, ``file:///data/set``), a bucket URL
(``s3://bucket/prefix``, ``oss://bucket/prefix``; endpoint and credentials from
``--src-option``/``--dst-option`` KEY=VALUE or the environment), or the name of
a tier in the configuration file. ``EndpointSpec`` is the frozen, picklable
description a worker gets; ``open`` turns it into a ``LocalTree`` or a
``StoreEndpoint`` (both list in key order, ``head``, ``checksum``, ``delete``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tiering.config.tiers import store_options
from tiering.core.errors import NotFoundError, UserError
from tiering.migrate.listing import Entry
from tiering.migrate.localtree import LocalTree
from tiering.mover.distributed import references
from tiering.mover.distributed import resolve as resolve_reference
from tiering.stores import open_store, scheme_of
from tiering.stores.options import SECRET_OPTIONS
from tiering.stores.base import Store
from tiering.stores.retry import DEFAULT_RETRY, RetryPolicy

EXPECTED = "a local path, s3://BUCKET[/PREFIX], oss://BUCKET[/PREFIX] or a configured tier name"


@dataclass(frozen=True)
class EndpointSpec:
    """One side, as it travels to workers: a local tree, or a store URL with its options."""

    kind: str  # "local" or "store"
    url: str  # an absolute path for local trees
    options: tuple[tuple[str, Any], ...] = ()
    retry: RetryPolicy = DEFAULT_RETRY
    name: str = ""  # as the user wrote it
    #: A configured tier's secret options as the ``${VAR}`` references its file wrote (``for_workers``).
    references: tuple[tuple[str, str], ...] = ()

    def open(self, *, fsync: bool = False) -> LocalTree | StoreEndpoint:
        """The live side. Missing credentials are the user's to fix (``CredentialsError``, a ``UserError``);
        a secret carried as its reference is read from this process's environment."""
        if self.kind == "local":
            return LocalTree(self.url, fsync=fsync)
        options = dict(self.options)
        for key, ref in self.references:
            if options.get(key) == ref:
                options[key] = resolve_reference(ref, f"{self.name}: {key}")
        return StoreEndpoint(open_store(self.url, options, retry=self.retry))

    def for_workers(self) -> EndpointSpec:
        """This side with each configured secret as its reference: what may travel to Dask workers, which
        resolve it from their own environment."""
        if not self.references:
            return self
        refs = dict(self.references)
        return replace(self, options=tuple((k, refs.get(k, v)) for k, v in self.options))


def resolve(arg: str, options: Mapping[str, str], config=None, *, side: str = "source") -> EndpointSpec:
    """The ``EndpointSpec`` for a command-line SRC or DST.

    ``options`` (``--src-option``/``--dst-option`` KEY=VALUE) are checked like a
    ``[tiers.NAME]`` table of the side's kind: an unknown key or a bad value is
    one ``ConfigError`` line (exit 2) before anything is opened.
    """
    if "://" in arg:
        scheme = scheme_of(arg)
        if scheme == "file":
            return _local(arg[len("file://"):], options, arg, side)
        if scheme not in ("s3", "oss"):
            raise UserError(f"{side} {arg!r}: unknown URL scheme {scheme!r}; expected {EXPECTED}")
        if not urlsplit(arg).netloc:
            raise UserError(f"{side} {arg!r}: no bucket; expected {scheme}://BUCKET[/PREFIX]")
        opts = _options(scheme, options, side)
        return EndpointSpec("store", arg.rstrip("/"), tuple(sorted(opts.items())), name=arg)
    if config is not None and arg in config.tiers:
        tier = config.tier(arg)
        given = _options(tier.scheme, options, side)
        merged = {**tier.options, **given}
        refs = {k: v for k, v in references(config, arg, tier.options).items()
                if k in SECRET_OPTIONS and k not in given}
        return EndpointSpec("store", tier.url, tuple(sorted(merged.items())), config.retry, name=arg,
                            references=tuple(sorted(refs.items())))
    return _local(arg, options, arg, side)


def _local(path: str, opts: Mapping[str, str], arg: str, side: str) -> EndpointSpec:
    if opts:
        raise UserError(f"{side} {arg!r} is a local path; {_option_name(side)} applies to s3:// and oss:// only")
    if not path:
        raise UserError(f"{side} {arg!r}: empty path; expected {EXPECTED}")
    return EndpointSpec("local", os.path.abspath(path), name=arg)


def _options(scheme: str, options: Mapping[str, str], side: str) -> dict[str, Any]:
    """The side's options, checked by the config's own per-store tables (``config_tiers.store_options``)."""
    return store_options(scheme, options, _option_name(side), Path.cwd())


def _option_name(side: str) -> str:
    return "--src-option" if side == "source" else "--dst-option"


def check_apart(src: EndpointSpec, dst: EndpointSpec) -> None:
    """Refuse a source and destination that are the same place or overlap (one inside the other)."""
    (s_where, s_path), (d_where, d_path) = _place(src), _place(dst)
    if s_where != d_where:
        return
    if s_path == d_path:
        raise UserError(f"source and destination are the same: {src.name} and {dst.name}")
    if _inside(d_path, s_path):
        raise UserError(f"destination {dst.name} is inside the source {src.name}; choose a destination outside it")
    if _inside(s_path, d_path):
        raise UserError(f"source {src.name} is inside the destination {dst.name}; choose a destination outside it")


def _place(spec: EndpointSpec) -> tuple[tuple, str]:
    if spec.kind == "local" or scheme_of(spec.url) == "file":
        path = spec.url[len("file://"):] if spec.url.startswith("file://") else spec.url
        return ("fs",), os.path.realpath(path)
    parts = urlsplit(spec.url)
    env = os.environ.get("AWS_ENDPOINT_URL", "") if parts.scheme == "s3" else ""
    endpoint = str(dict(spec.options).get("endpoint") or env).rstrip("/")
    return (parts.scheme, endpoint, parts.netloc), "/" + parts.path.strip("/")


def _inside(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip("/") + "/")


class StoreEndpoint:
    """A store as one side of a migration."""

    kind = "store"

    def __init__(self, store: Store) -> None:
        self.store = store
        self.url = store.url

    def list(self) -> Iterator[Entry]:
        for info in self.store.list():
            if not info.key.endswith("/"):  # folder markers made by consoles are not files
                yield Entry(info.key, info.size)

    def head(self, key: str) -> Entry | None:
        try:
            info = self.store.head(key)
        except NotFoundError:
            return None
        return Entry(key, info.size, info.meta.mtime_ns if info.meta else None, info.checksum)

    def mtime(self, key: str) -> int | None:
        entry = self.head(key)
        return entry.mtime_ns if entry else None

    def checksum(self, key: str) -> str:
        entry = self.head(key)
        return entry.checksum if entry else ""

    def delete(self, key: str) -> None:
        self.store.delete(key)

    def close(self) -> None:
        self.store.close()
