"""The out-of-core plan: a partitioned snapshot planned a few partitions at a time, to the same plan.

``make_plan`` sends a partitioned snapshot here. Each inventory partition is
joined with the catalog rows of the same bucket (``tiering.core.inventory``:
``crc32(path) % buckets``) and planned like any batch; between partitions only
bounded running prefixes are kept for capped rules and the watermark (see
``plan_partitions``), so peak memory follows the partition size and the number
of actions kept, not the namespace.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as feather

from tiering.core.inventory import bucket_of
from tiering.plan.join import catalog_frame, joined_partition
from tiering.plan.model import Plan, Usage
from tiering.plan.planner import (  # the planner's own steps, shared within the package
    PLAN_BATCH_ROWS,
    _Accumulator,
    _batch_planner,
    _cap,
    _coldest_first,
    _finish,
    _ordered_map,
    _over_cap,
    _relief_prefix,
    _watermark_order,
)
from tiering.policy import Policy

if TYPE_CHECKING:  # pragma: no cover
    from tiering.scan import Snapshot

#: Catalog rows buffered in memory before a spill writes them out.
_SPILL_ROWS = 1 << 20


def plan_partitions(snapshot: Snapshot, catalog: pa.Table | Iterable[pa.RecordBatch] | None, policy: Policy,
                    now_ns: int, *, usage: Usage | None = None, default_tier: str | None = None) -> Plan:
    """``make_plan`` out of core: the same plan, with memory bounded by a few partitions and the actions kept.

    The catalog state is split by the inventory's partition key (``bucket_of``): a table in memory by one
    sort, a stream of batches (a catalog read that does not hold the whole catalog) by spilling each bucket to
    a temporary directory beside the snapshot. Then each inventory partition is joined with the catalog rows of
    its bucket and planned on its own, a few partitions at a time on a few threads, and merged in partition order.

    What is kept between partitions stays bounded: every action of an uncapped rule (each one is an action of
    the plan), and for capped rules and the watermark only each one's running prefix in its own order: a
    capped rule's rows coldest first while they fit its caps, plus the first one over its byte cap (it still
    stops rows after it that come from other partitions); watermark candidates in watermark order until their
    blocks reach the most the watermark could need (usage above the low mark; the rules' releases can only
    lower it). A row past the prefix of a subset is past the prefix of the whole, since sizes and blocks are
    never negative, and the rows the whole prefix holds are all kept, so the final merge is exact.
    """
    bounds = _Bounds(policy, usage)
    one = _batch_planner(policy, now_ns)
    with _catalog_buckets(catalog, snapshot.buckets, snapshot.path.parent) as catalog_of:
        parts = _ordered_map(lambda b: plan_bucket(snapshot, b, catalog_of, one, bounds), range(snapshot.buckets))
        acc = merge_parts(parts, bounds)
    return _finish(policy, bounds.settle(acc), now_ns, usage, default_tier)


def plan_bucket(snapshot: Snapshot, bucket: int, catalog_of: Callable[[int, pa.ChunkedArray], pa.Table],
                one: Callable[[pa.RecordBatch], _Accumulator], bounds: _Bounds) -> _Accumulator:
    """One partition planned on its own, cut down to what can still be in the plan (``plan_partitions``)."""
    part = _Accumulator()
    inventory = snapshot.partition(bucket)
    if inventory.num_rows:
        for batch in joined_partition(inventory, catalog_of(bucket, inventory["path"]), PLAN_BATCH_ROWS):
            part.merge(one(batch))
    return bounds.prune(bounds.split(part))


def merge_parts(parts: Iterable[_Accumulator], bounds: _Bounds) -> _Accumulator:
    """The partitions' pruned accumulators merged in partition order, pruned again as they come."""
    acc = _Accumulator()
    for part in parts:
        acc.merge(part)
        bounds.prune(acc)
    return acc


