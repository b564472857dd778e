"""Reading a trace back: one file or a folder of them (``TraceLog``'s), as one time-ordered table."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tiering.core.errors import UserError
from tiering.trace.log import trace_files
from tiering.trace.schema import SCHEMA

#: Columns read as dictionaries: a trace names few files many times.
_DICTIONARY = ["path", "kind", "tier"]
EXPORT_FORMATS = ("parquet", "csv")


def trace_sources(source: str | os.PathLike[str]) -> list[Path]:
    """The Parquet files of a trace: ``source`` itself, or the trace files in that folder (``UserError``: none)."""
    path = Path(source)
    files = trace_files(path) if path.is_dir() else [path] if path.is_file() else []
    if not files:
        what = "holds no trace files (trace-*.parquet)" if path.is_dir() else "does not exist"
        raise UserError(f"{path}: {what}; expected a trace file or the [trace] folder the daemon records into")
    return files


def read_trace(source: str | os.PathLike[str], *, since_ns: int | None = None, until_ns: int | None = None) -> pa.Table:
    """Every access of the trace at ``source`` (in ``[since_ns, until_ns)`` when given), oldest first.

    ``path`` comes back dictionary-encoded (one dictionary per file read), which keeps ten million accesses
    of a million files in a few hundred MB.
    """
    parts = []
    for path in trace_sources(source):
        try:
            table = pq.read_table(path, read_dictionary=_DICTIONARY)
        except (OSError, pa.ArrowInvalid) as exc:
            raise UserError(f"{path}: not a readable trace file ({exc}); expected Parquet with the trace "
                            "schema (tiering trace export --help)") from None
        missing = [n for n in SCHEMA.names if n not in table.column_names]
        if missing:
            raise UserError(f"{path}: no column {', '.join(missing)}; expected the trace schema "
                            "(tiering trace export --help)")
        parts.append(table.select(SCHEMA.names))
    table = pa.concat_tables(parts, promote_options="permissive")
    if since_ns is not None:
        table = table.filter(pc.greater_equal(table["time_ns"], since_ns))
    if until_ns is not None:
        table = table.filter(pc.less(table["time_ns"], until_ns))
    times = table["time_ns"].to_numpy()
    if len(times) > 1 and np.any(times[1:] < times[:-1]):  # several recorders: interleave them
        table = table.take(pa.array(np.argsort(times, kind="stable")))
    return table


def export_trace(source: str | os.PathLike[str], out: str | os.PathLike[str], *, fmt: str | None = None,
                 since_ns: int | None = None, until_ns: int | None = None) -> int:
    """Write the trace at ``source`` as one file ``out`` (Parquet, or CSV with paths as UTF-8 text, undecodable
    bytes escaped); returns the accesses written."""
    out = Path(out)
    fmt = fmt or ("csv" if out.suffix == ".csv" else "parquet")
    if fmt not in EXPORT_FORMATS:
        raise UserError(f"export format {fmt!r}: expected one of {', '.join(EXPORT_FORMATS)}")
    table = read_trace(source, since_ns=since_ns, until_ns=until_ns)
    plain = table.combine_chunks() if table.num_rows else table
    plain = pa.table({n: (pc.cast(plain[n], plain.schema.field(n).type.value_type)
                          if pa.types.is_dictionary(plain.schema.field(n).type) else plain[n]) for n in SCHEMA.names})
    if fmt == "parquet":
        pq.write_table(plain.cast(_plain_schema()).replace_schema_metadata(SCHEMA.metadata), out, compression="zstd")
    else:
        import pyarrow.csv as csv

        text = pa.array([os.fsdecode(p) if p is not None else None for p in plain["path"].to_pylist()], pa.string())
        csv.write_csv(plain.set_column(1, "path", text), out)
    return table.num_rows


def _plain_schema() -> pa.Schema:
    return pa.schema([pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type, f.nullable)
                      for f in SCHEMA])
