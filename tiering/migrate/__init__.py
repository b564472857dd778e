"""Bulk migration: ``tiering migrate`` and ``tiering sync`` between any two places.

A place is a local folder, ``s3://``, ``oss://`` or a configured tier. Runs
are verified end to end (size and BLAKE3 for every file), resumable (a re-run
skips what is already there, and nothing partial is ever visible under a real
name), bounded in memory (streamed listings, bounded in-flight work) and run
on this machine's threads or on a Dask cluster (``tiering.mover.distributed``).

    job = Job(resolve("/data/set", {}), resolve("s3://bucket/set", opts, side="destination"))
    result = migrate(job, jobs=32)

Names are imported lazily: ``archive``/``release``/``restore`` use only the
``Filter`` of ``listing``, and a cron job should not load every endpoint for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tiering.core.lazy import lazy_exports

_EXPORTS = {
    "EndpointSpec": "endpoints",
    "check_apart": "endpoints",
    "resolve": "endpoints",
    "Filter": "listing",
    "ItemResult": "result",
    "MigrateResult": "result",
    "migrate": "run",
    "Job": "transfer",
}
__all__ = ["EndpointSpec", "Filter", "ItemResult", "Job", "MigrateResult", "check_apart", "migrate", "resolve"]

if TYPE_CHECKING:  # pragma: no cover
    from tiering.migrate.endpoints import EndpointSpec, check_apart, resolve
    from tiering.migrate.listing import Filter
    from tiering.migrate.result import ItemResult, MigrateResult
    from tiering.migrate.run import migrate
    from tiering.migrate.transfer import Job


__getattr__ = lazy_exports(__name__, _EXPORTS)
