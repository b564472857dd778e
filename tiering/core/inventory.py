"""The inventory: one row per entry of the hot tier, as Arrow record batches.

This schema is the contract between the scanner (which writes it, streaming
batches into a Parquet snapshot), the catalog join (which adds state columns)
and the policy engine (which evaluates rules over it). Paths are the exact
bytes relative to the hot tier root, never decoded text.
"""

from __future__ import annotations

import zlib

import numpy as np
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

# -- partitions ------------------------------------------------------------------------------------------------------
#
# A large inventory is split into ``buckets`` partitions by a stable key of the path so that the plan can join one
# partition at a time with the catalog rows of the same paths. The key is ``zlib.crc32(path) % buckets``: the
# CRC-32 (IEEE, as zlib, gzip and PNG compute it) of the exact path bytes, so any tool in any language finds the
# partition of a path, and a catalog row is routed to its partition knowing only its path. A hash of the whole path,
# not of the parent directory or top-level subtree, because training namespaces are skewed: one dataset directory
# may hold tens of millions of shards, and a per-directory key would put all of them in one partition, which is
# exactly the memory bound partitioning is for. Locality by subtree buys the plan nothing (it joins on path equality).

#: Rows a partition should hold at most, on average: the plan's working set is about one partition.
PARTITION_ROWS = 1 << 20
#: The most partitions a snapshot is split into (a billion rows then averages ~1 M rows a partition).
MAX_BUCKETS = 1024
#: Parquet key-value metadata (and the partitioned snapshot's ``_tiering.json``) naming the layout.
BUCKETS_KEY = "tiering.inventory.buckets"
BUCKET_KEY_DOC = "zlib.crc32(path) % buckets"


def buckets_for(rows: int) -> int:
    """Partitions for an inventory of about ``rows`` rows: a power of two, 1 for up to ``PARTITION_ROWS``."""
    buckets = 1
    while buckets * PARTITION_ROWS < rows and buckets < MAX_BUCKETS:
        buckets *= 2
    return buckets


def bucket_of(paths: pa.Array | pa.ChunkedArray, buckets: int) -> np.ndarray:
    """The partition (0 .. ``buckets`` - 1) of each path, as ``BUCKET_KEY_DOC`` says (``uint32``)."""
    if buckets <= 1:
        return np.zeros(len(paths), np.uint32)
    crc = np.fromiter(map(zlib.crc32, paths.to_pylist()), np.uint32, len(paths))
    return crc % np.uint32(buckets)
