"""Crash-safety lab: SIGKILL a real mover at injected points, recover, and check every byte.

One *trial*:

1. build a hot tier of files with varied sizes (and keep pristine copies);
2. run the driver (this module, ``--drive``) in a subprocess: it releases every
   file, restores every file, then releases half again; ``TIERING_CRASH_AT``
   makes it SIGKILL itself at one journal step (``step:n``), or the lab kills
   it from outside after a random delay;
3. run ``tiering recover`` in a fresh process;
4. check: no open journal entries; no temp files on the hot tier or in the
   capacity tier; every file's state agrees with the hot tier (a released file
   is an empty stub, anything else holds its bytes); every released file's
   capacity copy restores to the pristine bytes. A file whose bytes cannot be
   got back exactly is *lost*; one that comes back different is *corrupt*.

``python -m bench.crash_campaign`` runs hundreds of trials; the test suite runs
a few dozen.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tiering.core.faults import STEPS
from tiering.core.states import FileState

SIZES = (0, 1, 4096, 65536, 300_000, 2_500_000)


@dataclass
class TrialResult:
    point: str
    killed: bool
    files: int
    lost: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.corrupt or self.problems)


def make_lab(root: Path, files: int, seed: int, tier_toml: str = 'url = "capacity"', big: int = 2_500_000,
             hot: Path | None = None) -> Path:
    """A config, a hot tier of ``files`` files and their pristine copies under ``root``.

    ``tier_toml`` is the body of the capacity tier's table (a local folder by
    default); ``big`` the size of the largest files (above the part size, so
    large files go as multipart uploads).
    """
    sizes = (*SIZES[:-1], big)
    rng = random.Random(seed)
    for d in ("hot", "capacity", "pristine"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for i in range(files):
        rel = f"set{i % 4}/file-{i:04d}" + (" odd\nname" if i % 7 == 0 else "") + ".bin"
        data = rng.randbytes(sizes[i % len(sizes)])
        for base in (hot or root / "hot", root / "pristine"):
            path = base / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    config = root / "tiering.toml"
    part = "5MiB" if "s3://" in tier_toml else "1MiB"
    config.write_text(f'default_tier = "cap"\n[hot]\npath = "{hot or "hot"}"\n[catalog]\npath = "state/catalog.db"\n'
                      f'[concurrency]\njobs = 8\npart_size = "{part}"\nmultipart_threshold = "{part}"\n'
                      f'[tiers.cap]\n{tier_toml}\n')
    return config


def drive(config: Path) -> None:
    """The workload that gets killed: release all, restore all, release half."""
    from tiering.config import load_config
    from tiering.mover.executor import Task, execute
    from tiering.ops.session import mover_session

    cfg = load_config(config)
    rels = sorted(os.fsencode(p.relative_to(cfg.hot_path)) for p in cfg.hot_path.rglob("*")
                  if p.is_file() and not p.name.startswith(".tiering")
                  and p.relative_to(cfg.hot_path).parts[0] != ".tiering")  # (tiering's own folder: its locks)
    with mover_session(cfg, "crashlab") as (mover, _):
        for action, chosen in (("release", rels), ("restore", rels), ("release", rels[::2])):
            execute(mover, [Task(r, action) for r in chosen], jobs=4)


def run_trial(root: Path, point: str, *, files: int = 24, seed: int = 0, kill_after: float | None = None,
              tier_toml: str = 'url = "capacity"', big: int = 2_500_000, hot: Path | None = None) -> TrialResult:
    """One trial in a fresh ``root``. ``point`` is ``step:n``, ``any:n``, or ``random`` (use ``kill_after``).
    ``hot``: an empty folder elsewhere (another filesystem) for the hot tier, instead of ``root/hot``."""
    shutil.rmtree(root, ignore_errors=True)
    config = make_lab(root, files, seed, tier_toml, big, hot)
    env = {**os.environ, "TIERING_CRASH_AT": point if point != "random" else ""}
    proc = subprocess.Popen([sys.executable, "-m", "bench.crashlab", "--drive", str(config)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if kill_after is not None:
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    killed = proc.returncode == -signal.SIGKILL
    result = TrialResult(point, killed, files)
    if proc.returncode not in (0, -signal.SIGKILL):
        result.problems.append(f"driver exited {proc.returncode}: {err.decode(errors='replace')[-500:]}")
    recover = subprocess.run([sys.executable, "-c", "from tiering.cli import main; main()", "recover", "-c", str(config)],
                             capture_output=True)
    if recover.returncode != 0:
        result.problems.append(f"recover exited {recover.returncode}: {recover.stderr.decode(errors='replace')[-500:]}")
    check(root, config, result)
    return result


def check(root: Path, config: Path, result: TrialResult) -> None:
    """The invariants, then a full restore compared with the pristine copies."""
    from tiering.catalog import Catalog
    from tiering.config import load_config
    from tiering.mover.executor import Task, execute
    from tiering.ops.session import mover_session

    cfg = load_config(config)
    temps = [str(p) for p in cfg.hot_path.rglob(".tiering-restore-*")] + \
        [str(p) for p in (root / "capacity" / ".tiering" / "tmp").glob("*")]
    result.problems += [f"temp file left: {t}" for t in temps]
    result.problems += [f"unfinished upload left: {u}" for u in _unfinished_uploads(cfg)]
    pristine = {os.fsencode(p.relative_to(root / "pristine")): p for p in (root / "pristine").rglob("*") if p.is_file()}
    if not cfg.catalog_path.exists():
        _compare(cfg, pristine, result)
        return
    with Catalog.open(cfg.catalog_path) as cat:
        if cat.open_entries():
            result.problems.append(f"{len(cat.open_entries())} journal entries still open after recover")
        records = {r.path: r for r in cat.records()}
    for rel, rec in records.items():
        size = (cfg.hot_path / os.fsdecode(rel)).stat().st_size
        if rec.state == FileState.RELEASED and size != 0:
            result.problems.append(f"{rel!r}: catalog says released but the hot file has {size} bytes")
    with mover_session(cfg, "crashlab-check") as (mover, _):
        execute(mover, [Task(r, "restore") for r, rec in records.items() if rec.state == FileState.RELEASED], jobs=4)
    _compare(cfg, pristine, result)


def _unfinished_uploads(cfg) -> list[str]:
    from tiering.config import open_tier
    from tiering.stores.s3 import S3Store
    from tiering.stores.s3_uploads import list_uploads

    store = open_tier(cfg, "cap")
    if not isinstance(store, S3Store):
        return []
    return [name for name, _ in list_uploads(store._endpoint, store._creds, store.bucket, store.prefix + "/")]


def _compare(cfg, pristine: dict[bytes, Path], result: TrialResult) -> None:
    for rel, original in pristine.items():
        hot = cfg.hot_path / os.fsdecode(rel)
        want = original.read_bytes()
        got = hot.read_bytes() if hot.exists() else None
        if got is None or (len(got) == 0 and len(want) > 0):
            result.lost.append(os.fsdecode(rel))
        elif got != want:
            result.corrupt.append(os.fsdecode(rel))


def points(count: int, seed: int = 0) -> list[tuple[str, float | None]]:
    """``count`` kill points: every step at several hit counts, then random steps and random instants."""
    rng = random.Random(seed)
    # "upload:part" only happens inside an object store's multipart upload; the lab's tier is a folder.
    fixed = [(f"{step}:{n}", None) for n in (1, 3, 9) for step in STEPS if step != "upload:part"]
    extra = []
    while len(fixed) + len(extra) < count:
        if rng.random() < 0.5:
            extra.append((f"any:{rng.randint(1, 150)}", None))
        else:
            extra.append(("random", rng.uniform(0.3, 3.0)))
    return (fixed + extra)[:count]


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--drive":
        drive(Path(sys.argv[2]))
        return
    print(json.dumps({"usage": "python -m bench.crash_campaign"}))


if __name__ == "__main__":
    main()