@contextmanager
def _catalog_buckets(catalog: pa.Table | Iterable[pa.RecordBatch] | None, buckets: int,
                     spill_dir: Path) -> Iterator[Callable[[int, pa.ChunkedArray], pa.Table]]:
    """``catalog_of(bucket, paths)``: the catalog rows (as ``catalog_frame`` names them) of the inventory paths
    ``paths`` of ``bucket`` (and, from a table in memory, maybe other rows of that bucket: the join ignores them).

    A table in memory is split by one sort. A stream of batches (a catalog read that does not hold the whole
    catalog) is kept to the inventory's paths: with one partition, by filtering the stream against them as it
    comes; with more, by spilling each bucket to a temporary directory beside the snapshot and filtering each
    spilled file as it is read back. Either way a catalog far larger than the inventory (rows of files long
    gone) costs disk, never memory."""
    if catalog is None or isinstance(catalog, pa.Table):
        frame = catalog_frame(catalog)
        ids = bucket_of(frame["cat_path"], buckets)
        order = np.argsort(ids, kind="stable")
        bounds = np.searchsorted(ids[order], np.arange(buckets + 1))
        yield lambda b, paths: frame.take(pa.array(order[bounds[b]:bounds[b + 1]]))
        return
    if buckets == 1:
        yield lambda b, paths: _concat([_only(catalog_frame(pa.Table.from_batches([batch])), paths)
                                        for batch in catalog])
        return
    with spilled(catalog, buckets, spill_dir) as spill:
        yield spill.read


@contextmanager
def spilled(catalog: Iterable[pa.RecordBatch] | None, buckets: int, spill_dir: Path) -> Iterator[_Spill]:
    """The catalog state bucketed into Arrow IPC files in a temporary directory in ``spill_dir``, removed after."""
    with tempfile.TemporaryDirectory(prefix=".plan-catalog-", dir=spill_dir) as tmp:
        spill = _Spill(Path(tmp), buckets)
        for batch in catalog or ():
            spill.write(catalog_frame(pa.Table.from_batches([batch])))
        spill.flush_all()
        yield spill


def _only(frame: pa.Table, paths: pa.ChunkedArray) -> pa.Table:
    """The rows of ``frame`` whose ``cat_path`` is one of ``paths``."""
    if not frame.num_rows:
        return frame
    if isinstance(paths, pa.ChunkedArray):
        paths = paths.combine_chunks()
    return frame.filter(pc.is_in(frame["cat_path"], value_set=paths))


def _concat(tables: list[pa.Table]) -> pa.Table:
    tables = [t for t in tables if t.num_rows]
    return pa.concat_tables(tables).combine_chunks() if tables else catalog_frame(None)


class _Spill:
    """Catalog rows bucketed onto disk (Arrow IPC files, a few per bucket), read back one bucket at a time."""

    def __init__(self, directory: Path, buckets: int) -> None:
        self.directory, self.buckets = directory, buckets
        self.buffers: dict[int, list[pa.Table]] = {}
        self.buffered = 0
        self.files: dict[int, list[Path]] = {}

    def write(self, frame: pa.Table) -> None:
        ids = bucket_of(frame["cat_path"], self.buckets)
        order = np.argsort(ids, kind="stable")
        bounds = np.searchsorted(ids[order], np.arange(self.buckets + 1))
        for b in np.flatnonzero(np.diff(bounds)):
            self.buffers.setdefault(int(b), []).append(frame.take(pa.array(order[bounds[b]:bounds[b + 1]])))
        self.buffered += frame.num_rows
        if self.buffered >= _SPILL_ROWS:
            self.flush_all()

    def flush_all(self) -> None:
        for bucket, tables in self.buffers.items():
            files = self.files.setdefault(bucket, [])
            path = self.directory / f"{bucket:05d}-{len(files):06d}.arrow"
            feather.write_feather(pa.concat_tables(tables), path, compression="uncompressed")
            files.append(path)
        self.buffers, self.buffered = {}, 0

    def read(self, bucket: int, paths: pa.ChunkedArray) -> pa.Table:
        """The spilled rows of ``bucket`` whose paths are among ``paths``, one spilled file at a time."""
        return read_spilled(self.files.get(bucket, []), paths)


