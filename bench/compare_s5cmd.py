"""Store throughput beside s5cmd, on the same data, against the same SeaweedFS.

    python -m bench.compare_s5cmd [--files 10000] [--size 64KiB] [--large 4x256MiB] [--rounds 3]

Starts its own SeaweedFS on loopback, writes the data set once, then per round
uploads and downloads it with tiering's S3 store (checksums and verification
on) and with ``s5cmd cp``, and prints median files/s and MB/s with the ratio.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

from bench.objects import measure_get, measure_put
from bench.peers.tools import BUCKET, KEY, SECRET, add_data_args, data_sets, environment, peer_command, timed
from bench.peers.seaweed import SeaweedServer
from tiering.stores import open_store
from tiering.stores.keys import encode_key

def run_set(server, store, src: Path, label: str, rounds: int, jobs: int, work: Path) -> list[tuple]:
    files = sorted(src.iterdir())
    nbytes = sum(p.stat().st_size for p in files)
    env = environment(server.endpoint)
    timings: dict[tuple[str, str], list[float]] = {}
    for r in range(rounds):
        for op in ("put", "get"):
            out = work / f"out-{label}-{r}-{op}"
            keys = [encode_key(f"tiering/{label}/{r}/{p.name}") for p in files]
            if op == "put":
                t_ours = measure_put(store, files, keys, jobs).seconds
                t_peer = timed(peer_command("s5cmd", "put", src, f"s5cmd/{label}/{r}", server.endpoint, jobs), env).seconds
            else:
                t_ours = measure_get(store, keys, out / "ours", jobs, files[0].stat().st_size).seconds
                t_peer = timed(peer_command("s5cmd", "get", out / "peer", f"s5cmd/{label}/{r}", server.endpoint, jobs),
                               env).seconds
            shutil.rmtree(out, ignore_errors=True)
            timings.setdefault(("tiering", op), []).append(t_ours)
            timings.setdefault(("s5cmd", op), []).append(t_peer)
    rows = []
    for (tool, op), ts in sorted(timings.items(), key=lambda kv: (kv[0][1], kv[0][0] != "tiering")):
        med = statistics.median(ts)
        rows.append((label, op, tool, len(files) / med, nbytes / med / 1e6, med))
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(ap, large="4x256MiB")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="tiering-cmp-", dir=args.workdir) as tmp:
        work = Path(tmp)
        with SeaweedServer(work / "weed", KEY, SECRET, (BUCKET,)) as server:
            store = open_store(f"s3://{BUCKET}", {"endpoint": server.endpoint, "access_key_id": KEY,
                                                  "secret_access_key": SECRET, "jobs": 8})
            rows = []
            for label, src in data_sets(work, args.files, args.size, args.large):
                count = sum(1 for _ in src.iterdir())
                jobs = args.jobs if count > 100 else count
                rows += run_set(server, store, src, label, args.rounds, jobs, work)
            print_table(rows, args.rounds)


def print_table(rows: list[tuple], rounds: int) -> None:
    print(f"median of {rounds} rounds; tiering verifies every transfer (BLAKE3 + size, MD5 ETag on single PUTs)")
    print(f"{'data':<14} {'op':<4} {'tool':<8} {'files/s':>9} {'MB/s':>9} {'seconds':>8} {'vs s5cmd':>9}")
    peer = {(r[0], r[1]): r for r in rows if r[2] == "s5cmd"}
    for label, op, tool, fps, mbs, sec in rows:
        ratio = fps / peer[(label, op)][3]
        print(f"{label:<14} {op:<4} {tool:<8} {fps:>9.0f} {mbs:>9.1f} {sec:>8.2f} {ratio:>8.2f}x")


if __name__ == "__main__":
    main()
