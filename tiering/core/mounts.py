"""What kind of filesystem a path lives on, from ``/proc/self/mountinfo``.

Some behaviour depends on it: on a networked filesystem (a FUSE client such
as SeaweedFS's or Alluxio's, NFS, Lustre, GPFS, BeeGFS, CephFS, SMB) another
node's change reaches this node's view of a file only after its attribute
cache expires (``attribute_lag``), and every metadata call is a round trip.
"""

from __future__ import annotations

import os

#: Filesystem types whose files live on this machine's own disks (or memory).
LOCAL = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "ramfs", "f2fs", "zfs", "bcachefs", "overlay",
                   "vfat", "exfat", "jfs", "reiserfs", "nilfs2", "hfsplus", "squashfs", "erofs"})
#: How stale a networked filesystem client's view of another node's change may be, in seconds (the
#: kernel's FUSE attribute timeout and NFS's ``acregmin`` default to about 1 s; Lustre/GPFS are coherent,
#: but cost nothing to wait for in the rare case this is used: a restore that waited on another node).
NETWORK_LAG = 1.5


def fs_type(path: str | os.PathLike[str]) -> str:
    """The type of the filesystem ``path`` is on (``ext4``, ``fuse.weed``, ``nfs4``, ...); '' if unknown."""
    try:
        target = os.path.realpath(path)
        with open("/proc/self/mountinfo", "rb") as f:
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    best, kind = "", ""
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) < 5 or not right:
            continue
        point = fields[4].replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):  # the deepest mount wins (a later one of equal depth covers it)
            best, kind = point, right.split()[0]
    return kind


def is_networked(kind: str) -> bool:
    """True for a filesystem whose files another machine may change (anything not known to be local)."""
    return bool(kind) and kind not in LOCAL


def is_local(kind: str) -> bool:
    """True for a filesystem known to live on this machine's own disks (or memory): only its processes write it."""
    return kind in LOCAL


def attribute_lag(path: str | os.PathLike[str], kind: str | None = None) -> float:
    """Seconds another node's change to a file under ``path`` may take to show here (0 on local disks).
    ``kind``: ``path``'s filesystem type when the caller has read it already (``fs_type``)."""
    return NETWORK_LAG if is_networked(fs_type(path) if kind is None else kind) else 0.0


#: The ``[hot] io`` settings: how the hot tier's metadata calls are issued.
HOT_IO_MODES = ("auto", "inline", "threads")


def hot_io(setting: str, path: str | os.PathLike[str], kind: str | None = None) -> str:
    """``"inline"`` or ``"threads"``: how to issue metadata calls (lstat, open, setxattr, rename...) on ``path``.

    On a local disk a call takes microseconds and a thread hop costs more than
    the call, so they run inline. On a networked filesystem each call is a
    round trip to a server (100 µs to milliseconds) and inline calls would
    serialise them, so they go to a bounded thread pool and overlap.
    ``setting`` "auto" decides by the mount's type (``kind``, when the caller has read it already);
    "inline"/"threads" force it.
    """
    if setting in ("inline", "threads"):
        return setting
    return "threads" if is_networked(fs_type(path) if kind is None else kind) else "inline"
