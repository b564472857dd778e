"""The access trace: what was read on the hot tier, when, and which tier served it.

``schema`` is the contract (one row per access, ``SCHEMA``); ``log`` records
it as rotated, size-bounded Parquet files (the daemon and the access guard
write one each); ``read`` gives any trace (a file or a folder of them) back
as one time-ordered table and exports it; ``generate`` makes synthetic traces
of training workloads, with the inventory they run over, for tests, demos and
``tiering simulate``.
"""

from tiering.trace.schema import KINDS, SCHEMA, TRACE_DOC

__all__ = ["KINDS", "SCHEMA", "TRACE_DOC"]
