"""The mover beside ``s5cmd cp`` and ``rclone copy``: same data, same SeaweedFS, same run.

    python -m bench.mover_vs_peers [--files 10000] [--size 64KiB] [--large 4x1GiB] [--rounds 3] [--jobs 32]

tiering's side is the real thing: ``tiering release`` on the files of a hot
tier (archive: copy + verify size and BLAKE3 against the bytes after the copy,
journal every step, then release: stub under a lease), then ``tiering restore
--manifest`` (download to a temp file, verify, restore owner/mode/times,
rename over the stub). The peers copy the same folder up (``put``) and back
into a new folder (``get``) with their defaults. Every tool runs as a
subprocess timed from start to exit; CPU seconds are the process tree's
user + system time. Each round starts from a fresh catalog and tier prefix,
so every round archives everything again. The tools take turns going first.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
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


def tiering_config(work: Path, hot: Path, endpoint: str, prefix: str, jobs: int) -> Path:
    cfg = work / f"{prefix.replace('/', '-')}.toml"
    cfg.write_text(f'default_tier = "s3"\n[hot]\npath = "{hot}"\n[catalog]\npath = "{work}/state-{prefix.replace("/", "-")}/catalog.db"\n'
                   f'[concurrency]\njobs = {jobs}\n[tiers.s3]\nurl = "s3://{BUCKET}/{prefix}"\nendpoint = "{endpoint}"\n'
                   f'access_key_id = "{KEY}"\nsecret_access_key = "${{AWS_SECRET_ACCESS_KEY}}"\n')
    return cfg


def tiering_round(work: Path, hot: Path, files: list[Path], server: SeaweedServer, prefix: str, jobs: int) -> tuple[Run, Run]:
    cfg = tiering_config(work, hot, server.endpoint, prefix, jobs)
    manifest = work / f"{prefix.replace('/', '-')}.txt"
    manifest.write_text("".join(f"{p.relative_to(hot)}\n" for p in files))
    env = environment(server.endpoint)
    release = timed([binary("tiering"), "release", "-c", str(cfg), *map(str, files)], env, settle=server.wait_idle)
    restore = timed([binary("tiering"), "restore", "-c", str(cfg), "--manifest", str(manifest)], env,
                    settle=server.wait_idle)
    return release, restore


def run_set(label: str, hot: Path, src: Path, rounds: int, jobs: int, server: SeaweedServer, work: Path) -> list[dict]:
    files = sorted(src.iterdir())
    nbytes = sum(p.stat().st_size for p in files)
    runs: dict[tuple[str, str], list[Run]] = {}
    env = environment(server.endpoint)
    outputs = Outputs(nbytes, rounds * len(PEERS))
    for r in range(rounds):
        for tool in rotation(("tiering", *PEERS), r):
            if tool == "tiering":
                release, restore = tiering_round(work, hot, files, server, f"tiering/{label}/{r}", jobs)
                runs.setdefault(("archive+release", "tiering"), []).append(release)
                runs.setdefault(("restore", "tiering"), []).append(restore)
                continue
            prefix = f"{tool}/{label}/{r}"
            runs.setdefault(("archive+release", tool), []).append(
                timed(peer_command(tool, "put", src, prefix, server.endpoint, jobs), env, settle=server.wait_idle))
            out = work / f"out-{tool}-{r}"
            runs.setdefault(("restore", tool), []).append(
                timed(peer_command(tool, "get", out, prefix, server.endpoint, jobs), env, settle=server.wait_idle))
            outputs.done_with(out)
        drop_round(server, label, r)
        print(f"  {label} round {r} done", file=sys.stderr)
    outputs.clear()
    return [summary_row(label, op, tool, len(files), nbytes, rs) for (op, tool), rs in runs.items()]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(ap, large="4x1GiB")
    args = ap.parse_args(argv)
    os.environ["AWS_SECRET_ACCESS_KEY"] = SECRET
    with tempfile.TemporaryDirectory(prefix="tiering-mover-", dir=args.workdir) as tmp:
        work = Path(tmp)
        hot = work / "hot"
        with SeaweedServer(work / "weed", KEY, SECRET, (BUCKET,)) as server:
            sets = data_sets(hot, args.files, args.size, args.large)
            rows = []
            for label, src in sets:
                rows += run_set(label, hot, src, args.rounds, args.jobs if label == sets[0][0] else 4, server, work)
    print(ratio_table(rows, args.rounds, "tiering verifies every copy and journals every step"))


if __name__ == "__main__":
    main()
