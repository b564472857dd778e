"""Dataset-level heat in the plan: every file of a dataset gets its dataset's heat and last access.

A policy's ``[datasets]`` (``tiering.policy.datasets``) names folders whose
files heat and cool together. Before the rules run, ``pool_joined`` replaces,
in the joined inventory, each member's catalog heat with the hottest member's
and its ``atime_ns`` with the newest member's, so every rule and the watermark
see one value per dataset: reading part of it keeps all of it, and a cold one
is cold all at once. Grouping needs the whole namespace (a marker file may be
anywhere), so a policy with datasets is planned in memory.

``explain_dataset`` says, for ``plan --explain``, what the pooling changed for
one file, in particular when it stays because its dataset is hot.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tiering.core.display import show_path
from tiering.policy import Policy, augment, format_duration, needed_columns
from tiering.policy.datasets import Datasets

NS = 1_000_000_000
#: Rows per pooled batch handed on to the planner.
_BATCH_ROWS = 1 << 20


def group_max(ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` with each member of a group (``ids`` >= 0) given its group's largest value."""
    member = ids >= 0
    if not member.any():
        return values
    low = -np.inf if values.dtype.kind == "f" else np.iinfo(values.dtype).min
    top = np.full(int(ids.max()) + 1, low, values.dtype)
    np.maximum.at(top, ids[member], values[member])
    out = values.copy()
    out[member] = top[ids[member]]
    return out


def pool_joined(batches: Iterable[pa.RecordBatch], datasets: Datasets,
                ids: np.ndarray | None = None) -> list[pa.RecordBatch]:
    """Joined inventory batches (``plan.join.joined``'s) with ``cat_heat`` and ``atime_ns`` pooled per dataset.

    ``ids``: each row's dataset number (``Datasets.ids``), when the caller knows them already.
    """
    batches = [b for b in batches if b.num_rows]
    if not batches or not datasets:
        return batches
    table = pa.Table.from_batches(batches)
    if ids is None:
        ids, _ = datasets.ids(table["path"])
    heat = pc.fill_null(table["cat_heat"], 0.0).to_numpy()
    atime = table["atime_ns"].to_numpy()
    table = table.set_column(table.schema.get_field_index("cat_heat"), "cat_heat", pa.array(group_max(ids, heat)))
    table = table.set_column(table.schema.get_field_index("atime_ns"), "atime_ns", pa.array(group_max(ids, atime)))
    return table.to_batches(max_chunksize=_BATCH_ROWS)


def explain_dataset(batches: Iterable[pa.RecordBatch], catalog: pa.Table | None, rel: bytes, row: dict | None,
                    policy: Policy, now_ns: int) -> tuple[dict | None, list[str]]:
    """(the row the rules see for ``rel``: its own, pooled with its dataset's; lines saying what pooling did)."""
    if row is None or not policy.datasets:
        return row, []
    table = pa.Table.from_batches(list(batches)).select(["path", "atime_ns"])
    roots = policy.datasets.roots(table["path"])
    at = pc.index(table["path"], pa.scalar(rel, pa.binary())).as_py()
    mine = roots[at].as_py() if at >= 0 else None
    if mine is None:
        return row, ["  dataset: none declared holds it: its own heat and access time decide"]
    members = table.filter(pc.fill_null(pc.equal(roots, pa.scalar(mine, pa.binary())), False))
    heat = _heat_of(members["path"], catalog)
    hottest, newest = int(np.argmax(heat)), int(np.argmax(members["atime_ns"].to_numpy()))
    pooled = {**row, "heat": float(heat[hottest]), "atime_ns": int(members["atime_ns"][newest].as_py())}
    name = show_path(mine) if mine else "(the hot tier's top)"
    age = format_duration(max(0.0, (now_ns - pooled["atime_ns"]) / NS))
    lines = [f"  dataset {name}: {members.num_rows:,} files; its heat {pooled['heat']:.2f} "
             f"({show_path(members['path'][hottest].as_py())}), last read {age} ago "
             f"({show_path(members['path'][newest].as_py())}); the rules see these for this file"]
    if mine:
        lines.append(f"  stage it in as one unit: tiering restore --dataset {name}")
    own, shared = _decision(row, policy, now_ns), _decision(pooled, policy, now_ns)
    if own != shared and own[1] in ("archive", "release", "watermark"):
        verb = "is a watermark candidate" if own[1] == "watermark" else f"would {own[1]} it (rule {own[0]})"
        lines.append(f"  STAYS because its dataset is hot: on its own heat ({row['heat']:.2f}) and access time "
                     f"it {verb}")
    return pooled, lines


