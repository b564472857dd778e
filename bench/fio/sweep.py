"""fio sweeps on a directory: one profile over block size x iodepth x numjobs.

Each point is one fio run, laid out as fio-plot's bench-fio lays it out, so
``fio-plot -i <out>/<label>/<bs>`` charts a campaign directly::

    <out>/manifest.json                     environment, sweep, warnings
    <out>/results.parquet                   every point, in bench.results.SCHEMA
    <out>/<label>/<bs>/<mode>-<iodepth>-<numjobs>.fio    the job file that ran
    <out>/<label>/<bs>/<mode>-<iodepth>-<numjobs>.json   fio's json+ output

``label`` is ``--label`` (the tier's name, e.g. its name in the config) or the
target directory's name, ``bs`` is written as fio writes it
(``4k``, ``128k``, ``1m``). A point runs in three steps: lay the data files
out (read workloads only, with ``create_only``), drop the page cache (only
with ``--drop-caches``, never with ``--direct``; root), then the timed run
with ``--output-format=json+``. The data files live in
``<target>/tiering-bench-fio`` and are removed when the campaign ends.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.fio import parse as fio_parse
from bench.campaign import check_writable, new_campaign, write_results
from bench.fio.env import (
    DROPPED,
    MLPERF_DATASET_TO_RAM,
    Environment,
    cache_warning,
    drop_before_run,
    environment,
    memory_ratio,
    ram_bytes,
)
from bench.fio.profiles import Profile, job_file, load_profile
from bench.stats import DEFAULT_REPEATS, SPREAD_LIMIT, median_index, spread_warning
from bench.stats import spread as stats_spread
from tiering.core.errors import RUN_ERRNOS, UserError
from tiering.core.units import format_elapsed, format_size, parse_size

DATA_DIR = "tiering-bench-fio"
#: ``--label``: a tier's name as the config spells tier names (plus '.'); it names a folder and a plot's bars.
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
Values = int | str | Sequence[int | str] | None
DEFAULT_SWEEP = {"bs": (128 * 1024,), "numjobs": (1, 2, 4, 8), "iodepth": (1, 16)}


class FioError(UserError):
    """fio is missing or refused a job; the message carries fio's own last words."""


@dataclass(frozen=True)
class Campaign:
    """One sweep of one profile on one target directory."""

    target: Path
    profile: Profile
    bs: tuple[int, ...]
    numjobs: tuple[int, ...]
    iodepth: tuple[int, ...]
    out: Path | None = None  # None: bench-results/<id>
    runtime: float = 30.0
    ramp: float = 5.0
    size: int | None = None  # --size: the data set per job; None keeps the profile's
    direct: bool = False
    repeats: int = DEFAULT_REPEATS  # fio runs per point; the median run is kept
    drop_caches: bool = False  # machine-wide: only on request, and never with direct I/O
    fio: str = "fio"
    name: str | None = None  # --label: the tier's name in results and plots; None: the target's folder name
    id: str = field(default_factory=lambda: new_campaign("fio"))

    @property
    def out_dir(self) -> Path:
        return (self.out or Path("bench-results") / self.id).resolve()

    @property
    def label(self) -> str:
        """The tier's name in rows, plots and the result folder: ``--label``, else the target folder's name."""
        return self.name or self.target.name or "root"

    def points(self) -> list[tuple[int, int, int]]:
        """(bs, iodepth, numjobs) in run order."""
        return [(bs, qd, nj) for bs in self.bs for qd in self.iodepth for nj in self.numjobs]

    def dataset_bytes(self, numjobs: int) -> int:
        """Bytes the point's jobs work on together: each job has its own files unless the profile names one."""
        per_job = self.profile.per_job_bytes(self.size)
        return per_job if self.profile.shares_files() else per_job * numjobs


