"""``tiering migrate`` beside ``s5cmd cp`` and ``rclone copy``, on the same data, against one SeaweedFS.

    python -m bench.migrate_vs_peers [--files 10000] [--size 64KiB] [--large 4x1GiB] [--rounds 3]
                                     [--jobs 32] [--tree 1000000]

Starts its own SeaweedFS on loopback, writes each data set once, then per round
uploads it (local -> s3) and downloads it again (s3 -> local) with each tool in
turn (a different one first each round), each into its own prefix and folder
(downloaded copies are kept until the data set is done: ``peers.Outputs``).
Every tool runs as a subprocess, timed from start to exit (listing, checks and
start-up included), with the same concurrency. tiering verifies every file
(size + BLAKE3; MD5 ETags on single PUTs); s5cmd and rclone run with their
defaults. Prints median files/s and MB/s per (data, direction, tool), the ratio
to the faster peer, and CPU seconds per tool. Then peak RSS of ``tiering
migrate`` copying a tree of ``--tree`` tiny files to a local folder
(``ru_maxrss`` of the process).

rclone is configured through environment variables only (``RCLONE_CONFIG_SW_*``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.peers.tools import (
    BUCKET,
    KEY,
    PEERS,
    SECRET,
    Outputs,
    Run,
    add_data_args,
    binary,
    data_sets,
    drop_round,
    environment,
    peer_command,
    ratio_table,
    rotation,
    summary_row,
    timed,
)
from bench.peers.seaweed import SeaweedServer


def commands(tool: str, op: str, local: Path, prefix: str, endpoint: str, jobs: int) -> list[str]:
    """The command line of ``tool`` for ``op`` (put: local -> s3, get: s3 -> local)."""
    if tool == "tiering":
        url = f"s3://{BUCKET}/{prefix}"
        pair = [str(local), url] if op == "put" else [url, str(local)]
        return [binary("tiering"), "migrate", *pair, "--jobs", str(jobs)]
    return peer_command(tool, op, local, prefix, endpoint, jobs)


def run_set(label: str, src: Path, rounds: int, jobs: int, server: SeaweedServer, work: Path) -> list[dict]:
    """Every tool's upload and download of ``src``, ``rounds`` times; one summary row per (op, tool)."""
    files = sum(1 for _ in src.iterdir())
    nbytes = sum(p.stat().st_size for p in src.iterdir())
    env = environment(server.endpoint)
    runs: dict[tuple[str, str], list[Run]] = {}
    outputs = Outputs(nbytes, rounds * (1 + len(PEERS)))
    for r in range(rounds):
        for op in ("put", "get"):
            for tool in rotation(("tiering", *PEERS), r):
                prefix = f"{tool}/{label}/{r}"
                local = src if op == "put" else work / f"out-{tool}-{r}"
                argv = commands(tool, op, local, prefix, server.endpoint, jobs)
                runs.setdefault((op, tool), []).append(timed(argv, env, settle=server.wait_idle))
                if op == "get":
                    outputs.done_with(local)
                print(f"  {label} round {r} {op} {tool}: {runs[(op, tool)][-1].seconds:.2f}s", file=sys.stderr)
        drop_round(server, label, r)
    outputs.clear()
    return [summary_row(label, op, tool, files, nbytes, rs) for (op, tool), rs in runs.items()]


def rss_point(n: int, work: Path, jobs: int) -> dict:
    """Peak RSS of ``tiering migrate`` over a tree of ``n`` tiny files (1,000 per folder) to a local folder."""
    tree = work / "tree"
    start = time.perf_counter()
    for d in range(0, n, 1000):
        folder = tree / f"d{d // 1000:05d}"
        folder.mkdir(parents=True)
        for i in range(min(1000, n - d)):
            fd = os.open(folder / f"f{i:04d}", os.O_WRONLY | os.O_CREAT, 0o644)
            os.write(fd, b"%d\n" % (d + i))
            os.close(fd)
    made = time.perf_counter() - start
    argv = [binary("tiering"), "migrate", str(tree), str(work / "tree-copy"), "--jobs", str(jobs)]
    run = timed(argv, dict(os.environ))
    shutil.rmtree(tree, ignore_errors=True)
    shutil.rmtree(work / "tree-copy", ignore_errors=True)
    return {"files": n, "make_seconds": made, "seconds": run.seconds, "files_per_s": n / run.seconds,
            "max_rss_mb": run.max_rss_kb / 1024}


def print_table(rows: list[dict], rounds: int) -> None:
    print(ratio_table(rows, rounds, "tiering verifies every file (size + BLAKE3)"))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(ap, large="4x1GiB")
    ap.add_argument("--tree", type=int, default=1_000_000, help="files in the RSS tree (0 to skip)")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="tiering-peers-", dir=args.workdir) as tmp:
        work = Path(tmp)
        with SeaweedServer(work / "weed", KEY, SECRET, (BUCKET,)) as server:
            sets = data_sets(work, args.files, args.size, args.large)
            rows = []
            for label, src in sets:
                rows += run_set(label, src, args.rounds, args.jobs if label == sets[0][0] else 4, server, work)
                shutil.rmtree(src)
        print_table(rows, args.rounds)
        if args.tree:
            rss = rss_point(args.tree, work, 16)
            print(f"RSS: migrate of {rss['files']:,} files to a local folder: peak {rss['max_rss_mb']:.0f} MB, "
                  f"{rss['seconds']:.0f}s ({rss['files_per_s']:,.0f} files/s; tree made in {rss['make_seconds']:.0f}s)")


if __name__ == "__main__":
    main()
