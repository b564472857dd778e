"""What the CLI's planning verbs (``plan``, ``apply``, ``demo``) and the daemon share: the policy
to use, which inventory to plan on, the catalog's state, a plan made now.

``tiering run``'s cycle (``tiering.ops.cycle``) does not come through here: it always
scans first and plans on the catalog it holds, calling the scan and plan layers itself.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tiering.catalog import Catalog
from tiering.catalog.records import stored_ino
from tiering.config import Config
from tiering.core.errors import UserError
from tiering.core.units import format_duration, format_elapsed
from tiering.plan import Plan, Usage, make_plan, read_inventory
from tiering.policy import Policy, load_policy

if TYPE_CHECKING:
    import pyarrow as pa


def policy_for(config: Config, given: str | Path | None = None) -> Policy:
    """The policy named on the command line, else the config's ``policy``."""
    path = given or config.policy_path
    if path is None:
        raise UserError(f"{config.path}: no policy: pass --policy FILE or set `policy = \"...\"` in the config")
    return load_policy(path, config)


def latest_snapshot(config: Config) -> Path | None:
    from tiering.scan import snapshot_dir

    latest = snapshot_dir(config.catalog_path) / "latest.parquet"
    return latest if latest.exists() else None


def catalog_state(config: Config, catalog: Catalog | None = None) -> Iterator[pa.RecordBatch] | None:
    """The catalog's state as a stream of record batches (``Catalog.state_batches``; None when there is no
    catalog yet): the plan keeps of it only the rows of the inventory's paths, a partition at a time."""
    now = time.time()
    if catalog is not None:
        return catalog.state_batches(now, config.heat_half_life)
    if config.catalog_url is None and not config.catalog_path.exists():
        return None
    return _state_batches(config, now)


def _state_batches(config: Config, now: float) -> Iterator[pa.RecordBatch]:
    with Catalog.open(config.catalog_target) as reader:
        yield from reader.state_batches(now, config.heat_half_life)


def catalog_table(config: Config) -> pa.Table | None:
    """The whole state table in memory (None when there is no catalog yet): only for what pools over the
    namespace in memory anyway (a policy's datasets)."""
    if config.catalog_url is None and not config.catalog_path.exists():
        return None
    with Catalog.open(config.catalog_target) as reader:
        return reader.state_table(time.time(), config.heat_half_life)


def catalog_row(config: Config, rel: bytes) -> pa.Table | None:
    """The catalog's state of one path, as one row of ``Catalog.state_table`` (none: an empty table; None when
    there is no catalog yet): ``plan --explain`` reads one record by its key, not the catalog."""
    import pyarrow as pa

    if config.catalog_url is None and not config.catalog_path.exists():
        return None
    now = time.time()
    with Catalog.open(config.catalog_target) as reader:
        rec = reader.get(rel)
    rows = [] if rec is None else [rec]
    heat = [r.heat * 0.5 ** ((now - (now if r.heat_at is None else r.heat_at)) / config.heat_half_life)
            for r in rows]
    return pa.table({"path": pa.array([r.path for r in rows], pa.binary()),
                     "state": pa.array([r.state for r in rows], pa.string()),
                     "tier": pa.array([r.tier for r in rows], pa.string()),
                     "heat": pa.array(heat, pa.float64()),
                     "pinned": pa.array([r.pinned for r in rows], pa.bool_()),
                     "size": pa.array([r.size for r in rows], pa.int64()),
                     "mtime_ns": pa.array([r.mtime_ns for r in rows], pa.int64()),
                     "ino": pa.array([stored_ino(r.ino) for r in rows], pa.int64()),
                     "storage_class": pa.array([r.storage_class for r in rows], pa.string()),
                     "archived_at": pa.array([r.archived_at for r in rows], pa.float64())})


@dataclass(frozen=True)
class Inventory:
    """The snapshot a plan is made on, and how old it was (seconds since it was written)."""

    path: Path
    age: float
    stale: Path | None = None  # the latest snapshot, when it was older than ``[scan] max_age`` and was rescanned
    stale_age: float = 0.0
    max_age: float = 0.0

    def describe(self) -> str:
        """One line for the plan's header: which inventory, how old, and whether a stale one was replaced."""
        line = f"inventory: {self.path.name}, scanned {format_elapsed(self.age)} ago"
        if self.stale is not None and self.stale_age == float("inf"):  # (``tiering.scan.delta``)
            line += f" (the latest, {self.stale.name}, missed changes its deltas were to follow: rescanned)"
        elif self.stale is not None:
            line += (f" (the latest, {self.stale.name}, was {format_elapsed(self.stale_age)} old, older than "
                     f"[scan] max_age {format_duration(self.max_age)}: rescanned)")
        return line


def pick_inventory(config: Config, snapshot: Path | None = None, *, rescan: bool = False,
                   now: float | None = None) -> Inventory:
    """The inventory to plan on: ``snapshot`` as given (however old), else the latest scan unless it is
    older than ``[scan] max_age``, else a fresh scan of the hot tier."""
    now = time.time() if now is None else now
    if snapshot is not None:
        return Inventory(Path(snapshot), _age(Path(snapshot), now))
    latest = None if rescan else latest_snapshot(config)
    if latest is not None and (age := _age(latest, now, deltas=True)) <= config.scan_max_age:
        return Inventory(latest.resolve(), age)
    from tiering.scan import fresh_snapshot

    stale = latest.resolve() if latest is not None else None  # before the rescan points latest elsewhere
    fresh = fresh_snapshot(config)
    if stale is None:
        return Inventory(fresh, _age(fresh, time.time()))
    return Inventory(fresh, _age(fresh, time.time()), stale=stale, stale_age=age, max_age=config.scan_max_age)


def _age(snapshot: Path, now: float, *, deltas: bool = False) -> float:
    """Seconds since ``snapshot`` was written; ``deltas``: since its deltas were last current (infinite when
    they missed changes: ``tiering.scan.delta``)."""
    from tiering.scan.delta import inventory_age

    try:
        return inventory_age(snapshot, now) if deltas else max(0.0, now - os.stat(snapshot).st_mtime)
    except FileNotFoundError:
        raise UserError(f"inventory {snapshot} does not exist; run `tiering scan` or pass --rescan") from None


def plan_now(config: Config, policy: Policy, *, snapshot: Path | None = None, catalog: Catalog | None = None,
             rescan: bool = False, now_ns: int | None = None, executor: str | None = None) -> Plan:
    """Plan against the given inventory, else the latest if not older than ``[scan] max_age``, else a
    fresh scan (``pick_inventory``), and the catalog as it is now. ``executor`` (default: the config's
    ``[scan] executor``): ``dask://HOST:PORT`` plans the snapshot's partitions on that Dask cluster
    (``tiering.plan.distributed``), to the same plan."""
    snapshot = pick_inventory(config, snapshot, rescan=rescan).path
    state, now_ns = catalog_state(config, catalog), now_ns or time.time_ns()
    usage = Usage.of(config.hot_path)
    executor = executor or config.scan_executor
    if executor != "threads" and not policy.datasets:  # (datasets pool heat over the namespace: in memory)
        from tiering.plan.distributed import plan_on_cluster

        return plan_on_cluster(executor, read_inventory(snapshot), state, policy, now_ns, usage=usage,
                               default_tier=config.default_tier)
    return make_plan(read_inventory(snapshot), state, policy, now_ns, usage=usage, default_tier=config.default_tier)
