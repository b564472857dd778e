"""Our DLIO-faithful dataloader against MLPerf Storage's DLIO, on the same files.

    make dlio        # once: DLIO 2.0.0 in .venv-dlio (opt-in; OpenMPI from Debian)
    python -m bench.vs_dlio [--files 400] [--compute-ms 50,10] [--accelerators 1,2] [--cache cold,warm] [--rounds 3]

DLIO's own generator writes a scaled-down unet3d-style data set (npz files of
about 2 MiB, one sample each); then, for every compute time x accelerator count
x cache state, DLIO (``mpirun -np K dlio_benchmark workload=unet3d_a100`` with
the same batch, readers, prefetch and compute time, one epoch, no checkpoint)
and ``bench.dataloader.faithful`` read those very files, in alternating order,
``--rounds`` times each. The table shows medians of samples/s and AU, our
samples/s over DLIO's, and each tool's first step (derived from its own
figures: the wall time less the other steps' nominal compute over AU). The
first step holds the readers' start-up, which DLIO's samples/s counts and its
AU leaves out; PyTorch forks its workers from the training process (torch,
TensorFlow and MPI loaded) and runs DLIO's ``worker_init`` in each, which
ours does not emulate, so with few steps the samples/s ratio mostly shows the
start-up while the AU columns compare the steady state. *cold*: the files are evicted from the page cache
(``posix_fadvise``, per file) before every run of either tool; *warm*: they are
read once first. A benchmark script, not a test.

It prints its estimated duration before anything runs (``--dry-run``: only
that), and the time it took at the end. One cost DLIO 2.0 charges grows with
the data set's file count: its reader formats the rank's whole sample index
map on every sample it reads (``FormatReader.read_index`` builds
``f"{self.global_index_map}"`` for a ``logging.debug`` call even when debug
logging is off). It is DLIO's overhead rather than the storage's, but MLPerf
Storage's AU pays it, so the DLIO-faithful mode charges it too
(``bench.dataloader.faithful``); the script prints what it costs per sample
on this host beside the table.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.dataloader.emulate import Pipeline
from bench.dataloader.faithful import SampleFiles, index_map, run_point
from tiering.core.units import format_elapsed

PROJECT = Path(__file__).resolve().parents[1]
WORKLOAD = "unet3d_a100"


def dlio_argv(venv: Path, ranks: int, data: Path, out: Path, args, *, compute_s: float, generate: bool) -> list[str]:
    overrides = {
        "workflow.generate_data": generate, "workflow.train": not generate, "workflow.checkpoint": False,
        "dataset.data_folder": data, "dataset.num_files_train": args.files, "dataset.num_samples_per_file": 1,
        "dataset.record_length": args.size, "dataset.record_length_stdev": 0, "dataset.record_length_resize": args.size,
        "reader.batch_size": args.batch, "reader.read_threads": args.readers,
        "reader.prefetch_size": args.prefetch * args.readers,  # DLIO's is per rank: prefetch_factor = size / threads
        "train.epochs": 1, "train.computation_time": compute_s, "output.folder": out,
    }
    return ["mpirun", "--allow-run-as-root", "--bind-to", "none", "-np", str(ranks), str(venv / "bin" / "dlio_benchmark"),
            f"workload={WORKLOAD}", f"hydra.run.dir={out}", *(f"++workload.{k}={v}" for k, v in overrides.items())]


def run_dlio(venv: Path, ranks: int, data: Path, work: Path, args, compute_s: float) -> tuple[float, float]:
    """One DLIO run: (samples/s over all ranks, AU 0..1) from its summary.json."""
    out = Path(tempfile.mkdtemp(prefix="dlio-out-", dir=work))
    done = subprocess.run(dlio_argv(venv, ranks, data, out, args, compute_s=compute_s, generate=False),
                          capture_output=True, text=True, cwd=work, timeout=3600, check=False)
    summary = out / "summary.json"
    if done.returncode != 0 or not summary.is_file():
        sys.exit(f"dlio_benchmark failed (exit {done.returncode}):\n{(done.stderr or done.stdout)[-3000:]}")
    metric = json.loads(summary.read_text())["metric"]
    shutil.rmtree(out, ignore_errors=True)
    return metric["train_throughput_mean_samples_per_second"], metric["train_au_mean_percentage"] / 100


def first_step_s(samples_s: float, au: float, ranks: int, steps: int, batch: int, compute_s: float) -> float:
    """The first step's seconds from DLIO's formulas: wall = steps · batch / per-rank rate;
    AU = (steps − 1) · compute / (wall − first step)."""
    wall = steps * batch * ranks / samples_s if samples_s > 0 else float("nan")
    return wall - (steps - 1) * compute_s / au if au > 0 else float("nan")


#: Seconds one ``dlio_benchmark`` process spends outside its timed loop: ``mpirun``, importing torch,
#: TensorFlow and hydra, listing the files, writing its outputs (6-9 s per run on a quiet 2-core VM).
DLIO_START_S = 8.0
#: The same for ours: forking the ranks (the readers start inside the first step, as DLIO's do).
OURS_START_S = 0.3
#: Rates assumed for the estimate: npz read + decode by all readers (417 MB/s measured cold on a 2-core VM),
#: warming the page cache, and DLIO's generator writing random npz files.
READ_BYTES_S, WARM_BYTES_S, GENERATE_BYTES_S = 400e6, 1.5e9, 100e6


def estimate_s(args, points: list[tuple[float, int, str]], generate: bool) -> float:
    """Seconds the whole comparison should take: every point's rounds of both tools, plus the generator.

    A run lasts its start-up plus the longer of its steps' compute and reading the files it takes.
    """
    data = args.files * args.size
    total = (DLIO_START_S + data / GENERATE_BYTES_S) if generate else 0.0
    for compute_ms, ranks, cache in points:
        steps = max(2, args.files // (args.batch * ranks))
        run = max(steps * compute_ms / 1e3, steps * args.batch * ranks * args.size / READ_BYTES_S)
        prepare = data / WARM_BYTES_S if cache == "warm" else 0.0
        total += args.rounds * (DLIO_START_S + OURS_START_S + 2 * (run + prepare))
    return total


def index_format_s(files: SampleFiles, ranks: int) -> float:
    """Seconds DLIO 2.0's reader spends per sample formatting its rank's index map (see the module).

    The map is DLIO's own: ``{global sample index: (absolute path, sample in file)}`` over the rank's
    ``ceil(files / ranks)`` samples; formatted here as ``read_index`` formats it.
    """
    index = index_map(files, math.ceil(files.count / ranks))
    rounds, started = 20, time.perf_counter()
    for _ in range(rounds):
        f"{index}"  # noqa: B018 - the cost is the formatting itself
    return (time.perf_counter() - started) / rounds


def run_ours(files: SampleFiles, ranks: int, args, compute_s: float) -> tuple[float, float]:
    pipeline = Pipeline(batch=args.batch, compute_s=compute_s, prefetch=args.prefetch, min_steps=2, cache="warm")
    point = run_point(files, pipeline, args.readers, ranks)  # cache handled by the caller, same as for DLIO
    return point.samples_s, point.au


def prepare(files: SampleFiles, cache: str) -> None:
    files.evict() if cache == "cold" else files.warm()


def generate(venv: Path, data: Path, work: Path, args) -> SampleFiles:
    train = data / "train"
    if not train.is_dir() or len(list(train.glob("*.npz"))) != args.files:
        shutil.rmtree(data, ignore_errors=True)
        out = work / "dlio-generate"
        done = subprocess.run(dlio_argv(venv, 1, data, out, args, compute_s=0, generate=True), capture_output=True,
                              text=True, cwd=work, timeout=3600, check=False)
        if done.returncode != 0:
            sys.exit(f"DLIO's generator failed:\n{(done.stderr or done.stdout)[-3000:]}")
    return SampleFiles.existing(train, "npz")


def main(argv: list[str] | None = None) -> float | None:
    """Run the comparison; returns its estimated seconds (None for ``--dry-run``: the estimate only)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=400)
    ap.add_argument("--size", type=int, default=2 << 20, help="bytes per sample (record_length)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--readers", type=int, default=2, help="reader processes per accelerator")
    ap.add_argument("--prefetch", type=int, default=2, help="batches prefetched per reader")
    ap.add_argument("--compute-ms", default="50,10")
    ap.add_argument("--accelerators", default="1,2")
    ap.add_argument("--cache", default="cold,warm")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", default="/var/tmp")
    ap.add_argument("--keep", action="store_true", help="keep the generated data set")
    ap.add_argument("--dlio-venv", default=str(PROJECT / ".venv-dlio"))
    ap.add_argument("--dry-run", "-n", action="store_true", help="print the points and the estimated time only")
    args = ap.parse_args(argv)
    points = [(float(c), int(k), cache) for c in args.compute_ms.split(",") for k in args.accelerators.split(",")
              for cache in args.cache.split(",")]
    venv = Path(args.dlio_venv)
    work = Path(args.workdir) / "tiering-vs-dlio"
    data = work / "data"
    fresh = not (data / "train").is_dir()
    est = estimate_s(args, points, generate=fresh)
    print(f"{len(points)} point(s) x {args.rounds} round(s) x 2 tools, {args.files} files of {args.size:,} bytes"
          f"{' (generated first)' if fresh else ''}: estimated {format_elapsed(est)} on a quiet host "
          f"(DLIO start-up assumed {DLIO_START_S:g} s per run, reads {READ_BYTES_S / 1e6:.0f} MB/s)", flush=True)
    if args.dry_run:
        return None
    if not (venv / "bin" / "dlio_benchmark").exists() or shutil.which("mpirun") is None:
        sys.exit(f"DLIO is not installed in {venv} (or mpirun is missing): run `make dlio` first")
    work.mkdir(parents=True, exist_ok=True)
    files = generate(venv, data, work, args)
    print(f"{files.count} npz files of {files.file_bytes():,} bytes in {files.root}; batch {args.batch}, "
          f"{args.readers} readers x {args.prefetch} prefetched batches per accelerator; medians of {args.rounds}",
          flush=True)
    for ranks in sorted({k for _, k, _ in points}):
        print(f"DLIO's reader formats its index map of {math.ceil(files.count / ranks)} samples on every read: "
              f"{index_format_s(files, ranks) * 1e3:.2f} ms per sample here with {ranks} accelerator(s) "
              "(charged by both)", flush=True)
    print(f"{'compute':>8} {'accel':>5} {'cache':>5} | {'DLIO samples/s':>14} {'AU':>6} {'1st s':>6} | "
          f"{'ours samples/s':>14} {'AU':>6} {'1st s':>6} | {'ratio s/s':>9} {'AU diff':>8}")
    try:
        for compute_ms, ranks, cache in points:
            dlio, ours = [], []
            for r in range(args.rounds):
                for who in (("dlio", "ours") if r % 2 == 0 else ("ours", "dlio")):
                    prepare(files, cache)
                    if who == "dlio":
                        dlio.append(run_dlio(venv, ranks, data, work, args, compute_ms / 1e3))
                    else:
                        ours.append(run_ours(files, ranks, args, compute_ms / 1e3))
            d_s, d_au = (statistics.median(x) for x in zip(*dlio))
            o_s, o_au = (statistics.median(x) for x in zip(*ours))
            steps = max(2, files.count // (args.batch * ranks))
            d_1, o_1 = (first_step_s(v, au, ranks, steps, args.batch, compute_ms / 1e3)
                        for v, au in ((d_s, d_au), (o_s, o_au)))
            print(f"{compute_ms:>6g}ms {ranks:>5} {cache:>5} | {d_s:>14.1f} {d_au:>6.1%} {d_1:>6.2f} | "
                  f"{o_s:>14.1f} {o_au:>6.1%} {o_1:>6.2f} | {o_s / d_s:>9.2f} {100 * (o_au - d_au):>+7.1f}pt",
                  flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return est


if __name__ == "__main__":
    started = time.monotonic()
    estimated = main()
    if estimated is not None:
        print(f"took {format_elapsed(time.monotonic() - started)} (estimated {format_elapsed(estimated)})",
              file=sys.stderr)
