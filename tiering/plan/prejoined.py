"""``plan_joined``: the planner's own steps over an inventory already joined with the catalog.

``make_plan`` joins inventory batches with the catalog (``plan.join.joined``)
and plans the result. A caller holding that joined form itself (the simulator,
``tiering.ops.simulate``, builds it from its state every simulated cycle)
hands it here and gets the very same plan, without a hash join per cycle.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa

from tiering.plan.datasets import pool_joined, whole_units
from tiering.plan.model import Plan, Usage
from tiering.plan.planner import _Accumulator, _batch_planner, _finish, _ordered_map  # the planner's own steps
from tiering.policy import Policy


def plan_joined(batches: Iterable[pa.RecordBatch], policy: Policy, now_ns: int, *, usage: Usage | None = None,
                default_tier: str | None = None, dataset_ids: np.ndarray | None = None) -> Plan:
    """The plan of joined batches (``joined``'s columns: the inventory's and ``cat_*``); datasets pooled
    first when the policy declares them (``dataset_ids``: each row's dataset number, if known), and the
    watermark's datasets taken whole (``whole_units``), as ``make_plan`` does."""
    if policy.datasets:
        batches = pool_joined(batches, policy.datasets, dataset_ids)
    acc = _Accumulator()
    for part in _ordered_map(_batch_planner(policy, now_ns), batches):
        acc.merge(part)
    plan = _finish(policy, acc, now_ns, usage, default_tier)
    return whole_units(plan, acc.candidates, default_tier) if policy.datasets and policy.watermark else plan
