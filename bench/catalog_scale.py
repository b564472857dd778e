"""The catalog is not the ceiling (issue 21.4): plan, status, apply and recover over a huge SQLite catalog.

    python -m bench.catalog_scale --rows 10000000 [--dir DIR] [--apply-actions 100000]
                                  [--open-entries 1000] [--keep] [--steps plan,status,apply,recover]

Builds, untimed, in ``--dir`` (default: a temporary directory; ``--keep`` keeps it, and a later run with
the same ``--dir`` and ``--rows`` reuses what is there):

- a SQLite catalog of ``--rows`` files (half archived, 30 % released, the rest resident with heat), bulk
  inserted through ADBC in path order with the state index built afterwards, plus a journal of
  ``rows / 10`` finished entries and ``--open-entries`` archives a crash left open;
- a partitioned inventory snapshot of the same paths (archived files unchanged since, so not dirty);
- a hot tier holding ``--apply-actions`` real one-byte files no record knows yet, and a posix capacity tier.

Then each step runs in a fresh process (its own peak RSS) and prints seconds and peak RSS:

- ``plan``: ``tiering plan``'s library path over the whole synthetic inventory, the catalog streamed
  (``Catalog.state_batches``) and bucketed beside the snapshot (bench/policies/ten-rules.toml);
- ``status``: ``tiering status``'s summary (files and bytes by state: one SQL aggregate; the last run;
  interrupted actions by the journal's partial index);
- ``apply``: a plan archiving the ``--apply-actions`` files (planned against the whole catalog, streamed),
  applied by the mover (every action journaled in the big catalog);
- ``recover``: the ``--open-entries`` interrupted archives settled (found by the journal's partial index,
  each file by its key).

Disk: about ``disk_estimate(rows)`` bytes (printed first; the run stops if the filesystem has less free):
the catalog ~190 B a row, the journal ~15 B a file row, the snapshot ~35 B, the plan's catalog spill
~70 B while it runs. 10^8 rows: ~31 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tiering.core.inventory import SCHEMA, buckets_for

NS = 1_000_000_000
DAY = 86400 * NS
#: Bytes a catalog row takes on disk with its share of the journal, the snapshot and the plan's spill.
_BYTES_PER_ROW = 190 + 15 + 35 + 70
_FILES_PER_DIR = 10_000
POLICY = Path(__file__).parent / "policies" / "ten-rules.toml"
APPLY_POLICY = """[[rules]]
name = "all"
match = 'type == "file"'
action = "archive"

