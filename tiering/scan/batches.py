"""Wrap a walker's ``RawBatch`` into a ``pyarrow.RecordBatch`` in ``inventory.SCHEMA``.

The buffers become Arrow arrays without a copy: the walker already laid them
out the way Arrow does (native-endian fixed-width values; int32 offsets plus
concatenated bytes for the paths).
"""

from __future__ import annotations

from array import array

import pyarrow as pa

from tiering.core.inventory import DIR, FILE, SCHEMA, SYMLINK
from tiering.scan.walker import COLUMNS, TYPE_CODES, RawBatch


def _strings(values: list[str]) -> pa.Array:
    # Not pa.array(list): that checks whether the list is a pandas object and so
    # imports pandas, 0.2 s of every scan's start-up.
    data = [v.encode() for v in values]
    offsets = array("i", [0])
    for item in data:
        offsets.append(offsets[-1] + len(item))
    return pa.Array.from_buffers(pa.string(), len(data), [None, pa.py_buffer(offsets.tobytes()),
                                                          pa.py_buffer(b"".join(data))])


_TYPE_NAMES = _strings([FILE, DIR, SYMLINK])
_NUMERIC = [SCHEMA.field(name).type for name, _ in COLUMNS]

# The zero-copy wrap relies on array typecodes having Arrow's widths on this platform.
assert [array(code).itemsize for _, code in COLUMNS] == [t.bit_width // 8 for t in _NUMERIC]
assert list(TYPE_CODES.values()) == [0, 1, 2] and SCHEMA.names[2:] == [name for name, _ in COLUMNS]


def to_record_batch(raw: RawBatch) -> pa.RecordBatch:
    """The rows of ``raw`` as a record batch with exactly ``inventory.SCHEMA``."""
    n = raw.rows
    data, offsets, types, *numeric = (pa.py_buffer(b) for b in raw.buffers)
    path = pa.Array.from_buffers(pa.binary(), n, [None, offsets, data])
    indices = pa.Array.from_buffers(pa.int8(), n, [None, types])
    kind = pa.DictionaryArray.from_arrays(indices, _TYPE_NAMES)
    columns = [pa.Array.from_buffers(t, n, [None, buf]) for t, buf in zip(_NUMERIC, numeric)]
    return pa.RecordBatch.from_arrays([path, kind, *columns], schema=SCHEMA)
