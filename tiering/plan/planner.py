"""``make_plan``: a pure function of (inventory, catalog, policy, now, hot-tier usage).

For each batch of the joined inventory (regular files only):

1. safety: files modified within ``min_age`` (mtime or ctime; released stubs
   excepted, their ctime is ours) and hard-linked files are set aside and counted;
2. every rule's condition is evaluated over the whole batch in one vectorized
   projection; each file goes to the **first** rule that matches (rule order is
   file order), whatever later rules say;
3. a rule's action is kept only where it changes something (``archive`` a
   resident/dirty file, ``release`` anything not yet released, ``restore`` a
   released one, ``pin`` an unpinned or released one: a pin keeps the file on the
   hot tier, so a pinned stub is restored); the rest counts as "already";
4. files no rule claimed become watermark candidates (unpinned, holding bytes
   on the hot tier, matching the watermark's ``match``).

Then per-rule caps are applied in the policy's order (oldest atime first by
default), and, when the hot tier is above the high watermark, candidates are
taken in watermark order until projected usage reaches the low mark.

Memory is bounded by what is *selected* (plus, with a watermark, one narrow
row per candidate), never by a Python object per file. A partitioned snapshot
is planned out of core (``outofcore.plan_partitions``): a few partitions at a time, each
joined with the catalog rows of its own bucket, keeping only bounded running
prefixes for capped rules and the watermark, so memory follows the partition
size and the actions kept, not the namespace; the plan is the same.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from tiering.core.states import FileState
from tiering.plan.join import catalog_frame, joined, normalize
from tiering.plan.model import ACTION_ORDER, Plan, Usage
from tiering.policy import Policy, augment, needed_columns

if TYPE_CHECKING:  # pragma: no cover
    from tiering.scan import Snapshot

#: Rows per batch when planning: large batches amortise per-batch work; a few are in flight at once.
PLAN_BATCH_ROWS = 1 << 20


def read_inventory(snapshot: str | os.PathLike[str]) -> Snapshot:
    """A snapshot, either form, to iterate for batches sized for ``make_plan`` (which plans a partitioned one
    out of core)."""
    from tiering.scan import Snapshot

    return Snapshot(snapshot, batch_rows=PLAN_BATCH_ROWS)


#: Columns kept for every chosen action: enough to act on it and to explain it.
_KEEP = ("path", "type", "size", "blocks", "mode", "uid", "gid", "atime_ns", "mtime_ns", "ctime_ns", "ino", "nlink",
         "state", "tier", "heat", "pinned")
_WATERMARK_KEEP = ("path", "size", "blocks", "atime_ns", "mtime_ns", "ctime_ns", "ino", "heat", "state", "tier")
_EFFECTIVE = {  # action -> states where it changes something
    "archive": (FileState.RESIDENT, FileState.DIRTY),
    "release": (FileState.RESIDENT, FileState.DIRTY, FileState.ARCHIVED),
    "restore": (FileState.RELEASED,),
    "transition": (FileState.ARCHIVED, FileState.RELEASED),  # and the copy's class is not the target's
}


@dataclass
class _Accumulator:
    chosen: list[pa.RecordBatch] = field(default_factory=list)  # with a rule_index column
    candidates: list[pa.RecordBatch] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    over: dict[int, int] = field(default_factory=dict)  # rule index -> rows an out-of-core cap dropped early
    capped: list[pa.RecordBatch] = field(default_factory=list)  # out of core: capped rules' chosen rows

    def count(self, key: str, n: int) -> None:
        if n:
            self.counts[key] = self.counts.get(key, 0) + n

    def merge(self, other: _Accumulator) -> None:
        self.chosen += other.chosen
        self.capped += other.capped
        self.candidates += other.candidates
        for key, n in other.counts.items():
            self.count(key, n)
        for i, n in other.over.items():
            self.over[i] = self.over.get(i, 0) + n


def make_plan(batches: Iterable[pa.RecordBatch], catalog: pa.Table | Iterable[pa.RecordBatch] | None,
              policy: Policy, now_ns: int, *, usage: Usage | None = None, default_tier: str | None = None,
              out_of_core: bool | None = None) -> Plan:
    """Decide what to do with every file; changes nothing.

    ``batches`` from a partitioned snapshot (a ``Snapshot`` of more than one partition, as ``read_inventory``
    gives) are planned out of core, partition by partition (``outofcore.plan_partitions``); anything else in
    memory, as one stream. ``out_of_core`` forces either way (it needs a ``Snapshot``). Both give the same plan.
    """
    if out_of_core is None:
        out_of_core = bool(getattr(batches, "partitioned", False))
    if out_of_core and not policy.datasets:  # (datasets pool heat over the whole namespace: in memory)
        from tiering.plan.outofcore import plan_partitions

        return plan_partitions(batches, catalog, policy, now_ns, usage=usage, default_tier=default_tier)
    if catalog is not None and not isinstance(catalog, pa.Table):
        catalog = pa.Table.from_batches(list(catalog))
    acc = _Accumulator()
    one = _batch_planner(policy, now_ns)
    stream = joined(batches, catalog_frame(catalog))
    if policy.datasets:  # every file of a dataset gets its dataset's heat and last access (``plan.datasets``)
        from tiering.plan.datasets import pool_joined

        stream = pool_joined(stream, policy.datasets)
    for part in _ordered_map(one, stream):
        acc.merge(part)
    plan = _finish(policy, acc, now_ns, usage, default_tier)
    if policy.datasets and policy.watermark:  # a dataset the watermark takes part of goes whole
        from tiering.plan.datasets import whole_units

        plan = whole_units(plan, acc.candidates, default_tier)
    return plan


def _batch_planner(policy: Policy, now_ns: int):
    """The function planning one joined batch into an accumulator of its own."""
    exprs = _expressions(policy)
    columns = needed_columns(*[r.match for r in policy.rules], *_watermark_exprs(policy)) | {"mtime_age", "ctime_age"}

    def one(raw: pa.RecordBatch) -> _Accumulator:
        part = _Accumulator()
        if raw.num_rows:
            _plan_batch(augment(normalize(raw), columns, now_ns), policy, exprs, now_ns, part)
        return part

    return one


def _over_cap(rule) -> str:
    return f"{rule.name}: over the cap, left for the next run"


def _ordered_map(fn, items: Iterable, workers: int = min(4, os.cpu_count() or 1)) -> Iterator:
    """``map(fn, items)`` on a few threads, in order, with at most ``workers + 1`` items in flight.

    Arrow kernels release the GIL, so batches are evaluated on every core
    while memory stays bounded by a handful of batches.
    """
    with ThreadPoolExecutor(workers, thread_name_prefix="plan") as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _expressions(policy: Policy) -> dict[str, pc.Expression]:
    exprs = {f"r{i}": rule.match.arrow for i, rule in enumerate(policy.rules)}
    wm = policy.watermark
    if wm and wm.match:
        exprs["wm_match"] = wm.match.arrow
    if wm and wm.weight:
        exprs["wm_weight"] = wm.weight.arrow
    return exprs


def _watermark_exprs(policy: Policy) -> list:
    wm = policy.watermark
    return [c for c in ((wm.match, wm.weight) if wm else ()) if c is not None]


def _plan_batch(batch: pa.RecordBatch, policy: Policy, exprs: dict, now_ns: int, acc: _Accumulator) -> None:
    safety = policy.safety
    is_file = pc.equal(batch["type"].cast(pa.string()), "file")
    not_stub = pc.not_equal(batch["state"], FileState.RELEASED)
    young = pc.or_(pc.less(batch["mtime_age"], safety.min_age), pc.less(batch["ctime_age"], safety.min_age))
    recent = pc.and_(pc.and_(young, not_stub), is_file)
    # A stub is no exception here: restoring one name of a hard link would leave the other a stub.
    linked = pc.and_(pc.greater(batch["nlink"], 1), pc.and_(is_file, pc.invert(recent))) \
        if safety.skip_hardlinks else pc.and_(recent, False)
    acc.count("files", pc.sum(is_file).as_py() or 0)
    acc.count("skipped: modified within the safety window", pc.sum(recent).as_py() or 0)
    acc.count("skipped: hard-linked", pc.sum(linked).as_py() or 0)
    # No filtering here: rows are only ever copied once, when chosen.
    eligible = pc.and_(is_file, pc.invert(pc.or_(recent, linked)))
    values = _project(batch, exprs)
    assigned = pa.nulls(batch.num_rows, pa.int32())
    for i in reversed(range(len(policy.rules))):  # the first matching rule is the last one written
        hit = pc.and_(pc.fill_null(values[f"r{i}"], False), eligible)
        assigned = pc.if_else(hit, pa.scalar(i, pa.int32()), assigned)
    if policy.rules:
        _collect_rules(batch, assigned, policy, acc)
    _collect_candidates(batch, pc.and_(eligible, pc.is_null(assigned)), values, policy, acc)


def _project(batch: pa.RecordBatch, exprs: dict[str, pc.Expression]) -> dict[str, pa.Array]:
    """Every rule's (and the watermark's) expression over the batch, in one vectorized pass."""
    if not exprs:
        return {}
    table = ds.dataset(pa.Table.from_batches([batch])).to_table(columns=exprs)
    return {name: table[name].combine_chunks() for name in table.column_names}


def _collect_rules(batch: pa.RecordBatch, assigned: pa.Array, policy: Policy, acc: _Accumulator) -> None:
    """Keep, in one filter, the claimed rows whose rule's action changes something."""
    action = pc.take(pa.array([rule.action for rule in policy.rules]), assigned)
    state = batch["state"]
    useful = pc.fill_null(pc.or_(pc.or_(
        pc.or_(pc.and_(pc.equal(action, "archive"), pc.is_in(state, pa.array(_EFFECTIVE["archive"]))),
               pc.and_(pc.equal(action, "release"), pc.is_in(state, pa.array(_EFFECTIVE["release"])))),
        pc.or_(pc.and_(pc.equal(action, "restore"), pc.is_in(state, pa.array(_EFFECTIVE["restore"]))),
               pc.and_(pc.equal(action, "pin"),
                       pc.or_(pc.invert(batch["pinned"]), pc.equal(state, FileState.RELEASED))))),
        _transitions(batch, action, assigned, policy)), False)
    kept = {c["values"]: c["counts"] for c in pc.value_counts(pc.filter(assigned, useful)).to_pylist()}
    for c in pc.value_counts(assigned.drop_null()).to_pylist():
        rule = policy.rules[c["values"]]
        label = "excluded" if rule.action == "exclude" else "already done"
        acc.count(f"{rule.name}: {label}", c["counts"] - kept.get(c["values"], 0))
    chosen = batch.select(_KEEP).append_column("rule_index", assigned).filter(useful)
    if chosen.num_rows:
        acc.chosen.append(chosen)


