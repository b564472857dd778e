"""Opening the catalog for writing, always recovering first.

Every command that changes anything goes through ``mover_session``: it takes
the catalog's writer lock (a second writer gets a clear error naming the
holder), settles whatever a crash left open, then hands out the mover.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tiering.catalog import Catalog
from tiering.config import Config, check_hot_tier, check_locations
from tiering.mover.handoff import join_guard
from tiering.mover.ops import Mover
from tiering.mover.outcome import Outcome
from tiering.mover.recover import recover


@contextmanager
def mover_session(config: Config, purpose: str) -> Iterator[tuple[Mover, list[Outcome]]]:
    """(mover, what recovery settled) for the length of a command."""
    check_hot_tier(config)
    check_locations(config)  # again: a symlink or mount may have changed since the config was checked
    catalog = Catalog.open(config.catalog_target, writer=True, purpose=purpose)
    mover = None
    try:
        mover = Mover(config, catalog)
        recovered = recover(mover)
        recovered += join_guard(mover)  # restores the access guard did while the catalog was not ours
        yield mover, recovered
    finally:
        if mover is not None:
            mover.close()
        catalog.close()