@dataclass(frozen=True)
class Point:
    """One measured point: its rows (one per data direction) and where its files are."""

    bs: int
    iodepth: int
    numjobs: int
    rows: tuple[dict, ...]
    job_path: Path
    result_path: Path
    dataset_bytes: int
    cache_drop: str  # what was done about the page cache: one of bench.fio.env's DROP* texts
    warning: str | None
    throughput: tuple[float, ...] = ()  # bytes/s of every run, in run order

    @property
    def cache_dropped(self) -> bool:
        return self.cache_drop == DROPPED


@dataclass(frozen=True)
class CampaignResult:
    campaign: Campaign
    points: tuple[Point, ...]
    results_path: Path
    manifest_path: Path

    @property
    def warning(self) -> str | None:
        return _joined(p.warning for p in self.points)


def open_campaign(target: str | os.PathLike[str], profile: str, *, profile_dir: Path | None = None,
                  bs: Values = None, numjobs: Values = None, iodepth: Values = None, size: int | str | None = None,
                  out: Path | None = None, fio: str = "fio", **options) -> Campaign:
    """Check the target, fio and the profile, and fill the sweep from the profile's defaults.

    Sweep values may be sequences or comma-separated text (``"4KiB,1MiB"``).
    Raises ``UserError`` (one line) for a missing target, a missing fio, an
    unknown profile (naming the closest one) or a malformed value.
    """
    path = Path(target).resolve()
    if not path.is_dir():
        raise UserError(f"fio target {target} is not an existing directory")
    check_writable(path, "--target")  # fio lays its data files out in it
    fio_path = shutil.which(fio)
    if fio_path is None:
        raise FioError(f"{fio} not found on PATH; install fio (Debian/Ubuntu: apt-get install fio)")
    prof = load_profile(profile, profile_dir)
    given = {"bs": _values(bs, "bs", parse_size), "numjobs": _values(numjobs, "numjobs", int),
             "iodepth": _values(iodepth, "iodepth", int)}
    sweep = {key: values or prof.sweep.get(key) or DEFAULT_SWEEP[key] for key, values in given.items()}
    label = options.pop("label", None)
    if label is not None and not LABEL.fullmatch(label):
        raise UserError(f"--label: {label!r}: expected a tier name: letters, digits, '.', '_' and '-', "
                        "starting with a letter or digit (it names a folder)")
    if label is not None:
        options["name"] = label
    if int(options.get("repeats", 1)) < 1:
        raise UserError(f"--repeats: expected a positive whole number; got {options['repeats']!r}")
    if float(options.get("runtime", 1)) <= 0:
        raise UserError(f"--runtime: {options['runtime']:g}: expected a positive number of seconds")
    if float(options.get("ramp", 0)) < 0:
        raise UserError(f"--ramp: {options['ramp']:g}: expected 0 or more seconds")
    check_writable(Path(out) if out else Path("bench-results"), "--out")
    per_job = None if size is None else _values(size, "size", parse_size)[0]
    prof.sized(per_job)  # a profile without a size fails here, before anything runs
    return Campaign(path, prof, out=Path(out) if out else None, fio=fio_path, size=per_job, **sweep, **options)


def _values(given: Values, option: str, parse: Callable) -> tuple[int, ...]:
    """A sweep option as a tuple of positive ints; a ``UserError`` naming the option."""
    if given is None:
        return ()
    parts = given.split(",") if isinstance(given, str) else [given] if isinstance(given, int) else given
    try:
        values = tuple(parse(part.strip() if isinstance(part, str) else part) for part in parts if part != "")
    except ValueError as exc:
        raise UserError(f"--{option}: {exc}") from None
    if not values or min(values) <= 0:
        raise UserError(f"--{option}: expected positive values, comma-separated; got {given!r}")
    return values


#: Seconds a fio run costs beyond ramp + runtime: start-up, job set-up, json+ parsing
#: (0.4-0.6 s measured for 1-4 jobs on a small VM).
RUN_OVERHEAD_S = 0.5
#: Assumed rate for laying out a read workload's data files; the estimate states it.
LAYOUT_BYTES_S = 500e6