def _transitions(batch: pa.RecordBatch, action: pa.Array, assigned: pa.Array, policy: Policy) -> pa.Array:
    """Rows whose rule is a ``transition`` and whose capacity copy is in another class than its target."""
    if not any(rule.action == "transition" for rule in policy.rules):
        return pa.repeat(pa.scalar(False), batch.num_rows)
    target = pc.take(pa.array([rule.storage_class for rule in policy.rules], pa.string()), assigned)
    recorded = batch["storage_class"] if "storage_class" in batch.schema.names else pa.repeat(pa.scalar(""),
                                                                                            batch.num_rows)
    return pc.and_(pc.and_(pc.equal(action, "transition"), pc.is_in(batch["state"], pa.array(_EFFECTIVE["transition"]))),
                   pc.not_equal(pc.fill_null(recorded, ""), target))


def _collect_candidates(batch: pa.RecordBatch, free: pa.Array, values: dict, policy: Policy,
                        acc: _Accumulator) -> None:
    """Rows no rule claimed that the watermark may take: unpinned, holding bytes, matching its ``match``."""
    wm = policy.watermark
    if wm is None:
        return
    holding = pc.is_in(batch["state"], pa.array([FileState.RESIDENT, FileState.ARCHIVED, FileState.DIRTY]))
    ok = pc.and_(pc.and_(free, holding), pc.invert(batch["pinned"]))
    if "wm_match" in values:
        ok = pc.and_(ok, pc.fill_null(values["wm_match"], False))
    rows = batch.select(_WATERMARK_KEEP)
    if "wm_weight" in values:
        rows = rows.append_column("weight", values["wm_weight"].cast(pa.float64()))
    acc.candidates.append(rows.filter(ok))


