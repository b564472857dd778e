"""A complete bench campaign on this machine: a disk directory, a tmpfs directory, a SeaweedFS tier.

    python -m bench.example_campaign [--out docs/examples/campaign] [--runtime 4]

Runs, through the real CLI: fio sweeps (large-shard sequential reads and 4 KiB
random reads) on a disk-backed folder and on a tmpfs folder (mounted for the
run when root, else /dev/shm), the object sweep and the dataloader emulation
against a SeaweedFS started for the run, the dataloader on the hot tier, and
finally ``tiering bench report`` into ``--out`` (Markdown + PNGs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.peers.tools import BUCKET, KEY, SECRET
from bench.peers.seaweed import SeaweedServer


def tiering(*args: str, env: dict) -> None:
    print("$ tiering " + " ".join(args), file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "tiering", *args], env=env, check=True)


def tmpfs_dir(work: Path) -> tuple[Path, bool]:
    target = work / "tmpfs"
    target.mkdir()
    if os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2g", "tmpfs", str(target)]).returncode == 0:
        return target, True
    shm = Path("/dev/shm") / f"tiering-bench-{os.getpid()}"
    shm.mkdir()
    return shm, False


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="docs/examples/campaign")
    ap.add_argument("--runtime", default="4")
    ap.add_argument("--workdir", default="/var/tmp")
    args = ap.parse_args(argv)
    out = Path(args.out).absolute()
    results = out / "results"
    shutil.rmtree(out, ignore_errors=True)
    results.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="tiering-campaign-", dir=args.workdir) as tmp:
        work = Path(tmp)
        disk = work / "disk"
        disk.mkdir()
        ram, mounted = tmpfs_dir(work)
        server = SeaweedServer(work / "weed", KEY, SECRET, (BUCKET,))
        server.start()
        env = {**os.environ, "BENCH_SECRET": SECRET}
        cfg = work / "tiering.toml"
        cfg.write_text(f'default_tier = "seaweedfs"\n[hot]\npath = "{disk}/hot"\n[catalog]\npath = "{work}/state/c.db"\n'
                       f'[tiers.seaweedfs]\nurl = "s3://{BUCKET}/campaign"\nendpoint = "{server.endpoint}"\n'
                       f'access_key_id = "{KEY}"\nsecret_access_key = "${{BENCH_SECRET}}"\n')
        (disk / "hot").mkdir()
        try:
            fio = ["--runtime", args.runtime, "--ramp", "1", "--numjobs", "1,2,4", "--drop-caches", "--out", str(results)]
            for target in (disk, ram):
                tiering("bench", "fio", "--target", str(target), "--profile", "large-shards", "--iodepth", "1,8",
                        "--bs", "1MiB", "--size", "256MiB", *fio, env=env)
                tiering("bench", "fio", "--target", str(target), "--profile", "randread-4k", "--iodepth", "1,16",
                        "--size", "256MiB", *fio, env=env)
            tiering("bench", "objects", "--config", str(cfg), "--tier", "seaweedfs", "--sizes", "64KiB,4MiB",
                    "--concurrency", "1,4,16", "--total", "32MiB", "--epoch-objects", "500", "--out", str(results),
                    env=env)
            for tier in ("hot", "seaweedfs"):
                tiering("bench", "dataloader", "--config", str(cfg), "--tier", tier, "--mode", "storage", "--workers", "1,4",
                        "--samples", "1024", "--sample-size", "128KiB", "--batch", "32", "--compute-ms", "50",
                        "--out", str(results), env=env)
        finally:
            server.stop()
            if mounted:
                subprocess.run(["umount", str(ram)], check=False)
            else:
                shutil.rmtree(ram, ignore_errors=True)
    tiering("bench", "report", str(results), "--out", str(out), env=dict(os.environ))


if __name__ == "__main__":
    main()