def _heat_of(paths: pa.ChunkedArray, catalog: pa.Table | None) -> np.ndarray:
    if catalog is None or not catalog.num_rows:
        return np.zeros(len(paths))
    where = pc.index_in(paths, value_set=catalog["path"].combine_chunks())
    return pc.fill_null(catalog["heat"].take(where), 0.0).to_numpy(zero_copy_only=False)


def _decision(row: dict, policy: Policy, now_ns: int) -> tuple[str, str]:
    """(rule, action) the first matching rule decides for ``row``; ("", "watermark") or ("", "") if none."""
    full = augment(pa.Table.from_pylist([row]), needed_columns(*[r.match for r in policy.rules]), now_ns)
    full_row = full.to_pylist()[0]
    for rule in policy.rules:
        if rule.match.evaluate_row(full_row, now_ns):
            return rule.name, rule.action
    return ("", "watermark") if policy.watermark else ("", "")


def whole_units(plan, candidates: list[pa.RecordBatch], default_tier: str | None):
    """``plan`` with every dataset the watermark took part of taken whole: the rest of its candidates join
    the watermark's actions (in watermark order, after those it chose). ``candidates``: the planner's
    watermark candidates (``_Accumulator.candidates``). A dataset is demoted as one unit, so the hot tier
    never keeps half of one that nobody reads."""
    from dataclasses import replace

    from tiering.plan.planner import _KEEP, _chosen_schema, _label, _watermark_order

    policy, actions = plan.policy, plan.actions
    taken = actions.filter(pc.equal(actions["rule"], "watermark")) if actions.num_rows else actions
    if not taken.num_rows or not candidates:
        return plan
    units = pc.unique(policy.datasets.roots(taken["path"]).drop_null())
    table = pa.concat_tables([pa.Table.from_batches([b]) for b in candidates])
    if not len(units) or not table.num_rows:
        return plan
    member = pc.fill_null(pc.is_in(policy.datasets.roots(table["path"]), value_set=units), False)
    rest = table.filter(pc.and_(member, pc.invert(pc.is_in(table["path"], value_set=taken["path"]))))
    if not rest.num_rows:
        return plan
    rest = _watermark_order(rest, policy.watermark)
    n = rest.num_rows
    for name in _KEEP:
        if name not in rest.column_names:
            rest = rest.append_column(name, pa.nulls(n, _chosen_schema().field(name).type))
    rest = rest.select(list(_KEEP)).append_column("rule_index", pa.repeat(pa.scalar(len(policy.rules), pa.int32()), n))
    rest = rest.append_column("rank", pa.array(np.arange(taken.num_rows + 1, taken.num_rows + n + 1)))
    rest = _label(rest, policy, default_tier).select(actions.column_names)
    last = int(np.flatnonzero(pc.equal(actions["rule"], "watermark").to_numpy(zero_copy_only=False))[-1]) + 1
    merged = pa.concat_tables([actions.slice(0, last), rest.cast(actions.schema), actions.slice(last)])
    freed = (pc.sum(rest["blocks"]).as_py() or 0) * 512 if policy.watermark.action == "release" else 0
    return replace(plan, actions=merged, freed=plan.freed + freed)