[safety]
min_age = "0s"
"""


def disk_estimate(rows: int) -> int:
    """Bytes the bench needs for ``rows`` catalog rows (see the module docstring)."""
    return rows * _BYTES_PER_ROW + (1 << 30)


def paths_of(start: int, n: int) -> pa.Array:
    """Synthetic paths, in byte order with their index: ``dNNNNNN/fNNNNNNNNNN.bin``."""
    idx = np.arange(start, start + n)
    text = np.char.add(np.char.add(np.char.add("d", np.char.zfill((idx // _FILES_PER_DIR).astype(str), 6)), "/f"),
                       np.char.add(np.char.zfill(idx.astype(str), 10), ".bin"))
    return pa.array(text.tolist(), pa.string()).cast(pa.binary())


def file_columns(start: int, n: int, now: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(start)
    size = rng.lognormal(13, 3, n).astype(np.int64)
    atime = now - (rng.exponential(60, n) * DAY).astype(np.int64)
    mtime = atime - (rng.exponential(30, n) * DAY).astype(np.int64)
    return {"size": size, "atime": atime, "mtime": mtime, "ino": np.arange(start, start + n, dtype=np.int64) + 2,
            "state": rng.random(n)}


def catalog_batch(start: int, n: int, now: int) -> pa.Table:
    c = file_columns(start, n, now)
    path = paths_of(start, n)
    kind = np.where(c["state"] < 0.5, 0, np.where(c["state"] < 0.8, 1, 2))
    state = pa.array(["archived", "released", "resident"]).take(pa.array(kind))
    managed = pa.array(kind < 2)
    released = pa.array(kind == 1)

    def where(mask: pa.Array, value) -> pa.Array:
        return pc.if_else(mask, value, pa.scalar(None, value.type))

    at = now / NS
    return pa.table({
        "path": path, "state": state, "tier": where(managed, pa.scalar("cap")),
        "object_key": pc.if_else(managed, pc.cast(path, pa.string()), pa.scalar(None, pa.string())),
        "storage_class": pa.nulls(n, pa.string()),
        "checksum": where(managed, pa.scalar("blake3:" + "ab" * 32)),
        "size": c["size"], "mtime_ns": c["mtime"], "ctime_ns": c["mtime"], "ino": c["ino"],
        "archived_at": where(managed, pa.scalar(at - 86400)), "released_at": where(released, pa.scalar(at - 3600)),
        "heat": np.random.default_rng(start + 1).exponential(2.0, n), "heat_at": np.full(n, at - 600),
        "pinned": np.zeros(n, np.int64), "updated_at": np.full(n, at),
    })


def inventory_batch(start: int, n: int, now: int) -> pa.RecordBatch:
    c = file_columns(start, n, now)
    released = (c["state"] >= 0.5) & (c["state"] < 0.8)
    size = np.where(released, 0, c["size"])  # stubs: zero bytes on the hot tier
    cols = {
        "path": paths_of(start, n),
        "type": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int8)), pa.array(["file", "dir", "symlink"])),
        "size": size, "blocks": (size + 511) // 512, "mode": np.full(n, 0o100644, np.uint32),
        "uid": np.full(n, 1000, np.uint32), "gid": np.full(n, 100, np.uint32), "atime_ns": c["atime"],
        "mtime_ns": c["mtime"], "ctime_ns": c["mtime"], "ino": c["ino"].astype(np.uint64),
        "nlink": np.ones(n, np.uint32),
    }
    return pa.RecordBatch.from_pydict(cols, schema=SCHEMA)


# -- building -------------------------------------------------------------------------------------------------------


def build(work: Path, rows: int, apply_actions: int, open_entries: int, now: int, say) -> None:
    """The catalog, journal, snapshot, hot tier and config under ``work`` (see the module docstring)."""
    from tiering.catalog import Catalog

    done = work / "built.json"
    if done.exists() and json.loads(done.read_text()) == {"rows": rows, "apply": apply_actions,
                                                          "open": open_entries}:
        say(f"reusing what {work} holds")
        return
    shutil.rmtree(work / "state", ignore_errors=True)
    shutil.rmtree(work / "hot", ignore_errors=True)
    (work / "capacity").mkdir(parents=True, exist_ok=True)
    catalog = work / "state" / "catalog.db"
    with Catalog.open(catalog, writer=True, purpose="bench"):
        pass  # the schema, as tiering makes it
    t = time.perf_counter()
    _bulk_files(catalog, rows, now)
    say(f"catalog: {rows:,} files in {time.perf_counter() - t:.1f}s")
    t = time.perf_counter()
    _bulk_journal(catalog, rows, open_entries, now)
    say(f"journal: {rows // 10:,} finished, {open_entries:,} open entries in {time.perf_counter() - t:.1f}s")
    t = time.perf_counter()
    _snapshot(work / "state" / "inventory" / "big.parquet", rows, now)
    say(f"snapshot: {rows:,} rows, {buckets_for(rows)} partitions in {time.perf_counter() - t:.1f}s")
    t = time.perf_counter()
    _hot_tier(work / "hot", apply_actions)
    say(f"hot tier: {apply_actions:,} files in {time.perf_counter() - t:.1f}s")
    (work / "tiering.toml").write_text(
        'default_tier = "cap"\n[hot]\npath = "hot"\n[catalog]\npath = "state/catalog.db"\n'
        '[tiers.cap]\nurl = "capacity"\n')
    (work / "apply-policy.toml").write_text(APPLY_POLICY)
    say(f"on disk: {_du(work) / 1e9:.2f} GB ({_du(catalog.parent) / rows:.0f} B a row with the snapshot)")
    done.write_text(json.dumps({"rows": rows, "apply": apply_actions, "open": open_entries}))


@contextmanager
def _sql(catalog: Path) -> Iterator[sqlite3.Connection]:
    """A ``sqlite3`` connection, committed and closed on leaving: ADBC's driver (its own copy of SQLite)
    must never share this process with an open one (``tiering.catalog.arrow``)."""
    conn = sqlite3.connect(catalog)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def _bulk_files(catalog: Path, rows: int, now: int, batch: int = 1 << 20) -> None:
    from adbc_driver_sqlite import dbapi

    with _sql(catalog) as conn:  # no WAL while loading: one big write, nobody reading
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute("DROP INDEX files_state_size")  # built once at the end: far faster than row by row
    with dbapi.connect(f"file:{catalog}", autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("PRAGMA synchronous = OFF")
        cur.execute("PRAGMA journal_mode = OFF")
        cur.execute("PRAGMA cache_size = -262144")
        for start in range(0, rows, batch):
            cur.adbc_ingest("files", catalog_batch(start, min(batch, rows - start), now), mode="append")
    with _sql(catalog) as conn:
        conn.execute("PRAGMA cache_size = -262144")
        conn.execute("CREATE INDEX files_state_size ON files (state, size)")  # (as tiering.catalog.schema)
        conn.execute("PRAGMA journal_mode = WAL")


def _bulk_journal(catalog: Path, rows: int, open_entries: int, now: int, batch: int = 1 << 20) -> None:
    from adbc_driver_sqlite import dbapi

    finished = rows // 10
    with dbapi.connect(f"file:{catalog}", autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("PRAGMA synchronous = OFF")
        for start in range(0, finished, batch):
            cur.adbc_ingest("journal", _entries(start, min(batch, finished - start), "done", now), mode="append")
    _open_entries(catalog, rows, open_entries, now)


def _open_entries(catalog: Path, rows: int, open_entries: int, now: int) -> None:
    """Archives a crash interrupted (their copies never made it): of files created since the catalog was
    built, past its last path (an archive is never open on a file the catalog calls released: recover would
    keep, and check, that file's only copy), spread over as many directories as the journal spans."""
    from adbc_driver_sqlite import dbapi

    step = max(1, rows // 10 // max(1, open_entries))
    first_new = rows
    with dbapi.connect(f"file:{catalog}", autocommit=True) as conn, conn.cursor() as cur:
        if open_entries:
            cur.adbc_ingest("journal", pa.concat_tables([_entries(first_new + i * step, 1, "open", now)
                                                         for i in range(open_entries)]), mode="append")


def _entries(start: int, n: int, status: str, now: int) -> pa.Table:
    paths = paths_of(start, n)
    return pa.table({"run_id": pa.array(["bench"] * n), "action": pa.array(["archive"] * n),
                     "path": paths, "tier": pa.array(["cap"] * n), "object_key": paths.cast(pa.string()),
                     "step": pa.array(["copied" if status == "open" else "done"] * n),
                     "status": pa.array([status] * n), "detail": pa.array(["{}"] * n),
                     "started_at": np.full(n, now / NS - 60), "ended_at": pa.nulls(n, pa.float64())
                     if status == "open" else np.full(n, now / NS - 59)})


def _snapshot(out: Path, rows: int, now: int, batch: int = 1 << 20) -> None:
    from tiering.scan import PartitionedWriter, mark_latest

    out.parent.mkdir(parents=True, exist_ok=True)
    out.mkdir()
    with PartitionedWriter(out, buckets_for(rows)) as writer:
        for start in range(0, rows, batch):
            writer.write_batch(inventory_batch(start, min(batch, rows - start), now))
    writer.finish({"files": rows, "dirs": 0, "symlinks": 0})
    mark_latest(out)


def _hot_tier(hot: Path, files: int) -> None:
    for i in range(files):
        folder = hot / "apply" / f"{i // 1000:04d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True)
        fd = os.open(folder / f"g{i:07d}", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b"x")
        os.close(fd)
    old = time.time() - 7 * 86400  # cold enough for any rule
    for folder in (hot / "apply").iterdir():
        for f in folder.iterdir():
            os.utime(f, (old, old))


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# -- the timed steps (each in a fresh process) ----------------------------------------------------------------------


def step(name: str, work: Path) -> dict:
    from tiering.config import load_config
    from tiering.policy import load_policy

    config = load_config(work / "tiering.toml")
    _reset(name, work)
    start = time.perf_counter()
    out: dict = {}
    if name == "plan":
        from tiering.ops.workflow import plan_now

        plan = plan_now(config, load_policy(POLICY, config), snapshot=work / "state" / "inventory" / "big.parquet")
        out["actions"] = len(plan)
    elif name == "status":
        from tiering.ops.status import tier_summary

        summary = tier_summary(config)
        out["files"] = sum(s["files"] for s in summary["by_state"].values())
        out["interrupted"] = summary["interrupted"]
    elif name == "apply":
        out.update(_apply(config, work))
    elif name == "recover":
        from tiering.catalog import Catalog
        from tiering.mover.ops import Mover
        from tiering.mover.recover import recover

        with Catalog.open(config.catalog_target, writer=True, purpose="bench") as catalog:
            mover = Mover(config, catalog)
            try:
                outcomes = recover(mover)
            finally:
                mover.close()
        out["settled"] = sum(o.ok for o in outcomes)
    out["seconds"] = time.perf_counter() - start
    out["rss_mb"] = peak_rss_mb()
    return out


def peak_rss_mb() -> float:
    """This process's peak RSS since it started (``VmHWM``: ``ru_maxrss`` would carry the parent's peak
    across fork and exec, and the parent built the data)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset(name: str, work: Path) -> None:
    """Untimed: undo what an earlier run of the step did, so steps repeat on a kept ``--dir``."""
    built = json.loads((work / "built.json").read_text())
    catalog = work / "state" / "catalog.db"
    if name == "apply":  # the apply files unknown again, their copies gone
        with _sql(catalog) as conn:
            conn.execute("DELETE FROM files WHERE path >= CAST('apply/' AS BLOB) AND path < CAST('apply0' AS BLOB)")
        shutil.rmtree(work / "capacity" / "apply", ignore_errors=True)
    elif name == "recover":  # the interrupted archives open again
        with _sql(catalog) as conn:
            (open_now,) = conn.execute("SELECT count(*) FROM journal WHERE status = 'open'").fetchone()
        if not open_now:
            with _sql(catalog) as conn:
                conn.execute("DELETE FROM journal WHERE run_id = 'bench' AND status = 'rolled_back'")
            _open_entries(catalog, built["rows"], built["open"], time.time_ns())


def _apply(config, work: Path) -> dict:
    from tiering.catalog import Catalog
    from tiering.mover.executor import execute, plan_tasks
    from tiering.mover.ops import Mover
    from tiering.ops.workflow import plan_now
    from tiering.policy import load_policy
    from tiering.scan import write_snapshot

    snap = work / "state" / "inventory" / "apply.parquet"
    shutil.rmtree(snap, ignore_errors=True) if snap.is_dir() else snap.unlink(missing_ok=True)
    write_snapshot(config.hot_path, snap, jobs=1, buckets=1)
    with Catalog.open(config.catalog_target, writer=True, purpose="bench") as catalog:
        t = time.perf_counter()
        plan = plan_now(config, load_policy(work / "apply-policy.toml", config), snapshot=snap, catalog=catalog)
        planned = time.perf_counter() - t
        mover = Mover(config, catalog)
        try:
            t = time.perf_counter()
            result = execute(mover, plan_tasks(plan), jobs=config.jobs)
            applied = time.perf_counter() - t
        finally:
            mover.close()
    return {"actions": len(plan), "plan_seconds": planned, "apply_seconds": applied, "total": result.total,
            "failed": result.failed, "stopped": result.stopped}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--dir", type=Path, help="where to build (default: a temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep --dir's contents (a later run reuses them)")
    ap.add_argument("--apply-actions", type=int, default=100_000)
    ap.add_argument("--open-entries", type=int, default=1000)
    ap.add_argument("--steps", default="plan,status,apply,recover")
    ap.add_argument("--step", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.step:  # a timed child
        print(json.dumps(step(args.step, args.dir)))
        return

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    work = args.dir or Path(tempfile.mkdtemp(prefix="tiering-catalog-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    need, free = disk_estimate(args.rows), shutil.disk_usage(work).free
    say(f"{args.rows:,} rows: about {need / 1e9:.1f} GB on disk in {work} ({free / 1e9:.1f} GB free)")
    built = work / "built.json"
    reused = built.exists() and json.loads(built.read_text()).get("rows") == args.rows
    if need > free and not reused:  # (a build to reuse needs room only for the plan's spill)
        sys.exit(f"not enough free space in {work}: need about {need / 1e9:.1f} GB")
    try:
        build(work, args.rows, args.apply_actions, args.open_entries, time.time_ns(), say)
        results = {}
        for name in args.steps.split(","):
            done = subprocess.run([sys.executable, "-m", "bench.catalog_scale", "--step", name, "--dir", str(work)],
                                  capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"step {name} failed (exit status {done.returncode}):\n{done.stderr}{done.stdout[-2000:]}")
            results[name] = json.loads(done.stdout.splitlines()[-1])
            say(f"{name}: {json.dumps(results[name])}")
        print(json.dumps({"rows": args.rows, **results}))
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
