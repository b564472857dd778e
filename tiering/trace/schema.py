"""The trace's schema: one row per access, the contract between recorders, readers and the simulator."""

from __future__ import annotations

import pyarrow as pa

#: What an access was. ``open`` and ``read`` count as reads of the file (heat); ``write`` changed it
#: (a write closed, or a file renamed into place); ``restore`` is the file's bytes coming back from a
#: capacity tier for a reader (the access guard's, on a stub's open: the open that follows is a miss).
OPEN, READ, WRITE, RESTORE = "open", "read", "write", "restore"
KINDS = (OPEN, READ, WRITE, RESTORE)
#: The ``tier`` of an access the hot tier served.
HOT = "hot"

SCHEMA = pa.schema(
    [
        pa.field("time_ns", pa.int64(), nullable=False),  # when, ns since the Unix epoch (UTC)
        pa.field("path", pa.binary(), nullable=False),  # relative to the hot tier's root, exact bytes
        pa.field("bytes", pa.int64(), nullable=False),  # bytes read or written, or the file's size for an open
        pa.field("kind", pa.dictionary(pa.int8(), pa.string()), nullable=False),  # one of KINDS
        pa.field("tier", pa.dictionary(pa.int8(), pa.string())),  # "hot", a capacity tier's name, or null
    ],
    metadata={b"tiering.trace.version": b"1"},
)

#: The schema as users read it (``tiering trace export --help`` and the README).
TRACE_DOC = """\b
Trace schema (Parquet; one row per access, version 1):
  time_ns  int64    when, ns since the Unix epoch (UTC)
  path     binary   the file, relative to the hot tier's root (exact bytes)
  bytes    int64    bytes read or written; for an open, the file's size
  kind     string   open | read | write | restore (a restore: the file came back
                    from a capacity tier for a reader; its open is a miss)
  tier     string   what served it: "hot", a capacity tier's name, or null"""


def kind_array(kinds: list[str] | pa.Array) -> pa.DictionaryArray:
    """``kinds`` as the schema's ``kind`` column."""
    return pa.array(kinds, pa.string()).dictionary_encode().cast(SCHEMA.field("kind").type)
