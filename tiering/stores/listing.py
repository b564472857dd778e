"""Listings that are whole or fail: the one rule every store's ``list()`` keeps.

A caller that takes a listing for the whole (``sync --delete``, a catalog
rebuild) would act on what is missing from a listing cut short, so a store's
``list()`` yields every key or raises; it never just stops. Retries resume
after the last key yielded (start-after, a marker), never by asking an
exhausted stream again.

``whole_listing`` wraps a store's raw listing so a failure reads the same on
every store: a failure that is about one item (access denied on a folder, a
folder gone) becomes ``ListingError`` — the listing, not one item, is what
failed — while run-stopping failures (the tier unreachable after the retry
policy, a malformed answer) and credential mistakes keep their class. Each
message names the tier and says how far the listing got.
"""

from __future__ import annotations

from collections.abc import Iterator

from tiering.core.errors import ITEM, ListingError, StoreError
from tiering.stores.base import ObjectInfo


def whole_listing(url: str, prefix: str, listing: Iterator[ObjectInfo]) -> Iterator[ObjectInfo]:
    """``listing`` as is, with a failure named for the listing it cut (see the module's docstring)."""
    count, last = 0, ""
    try:
        for info in listing:
            count, last = count + 1, info.key
            yield info
    except StoreError as exc:
        where = f"after {count:,} keys (last {last!r})" if count else "before any key"
        message = f"listing {url}/{prefix if prefix else ''}".rstrip("/") + f" failed {where}: {_detail(exc, url, prefix)}"
        if exc.scope == ITEM:
            raise ListingError(message, store=url, key=prefix) from exc
        raise type(exc)(message, store=exc.store or url, key=exc.key) from exc


def _detail(exc: StoreError, url: str, prefix: str) -> str:
    """What went wrong, without the tier and prefix the listing's message already names."""
    text = str(exc).removeprefix(f"{url}: ")
    for name in (prefix, "(bucket)", "(root)"):
        if name and text.startswith(f"{name}: "):
            return text[len(name) + 2:]
    return text
