"""``[catalog] url``: a PostgreSQL server instead of the SQLite file at ``[catalog] path``.

::

    [catalog]
    path = "state/catalog.db"     # still used: the inventory snapshots, handoff ledgers and the
                                  # guard's folder live beside it
    url = "postgresql://tiering:${TIERING_PG_PASSWORD}@db.example:5432/tiering"

The password, if the URL carries one, must be a ``${VAR}`` reference (like the
stores' secrets); libpq's own ``PGPASSWORD`` or ``~/.pgpass`` work too, with no
password in the URL. Every message shows the URL with its password as ``***``.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from tiering.config.values import Table

SCHEMES = ("postgresql", "postgres")
_ONLY_REF = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$")


def parse_catalog_url(table: Table) -> str | None:
    """The checked, ``${VAR}``-expanded ``url`` of the ``[catalog]`` table, or None."""
    raw = table.data.get("url")
    if raw is None:
        return None
    if not isinstance(raw, str) or urlsplit(raw).scheme not in SCHEMES:
        raise table.error("url", f"found {raw!r}" if not isinstance(raw, str) else "not a postgresql:// URL",
                          "expected postgresql://USER:${PASSWORD_VAR}@HOST[:PORT]/DATABASE")
    userinfo = urlsplit(raw).netloc.rpartition("@")[0]
    password = userinfo.partition(":")[2] if ":" in userinfo else None
    if password and not _ONLY_REF.match(password):
        raise table.error("url", "the password is written in the file (not shown)",
                          "expected a reference to an environment variable like ${TIERING_PG_PASSWORD}")
    return table.string("url")


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``: the form every message and log shows."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
