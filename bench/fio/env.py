"""What a fio result depends on besides the workload: the machine, the filesystem, the page cache.

Gathered once per campaign into the manifest, so a figure can be reproduced
or doubted later: fio and kernel versions, the target's filesystem type and
mount options (``/proc/self/mountinfo``), its backing device, RAM against the
data set, whether caches were dropped, and the project's git revision.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from tiering.core.units import format_size

#: Filesystems whose reads come from memory, whatever the page cache does.
MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs", "overlay", "devtmpfs", "rootfs", "hugetlbfs"})
_PROJECT_DIR = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Mount:
    """One line of ``/proc/self/mountinfo``: the mount that holds a path."""

    mount_point: str
    fstype: str
    source: str
    dev: str  # major:minor
    options: str  # per-mount options (rw, relatime, ...)
    super_options: str  # filesystem options (size=, discard, ...)


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as octal escapes.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _holds(mount_point: str, path: str) -> bool:
    return mount_point == "/" or path == mount_point or path.startswith(mount_point + "/")


def mount_of(path: str | os.PathLike[str], mountinfo: str = "/proc/self/mountinfo") -> Mount | None:
    """The mount ``path`` lives on: the longest mount point above it, the last mounted if stacked."""
    real = os.path.realpath(path)
    best: Mount | None = None
    try:
        lines = Path(mountinfo).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, tail = left.split(" "), right.split(" ")
        if len(fields) < 6 or len(tail) < 3:
            continue
        point = _unescape(fields[4])
        if _holds(point, real) and (best is None or len(point) >= len(best.mount_point)):
            best = Mount(point, tail[0], _unescape(tail[1]), fields[2], fields[5], tail[2])
    return best


def device_of(mount: Mount | None) -> dict:
    """The block device behind a mount, from sysfs; fields are None where there is none (tmpfs, NFS)."""
    info = {"source": mount.source if mount else None, "dev": mount.dev if mount else None,
            "name": None, "model": None, "rotational": None}
    sys_dev = Path("/sys/dev/block") / (mount.dev if mount else "none")
    if not sys_dev.exists():
        return info
    info["name"] = sys_dev.resolve().name
    # A partition's queue and device/ live on its parent disk.
    disk = sys_dev if (sys_dev / "queue").exists() else sys_dev.resolve().parent
    info["model"] = _read(disk / "device" / "model")
    rotational = _read(disk / "queue" / "rotational")
    info["rotational"] = None if rotational is None else rotational == "1"
    return info


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def ram_bytes() -> int:
    """Physical memory, which bounds the page cache."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")  # pragma: no cover - Linux has MemTotal


def drop_caches() -> bool:
    """Write back dirty pages and drop the page cache, dentries and inodes; True if the kernel accepted it.

    Needs root and a writable ``/proc/sys`` (containers often mount it read-only).
    """
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def fio_version(fio: str) -> str:
    done = subprocess.run([fio, "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown"


def git_revision() -> dict:
    """The project's commit and whether the working tree differed from it; "unknown" outside a checkout."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(_PROJECT_DIR), *args], capture_output=True, text=True, check=False)
        except OSError:
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    revision = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if revision else None
    return {"revision": revision or "unknown", "dirty": None if status is None else bool(status)}


@dataclass(frozen=True)
class Environment:
    """The campaign-wide facts recorded in the manifest."""

    fio_version: str
    kernel: str
    mount: dict | None
    device: dict
    ram_bytes: int
    git: dict
    host: str = ""  # the node name: figures belong to a machine

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def memory_backed(self) -> bool:
        return bool(self.mount) and self.mount["fstype"] in MEMORY_FILESYSTEMS


def environment(target: Path, fio: str) -> Environment:
    mount = mount_of(target)
    uname = os.uname()
    return Environment(fio_version(fio), f"{uname.sysname} {uname.release} {uname.version} {uname.machine}",
                       asdict(mount) if mount else None, device_of(mount), ram_bytes(), git_revision(), uname.nodename)


#: MLPerf Storage's rule for a valid run: the data set is at least this many times host memory,
#: so the page cache cannot hold a useful part of it.
MLPERF_DATASET_TO_RAM = 5.0

#: What a point did about the page cache before its run (recorded per point in the manifest).
DROPPED = "dropped"
DROP_REFUSED = "refused by the kernel (needs root and a writable /proc/sys/vm/drop_caches)"
DROP_NOT_REQUESTED = "not dropped: not requested (pass --drop-caches to drop before each run)"
DROP_NEEDLESS = "not dropped: O_DIRECT bypasses the page cache"


def drop_before_run(*, requested: bool, direct: bool) -> str:
    """Drop the page cache if asked and if it matters; what was done, as one of the ``DROP*`` texts.

    Dropping is machine-wide (every tenant of the host loses its cache), so it
    happens only on request, and never for direct I/O, where it changes nothing
    the run measures.
    """
    if direct:
        return DROP_NEEDLESS
    if not requested:
        return DROP_NOT_REQUESTED
    return DROPPED if drop_caches() else DROP_REFUSED


def cache_warning(env: Environment, *, dataset_bytes: int, moved_bytes: int, reads: bool,
                  direct: bool, dropped: bool) -> str | None:
    """Why a point's figures are probably served from memory rather than the device; None if not.

    - a memory-backed target (tmpfs, overlay, ...) always is;
    - with O_DIRECT the page cache is out of the path: no warning;
    - buffered, a data set smaller than RAM is, unless caches were dropped
      before the point; even then, a read point that read more than the data set
      re-read pages the first pass left in the cache;
    - buffered, any data set under ``MLPERF_DATASET_TO_RAM`` times RAM may be
      partly served from cache (MLPerf Storage would not accept the run).
    """
    if env.memory_backed:
        return f"target is on {env.mount['fstype']}, which serves I/O from memory: not a device figure"
    if direct:
        return None
    # Worded without per-point numbers so one campaign's warnings collapse to one line;
    # the manifest keeps each point's data set size and ratio to RAM.
    fits = f"data set smaller than RAM ({format_size(env.ram_bytes)}) and no direct I/O"
    if dataset_bytes < env.ram_bytes and not dropped:
        return f"{fits}, caches not dropped: probably served from page cache"
    if dataset_bytes < env.ram_bytes and reads and moved_bytes > dataset_bytes:
        return f"{fits}, data read more than once: re-reads probably served from page cache"
    if dataset_bytes < MLPERF_DATASET_TO_RAM * env.ram_bytes:
        return (f"buffered I/O on a data set under {MLPERF_DATASET_TO_RAM:g}x host memory "
                "(MLPerf Storage's rule for a valid run): part may be served from page cache")
    return None


def memory_ratio(env: Environment, dataset_bytes: int) -> dict:
    """The data set against host memory, and whether it meets MLPerf Storage's rule."""
    ratio = dataset_bytes / env.ram_bytes
    return {"dataset_bytes": dataset_bytes, "ram_bytes": env.ram_bytes, "dataset_to_ram": ratio,
            "required_to_ram": MLPERF_DATASET_TO_RAM, "meets_mlperf_rule": ratio >= MLPERF_DATASET_TO_RAM}
