"""The ``simulate`` use case: read the trace and the inventory once, replay every (policy, hot-tier size)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tiering.core.errors import UserError
from tiering.core.inventory import SCHEMA as INVENTORY
from tiering.ops.simulate.replay import Accesses, Replay, Scenario, replay
from tiering.ops.simulate.report import Prices, plot, summary
from tiering.policy import Policy
from tiering.trace.read import read_trace


@dataclass
class Simulation:
    """Every replay and its report row, in (size, policy) order."""

    replays: list[Replay] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    accesses: int = 0
    unknown: int = 0  # accesses of files not in the inventory (left out)
    recorded_restores: int = 0  # restores the trace itself recorded (the policy that ran then)
    files: int = 0
    inventory_bytes: int = 0
    start_ns: int = 0
    end_ns: int = 0
    prepare_seconds: float = 0.0


def read_inventory_table(source: str | os.PathLike[str]) -> pa.Table:
    """A snapshot (either form) as one table of regular files (``UserError`` when it cannot be read)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    try:
        table = ds.dataset(Path(source), format="parquet").to_table(columns=INVENTORY.names)
    except (OSError, pa.ArrowInvalid) as exc:
        raise UserError(f"{source}: not a readable inventory snapshot ({exc}); expected a scan's Parquet "
                        "snapshot or `tiering trace generate`'s inventory.parquet") from None
    return table.filter(pc.equal(table["type"].cast(pa.string()), "file"))


def capacity_of(value: int | float, inventory_bytes: int) -> int:
    """A hot-tier size: bytes, or a fraction (below 1, or a float) of the inventory's bytes."""
    if isinstance(value, float):
        return max(1, int(value * inventory_bytes))
    return int(value)


def simulate(trace: pa.Table | str | os.PathLike[str], inventory: pa.Table | str | os.PathLike[str],
             policies: list[tuple[str, Policy]], capacities: list[int | float], scenario: Scenario, *,
             prices: Prices, since_ns: int | None = None, until_ns: int | None = None,
             plot_path: str | os.PathLike[str] | None = None,
             progress: Callable[[str, int, int], None] | None = None) -> Simulation:
    """Replay the trace for every policy (``(label, policy)``) at every hot-tier size; rows side by side."""
    import time

    began = time.perf_counter()
    inv = inventory if isinstance(inventory, pa.Table) else read_inventory_table(inventory)
    table = trace if isinstance(trace, pa.Table) else read_trace(trace, since_ns=since_ns, until_ns=until_ns)
    if not table.num_rows:
        raise UserError("the trace holds no accesses (in the window asked for)")
    accesses = Accesses.of(table, inv["path"])
    start = since_ns if since_ns is not None else int(table["time_ns"][0].as_py())
    end = until_ns if until_ns is not None else int(table["time_ns"][-1].as_py()) + 1
    total = int(np.asarray(inv["size"].to_numpy()).sum())
    sim = Simulation(accesses=len(accesses.ids), unknown=accesses.unknown, recorded_restores=accesses.recorded_restores,
                     files=inv.num_rows, inventory_bytes=total, start_ns=start, end_ns=end,
                     prepare_seconds=time.perf_counter() - began)
    for size in capacities:
        capacity = capacity_of(size, total)
        for label, policy in policies:
            tick = None if progress is None else (lambda k, n, label=label: progress(label, k, n))
            r = replay(policy, inv, accesses, replace(scenario, capacity=capacity), start_ns=start, end_ns=end,
                       label=label, progress=tick)
            sim.replays.append(r)
            sim.rows.append(summary(r, prices))
    if plot_path is not None:
        plot(sim.replays, plot_path)
    return sim


def write_workload(out: str | os.PathLike[str], inventory: pa.Table, trace: pa.Table) -> tuple[Path, Path]:
    """``inventory.parquet`` and ``trace.parquet`` in folder ``out`` (made if needed)."""
    from tiering.trace.log import write_trace

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    inv_path, trace_path = folder / "inventory.parquet", folder / "trace.parquet"
    pq.write_table(inventory, inv_path, compression="zstd")
    write_trace(trace, trace_path)
    return inv_path, trace_path
