"""The mover beside the peers that do the same work: same data, same SeaweedFS, same run, on each hot tier.

    python -m bench.mover_vs_peers [--fs ext4,fuse] [--files 10000] [--size 64KiB] [--large 4x1GiB]
                                   [--rounds 3] [--jobs 32] [--io auto]

What is compared (the fair pairs):

- **archive+release** is a verified move: tiering copies each file to the
  capacity tier, verifies it (size and BLAKE3 after the copy, the object read
  back), journals every step and leaves a leased stub (``tiering release``).
  The peers that also remove the source are ``s5cmd mv`` and ``rclone move``
  (local -> S3).
- **restore** is a verified download: ``tiering restore --manifest`` downloads
  to a temp file, verifies it, restores owner/mode/times, fsyncs it and renames
  it over the stub. The peers are ``s5cmd cp`` and ``rclone copy`` (which
  checks size and MD5), S3 -> the same folder.

Each tool's restore brings the data set back into the folder its move
emptied, so every round starts from the same files. After every restore the
folder is checked (untimed): every file present with its size, or the run
stops with what is wrong.

``--fs`` picks the hot tier's filesystem: ``ext4`` is the work folder's own
(local disk), ``fuse`` a SeaweedFS FUSE mount (``weed mount`` of the same
server's filer: every metadata call is a round trip, as on CPFS or Lustre;
needs root and /dev/fuse). ``--io`` runs tiering once per listed ``[hot] io``
setting (``auto``, ``inline``, ``threads``), each as its own tool in the
rotation, to show which is faster where.

Every tool runs as a subprocess timed from start to exit; CPU seconds are
the process tree's user + system time. Before each run the page cache is
written back and the server left to go idle (untimed). Each round starts
from a fresh catalog and tier prefix, so every round archives everything
again. The tools take turns going first.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.peers.seaweed import SeaweedServer
from bench.peers.tools import (
    BUCKET,
    KEY,
    PEERS,
    SECRET,
    Run,
    add_data_args,
    binary,
    data_sets,
    drop_round,
    environment,
    peer_command,
    rotation,
    summary_row,
    timed,
)

#: The filer folder a ``--fs fuse`` hot tier lives in.
FUSE_FILER_PATH = "/bench-hot"


def tiering_config(work: Path, hot: Path, endpoint: str, prefix: str, jobs: int, io: str) -> Path:
    name = prefix.replace("/", "-")
    cfg = work / f"{name}.toml"
    cfg.write_text(f'default_tier = "s3"\n[hot]\npath = "{hot}"\nio = "{io}"\n'
                   f'[catalog]\npath = "{work}/state-{name}/catalog.db"\n'
                   f'[concurrency]\njobs = {jobs}\n[tiers.s3]\nurl = "s3://{BUCKET}/{prefix}"\nendpoint = "{endpoint}"\n'
                   f'access_key_id = "{KEY}"\nsecret_access_key = "${{AWS_SECRET_ACCESS_KEY}}"\n')
    return cfg


def tiering_round(work: Path, hot: Path, files: list[Path], server: SeaweedServer, prefix: str, jobs: int,
                  io: str) -> tuple[Run, Run]:
    cfg = tiering_config(work, hot, server.endpoint, prefix, jobs, io)
    manifest = work / f"{prefix.replace('/', '-')}.txt"
    manifest.write_text("".join(f"{p.relative_to(hot)}\n" for p in files))
    env = environment(server.endpoint)
    release = timed([binary("tiering"), "release", "-c", str(cfg), "--manifest", str(manifest)], env,
                    settle=server.wait_idle)
    restore = timed([binary("tiering"), "restore", "-c", str(cfg), "--manifest", str(manifest)], env,
                    settle=server.wait_idle)
    return release, restore


def check_folder(src: Path, expected: dict[str, int], who: str) -> None:
    """Every file of the data set back in ``src`` with its size (stops the run naming what is wrong)."""
    found = {e.name: e.stat(follow_symlinks=False).st_size for e in os.scandir(src)}
    missing = sorted(set(expected) - set(found))
    wrong = sorted(n for n in expected if n in found and found[n] != expected[n])
    extra = sorted(set(found) - set(expected))
    if missing or wrong or extra:
        raise SystemExit(f"{who}: after its restore {src} has {len(missing)} files missing (e.g. {missing[:3]}), "
                         f"{len(wrong)} of the wrong size (e.g. {wrong[:3]}), {len(extra)} extra (e.g. {extra[:3]})")


def run_set(fs: str, label: str, hot: Path, src: Path, rounds: int, jobs: int, server: SeaweedServer, work: Path,
            ios: list[str]) -> list[dict]:
    files = sorted(src.iterdir())
    expected = {p.name: p.stat().st_size for p in files}
    nbytes = sum(expected.values())
    ours = tuple(f"tiering:{io}" if len(ios) > 1 else "tiering" for io in ios)
    folder = {tool: tool.replace(":", "-") for tool in (*ours, *PEERS)}  # each tool's objects: FOLDER/fs-label/round
    runs: dict[tuple[str, str], list[Run]] = {}
    env = environment(server.endpoint)
    for r in range(rounds):
        for tool in rotation((*ours, *PEERS), r):
            prefix = f"{folder[tool]}/{fs}-{label}/{r}"
            if tool in ours:
                io = ios[ours.index(tool)]
                move, restore = tiering_round(work, hot, files, server, prefix, jobs, io)
            else:
                move = timed(peer_command(tool, "move", src, prefix, server.endpoint, jobs), env, settle=server.wait_idle)
                restore = timed(peer_command(tool, "get", src, prefix, server.endpoint, jobs), env,
                                settle=server.wait_idle)
            check_folder(src, expected, f"{tool} ({fs}, {label}, round {r})")
            runs.setdefault(("archive+release", tool), []).append(move)
            runs.setdefault(("restore", tool), []).append(restore)
        drop_round(server, f"{fs}-{label}", r, tuple(folder.values()))
        print(f"  {fs} {label} round {r} done", file=sys.stderr)
    return [{"fs": fs, **summary_row(label, op, tool, len(files), nbytes, rs)} for (op, tool), rs in runs.items()]


def table(rows: list[dict], rounds: int) -> str:
    """One row per (filesystem, data, op, tool): median rate, and each of ours against each peer."""
    lines = [f"median of {rounds} rounds; tiering verifies every copy and journals every step; "
             f"'vs X' = tiering's rate / X's (above 1: tiering faster)",
             f"{'fs':<5} {'data':<13} {'op':<16} {'tool':<16} {'files/s':>9} {'MB/s':>8} {'seconds':>8} "
             f"{'cpu s':>7} {'vs s5cmd':>9} {'vs rclone':>9}"]
    for row in rows:
        vs = []
        for peer in PEERS:
            other = next((r for r in rows if (r["fs"], r["data"], r["op"], r["tool"]) ==
                          (row["fs"], row["data"], row["op"], peer)), None)
            vs.append(f"{row['files_per_s'] / other['files_per_s']:.2f}x" if other and row["tool"] not in PEERS else "")
        lines.append(f"{row['fs']:<5} {row['data']:<13} {row['op']:<16} {row['tool']:<16} {row['files_per_s']:>9.1f} "
                     f"{row['mb_per_s']:>8.1f} {row['seconds']:>8.2f} {row['cpu_s']:>7.1f} {vs[0]:>9} {vs[1]:>9}")
    return "\n".join(lines)


@contextmanager
def hot_tier(fs: str, work: Path, server: SeaweedServer) -> Iterator[Path]:
    """The hot tier's folder on filesystem ``fs`` (a fresh FUSE mount of the server's filer for ``fuse``)."""
    if fs == "ext4":
        yield work / "hot"
        return
    from bench.peers.weed_mount import WeedMount, unavailable

    if why := unavailable():
        raise SystemExit(f"--fs fuse: {why}")
    with WeedMount(f"127.0.0.1:{server.ports['filer']}", work / "mnt", FUSE_FILER_PATH, work / "mount") as mount:
        yield mount.mountpoint / "hot"


def tool_versions() -> str:
    import subprocess

    def first_line(argv: list[str]) -> str:
        out = subprocess.run(argv, capture_output=True, text=True).stdout.strip().splitlines()
        return out[0] if out else "?"

    return (f"tiering {first_line([binary('tiering'), '--version'])}; s5cmd {first_line([binary('s5cmd'), 'version'])}; "
            f"{first_line([binary('rclone'), 'version'])}; kernel {os.uname().release}; {os.cpu_count()} cores")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(ap, large="4x1GiB")
    ap.add_argument("--fs", default="ext4,fuse", help="hot-tier filesystems, comma-separated: ext4, fuse")
    ap.add_argument("--io", default="auto", help="tiering's [hot] io settings to run, comma-separated")
    args = ap.parse_args(argv)
    filesystems = [f for f in args.fs.split(",") if f]
    ios = [i for i in args.io.split(",") if i]
    if bad := [f for f in filesystems if f not in ("ext4", "fuse")] + [i for i in ios if i not in ("auto", "inline", "threads")]:
        raise SystemExit(f"unknown --fs or --io value: {', '.join(bad)}")
    os.environ["AWS_SECRET_ACCESS_KEY"] = SECRET
    rows = []
    with tempfile.TemporaryDirectory(prefix="tiering-mover-", dir=args.workdir) as tmp:
        work = Path(tmp)
        with SeaweedServer(work / "weed", KEY, SECRET, (BUCKET,)) as server:
            for fs in filesystems:
                with hot_tier(fs, work, server) as hot:
                    sets = data_sets(hot, args.files, args.size, args.large)
                    for label, src in sets:
                        jobs = args.jobs if label == sets[0][0] else 4
                        rows += run_set(fs, label, hot, src, args.rounds, jobs, server, work, ios)
                    print(table(rows, args.rounds), file=sys.stderr)
    print(tool_versions())
    print(table(rows, args.rounds))


if __name__ == "__main__":
    main()
