"""The simulated hot tier: every file's state as arrays, the joined inventory a cycle plans over, and a plan
applied to it.

One row per inventory file, numbered by its position (its simulated inode is
that number + 1, which is how a plan's actions find their file again). A file
written for the first time during the trace is absent until that write.
Actions take no time here: an archive, release or restore is done by the end
of the cycle that planned it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tiering.core.states import FileState
from tiering.plan import Plan

RESIDENT, ARCHIVED, RELEASED, DIRTY = 0, 1, 2, 3
_STATE_NAMES = pa.array([FileState.RESIDENT, FileState.ARCHIVED, FileState.RELEASED, FileState.DIRTY], pa.string())


@dataclass
class Moves:
    """Bytes and requests a replay caused, by direction and cause."""

    up_bytes: int = 0  # hot -> capacity (archive, or the copy a release makes first)
    up_files: int = 0
    released_bytes: int = 0  # hot-tier bytes freed by releases
    down_bytes: int = 0  # capacity -> hot (every restore: a reader's or a rule's)
    down_files: int = 0
    policy_restores: int = 0  # restores a rule (restore/pin) asked for


class HotState:
    """The files of one replay (see the module docstring). ``inventory``: the inventory table (its schema)."""

    def __init__(self, inventory: pa.Table, born_ns: np.ndarray, tier: str) -> None:
        inv = inventory.combine_chunks()
        self.n = inv.num_rows
        self.paths = inv["path"].chunk(0) if inv["path"].num_chunks else pa.array([], pa.binary())
        self.size = inv["size"].to_numpy().astype(np.int64)
        self.blocks = inv["blocks"].to_numpy().astype(np.int64)
        self.mode, self.uid, self.gid = (inv[c].chunk(0) if self.n else inv[c] for c in ("mode", "uid", "gid"))
        self.atime = inv["atime_ns"].to_numpy().astype(np.int64)
        self.mtime = inv["mtime_ns"].to_numpy().astype(np.int64)
        self.ctime = inv["ctime_ns"].to_numpy().astype(np.int64)
        self.nlink = inv["nlink"].to_numpy().astype(np.uint32)
        self.born = born_ns
        self.present = born_ns == np.iinfo(np.int64).min
        self.state = np.zeros(self.n, np.int8)
        self.pinned = np.zeros(self.n, bool)
        self.tier = tier
        self.used = int(self.blocks[self.present].sum()) * 512
        self.moves = Moves()
        self._rows: np.ndarray | None = None  # present files' numbers (until a birth)
        self._fixed: dict[str, pa.Array] = {}

    # -- the trace's effects ------------------------------------------------------------------------------------

    def write(self, ids: np.ndarray, times: np.ndarray) -> None:
        """Files written at ``times`` (sorted): born if absent, dirty if archived, their times moved on."""
        if not len(ids):
            return
        last = _last_per_file(ids, times)
        ids = np.fromiter(last.keys(), np.int64, len(last))
        at = np.fromiter(last.values(), np.int64, len(last))
        new = ids[~self.present[ids]]
        if len(new):
            self.present[new] = True
            self.state[new] = RESIDENT
            self.used += int(self.blocks[new].sum()) * 512
            self._rows, self._fixed = None, {}
        old = np.setdiff1d(ids, new, assume_unique=True)
        stubs = old[self.state[old] == RELEASED]  # a write to a stub: the guard restores it first
        self.restore(stubs)
        archived = old[self.state[old] == ARCHIVED]
        self.state[archived] = DIRTY
        self.mtime[ids] = self.ctime[ids] = self.atime[ids] = at

    def restore(self, ids: np.ndarray) -> None:
        """Bring released files ``ids`` back (they become archived: their copy stays)."""
        if len(ids):
            self.state[ids] = ARCHIVED
            self.used += int(self.blocks[ids].sum()) * 512
            self.moves.down_bytes += int(self.size[ids].sum())
            self.moves.down_files += len(ids)

    # -- one cycle ---------------------------------------------------------------------------------------------

    def joined(self, heat: np.ndarray) -> tuple[list[pa.RecordBatch], np.ndarray]:
        """The present files as ``plan.join.joined`` gives them (inventory + ``cat_*`` columns), and their
        numbers. ``heat``: every file's heat now."""
        if self._rows is None:
            self._rows = np.flatnonzero(self.present)
        rows = self._rows
        take = pa.array(rows)
        fixed = self._fixed
        if not fixed:
            n = len(rows)
            fixed.update(path=self.paths.take(take), mode=self.mode.take(take), uid=self.uid.take(take),
                         gid=self.gid.take(take), nlink=pa.array(self.nlink[rows]),
                         ino=pa.array((rows + 1).astype(np.uint64)), cat_ino=pa.array((rows + 1).astype(np.int64)),
                         type=pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int8)), pa.array(["file"])),
                         no_class=pa.nulls(n, pa.string()), no_age=pa.nulls(n, pa.float64()))
        state = self.state[rows]
        released = state == RELEASED
        size = self.size[rows]
        on_capacity = pa.array(state != RESIDENT)
        columns = {
            "path": fixed["path"], "type": fixed["type"], "size": pa.array(np.where(released, 0, size)),
            "blocks": pa.array(np.where(released, 0, self.blocks[rows])), "mode": fixed["mode"],
            "uid": fixed["uid"], "gid": fixed["gid"], "atime_ns": pa.array(self.atime[rows]),
            "mtime_ns": pa.array(self.mtime[rows]), "ctime_ns": pa.array(self.ctime[rows]), "ino": fixed["ino"],
            "nlink": fixed["nlink"], "cat_state": _STATE_NAMES.take(pa.array(state)),
            "cat_tier": pc.if_else(on_capacity, pa.scalar(self.tier), pa.scalar(None, pa.string())),
            "cat_heat": pa.array(heat[rows]), "cat_pinned": pa.array(self.pinned[rows]),
            "cat_size": pa.array(size), "cat_mtime_ns": pa.array(self.mtime[rows]), "cat_ino": fixed["cat_ino"],
            # (storage classes are not simulated: every copy is in its tier's class, of no known age)
            "cat_storage_class": fixed["no_class"], "cat_archived_at": fixed["no_age"],
        }
        table = pa.table(columns)
        # One batch per core: the planner evaluates batches on a few threads (Arrow kernels release the GIL).
        return table.to_batches(max_chunksize=max(1 << 16, -(-len(rows) // (os.cpu_count() or 1)))), rows

    def apply(self, plan: Plan) -> None:
        """Do what ``plan`` says, at once (see the module docstring)."""
        actions = plan.actions
        if not actions.num_rows:
            return
        ids = actions["ino"].to_numpy().astype(np.int64) - 1
        kind = actions["action"].to_numpy(zero_copy_only=False)
        pin = ids[kind == "pin"]
        self.pinned[pin] = True
        back = np.concatenate([ids[kind == "restore"], pin[self.state[pin] == RELEASED]])
        back = back[self.state[back] == RELEASED]
        self.moves.policy_restores += len(back)
        self.restore(back)
        out = ids[(kind == "archive") | (kind == "release")]
        copy = out[(self.state[out] == RESIDENT) | (self.state[out] == DIRTY)]
        self.moves.up_bytes += int(self.size[copy].sum())
        self.moves.up_files += len(copy)
        self.state[copy] = ARCHIVED
        free = ids[kind == "release"]
        free = free[self.state[free] != RELEASED]
        freed = int(self.blocks[free].sum()) * 512
        self.used -= freed
        self.moves.released_bytes += freed
        self.state[free] = RELEASED

    def on_capacity_bytes(self) -> int:
        return int(self.size[self.present & (self.state != RESIDENT)].sum())


def _last_per_file(ids: np.ndarray, times: np.ndarray) -> dict[int, int]:
    """Each file's last time in ``(ids, times)`` (times sorted)."""
    return dict(zip(ids.tolist(), times.tolist()))
