"""The inventory: one row per entry of the hot tier, as Arrow record batches.

This schema is the contract between the scanner (which writes it, streaming
batches into a Parquet snapshot), the catalog join (which adds state columns)
and the policy engine (which evaluates rules over it). Paths are the exact
bytes relative to the hot tier root, never decoded text.
"""

from __future__ import annotations

import pyarrow as pa

#: Entry types recorded by the scanner. Special files (sockets, fifos,
#: devices) are counted and skipped, never recorded.
FILE, DIR, SYMLINK = "file", "dir", "symlink"

SCHEMA = pa.schema(
    [
        pa.field("path", pa.binary(), nullable=False),  # relative to the hot tier root
        pa.field("type", pa.dictionary(pa.int8(), pa.string()), nullable=False),
        pa.field("size", pa.int64(), nullable=False),  # st_size, bytes
        pa.field("blocks", pa.int64(), nullable=False),  # st_blocks, 512-byte units actually allocated
        pa.field("mode", pa.uint32(), nullable=False),
        pa.field("uid", pa.uint32(), nullable=False),
        pa.field("gid", pa.uint32(), nullable=False),
        pa.field("atime_ns", pa.int64(), nullable=False),
        pa.field("mtime_ns", pa.int64(), nullable=False),
        pa.field("ctime_ns", pa.int64(), nullable=False),
        pa.field("ino", pa.uint64(), nullable=False),
        pa.field("nlink", pa.uint32(), nullable=False),
    ],
    metadata={b"tiering.core.inventory.version": b"1"},
)

#: Columns the catalog join adds for the policy engine.
CATALOG_FIELDS = [
    pa.field("state", pa.string()),  # resident | archived | released | dirty (null: unmanaged = resident)
    pa.field("tier", pa.string()),  # capacity tier holding a copy, or null
    pa.field("heat", pa.float64()),  # decayed access count; 0 when unknown
    pa.field("pinned", pa.bool_()),
]
