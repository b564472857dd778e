"""One table for every benchmark result: fio sweeps, object sweeps, dataloader runs.

Each row is one measured point. Columns that do not apply to an engine are
null (an object sweep has no iodepth; only dataloader rows have AU). A
campaign's rows are written as one Parquet file; ``bench report`` reads any
number of them side by side.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA = pa.schema(
    [
        pa.field("campaign", pa.string(), nullable=False),  # campaign id (one `bench` invocation)
        pa.field("engine", pa.string(), nullable=False),  # fio | objects | dataloader
        pa.field("tier", pa.string(), nullable=False),  # "hot", a tier name, or the target dir's label
        pa.field("target", pa.string(), nullable=False),  # directory or tier URL measured
        pa.field("profile", pa.string(), nullable=False),  # fio profile name; "objects"; "dataloader"
        pa.field("op", pa.string(), nullable=False),  # read | write | randread | randwrite | put | get | list+get | load
        pa.field("block_size", pa.int64()),  # fio bs, or object / sample size, bytes
        pa.field("numjobs", pa.int32()),  # fio numjobs, object concurrency, or reader workers
        pa.field("iodepth", pa.int32()),  # fio only
        pa.field("runtime_s", pa.float64()),
        pa.field("bytes", pa.int64()),  # bytes moved in the measured window
        pa.field("bw_bytes_s", pa.float64()),
        pa.field("iops", pa.float64()),  # I/O operations (or objects, or samples) per second
        pa.field("lat_mean_s", pa.float64()),
        pa.field("lat_p50_s", pa.float64()),
        pa.field("lat_p99_s", pa.float64()),
        pa.field("lat_p999_s", pa.float64()),
        pa.field("ttfb_p50_s", pa.float64()),  # objects: time to first byte
        pa.field("ttfb_p99_s", pa.float64()),
        pa.field("samples_s", pa.float64()),  # dataloader only
        pa.field("au", pa.float64()),  # dataloader: accelerator utilisation, 0..1
        pa.field("accelerators", pa.int32()),  # dataloader: emulated accelerators in this point
        pa.field("repeats", pa.int32()),  # runs of this point; the row is the median run (by throughput)
        pa.field("spread", pa.float64()),  # (max − min) / median throughput over the repeats; null for one run
        pa.field("warning", pa.string()),  # e.g. "probably served from page cache"
        pa.field("result_path", pa.string()),  # the raw result (fio JSON) kept beside the table
    ],
    metadata={b"tiering.bench.schema": b"1"},
)


def table(rows: list[dict]) -> pa.Table:
    """Rows (dicts with any subset of the columns) as a table in SCHEMA; missing columns are null."""
    return pa.Table.from_pylist([{name: row.get(name) for name in SCHEMA.names} for row in rows], schema=SCHEMA)
