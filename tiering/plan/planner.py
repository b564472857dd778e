"""``make_plan``: a pure function of (inventory, catalog, policy, now, hot-tier usage).

For each batch of the joined inventory (regular files only):

1. safety: files modified within ``min_age`` (mtime or ctime; released stubs
   excepted, their ctime is ours) and hard-linked files are set aside and counted;
2. every rule's condition is evaluated over the whole batch in one vectorized
   projection; each file goes to the **first** rule that matches (rule order is
   file order), whatever later rules say;
3. a rule's action is kept only where it changes something (``archive`` a
   resident/dirty file, ``release`` anything not yet released, ``restore`` a
   released one, ``pin`` an unpinned one); the rest counts as "already";
4. files no rule claimed become watermark candidates (unpinned, holding bytes
   on the hot tier, matching the watermark's ``match``).

Then per-rule caps are applied in the policy's order (oldest atime first by
default), and, when the hot tier is above the high watermark, candidates are
taken in watermark order until projected usage reaches the low mark.

Memory is bounded by what is *selected* (plus, with a watermark, one narrow
row per candidate), never by a Python object per file.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from tiering.plan.join import catalog_frame, joined, normalize
from tiering.plan.model import ACTION_ORDER, Plan, Usage
from tiering.policy import Policy, augment, needed_columns

NS = 1_000_000_000
#: Columns kept for every chosen action: enough to act on it and to explain it.
_KEEP = ("path", "type", "size", "blocks", "mode", "uid", "gid", "atime_ns", "mtime_ns", "ctime_ns", "ino", "nlink",
         "state", "tier", "heat", "pinned")
_WATERMARK_KEEP = ("path", "size", "blocks", "atime_ns", "mtime_ns", "ctime_ns", "heat", "state", "tier")
_EFFECTIVE = {  # action -> states where it changes something
    "archive": ("resident", "dirty"),
    "release": ("resident", "dirty", "archived"),
    "restore": ("released",),
}


@dataclass
class _Accumulator:
    chosen: list[list[pa.RecordBatch]]
    candidates: list[pa.RecordBatch] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, key: str, n: int) -> None:
        if n:
            self.counts[key] = self.counts.get(key, 0) + n


def make_plan(batches: Iterable[pa.RecordBatch], catalog: pa.Table | None, policy: Policy, now_ns: int, *,
              usage: Usage | None = None, default_tier: str | None = None) -> Plan:
    """Decide what to do with every file; changes nothing."""
    acc = _Accumulator([[] for _ in policy.rules])
    exprs = _expressions(policy)
    columns = needed_columns(*[r.match for r in policy.rules], *_watermark_exprs(policy)) | {"mtime_age", "ctime_age"}
    for raw in joined(batches, catalog_frame(catalog)):
        batch = normalize(raw)
        batch = batch.filter(pc.equal(batch["type"].cast(pa.string()), "file"))
        acc.count("files", batch.num_rows)
        if batch.num_rows:
            _plan_batch(augment(batch, columns, now_ns), policy, exprs, now_ns, acc)
    return _finish(policy, acc, now_ns, usage, default_tier)


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
    not_stub = pc.not_equal(batch["state"], "released")
    young = pc.or_(pc.less(batch["mtime_age"], safety.min_age), pc.less(batch["ctime_age"], safety.min_age))
    recent = pc.and_(young, not_stub)
    linked = pc.and_(pc.greater(batch["nlink"], 1), not_stub) if safety.skip_hardlinks else pc.and_(recent, False)
    acc.count("skipped: modified within the safety window", pc.sum(recent).as_py() or 0)
    acc.count("skipped: hard-linked", pc.sum(pc.and_(linked, pc.invert(recent))).as_py() or 0)
    batch = batch.filter(pc.invert(pc.or_(recent, linked)))
    if not batch.num_rows:
        return
    values = ds.dataset(pa.Table.from_batches([batch])).to_table(columns=exprs) if exprs else None
    assigned = pa.nulls(batch.num_rows, pa.int32())
    for i in range(len(policy.rules)):
        hit = pc.and_(pc.fill_null(values[f"r{i}"], False), pc.is_null(assigned))
        assigned = pc.if_else(hit, pa.scalar(i, pa.int32()), assigned)
    for i, rule in enumerate(policy.rules):
        mine = pc.fill_null(pc.equal(assigned, i), False)
        _collect_rule(batch.filter(mine), i, rule, acc)
    _collect_candidates(batch, assigned, values, policy, acc)


def _collect_rule(rows: pa.RecordBatch, index: int, rule, acc: _Accumulator) -> None:
    action = rule.action
    if not rows.num_rows or action == "exclude":
        acc.count(f"{rule.name}: excluded", rows.num_rows)
        return
    if action == "pin":
        useful = pc.invert(rows["pinned"])
    else:
        useful = pc.is_in(rows["state"], pa.array(_EFFECTIVE[action]))
    acc.count(f"{rule.name}: already done", rows.num_rows - (pc.sum(useful).as_py() or 0))
    chosen = rows.filter(useful)
    if chosen.num_rows:
        acc.chosen[index].append(chosen.select(_KEEP))


def _collect_candidates(batch: pa.RecordBatch, assigned, values, policy: Policy, acc: _Accumulator) -> None:
    wm = policy.watermark
    if wm is None or not batch.num_rows:
        return
    free = pc.is_null(assigned) if assigned is not None else pa.array([True] * batch.num_rows)
    holding = pc.is_in(batch["state"], pa.array(["resident", "archived", "dirty"]))
    ok = pc.and_(pc.and_(free, holding), pc.invert(batch["pinned"]))
    names = values.column_names if isinstance(values, pa.Table) else ()
    if "wm_match" in names:
        ok = pc.and_(ok, pc.fill_null(values["wm_match"], False))
    rows = batch.select(_WATERMARK_KEEP)
    if "wm_weight" in names:
        rows = rows.append_column("weight", values["wm_weight"].combine_chunks().cast(pa.float64()))
    acc.candidates.append(rows.filter(ok))


def _finish(policy: Policy, acc: _Accumulator, now_ns: int, usage: Usage | None, default_tier: str | None) -> Plan:
    parts, counts = [], dict(acc.counts)
    for i, rule in enumerate(policy.rules):
        if not acc.chosen[i]:
            continue
        table = _ordered(pa.Table.from_batches(acc.chosen[i]), policy)
        table, capped = _cap(table, rule.max_files, rule.max_bytes)
        if capped:
            counts[f"{rule.name}: over the cap, left for the next run"] = capped
        parts.append(_label(table, rule.action, rule.tier or default_tier, rule.storage_class, rule.name, i))
    freed = sum(pc.sum(p["blocks"]).as_py() or 0 for p in parts if p["action"][0].as_py() == "release") * 512
    watermark = _watermark(policy, acc, usage, freed, default_tier)
    if watermark is not None:
        parts.append(watermark)
    actions = _sort_actions(pa.concat_tables(parts) if parts else None)
    return Plan(policy=policy, now_ns=now_ns, actions=actions, counts=counts, usage=usage, freed=freed + (
        (pc.sum(watermark["blocks"]).as_py() or 0) * 512 if watermark is not None and
        policy.watermark.action == "release" else 0))


def _ordered(table: pa.Table, policy: Policy) -> pa.Table:
    """Oldest access first (then path, for a stable order): what caps keep and the mover does first."""
    return table.sort_by([("atime_ns", "ascending"), ("path", "ascending")])


def _cap(table: pa.Table, max_files: int | None, max_bytes: int | None) -> tuple[pa.Table, int]:
    keep = table.num_rows if max_files is None else min(max_files, table.num_rows)
    if max_bytes is not None and keep:
        within = pc.less_equal(pc.cumulative_sum(table["size"].slice(0, keep)), max_bytes)
        keep = pc.sum(within).as_py() or 0
    return table.slice(0, keep), table.num_rows - keep


def _label(table: pa.Table, action: str, tier: str | None, storage_class: str | None, rule: str, index: int,
           ranks: pa.Array | None = None) -> pa.Table:
    n = table.num_rows
    # A restore comes from wherever the file is; everything else goes to the rule's tier.
    tier_col = pc.coalesce(table["tier"], pa.scalar(tier, pa.string())) if action == "restore" \
        else pa.repeat(pa.scalar(tier, pa.string()), n)
    return pa.table({
        "action": pa.repeat(pa.scalar(action, pa.string()), n),
        "target_tier": tier_col,
        "storage_class": pa.repeat(pa.scalar(storage_class, pa.string()), n),
        "rule": pa.repeat(pa.scalar(rule, pa.string()), n),
        "rule_index": pa.repeat(pa.scalar(index, pa.int32()), n),
        "rank": ranks if ranks is not None else pa.array(range(1, n + 1), pa.int64()),
        **{name: table[name] for name in table.column_names},
    })


def _watermark(policy: Policy, acc: _Accumulator, usage: Usage | None, freed: int,
               default_tier: str | None) -> pa.Table | None:
    wm = policy.watermark
    if wm is None or usage is None or usage.total <= 0 or usage.fraction <= wm.high or not acc.candidates:
        return None
    need = usage.used - freed - int(wm.low * usage.total)
    if need <= 0:
        return None
    table = pa.concat_tables([pa.Table.from_batches([b]) for b in acc.candidates if b.num_rows])
    if not table.num_rows:
        return None
    keys = {"lru": [("atime_ns", "ascending")], "heat": [("heat", "ascending"), ("atime_ns", "ascending")],
            "expression": [("weight", "descending")]}[wm.order]
    table = table.sort_by(keys + [("path", "ascending")])
    allocated = pc.multiply(table["blocks"], 512)
    before = pc.subtract(pc.cumulative_sum(allocated), allocated)  # bytes freed before each row
    table = table.filter(pc.less(before, need))
    missing = [c for c in _KEEP if c not in table.column_names]
    for name in missing:
        table = table.append_column(name, pa.nulls(table.num_rows, _type_of(name)))
    labeled = _label(table.select(list(_KEEP)), wm.action, wm.tier or default_tier, wm.storage_class, "watermark",
                     len(policy.rules))
    return labeled


def _type_of(name: str) -> pa.DataType:
    from tiering.inventory import SCHEMA

    return SCHEMA.field(name).type if name in SCHEMA.names else {"pinned": pa.bool_()}.get(name, pa.string())


def _sort_actions(table: pa.Table | None) -> pa.Table:
    """Restores first (a waiting job needs them), then pins, archives, releases; rule order within."""
    if table is None:
        return Plan.empty_actions()
    table = table.append_column("_order", pc.index_in(table["action"], value_set=pa.array(ACTION_ORDER)))
    return table.sort_by([("_order", "ascending"), ("rule_index", "ascending"), ("rank", "ascending")]).drop(["_order"])


__all__ = ["make_plan", "NS"]
