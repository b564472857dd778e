"""Plan first, apply second: ``make_plan`` decides, the mover acts.

``make_plan(inventory_batches, catalog_table, policy, now_ns, usage=...)`` is
a pure function; ``Plan.rows()`` gives each action with its rule and reason.
Given a partitioned snapshot (``read_inventory``), it plans out of core
(``plan_partitions``), with the same result.
"""

from tiering.plan.model import ACTION_ORDER, Plan, Usage
from tiering.plan.outofcore import plan_partitions
from tiering.plan.planner import PLAN_BATCH_ROWS, make_plan, read_inventory

__all__ = ["ACTION_ORDER", "PLAN_BATCH_ROWS", "Plan", "Usage", "make_plan", "plan_partitions", "read_inventory"]
