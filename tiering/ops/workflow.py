"""What the CLI's planning verbs (``plan``, ``apply``, ``demo``) and the daemon share: the policy
to use, which inventory to plan on, the catalog's state, a plan made now.

``tiering run``'s cycle (``tiering.ops.cycle``) does not come through here: it always
scans first and plans on the catalog it holds, calling the scan and plan layers itself.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tiering.catalog import Catalog
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


def catalog_state(config: Config, catalog: Catalog | None = None) -> pa.Table | None:
    """The catalog's state table (None when there is no catalog yet)."""
    now = time.time()
    if catalog is not None:
        return catalog.state_table(now, config.heat_half_life)
    if config.catalog_url is None and not config.catalog_path.exists():
        return None
    with Catalog.open(config.catalog_target) as reader:
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
    from tiering.scan import fresh_snapshot

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
    return make_plan(read_inventory(snapshot), catalog_state(config, catalog), policy, now_ns or time.time_ns(),
                     usage=Usage.of(config.hot_path), default_tier=config.default_tier)