@dataclass(frozen=True)
class Estimate:
    """How long a campaign should take, before it runs."""

    points: int
    runs: int  # points x repeats
    run_s: float  # ramp + runtime + RUN_OVERHEAD_S, per run
    layout_bytes: int  # data files written before the first read point (kept for the campaign)

    @property
    def layout_s(self) -> float:
        return self.layout_bytes / LAYOUT_BYTES_S

    @property
    def total_s(self) -> float:
        return self.runs * self.run_s + self.layout_s


def estimate(campaign: Campaign) -> Estimate:
    """The campaign's expected duration: every run's ramp, runtime and overhead, plus laying the data out once.

    The data files stay for the whole campaign and fio reuses files of the
    right size, so the layout writes the largest point's data set once.
    """
    points = len(campaign.points())
    layout = max((campaign.dataset_bytes(nj) for nj in campaign.numjobs), default=0) if campaign.profile.reads else 0
    return Estimate(points, points * campaign.repeats, campaign.ramp + campaign.runtime + RUN_OVERHEAD_S, layout)


def plan_lines(campaign: Campaign) -> list[str]:
    """What ``--dry-run`` prints: one line per point in run order, then the estimate."""
    est = estimate(campaign)
    lines = [f"{campaign.profile.name} on {campaign.target}, tier {campaign.label!r} "
             f"({'direct' if campaign.direct else 'buffered'} I/O, "
             f"{campaign.repeats} run(s) per point, ramp {campaign.ramp:g} s + runtime {campaign.runtime:g} s each):"]
    for i, (bs, qd, nj) in enumerate(campaign.points(), 1):
        lines.append(f"  {i:>3}. bs {format_size(bs):>7}  iodepth {qd:>3}  numjobs {nj:>3}  "
                     f"data set {format_size(campaign.dataset_bytes(nj))}")
    layout = (f" + laying out {format_size(est.layout_bytes)} of data files (~{est.layout_s:.0f} s at an assumed "
              f"{LAYOUT_BYTES_S / 1e6:.0f} MB/s)") if est.layout_bytes else ""
    lines.append(f"{est.points} point(s) x {campaign.repeats} run(s) = {est.runs} fio run(s) of ~{est.run_s:g} s"
                 f"{layout}: estimated total {format_elapsed(est.total_s)}")
    largest, ram = max(campaign.dataset_bytes(nj) for nj in campaign.numjobs), ram_bytes()
    if not campaign.direct and largest < MLPERF_DATASET_TO_RAM * ram:
        lines.append(f"note: the largest data set ({format_size(largest)}) is {largest / ram:.2g}x host memory "
                     f"({format_size(ram)}); MLPerf Storage asks for >= {MLPERF_DATASET_TO_RAM:g}x with buffered I/O "
                     "(use --direct, or a larger --size)")
    return lines


def bs_label(bs: int) -> str:
    """A block size as fio and bench-fio spell it in directory names: ``4k``, ``128k``, ``1m``."""
    for unit, scale in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
        if bs % scale == 0:
            return f"{bs // scale}{unit}"
    return str(bs)


def run_campaign(campaign: Campaign, on_point: Callable[[Point], None] | None = None,
                 on_run: Callable[[int, int, int, int], None] | None = None,
                 on_bytes: Callable[[int], None] | None = None) -> CampaignResult:
    """Run every point, keeping job files, json+ output, the manifest and the Parquet table under ``out``.

    ``on_run(bs, iodepth, numjobs, k)`` is called before each fio run (``k`` counts a point's repeats
    from 1), ``on_bytes(n)`` after each run with the bytes it moved, ``on_point`` after each point:
    the caller's progress display.
    """
    out = campaign.out_dir
    out.mkdir(parents=True, exist_ok=True)
    env = environment(campaign.target, campaign.fio)
    data = campaign.target / DATA_DIR
    data.mkdir(exist_ok=True)
    points: list[Point] = []
    try:
        for bs, iodepth, numjobs in campaign.points():
            tell = (lambda k, at=(bs, iodepth, numjobs): on_run(*at, k)) if on_run else None
            point = run_point(campaign, env, out, data, bs=bs, iodepth=iodepth, numjobs=numjobs, on_run=tell,
                              on_bytes=on_bytes)
            points.append(point)
            _save(campaign, env, out, points)  # after every point, so a stopped campaign keeps what it measured
            if on_point:
                on_point(point)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    return _save(campaign, env, out, points)


