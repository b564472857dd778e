"""The ``[guard]`` table: the access guard that restores a released file when any process opens it.

Every key is optional; these are the defaults::

    [guard]
    mode = "auto"        # auto: `tiering daemon` starts the guard where the kernel and the hot
                         # tier's filesystem allow it (one line says why not, elsewhere); off: never
    timeout = "10m"      # a reader waits at most this long for its file; then its open fails (EIO)
    read_ahead = 16      # when a stub is opened, also restore the next this many stubs of its
                         # folder (by name): a dataloader reading a folder finds them on its way; 0: off
    # stage_datasets = true  # when a stub of a dataset (the policy's [datasets]) is opened, also restore
                           # the rest of that dataset, behind readers' own opens, up to the policy's high
                           # watermark (free space without one); default: true when the policy declares datasets
    heat = false         # true: count every open of a hot-tier file on this node as heat (a fanotify
                         # notification group on the whole filesystem: every open there is one event
                         # the guard reads; on 2 cores that cost readers of small files ~20 %)
    # dir = "..."        # the guard's socket, status and restore ledger (default: a "guard" folder
                         # beside the catalog; on many nodes, a folder every node and the catalog's
                         # owner can reach)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tiering.config.values import Table

GUARD_KEYS = ("mode", "timeout", "read_ahead", "stage_datasets", "heat", "dir")
DURATION_KEYS = frozenset({"timeout"})
MODES = ("auto", "off")


@dataclass(frozen=True)
class GuardConfig:
    """The resolved ``[guard]`` table (``timeout`` in seconds; ``dir`` None: beside the catalog)."""

    mode: str = "auto"
    timeout: float = 600.0
    read_ahead: int = 16
    stage_datasets: bool | None = None  # None: as the policy says (true when it declares datasets)
    heat: bool = False
    dir: Path | None = None


def parse_guard(table: Table, base: Path) -> GuardConfig:
    """Check and resolve the ``[guard]`` table."""
    table.check_keys(GUARD_KEYS)
    d = GuardConfig()
    timeout = table.duration("timeout", d.timeout)
    if timeout <= 0:
        raise table.error("timeout", f"{timeout:g}s is not positive", "expected a duration above zero, like '10m'")
    return GuardConfig(mode=table.choice("mode", MODES, d.mode), timeout=timeout,
                       read_ahead=table.integer("read_ahead", d.read_ahead, minimum=0, maximum=100_000),
                       stage_datasets=table.boolean("stage_datasets", None) if "stage_datasets" in table.data
                       else None,
                       heat=table.boolean("heat", d.heat),
                       dir=table.path("dir", base, None))


def guard_values(g: GuardConfig) -> dict[str, Any]:
    """The table as ``describe`` prints it (unset optional keys left out)."""
    values = {"mode": g.mode, "timeout": g.timeout, "read_ahead": g.read_ahead,
              "stage_datasets": g.stage_datasets, "heat": g.heat, "dir": g.dir}
    return {k: v for k, v in values.items() if v is not None}