def _finish(policy: Policy, acc: _Accumulator, now_ns: int, usage: Usage | None, default_tier: str | None) -> Plan:
    counts = dict(acc.counts)
    rules = _rule_actions(policy, acc, counts, default_tier)
    release_rows = pc.equal(rules["action"], "release") if rules.num_rows else pa.array([], pa.bool_())
    freed = (pc.sum(pc.filter(rules["blocks"], release_rows)).as_py() or 0) * 512 if rules.num_rows else 0
    watermark = _watermark(policy, acc, usage, freed, default_tier)
    actions = rules
    if watermark is not None and watermark.num_rows:
        wm_freed = (pc.sum(watermark["blocks"]).as_py() or 0) * 512
        freed += wm_freed if policy.watermark.action == "release" else 0
        # Watermark actions go after the rules' actions of the same kind.
        cut = len(rules) if policy.watermark.action == "release" else \
            (pc.sum(pc.not_equal(rules["action"], "release")).as_py() or 0)
        actions = pa.concat_tables([rules.slice(0, cut), watermark.select(rules.column_names), rules.slice(cut)])
    return Plan(policy=policy, now_ns=now_ns, actions=actions, counts=counts, usage=usage, freed=freed)


def _rule_actions(policy: Policy, acc: _Accumulator, counts: dict, default_tier: str | None) -> pa.Table:
    """Every rule's chosen rows in plan order, capped, labelled, with one ``take``.

    Order: by action (restores first, see ``ACTION_ORDER``), then rule. Within
    a rule that has caps, oldest access first (inode, then path break ties), so a cap
    keeps the coldest files; other rules keep inventory (scan) order, which
    spares sorting millions of rows for nothing.
    """
    if not acc.chosen:
        empty = pa.Table.from_batches([], schema=_chosen_schema())
        return _label(empty.append_column("rank", pa.array([], pa.int64())), policy, default_tier)
    table = pa.Table.from_batches(acc.chosen)
    kinds = np.array([ACTION_ORDER.index(r.action) if r.action in ACTION_ORDER else 0 for r in policy.rules])
    rule_index = table["rule_index"].to_numpy()
    order = np.argsort(kinds[rule_index] * len(policy.rules) + rule_index, kind="stable")
    segments, ranks = [], []
    bounds = np.flatnonzero(np.diff(rule_index[order])) + 1
    for seg in np.split(order, bounds):
        rule = policy.rules[rule_index[seg[0]]]
        if rule.max_files is not None or rule.max_bytes is not None:
            seg = seg[_coldest_first(table, seg)]
            allowed = _cap(table["size"].take(seg).to_numpy(), rule.max_files, rule.max_bytes)
            if len(seg) - allowed:  # added to what an out-of-core plan's caps dropped before
                counts[_over_cap(rule)] = counts.get(_over_cap(rule), 0) + len(seg) - allowed
            seg = seg[:allowed]
        segments.append(seg)
        ranks.append(np.arange(1, len(seg) + 1))
    chosen = table.take(pa.array(np.concatenate(segments)))
    return _label(chosen.append_column("rank", pa.array(np.concatenate(ranks))), policy, default_tier)


