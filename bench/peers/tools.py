"""Running the peer tools (s5cmd, rclone) the same way in every comparison.

Each tool runs as a subprocess timed from start to exit, with its CPU seconds
and peak RSS from ``wait4``. rclone is configured through environment
variables only (``RCLONE_CONFIG_SW_*``), so no config file is written.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

KEY, SECRET, BUCKET = "bench-key", "bench-secret", "bench"
PEERS = ("s5cmd", "rclone")


@dataclass(frozen=True)
class Run:
    seconds: float
    cpu: float  # user + system seconds of the tool's process tree
    max_rss_kb: int


def rotation(tools: tuple[str, ...], r: int) -> tuple[str, ...]:
    """The order the tools run in round ``r``: each goes first in turn.

    On a shared VM a run pays for what the run before it left behind (dirty
    pages still being written back, freed memory the host has reclaimed and
    must fault in again), so a fixed order would tax the same tool every round.
    """
    k = r % len(tools)
    return tools[k:] + tools[:k]


def binary(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(found).exists():
        raise SystemExit(f"{name} is missing: pip install -e '.[test,bench]'")
    return found


def timed(argv: list[str], env: dict[str, str], settle: Callable[[], object] | None = None) -> Run:
    """Run a command to completion; wall seconds, CPU seconds and peak RSS from wait4.

    Dirty data from the run before is written out first, and ``settle`` (say,
    waiting for the server to go idle) is called, both untimed: no run pays
    for its predecessor's writeback or the server's work after it.
    """
    os.sync()
    if settle:
        settle()
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])}... failed ({proc.returncode}): {err.decode()[-2000:]}")
    return Run(seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss)


def peer_command(tool: str, op: str, local: Path, prefix: str, endpoint: str, jobs: int) -> list[str]:
    """The command line of a peer ``tool`` for ``op``.

    put: copy local -> s3; move: the same, then delete each local file once it
    is stored (``s5cmd mv``, ``rclone move``); get: copy s3 -> local.
    """
    if tool == "s5cmd":
        url = f"s3://{BUCKET}/{prefix}/"
        pair = [url + "*", f"{local}/"] if op == "get" else [f"{local}/*", url]
        verb = "mv" if op == "move" else "cp"
        return [binary("s5cmd"), "--endpoint-url", endpoint, "--numworkers", str(jobs), verb, *pair]
    remote = f"sw:{BUCKET}/{prefix}"
    pair = [remote, str(local)] if op == "get" else [str(local), remote]
    verb = "move" if op == "move" else "copy"
    return [binary("rclone"), verb, *pair, "--transfers", str(jobs), "--checkers", str(jobs),
            "--s3-no-check-bucket"]


def environment(endpoint: str) -> dict[str, str]:
    return {**os.environ, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint, "RCLONE_CONFIG_SW_TYPE": "s3", "RCLONE_CONFIG_SW_PROVIDER": "SeaweedFS",
            "RCLONE_CONFIG_SW_ACCESS_KEY_ID": KEY, "RCLONE_CONFIG_SW_SECRET_ACCESS_KEY": SECRET,
            "RCLONE_CONFIG_SW_ENDPOINT": endpoint, "RCLONE_CONFIG_SW_REGION": "us-east-1"}


def make_files(folder: Path, size: int, count: int) -> Path:
    """``count`` files of ``size`` bytes, each different (cheap: one random block, a random head per file)."""
    folder.mkdir(parents=True, exist_ok=True)
    block = os.urandom(min(size, 64 << 20))
    for i in range(count):
        with open(folder / f"f{i:06d}", "wb") as f:
            left = size
            while left:
                n = min(left, len(block))
                f.write(block[:n] if i == 0 else os.urandom(16) + block[16:n])
                left -= n
    return folder


def add_data_args(ap, large: str) -> None:
    """The data-set options every comparison script takes."""
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--size", default="64KiB")
    ap.add_argument("--large", default=large, help="COUNTxSIZE of large files ('' to skip)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=32)
    ap.add_argument("--workdir", default=None)


def data_sets(root: Path, files: int, size: str, large: str) -> list[tuple[str, Path]]:
    """(label, folder) of the small-file set and, unless ``large`` is empty, the large-file set."""
    from tiering.core.units import parse_size

    sets = [(f"{files}x{size}", make_files(root / "small", parse_size(size), files))]
    if large:
        count, each = large.lower().split("x")
        sets.append((large, make_files(root / "large", parse_size(each), int(count))))
    return sets


def drop_prefix(endpoint: str, prefix: str) -> None:
    """Delete everything under ``prefix`` (keeps the server's disk from filling up between rounds)."""
    argv = [binary("s5cmd"), "--endpoint-url", endpoint, "rm", f"s3://{BUCKET}/{prefix}/*"]
    subprocess.run(argv, env=environment(endpoint), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def drop_round(server, label: str, r: int, tools: tuple[str, ...] = ("tiering", *PEERS)) -> None:
    """Delete every tool's objects of round ``r`` (under ``TOOL/label/r``) and have the server free their
    space (a SeaweedServer)."""
    for tool in tools:
        drop_prefix(server.endpoint, f"{tool}/{label}/{r}")
    server.reclaim()


class Outputs:
    """Downloaded copies, deleted once their data set is done rather than right after their run.

    On a filesystem without a journal (this VM's root ext4), a file created
    within a minute of a mass delete costs hundreds of µs of kernel CPU (ext4
    steps over recently freed inodes), so deleting one tool's 10,000 files
    right away would tax whichever tool ran next. When all the copies would
    not fit in ``budget`` bytes, each is deleted right after its run instead
    (large files: few inodes, no such cost).
    """

    def __init__(self, copy_bytes: int, copies: int, budget: int = 16 << 30) -> None:
        self.keep = copy_bytes * copies <= budget
        self._kept: list[Path] = []

    def done_with(self, folder: Path) -> None:
        if self.keep:
            self._kept.append(folder)
        else:
            shutil.rmtree(folder)

    def clear(self) -> None:
        for folder in self._kept:
            shutil.rmtree(folder)
        self._kept = []


def summary_row(label: str, op: str, tool: str, files: int, nbytes: int, runs: list[Run]) -> dict:
    """One table row: median seconds, files/s, MB/s and CPU seconds over the rounds."""
    sec = statistics.median(r.seconds for r in runs)
    return {"data": label, "op": op, "tool": tool, "seconds": sec, "files_per_s": files / sec,
            "mb_per_s": nbytes / sec / 1e6, "cpu_s": statistics.median(r.cpu for r in runs)}


def ratio_table(rows: list[dict], rounds: int, note: str) -> str:
    """Rows of (data, op, tool, files/s, MB/s, seconds, cpu s) with tiering's ratio to the faster peer."""
    lines = [f"median of {rounds} rounds; {note}; ratio = tiering / faster peer",
             f"{'data':<14} {'op':<8} {'tool':<8} {'files/s':>9} {'MB/s':>9} {'seconds':>8} {'cpu s':>7} {'ratio':>7}"]
    for row in rows:
        peers = [r for r in rows if r["data"] == row["data"] and r["op"] == row["op"] and r["tool"] in PEERS]
        best = max((p["files_per_s"] for p in peers), default=0)
        ratio = f"{row['files_per_s'] / best:.2f}x" if row["tool"] not in PEERS and best else ""
        lines.append(f"{row['data']:<14} {row['op']:<8} {row['tool']:<8} {row['files_per_s']:>9.1f} "
                     f"{row['mb_per_s']:>9.1f} {row['seconds']:>8.2f} {row['cpu_s']:>7.1f} {ratio:>7}")
    return "\n".join(lines)
