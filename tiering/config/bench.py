"""The ``[bench]`` table: what ``tiering bench`` may do to the machine it measures.

Every key is optional; these are the defaults::

    [bench]
    drop_caches = false    # drop the whole machine's page cache before each buffered fio run (root;
                           # never with --direct, which bypasses the cache); --drop-caches does it for
                           # one sweep. Off by default: on a shared node it evicts everyone's data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tiering.config.values import Table

BENCH_KEYS = ("drop_caches",)


@dataclass(frozen=True)
class BenchConfig:
    """The resolved ``[bench]`` table."""

    drop_caches: bool = False


def parse_bench(table: Table) -> BenchConfig:
    """Check and resolve the ``[bench]`` table."""
    table.check_keys(BENCH_KEYS)
    return BenchConfig(drop_caches=table.boolean("drop_caches", BenchConfig.drop_caches))


def bench_values(b: BenchConfig) -> dict[str, Any]:
    """The table as ``describe`` prints it."""
    return {"drop_caches": b.drop_caches}
