"""The states a managed file is in, as the catalog records them.

- ``resident``: the file's bytes are on the hot tier only (also the state of a file
  the catalog does not know);
- ``archived``: the hot tier and a capacity tier both hold the same version;
- ``released``: the hot tier holds a stub; the bytes are on the capacity tier;
- ``dirty``: the file was archived (or released and then written), and changed since:
  the hot tier's bytes are the file, the capacity copy is an older version.

The values are the catalog's column values and what ``--json`` prints; a member is a
``str`` (``FileState.RELEASED == "released"``), so records read back from the catalog
as plain strings compare equal to the members.
"""

from __future__ import annotations

import enum


class FileState(enum.StrEnum):
    """One file's state (see the module docstring)."""

    RESIDENT = "resident"
    ARCHIVED = "archived"
    RELEASED = "released"
    DIRTY = "dirty"


#: Every state, in the catalog's order.
STATES: tuple[FileState, ...] = tuple(FileState)
