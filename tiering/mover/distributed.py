"""Running transfers on an existing Dask distributed cluster.

``open_executor("dask://HOST:PORT")`` connects to a running scheduler. Workers
are stateless: each task carries what it needs (a store's URL and options, a
partition of small frozen items) and returns small frozen values. They must
see the same paths as the coordinator (a worker on each node that mounts the
hot tier).

- ``map`` splits a stream of items into partitions (by count and by bytes);
  each partition runs on a worker with its own bounded thread pool, and at
  most ``2 x workers`` partitions are in flight, so the listing is never held
  whole.
- ``offloading(mover)`` on a one-writer catalog (SQLite): mover actions stay
  on the coordinator, the only process that writes the catalog and journal,
  and only their ``put_file`` / ``get_file`` run on a worker.
- ``offloading(mover)`` on a catalog with many writers (a server): each action
  runs whole on a worker, which opens the catalog itself and journals its own
  steps (its own run with a heartbeat, its own claims: ``tiering.catalog.claims``),
  so the coordinator is no funnel, and a worker that dies is a dead run that
  ``recover`` on any node settles. The coordinator keeps the intake and the
  results (``execute``), and each worker builds a fresh mover per run, as a
  cycle does (it snapshots who has files open for writing on its node).

Dask is an optional extra: ``pip install 'tiering[dask]'``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import socket
import threading
import tomllib
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tiering.core.errors import ConfigError, UserError
from tiering.mover.executor import Executor, ThreadExecutor, bounded_map
from tiering.mover.outcome import Outcome
from tiering.stores import open_store
from tiering.stores.base import FileMeta, ObjectInfo, OnBytes, Store, TransfersElsewhere
from tiering.stores.options import SECRET_OPTIONS
from tiering.stores.retry import DEFAULT_RETRY, RetryPolicy

#: A partition closes at this many items or this many bytes, whichever comes first.
PARTITION_ITEMS = 512
PARTITION_BYTES = 1 << 30


def open_executor(address: str | None, **kwargs: Any) -> Executor:
    """``ThreadExecutor`` for None/"threads", a ``DaskExecutor`` for ``dask://HOST:PORT``."""
    if not address or address == "threads":
        return ThreadExecutor()
    parts = urlsplit(address)
    if parts.scheme != "dask" or not parts.hostname or not parts.port:
        raise UserError(f"--executor {address!r}: expected dask://HOST:PORT (a Dask scheduler) or 'threads'")
    return DaskExecutor(f"tcp://{parts.hostname}:{parts.port}", **kwargs)