def _chosen_schema() -> pa.Schema:
    from tiering.core.inventory import SCHEMA

    types = {**{f.name: f.type for f in SCHEMA}, "state": pa.string(), "tier": pa.string(), "heat": pa.float64(),
             "pinned": pa.bool_()}
    return pa.schema([(name, types[name]) for name in _KEEP] + [("rule_index", pa.int32())])


#: Ties in any order fall to the inode, then the path (hard links share an inode): the plan
#: must not depend on the order the scan happened to list files in.
_TIES = [("ino", "ascending"), ("path", "ascending")]


def _coldest_first(table: pa.Table, seg: np.ndarray) -> np.ndarray:
    """Positions that put the rows ``seg`` of ``table`` oldest access first (ties as ``_TIES``)."""
    rows = table.select(["atime_ns", "ino", "path"]).take(pa.array(seg))
    return pc.sort_indices(rows, sort_keys=[("atime_ns", "ascending"), *_TIES]).to_numpy()


def _cap(sizes: np.ndarray, max_files: int | None, max_bytes: int | None) -> int:
    """How many of a rule's rows (already in order) fit under its caps."""
    keep = len(sizes) if max_files is None else min(max_files, len(sizes))
    if max_bytes is not None and keep:
        keep = int(np.searchsorted(np.cumsum(sizes[:keep]), max_bytes, side="right"))
    return keep