def run_point(campaign: Campaign, env: Environment, out: Path, data: Path, *, bs: int, iodepth: int, numjobs: int,
              on_run: Callable[[int], None] | None = None, on_bytes: Callable[[int], None] | None = None) -> Point:
    """Lay out, then ``repeats`` times: drop caches if asked and run fio; the median run becomes the point.

    Every run's json+ is kept under ``<bs>/repeats/``; the median run's is also
    written as ``<stem>.json``, where bench-fio and fio-plot expect the point.
    ``on_run(k)`` is called before run ``k`` (1-based).
    """
    directory = out / campaign.label / bs_label(bs)
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{campaign.profile.mode}-{iodepth}-{numjobs}"
    job_path, result_path = directory / f"{stem}.fio", directory / f"{stem}.json"
    job_path.write_text(job_file(campaign.profile, data, bs=bs, numjobs=numjobs, iodepth=iodepth, runtime=campaign.runtime,
                                 ramp=campaign.ramp, direct=campaign.direct, size=campaign.size))
    if campaign.profile.reads:
        # Lay the files out first: writing them fills the page cache, which a drop then empties.
        _fio(campaign.fio, "--create_only=1", "--output-format=json", str(job_path))
    context = {"campaign": campaign.id, "tier": campaign.label, "target": str(campaign.target),
               "profile": campaign.profile.name, "block_size": bs, "numjobs": numjobs, "iodepth": iodepth,
               "result_path": str(result_path.relative_to(out))}
    runs: list[tuple[str, list[dict], str]] = []  # (json text, rows, cache drop) per run
    for k in range(1, campaign.repeats + 1):
        if on_run:
            on_run(k)
        cache_drop = drop_before_run(requested=campaign.drop_caches, direct=campaign.direct)
        text = _fio(campaign.fio, "--output-format=json+", str(job_path))
        if campaign.repeats > 1:
            (directory / "repeats").mkdir(exist_ok=True)
            (directory / "repeats" / f"{stem}.r{k}.json").write_text(text)
        runs.append((text, fio_parse.rows(json.loads(text), campaign.profile.mode, **context), cache_drop))
        if on_bytes:
            on_bytes(sum(row["bytes"] for row in runs[-1][1]))
    throughput = [sum(r["bw_bytes_s"] for r in rows) for _, rows, _ in runs]
    text, rows, cache_drop = runs[median_index(throughput)]
    result_path.write_text(text)
    dataset = campaign.dataset_bytes(numjobs)
    drops = list(dict.fromkeys(drop for _, _, drop in runs))
    spread = stats_spread(throughput)
    warning = _joined([cache_warning(env, dataset_bytes=dataset, moved_bytes=sum(r["bytes"] for r in rows),
                                     reads=campaign.profile.reads, direct=campaign.direct,
                                     dropped=all(drop == DROPPED for drop in drops)), spread_warning(spread)])
    rows = [{**row, "repeats": campaign.repeats, "spread": spread, "warning": warning} for row in rows]
    return Point(bs, iodepth, numjobs, tuple(rows), job_path, result_path, dataset,
                 drops[0] if len(drops) == 1 else "; ".join(drops), warning, tuple(throughput))


def _fio(fio: str, *args: str) -> str:
    """Run fio; its JSON document from stdout (fio may print notes before it)."""
    done = subprocess.run([fio, *args], capture_output=True, text=True, check=False)
    start = done.stdout.find("{")
    if done.returncode != 0 or start < 0:
        said = (done.stderr.strip() or done.stdout.strip() or f"exit status {done.returncode}").splitlines()[-1]
        if (code := _errno(said)) in RUN_ERRNOS:  # a full disk: exit 1 like every verb, not a usage error
            raise OSError(code, f"fio failed on {args[-1]}: {os.strerror(code)}", str(args[-1]))
        raise FioError(f"fio failed on {args[-1]}: {said}")
    return done.stdout[start:]