class DaskExecutor:
    """An ``Executor`` over a Dask distributed scheduler (see the module docstring)."""

    def __init__(self, address: str, *, partition_items: int = PARTITION_ITEMS,
                 partition_bytes: int = PARTITION_BYTES, timeout: float = 10.0) -> None:
        try:
            from distributed import Client
        except ImportError as exc:
            raise UserError("--executor dask:// needs Dask: pip install 'tiering[dask]'") from exc
        try:
            self.client = Client(address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise UserError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
        self.address = address
        self.partition_items = partition_items
        self.partition_bytes = partition_bytes

    @property
    def processes(self) -> int:
        return max(1, len(self.client.scheduler_info(n_workers=-1)["workers"]))

    def map(self, fn: Callable, items: Iterable, *, jobs: int, stop: Callable[[], bool] | None = None) -> Iterator:
        """``fn`` over ``items``, a partition per task; each worker runs ``jobs`` threads per partition."""
        from distributed import as_completed

        parts = partitions(items, self.partition_items, self.partition_bytes)
        limit = 2 * self.processes
        finished = as_completed(loop=self.client.loop)
        running = 0
        while True:
            while running < limit and not (stop and stop()) and (part := next(parts, None)) is not None:
                finished.add(self.client.submit(run_partition, fn, part, jobs, pure=False))
                running += 1
            if not running:
                return
            future = next(finished)
            running -= 1
            results = future.result()
            future.release()
            yield from results

    @contextmanager
    def offloading(self, mover) -> Iterator[None]:
        """While entered: the mover's actions run whole on workers if its catalog takes many writers;
        else its stores go through ``OffloadedStore`` (see the module docstring)."""
        if getattr(mover.catalog, "claims", False):
            with self._acting_on_workers(mover):
                yield
            return
        original, cache, lock = mover.store, {}, threading.Lock()

        def store(tier: str, storage_class: str | None = None) -> Store:
            with lock:
                if (tier, storage_class) not in cache:
                    tc = mover.config.tier(tier)
                    options = {**tc.options, **({"storage_class": storage_class} if storage_class else {})}
                    options = references(mover.config, tier, options)  # no secret travels (see below)
                    spec = StoreSpec(tc.url, tuple(sorted(options.items())), mover.config.retry)
                    cache[tier, storage_class] = OffloadedStore(original(tier, storage_class), self.client, spec)
                return cache[tier, storage_class]

        mover.store = store
        try:
            yield
        finally:
            del mover.store

    @contextmanager
    def _acting_on_workers(self, mover) -> Iterator[None]:
        config, run = without_secrets(mover.config), uuid.uuid4().hex

        def on_worker(action: str):
            async def act(rel: bytes, *args) -> Outcome:
                return await _landed(self.client.submit(act_on_worker, config, run, action, rel, *args, pure=False))

            return act

        for action in _ACTIONS:
            setattr(mover, f"{action}_async", on_worker(action))
        try:
            yield
        finally:
            for action in _ACTIONS:
                delattr(mover, f"{action}_async")

    def close(self) -> None:
        self.client.close()


_ACTIONS = ("archive", "release", "restore", "pin")


async def _landed(future) -> Outcome:
    """A Dask future's result, awaited without holding a thread while the worker acts."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def landed(_) -> None:
        loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

    future.add_done_callback(landed)
    try:
        await done
        return await asyncio.to_thread(future.result)  # (the worker's small result; a task's error raises here)
    finally:
        future.release()


def partitions(items: Iterable, max_items: int, max_bytes: int) -> Iterator[tuple]:
    """Consecutive tuples of ``items``, cut at ``max_items`` or ``max_bytes`` (an item's ``size``)."""
    part: list = []
    nbytes = 0
    for item in items:
        part.append(item)
        nbytes += getattr(item, "size", 0) or 0
        if len(part) >= max_items or nbytes >= max_bytes:
            yield tuple(part)
            part, nbytes = [], 0
    if part:
        yield tuple(part)


def run_partition(fn: Callable, part: tuple, jobs: int) -> list:
    """On a worker: one partition through a local bounded pool."""
    return list(bounded_map(fn, part, jobs=min(jobs, len(part))))


# -- offloaded stores (for mover actions) ---------------------------------------


@dataclass(frozen=True)
class StoreSpec:
    """What a worker needs to open a store: its URL, options and retry policy."""

    url: str
    options: tuple[tuple[str, Any], ...]
    retry: RetryPolicy = DEFAULT_RETRY


_worker_stores: dict[StoreSpec, Store] = {}
_worker_lock = threading.Lock()


def worker_store(spec: StoreSpec) -> Store:
    """The store for ``spec`` in this process, opened once."""
    with _worker_lock:
        if spec not in _worker_stores:
            _worker_stores[spec] = open_store(spec.url, resolved(dict(spec.options), "the tier's"), retry=spec.retry)
        return _worker_stores[spec]


def _put(spec: StoreSpec, local: str, key: str, meta: FileMeta) -> ObjectInfo:
    return worker_store(spec).put_file(local, key, meta)


def _get(spec: StoreSpec, key: str, local: str) -> ObjectInfo:
    return worker_store(spec).get_file(key, local)


class OffloadedStore(TransfersElsewhere):
    """A store whose ``put_file``/``get_file`` run on a cluster worker; everything else runs here."""

    #: Workers are other processes: they get plain path names, not this process's descriptors (``Mover``).
    transfers_elsewhere = True

    def __init__(self, store: Store, client, spec: StoreSpec) -> None:
        self._store = store
        self._client = client
        self._spec = spec
        self.url = store.url

    def put_file(self, local: str | Path, key: str, meta: FileMeta, progress: OnBytes | None = None) -> ObjectInfo:
        info = self._client.submit(_put, self._spec, str(local), key, meta, pure=False).result()
        if progress:
            progress(info.size)
        return info

    def get_file(self, key: str, local: str | Path, progress: OnBytes | None = None) -> ObjectInfo:
        info = self._client.submit(_get, self._spec, key, str(local), pure=False).result()
        if progress:
            progress(info.size)
        return info

    def __getattr__(self, name: str):
        return getattr(self._store, name)


# -- whole actions on a worker (a catalog with many writers) --------------------

#: The movers of the runs this worker served lately (catalog, run) -> mover; the oldest is closed past this.
WORKER_RUNS = 8
_worker_movers: dict[tuple[str, str], object] = {}
_worker_catalogs: dict[str, object] = {}


def act_on_worker(config, run: str, action: str, rel: bytes, *args) -> Outcome:
    """On a worker: one mover action, journaled by this worker to the catalog server."""
    return getattr(_worker_mover(config, run), action)(rel, *args)


def _worker_mover(config, run: str):
    from tiering.catalog import Catalog
    from tiering.mover.ops import Mover

    config = with_secrets(config)
    target = str(config.catalog_target)
    with _worker_lock:
        if target not in _worker_catalogs:  # kept for the worker's life: its run heartbeats while it lives
            _worker_catalogs[target] = Catalog.open(target, writer=True, purpose="worker")
        mover = _worker_movers.get((target, run))
        if mover is None:  # a new run: a fresh mover (who has files open for writing is read anew)
            mover = _worker_movers[(target, run)] = Mover(config, _worker_catalogs[target])
            if len(_worker_movers) > WORKER_RUNS:
                _worker_movers.pop(next(iter(_worker_movers))).close()
        return mover


# -- credentials stay on their nodes --------------------------------------------
#
# A task's arguments are pickled to the scheduler and on to a worker, and a
# failing task's are logged there: a password or secret key among them would
# travel and could be written down. So a task carries each credential as the
# ``${VAR}`` reference the config file wrote (the only form a file may hold),
# and the worker resolves it from its own environment, as any tiering process
# on that node would: start the Dask workers with those variables exported.

_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def without_secrets(config):
    """``config`` with the catalog URL's password and every tier's secret options as their ``${VAR}``
    references (read again from ``config.path``); ``with_secrets`` on a worker undoes it."""
    raw = _raw(config)
    url = config.catalog_url
    if url and urlsplit(url).password is not None:
        written = urlsplit(raw.get("catalog", {}).get("url", "")).password or ""
        url = _with_password(url, _reference(written, "the [catalog] url's password", config))
    tiers = {name: dataclasses.replace(tc, options=references(config, name, tc.options, raw))
             for name, tc in config.tiers.items()}
    return dataclasses.replace(config, catalog_url=url, tiers=tiers)


def with_secrets(config):
    """On a worker: ``config`` (from ``without_secrets``) with its references resolved from this process's
    environment."""
    url = config.catalog_url
    if url and urlsplit(url).password is not None:
        url = _with_password(url, resolve(urlsplit(url).password, "the [catalog] url's password"))
    tiers = {name: dataclasses.replace(tc, options=resolved(tc.options, f"[tiers.{name}]"))
             for name, tc in config.tiers.items()}
    return dataclasses.replace(config, catalog_url=url, tiers=tiers)


def references(config, tier: str, options: dict[str, Any], raw: dict | None = None) -> dict[str, Any]:
    """``options`` of ``tier`` with each secret as the reference its config file wrote."""
    if not SECRET_OPTIONS & options.keys():
        return options
    written = (raw if raw is not None else _raw(config)).get("tiers", {}).get(tier, {})
    return {key: _reference(written.get(key), f"[tiers.{tier}] {key}", config) if key in SECRET_OPTIONS else value
            for key, value in options.items()}


def resolved(options: dict[str, Any], where: str) -> dict[str, Any]:
    """A store's ``options`` (from ``references``) with each secret's reference resolved here (``where``
    names the options in an error)."""
    return {key: resolve(value, f"{where} {key}") if key in SECRET_OPTIONS else value
            for key, value in options.items()}


def resolve(value: str, what: str) -> str:
    """A ``${VAR}`` reference's value in this process's environment."""
    found = _REF.match(value or "")
    if not found:  # (never a secret itself: a task only carries references)
        raise ConfigError(f"{what}: expected a ${{VAR}} reference from the coordinator")
    name = found.group(1)
    if not os.environ.get(name):
        raise ConfigError(f"Dask worker on {socket.gethostname()}: ${{{name}}} ({what}) is not set in its "
                          f"environment; export it where the worker starts (secrets never travel with tasks)")
    return os.environ[name]


def _raw(config) -> dict:
    try:
        with open(config.path, "rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{config.path}: cannot read it again for the Dask workers' references: {exc}") from None


def _reference(written: Any, what: str, config) -> str:
    if not isinstance(written, str) or not _REF.match(written):
        raise ConfigError(f"{config.path}: {what} is no ${{VAR}} reference in the file (it changed since it was "
                          f"loaded?); a secret is never sent to Dask workers")
    return written


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    user, _, _ = parts.netloc.rpartition("@")[0].partition(":")
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.netloc.rpartition('@')[2]}"))
