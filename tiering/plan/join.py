"""The inventory joined with the catalog: what the policy engine evaluates.

The scanner sees the hot tier as it is; the catalog knows what tiering did to
each file. ``joined`` streams inventory batches through one Acero hash join
against the catalog (built once, in memory); ``joined_partition`` joins one
partition of a partitioned inventory with the catalog rows of the same
partition (the out-of-core plan). Then ``normalize`` derives the columns rules
read:

- ``state``: the catalog's, with one correction: an *archived* file whose
  size, mtime or inode no longer match what was archived is *dirty* (a write
  to an archived file makes it dirty); unmanaged files are *resident*.
- ``size``: the true size, so a released stub (zero bytes on the hot tier)
  still reads as the size its data has; ``blocks`` stays what the hot tier holds.
- ``heat`` (0 when unknown), ``pinned`` (false), ``tier`` (null), ``storage_class``
  of the capacity copy as recorded (``""`` when none is: the tier's own class),
  ``archived_at`` when that copy was made (null: none).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pyarrow as pa
import pyarrow.acero as acero
import pyarrow.compute as pc

from tiering.core.inventory import SCHEMA
from tiering.core.states import FileState

#: Catalog columns the join brings in, as ``cat_<name>``.
CATALOG_COLUMNS = ("state", "tier", "heat", "pinned", "size", "mtime_ns", "ino", "storage_class", "archived_at")


def catalog_frame(table: pa.Table | None) -> pa.Table:
    """The catalog's ``state_table`` (plus identity columns) renamed for the join."""
    types = {"state": pa.string(), "tier": pa.string(), "heat": pa.float64(), "pinned": pa.bool_(),
             "size": pa.int64(), "mtime_ns": pa.int64(), "ino": pa.int64(), "storage_class": pa.string(),
             "archived_at": pa.float64()}
    if table is None:
        table = pa.table({"path": pa.array([], pa.binary()), **{c: pa.array([], types[c]) for c in CATALOG_COLUMNS}})

    def column(name: str) -> pa.Array:  # (a state table without storage classes: none recorded)
        return table[name].cast(types[name]) if name in table.column_names else pa.nulls(table.num_rows, types[name])

    return pa.table({"cat_path": table["path"], **{f"cat_{c}": column(c) for c in CATALOG_COLUMNS}})


def joined(batches: Iterable[pa.RecordBatch], catalog: pa.Table) -> Iterator[pa.RecordBatch]:
    """Inventory batches with the ``cat_*`` columns added (null for unmanaged files)."""
    if catalog.num_rows == 0:  # nothing to join: skip Acero entirely
        nulls = {name: pa.nulls(0, catalog.schema.field(name).type) for name in catalog.column_names[1:]}
        for batch in batches:
            yield pa.RecordBatch.from_arrays(
                [*batch.columns, *(pa.nulls(batch.num_rows, a.type) for a in nulls.values())],
                names=[*batch.schema.names, *nulls])
        return
    reader = pa.RecordBatchReader.from_batches(SCHEMA, batches)
    left = acero.Declaration("record_batch_reader_source", acero.RecordBatchReaderSourceNodeOptions(reader))
    right = acero.Declaration("table_source", acero.TableSourceNodeOptions(catalog))
    join = acero.Declaration("hashjoin", acero.HashJoinNodeOptions(
        "left outer", ["path"], ["cat_path"], left_output=SCHEMA.names, right_output=catalog.column_names[1:]),
        inputs=[left, right])
    yield from join.to_reader(use_threads=True)


def joined_partition(inventory: pa.Table, catalog: pa.Table, batch_rows: int) -> list[pa.RecordBatch]:
    """One inventory partition (a table) with the ``cat_*`` columns of its paths (null for unmanaged files),
    in inventory order, as batches of ``batch_rows``: the rows ``joined`` gives. ``catalog``: the catalog rows
    of the same partition, as ``catalog_frame`` names them; one hash of them, probed once by the partition."""
    inventory = inventory.combine_chunks()
    if catalog.num_rows:
        where = pc.index_in(inventory["path"], value_set=catalog["cat_path"].combine_chunks())
        right = catalog.drop_columns(["cat_path"]).take(where)
    else:
        right = pa.table({n: pa.nulls(inventory.num_rows, catalog.schema.field(n).type)
                          for n in catalog.column_names[1:]})
    table = pa.table({**{n: inventory[n] for n in inventory.column_names},
                      **{n: right[n] for n in right.column_names}})
    return table.to_batches(max_chunksize=batch_rows)


def normalize(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Derive ``state``, ``size``, ``heat``, ``pinned``, ``tier`` and ``storage_class`` from the joined columns."""
    archived = pc.fill_null(pc.equal(batch["cat_state"], FileState.ARCHIVED), False)
    changed = pc.or_(pc.or_(pc.not_equal(batch["size"], batch["cat_size"]),
                            pc.not_equal(batch["mtime_ns"], batch["cat_mtime_ns"])),
                     # a uint64 inode past 2**63 (FUSE filesystems hand those out) wraps as the catalog stores it
                     pc.not_equal(batch["ino"].cast(pa.int64(), safe=False), batch["cat_ino"]))
    dirty = pc.and_(archived, pc.fill_null(changed, False))
    state = pc.if_else(dirty, FileState.DIRTY, pc.fill_null(batch["cat_state"], FileState.RESIDENT))
    released = pc.fill_null(pc.equal(state, FileState.RELEASED), False)
    size = pc.if_else(released, pc.fill_null(batch["cat_size"], batch["size"]), batch["size"])
    columns = {name: batch[name] for name in SCHEMA.names}
    columns.update(size=size, state=state, tier=batch["cat_tier"], heat=pc.fill_null(batch["cat_heat"], 0.0),
                   pinned=pc.fill_null(batch["cat_pinned"], False),
                   storage_class=pc.fill_null(batch["cat_storage_class"], ""), archived_at=batch["cat_archived_at"])
    return pa.RecordBatch.from_pydict(columns)