def _label(table: pa.Table, policy: Policy, default_tier: str | None) -> pa.Table:
    """Add action, target tier, storage class and rule name, looked up by rule index."""
    rules = [*policy.rules]
    names = pa.array([r.name for r in rules] + ["watermark"], pa.string())
    wm = policy.watermark
    actions = pa.array([r.action for r in rules] + [wm.action if wm else "release"], pa.string())
    tiers = pa.array([r.tier or default_tier for r in rules] + [(wm.tier if wm else None) or default_tier], pa.string())
    classes = pa.array([r.storage_class for r in rules] + [wm.storage_class if wm else None], pa.string())
    index = table["rule_index"]
    action = pc.take(actions, index)
    # A restore comes from wherever the file's copy is, a transition happens there; the rest go to the rule's tier.
    target = pc.if_else(pc.is_in(action, pa.array(["restore", "transition"])),
                        pc.coalesce(table["tier"], pc.take(tiers, index)), pc.take(tiers, index))
    front = {"action": action, "target_tier": target, "storage_class": pc.take(classes, index),
             "rule": pc.take(names, index)}
    return pa.table({**front, **{n: table[n] for n in table.column_names}})


def _watermark(policy: Policy, acc: _Accumulator, usage: Usage | None, freed: int,
               default_tier: str | None) -> pa.Table | None:
    """Candidates in watermark order until projected usage reaches the low mark (None: not needed)."""
    wm = policy.watermark
    if wm is None or usage is None or usage.total <= 0 or usage.fraction <= wm.high or not acc.candidates:
        return None
    need = usage.used - freed - int(wm.low * usage.total)
    table = pa.concat_tables([pa.Table.from_batches([b]) for b in acc.candidates])
    if need <= 0 or not table.num_rows:
        return None
    table = _relief_prefix(_watermark_order(table, wm), need)
    n = table.num_rows
    for name in _KEEP:
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(n, _chosen_schema().field(name).type))
    table = table.select(list(_KEEP))
    table = table.append_column("rule_index", pa.repeat(pa.scalar(len(policy.rules), pa.int32()), n))
    table = table.append_column("rank", pa.array(np.arange(1, n + 1)))
    return _label(table, policy, default_tier)


def _watermark_order(table: pa.Table, wm) -> pa.Table:
    """Candidates in the order the watermark takes them (ties as ``_TIES``)."""
    keys = {"lru": [("atime_ns", "ascending")], "heat": [("heat", "ascending"), ("atime_ns", "ascending")],
            "expression": [("weight", "descending")]}[wm.order]
    return table.sort_by(keys + _TIES)


def _relief_prefix(table: pa.Table, need: int) -> pa.Table:
    """The ordered candidates taken until their blocks free ``need`` bytes (the one that crosses it included)."""
    allocated = pc.multiply(table["blocks"], 512)
    before = pc.subtract(pc.cumulative_sum(allocated), allocated)  # bytes freed before each row
    return table.filter(pc.less(before, need))


__all__ = ["make_plan"]
