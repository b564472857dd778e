"""The steps a command strings together: inventory, catalog state, plan.

Kept out of the CLI so the cron job, the daemon and tests run the same code.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from tiering.catalog import Catalog
from tiering.config import Config, check_hot_tier, check_locations
from tiering.core.errors import UserError
from tiering.plan import Plan, Usage, make_plan
from tiering.policy import Policy, load_policy
from tiering.core.units import format_duration, format_elapsed


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


def fresh_snapshot(config: Config, jobs: int | None = None) -> Path:
    """Scan the hot tier now; returns the new snapshot (also marked latest)."""
    from tiering.scan import mark_latest, new_snapshot_path, snapshot_dir, write_snapshot

    check_locations(config)  # each cycle: a symlink or mount may have changed since the config was loaded
    target = new_snapshot_path(snapshot_dir(config.catalog_path))
    target.parent.mkdir(parents=True, exist_ok=True)
    write_snapshot(config.hot_path, target, jobs=jobs)
    mark_latest(target)
    return target


#: Rows per batch when planning: large batches amortise per-batch work; a few are in flight at once.
PLAN_BATCH_ROWS = 1 << 20


def inventory(path: Path) -> Iterator[pa.RecordBatch]:
    from tiering.scan import iter_snapshot

    return iter_snapshot(path, batch_rows=PLAN_BATCH_ROWS)


def catalog_state(config: Config, catalog: Catalog | None = None) -> pa.Table | None:
    """The catalog's state table (None when there is no catalog yet)."""
    now = time.time()
    if catalog is not None:
        return catalog.state_table(now, config.heat_half_life)
    if not config.catalog_path.exists():
        return None
    with Catalog.open(config.catalog_path) as reader:
        return reader.state_table(now, config.heat_half_life)


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
        if self.stale is not None:
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
    if latest is not None and (age := _age(latest, now)) <= config.scan_max_age:
        return Inventory(latest.resolve(), age)
    stale = latest.resolve() if latest is not None else None  # before the rescan points latest elsewhere
    fresh = fresh_snapshot(config)
    if stale is None:
        return Inventory(fresh, _age(fresh, time.time()))
    return Inventory(fresh, _age(fresh, time.time()), stale=stale, stale_age=age, max_age=config.scan_max_age)


def _age(snapshot: Path, now: float) -> float:
    try:
        return max(0.0, now - os.stat(snapshot).st_mtime)
    except FileNotFoundError:
        raise UserError(f"inventory {snapshot} does not exist; run `tiering scan` or pass --rescan") from None


def plan_now(config: Config, policy: Policy, *, snapshot: Path | None = None, catalog: Catalog | None = None,
             rescan: bool = False, now_ns: int | None = None) -> Plan:
    """Plan against the given inventory, else the latest if not older than ``[scan] max_age``, else a
    fresh scan (``pick_inventory``), and the catalog as it is now."""
    snapshot = pick_inventory(config, snapshot, rescan=rescan).path
    return make_plan(inventory(snapshot), catalog_state(config, catalog), policy, now_ns or time.time_ns(),
                     usage=Usage.of(config.hot_path), default_tier=config.default_tier)
