"""Prove a capacity tier answers: ``tiering config check --probe``.

Library code: nothing here prints; results are values the CLI renders.
"""

from __future__ import annotations

from tiering.stores.base import ObjectInfo, Store


def probe(store: Store) -> ObjectInfo | None:
    """The first object of the tier's listing (None for an empty tier): proof it answers."""
    listing = store.list()
    try:
        return next(iter(listing), None)
    finally:
        close = getattr(listing, "close", None)
        if close:
            close()