def read_spilled(files: list[Path], paths: pa.ChunkedArray) -> pa.Table:
    """The rows of the spilled ``files`` (one bucket's) whose paths are among ``paths``: read a group of files
    at a time, up to ``_SPILL_ROWS`` rows, and filtered together (each filter hashes ``paths`` once)."""
    kept, group, rows = [], [], 0
    for path in files:
        group.append(feather.read_table(path, memory_map=False))
        rows += group[-1].num_rows
        if rows >= _SPILL_ROWS:
            kept.append(_only(pa.concat_tables(group), paths))
            group, rows = [], 0
    if group:
        kept.append(_only(pa.concat_tables(group), paths))
    return _concat(kept)


class _Bounds:
    """What ``plan_partitions`` keeps between partitions (see there): capped rules' and the watermark's prefixes."""

    def __init__(self, policy: Policy, usage: Usage | None) -> None:
        self.policy = policy
        self.capped = {i: rule for i, rule in enumerate(policy.rules)
                       if rule.max_files is not None or rule.max_bytes is not None}
        wm = policy.watermark
        self.relief = wm is not None and usage is not None and usage.total > 0 and usage.fraction > wm.high
        # The most the watermark can need: the rules' releases, unknown until the end, only lower it.
        self.need = usage.used - int(wm.low * usage.total) if self.relief else 0

    def split(self, acc: _Accumulator) -> _Accumulator:
        """Move the capped rules' rows of ``acc.chosen`` to ``acc.capped`` (the rest keeps its order)."""
        if self.capped:
            capped = pa.array(list(self.capped), pa.int32())
            rest = []
            for batch in acc.chosen:
                mask = pc.is_in(batch["rule_index"], capped)
                acc.capped.append(batch.filter(mask))
                rest.append(batch.filter(pc.invert(mask)))
            acc.chosen = [b for b in rest if b.num_rows]
            acc.capped = [b for b in acc.capped if b.num_rows]
        return acc

    def prune(self, acc: _Accumulator) -> _Accumulator:
        """``acc`` cut down to what can still be in the plan; the rows a cap dropped are counted in ``acc.over``."""
        if acc.capped:
            table = pa.Table.from_batches(acc.capped)
            rule_index = table["rule_index"].to_numpy(zero_copy_only=False)
            keep = np.ones(table.num_rows, bool)
            for i, rule in self.capped.items():
                seg = np.flatnonzero(rule_index == i)
                if not len(seg):
                    continue
                seg = seg[_coldest_first(table, seg)]
                allowed = _cap(table["size"].take(pa.array(seg)).to_numpy(), rule.max_files, rule.max_bytes)
                if allowed < len(seg) and (rule.max_files is None or allowed < rule.max_files):
                    # The first row over the byte cap stays: a row after it elsewhere would otherwise fit.
                    allowed += 1
                keep[seg[allowed:]] = False
                acc.over[i] = acc.over.get(i, 0) + len(seg) - allowed
            acc.capped = [b for b in table.filter(pa.array(keep)).to_batches() if b.num_rows]
        if acc.candidates:
            if not self.relief or self.need <= 0:
                acc.candidates = []
            else:
                table = _watermark_order(pa.Table.from_batches(acc.candidates), self.policy.watermark)
                acc.candidates = [b for b in _relief_prefix(table, self.need).to_batches() if b.num_rows]
        return acc

    def settle(self, acc: _Accumulator) -> _Accumulator:
        """Capped rows back among the chosen (``_finish`` orders them), and the rows the caps dropped along the
        way into the counts ``_finish`` adds its own to."""
        acc.chosen += acc.capped
        acc.capped = []
        for i, n in acc.over.items():
            acc.count(_over_cap(self.policy.rules[i]), n)
        return acc


__all__ = ["merge_parts", "plan_bucket", "plan_partitions", "spilled"]
