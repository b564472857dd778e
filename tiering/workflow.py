"""The steps a command strings together: inventory, catalog state, plan.

Kept out of the CLI so the cron job, the daemon and tests run the same code.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from tiering.catalog import Catalog
from tiering.config import Config, check_locations
from tiering.errors import UserError
from tiering.plan import Plan, Usage, make_plan
from tiering.policy import Policy, load_policy


def policy_for(config: Config, given: str | Path | None = None) -> Policy:
    """The policy named on the command line, else the config's ``policy``."""
    path = given or config.policy_path
    if path is None:
        raise UserError(f"{config.path}: no policy: pass --policy FILE or set `policy = \"...\"` in the config")
    return load_policy(path, config)


def check_hot_tier(config: Config) -> None:
    """A hot tier that is not an existing directory is the config's mistake (``UserError``, exit 2)."""
    if not config.hot_path.is_dir():
        raise UserError(f"{config.path}: [hot] path: {config.hot_path} is not an existing directory "
                        "(is it mounted?)")


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


def plan_now(config: Config, policy: Policy, *, snapshot: Path | None = None, catalog: Catalog | None = None,
             rescan: bool = False, now_ns: int | None = None) -> Plan:
    """Plan against the given (or latest, or a fresh) inventory and the catalog as it is now."""
    snapshot = snapshot or (None if rescan else latest_snapshot(config)) or fresh_snapshot(config)
    return make_plan(inventory(snapshot), catalog_state(config, catalog), policy, now_ns or time.time_ns(),
                     usage=Usage.of(config.hot_path), default_tier=config.default_tier)