def _errno(said: str) -> int | None:
    """The errno fio reports in ``err=N/...`` (None: it named none)."""
    found = re.search(r"\berr=\s*(\d+)", said)
    return int(found.group(1)) if found else None


def _save(campaign: Campaign, env: Environment, out: Path, points: list[Point]) -> CampaignResult:
    manifest = out / "manifest.json"
    results = write_results([row for p in points for row in p.rows], out, replace_campaign=campaign.id)
    _replace(manifest, json.dumps(_manifest(campaign, env, out, points), indent=2) + "\n")
    return CampaignResult(campaign, tuple(points), results, manifest)


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _manifest(campaign: Campaign, env: Environment, out: Path, points: list[Point]) -> dict:
    largest = max((campaign.dataset_bytes(nj) for nj in campaign.numjobs), default=0)
    prof = campaign.profile
    return {
        "campaign": campaign.id, "engine": "fio", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "target": str(campaign.target), "label": campaign.label,
        "profile": {"name": prof.name, "path": str(prof.path), "description": prof.description, "options": dict(prof.options)},
        "sweep": {"bs": list(campaign.bs), "numjobs": list(campaign.numjobs), "iodepth": list(campaign.iodepth)},
        "runtime_s": campaign.runtime, "ramp_s": campaign.ramp, "direct": campaign.direct, "repeats": campaign.repeats,
        "cache_drop": _cache_drop_json(campaign, points),
        **env.to_json(),
        "dataset_bytes": largest, "dataset_to_ram": largest / env.ram_bytes, "memory": memory_ratio(env, largest),
        "warning": _joined(p.warning for p in points), "results": "results.parquet",
        "points": [_point_json(p, out, env) for p in points],
    }


def _point_json(p: Point, out: Path, env: Environment) -> dict:
    return {"bs": p.bs, "iodepth": p.iodepth, "numjobs": p.numjobs, "job_file": str(p.job_path.relative_to(out)),
            "result": str(p.result_path.relative_to(out)), "dataset_bytes": p.dataset_bytes,
            "dataset_to_ram": p.dataset_bytes / env.ram_bytes, "cache_drop": p.cache_drop, "cache_dropped": p.cache_dropped,
            "throughput_runs": list(p.throughput), "spread": p.rows[0]["spread"] if p.rows else None,
            "warning": p.warning}


def _cache_drop_json(campaign: Campaign, points: list[Point]) -> dict:
    """What the campaign asked for and what each point's runs actually did about the page cache."""
    done = list(dict.fromkeys(p.cache_drop for p in points))
    return {"requested": campaign.drop_caches, "direct": campaign.direct, "root": os.geteuid() == 0,
            "done": done[0] if len(done) == 1 else done, "points_dropped": sum(p.cache_dropped for p in points),
            "points": len(points)}


def _joined(warnings) -> str | None:
    distinct = list(dict.fromkeys(w for w in warnings if w))
    return "; ".join(distinct) or None


HEADER = f"{'bs':>6} {'jobs':>4} {'qd':>4} {'op':<10} {'MB/s':>9} {'IOPS':>10} {'p99 ms':>8} {'spread':>8}"


def point_line(row: dict) -> str:
    """One result row as a line under ``HEADER``; a spread past ``SPREAD_LIMIT`` is marked ``!``."""
    p99 = "-" if row["lat_p99_s"] is None else f"{row['lat_p99_s'] * 1e3:.4g}"
    spread = row.get("spread")
    cell = "-" if spread is None else f"{spread:.1%}" + ("!" if spread > SPREAD_LIMIT else "")
    return (f"{format_size(row['block_size']):>6} {row['numjobs']:>4} {row['iodepth']:>4} {row['op']:<10} "
            f"{row['bw_bytes_s'] / 1e6:>9.1f} {row['iops']:>10.0f} {p99:>8} {cell:>8}")
