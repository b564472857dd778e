"""The access guard's dataset stage-in: a reader's miss in a dataset brings the rest of the dataset in.

Training reads a dataset shard by shard; the first stub a reader opens in a
dataset (a policy's ``[datasets]``, ``tiering.policy.datasets``) says the
rest of it will be wanted soon. ``StageIn.files`` lists that dataset's other
released files (``tiering.ops.selection.dataset_files``, the same grouping as
``tiering restore --dataset``), in walk order, as many as fit under the
policy's high watermark (the hot tier's free space when it has none): staging
in must not make the next cycle release what it just brought back. Each
dataset is listed at most once per ``RESTAGE_AFTER`` seconds, however many of
its stubs are opened.

The guard restores those files behind readers: at most ``StageIn.slots`` at
once, each started only when a slot is free, and a reader who opens one of
them before its turn gets a restore of its own at once (``guard.Worker``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from tiering.ops.selection import dataset_files, dataset_of, released
from tiering.policy.datasets import Datasets

#: How long after staging a dataset in another miss in it does not list it again.
RESTAGE_AFTER = 60.0


def room(hot: Path, high: float | None) -> int:
    """Bytes the hot tier can take before it passes ``high`` (a fraction of its capacity; None: before it is full)."""
    st = os.statvfs(hot)
    if high is None:
        return st.f_bavail * st.f_frsize
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    return max(0, int(high * st.f_blocks * st.f_frsize) - used)


def within(files: list[bytes], size_of: Callable[[bytes], int], budget: int) -> list[bytes]:
    """The first of ``files`` whose sizes add up to at most ``budget`` (stopping at the first that does not fit:
    a dataset is staged in from its start, as it will be read)."""
    taken = []
    for rel in files:
        budget -= size_of(rel)
        if budget < 0:
            break
        taken.append(rel)
    return taken


class StageIn:
    """Which files to stage in after a reader's miss (``files``), for one hot tier and one policy's datasets."""

    def __init__(self, hot: Path, datasets: Datasets, high: float | None, size_of: Callable[[bytes], int],
                 slots: int = 1) -> None:
        self.hot = hot
        self.datasets = datasets
        self.high = high
        self.size_of = size_of
        #: Stage-in restores running at once (readers' own restores are not counted: they never wait on these).
        self.slots = max(1, slots)
        self._staged: dict[bytes, float] = {}  # dataset folder -> when it was last listed

    def files(self, rel: bytes) -> list[bytes]:
        """The other released files of ``rel``'s dataset that fit under the watermark ([] when ``rel`` is in
        none, or its dataset was listed less than ``RESTAGE_AFTER`` seconds ago). Blocking: walks folders."""
        unit = dataset_of(rel, self.hot, self.datasets)
        now = time.monotonic()
        if unit is None or now - self._staged.get(unit, -RESTAGE_AFTER) < RESTAGE_AFTER:
            return []
        self._staged = {u: t for u, t in self._staged.items() if now - t < RESTAGE_AFTER}
        self._staged[unit] = now
        hot = self.hot
        rest = [f for f in dataset_files([unit], hot, self.datasets, lambda r, info: released(r, info, hot))[0]
                if f != rel]
        return within(rest, self.size_of, room(hot, self.high) - self.size_of(rel))
