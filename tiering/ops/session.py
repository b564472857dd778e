"""Opening the catalog for writing, always recovering first.

Every command that changes anything goes through ``mover_session``: it takes
the catalog's writer lock (a second writer gets a clear error naming the
holder), settles whatever a crash left open, then hands out the mover.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from tiering.catalog import Catalog
from tiering.config import Config, check_hot_tier, check_locations
from tiering.mover.executor import Task
from tiering.mover.ops import Mover
from tiering.mover.outcome import Outcome
from tiering.mover.recover import recover

if TYPE_CHECKING:  # pyarrow and the planner load only for commands that plan, not for release/restore
    from tiering.plan import Plan


@contextmanager
def mover_session(config: Config, purpose: str) -> Iterator[tuple[Mover, list[Outcome]]]:
    """(mover, what recovery settled) for the length of a command."""
    check_hot_tier(config)
    check_locations(config)  # again: a symlink or mount may have changed since the config was checked
    catalog = Catalog.open(config.catalog_path, writer=True, purpose=purpose)
    mover = None
    try:
        mover = Mover(config, catalog)
        recovered = recover(mover)
        yield mover, recovered
    finally:
        if mover is not None:
            mover.close()
        catalog.close()


def plan_tasks(plan: Plan) -> Iterator[Task]:
    """The plan's actions as mover tasks, in plan order, a batch of rows at a time."""
    table = plan.actions.select(["path", "action", "target_tier", "storage_class", "size"])
    for batch in table.to_batches(max_chunksize=4096):
        cols = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
        yield from (Task(path, action, tier, cls, size or 0) for path, action, tier, cls, size in zip(*cols))


def plan_totals(plan: Plan) -> tuple[int, int]:
    import pyarrow as pa
    import pyarrow.compute  # noqa: F401  (pa.compute)

    sizes = plan.actions["size"] if plan.actions.num_rows else pa.array([], pa.int64())
    return plan.actions.num_rows, int(pa.compute.sum(sizes).as_py() or 0)
