"""Campaign ids and the results file every ``tiering bench`` command writes.

A campaign is one ``bench`` invocation; its rows (``bench.results.SCHEMA``)
go to ``<out>/results.parquet``. When that file already exists, the new rows
are appended to it (read, concatenated, written to a temp name and renamed),
so several commands may share one output folder without losing each other's
rows; ``campaign`` tells them apart.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench.results import SCHEMA, table
from tiering.core.errors import UserError

RESULTS = "results.parquet"


def new_campaign(engine: str) -> str:
    """A campaign id that sorts by time: ``<engine>-<UTC yyyymmddThhmmss>-<random>``."""
    return f"{engine}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"


def write_results(rows: list[dict], out: str | os.PathLike[str], *, replace_campaign: str | None = None) -> Path:
    """Append ``rows`` to ``<out>/results.parquet`` (created with its folder); returns its path.

    With ``replace_campaign``, rows already there from that campaign are dropped
    first, so writing a campaign again never duplicates it.
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / RESULTS
    new = table(rows)
    if path.exists():
        old = conform(pq.read_table(path))
        if replace_campaign is not None:
            old = old.filter(pc.not_equal(old["campaign"], replace_campaign))
        new = pa.concat_tables([old, new])
    tmp = path.with_name(f".{RESULTS}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        pq.write_table(new, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def conform(data: pa.Table) -> pa.Table:
    """``data`` with exactly SCHEMA's columns, in order (missing ones null, extra ones dropped)."""
    columns = [
        data.column(f.name).cast(f.type) if f.name in data.column_names else pa.nulls(len(data), f.type)
        for f in SCHEMA
    ]
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def check_writable(folder: str | os.PathLike[str], option: str) -> None:
    """A folder a campaign will write into, checked before anything runs: the folder, or the nearest
    existing one above it (where it would be created), must be a writable directory.

    Raises a one-line ``UserError`` naming ``option``; ``os.access`` also says no on a read-only
    mount, even to root.
    """
    probe = Path(folder).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    where = str(folder) if probe == Path(folder).absolute() else f"{folder}: {probe}"
    if not probe.is_dir():
        raise UserError(f"{option}: {where} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"{option}: {where} is not writable")
