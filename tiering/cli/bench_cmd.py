"""``tiering bench ...``: measure what each tier can deliver."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from bench.stats import DEFAULT_REPEATS, SPREAD_LIMIT
from tiering.cli.config_cmd import FILE_HELP
from tiering.core.errors import UserError

app = typer.Typer(help="Benchmarks: fio sweeps, object-tier sweeps, dataloader emulation, and reports over them.", no_args_is_help=True)


def _csv(text: str, parse, option: str) -> list:
    """A comma-separated option's values, each positive; a bad one is a usage error naming the option."""
    values = [_one(part.strip(), parse, option) for part in text.split(",") if part.strip()]
    if not values:
        raise UserError(f"{option}: expected one or more values, comma-separated; got {text!r}")
    return values


def _one(text: str, parse, option: str):
    """One option value through ``parse`` (``parse_size``, ``int``); must be positive."""
    try:
        value = parse(text)
    except ValueError as exc:
        raise UserError(f"{option}: {exc if parse is not int else repr(text) + ' is not a whole number'}") from None
    if value <= 0:
        raise UserError(f"{option}: {text!r}: expected a positive value")
    return value


def _least(value: float, least: float, option: str) -> None:
    """A numeric option's lower bound, checked here rather than by click: one line, like every bench error."""
    if value < least:
        raise UserError(f"{option}: {value:g}: expected {least:g} or more")


def _out_folder(out: Optional[Path]) -> None:
    """``--out`` checked before anything runs: a sweep must not end by failing to write its results."""
    from bench.campaign import check_writable

    if out is not None:
        check_writable(out, "--out")


@app.command("objects")
def objects(
    tier: Annotated[str, typer.Option(help="Capacity tier name from the config.")],
    config: Annotated[Optional[Path], typer.Option("--config", "-c", metavar="PATH", help=FILE_HELP)] = None,
    sizes: Annotated[str, typer.Option(help="Object sizes, comma-separated.")] = "64KiB,1MiB,16MiB",
    concurrency: Annotated[str, typer.Option(help="Concurrent requests, comma-separated.")] = "1,4,16,32",
    total: Annotated[str, typer.Option(help="About this much data per point.")] = "64MiB",
    epoch_objects: Annotated[int, typer.Option(help="Small objects in the list+GET epoch pass (0: skip it).")] = 1000,
    epoch_size: Annotated[str, typer.Option(help="Size of each epoch-pass object.")] = "16KiB",
    out: Annotated[Optional[Path], typer.Option(help="Also append the rows to OUT/results.parquet.")] = None,
    repeats: Annotated[str, typer.Option(metavar="N", help=REPEATS_HELP)] = str(DEFAULT_REPEATS),
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object (a results row) per point.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="List the points and the estimated time; run nothing.")] = False,
) -> None:
    """PUT/GET sweep over concurrency x object size, then a list+GET epoch, against a capacity tier."""
    from bench.campaign import new_campaign, write_results
    from bench.objects import plan, plan_lines, point_row, sweep
    from tiering.config import find_config, load_config, open_tier
    from tiering.core.units import parse_size

    if epoch_objects < 0:
        raise UserError(f"--epoch-objects: {epoch_objects}: expected 0 (skip the epoch pass) or more")
    points = dict(sizes=_csv(sizes, parse_size, "--sizes"), concurrencies=_csv(concurrency, int, "--concurrency"),
                  total_bytes=_one(total, parse_size, "--total"), epoch_objects=epoch_objects,
                  epoch_size=_one(epoch_size, parse_size, "--epoch-size"), repeats=_one(repeats, int, "--repeats"))
    cfg = load_config(find_config(config))
    sweep_plan = plan(**points)
    _out_folder(out)
    if dry_run:
        _print_plan(plan_lines(sweep_plan, cfg.tier(tier).url), sweep_plan, as_json,
                    [{"op": p.op, "size": p.object_size, "concurrency": p.concurrency, "objects": p.objects,
                      "estimated_s": p.seconds} for p in sweep_plan.points])
        return
    store = open_tier(cfg, tier)
    campaign, rows = new_campaign("objects"), []
    if not as_json:
        typer.echo(_header(OBJECT_COLUMNS))
    bar = _PointsBar(len(sweep_plan.points), sweep_plan.total_bytes, sweep_plan.total_s, enabled=not as_json)
    try:
        with bar:
            for p in sweep(store, **points, on_bytes=bar.add_bytes):
                rows.append(point_row(p, campaign=campaign, tier=tier, target=store.url))
                bar.point()
                bar.echo(json.dumps(rows[-1]) if as_json else _line(OBJECT_COLUMNS, rows[-1]))
    finally:
        store.close()
    if out:
        typer.echo(f"results: {write_results(rows, out)}", err=as_json)


REPEATS_HELP = "Runs per point; the median run is kept, the spread shown (flagged past 10%)."


def _print_plan(lines: list[str], plan, as_json: bool, points: list[dict]) -> None:
    """A ``--dry-run``: the plan's lines, or one JSON object with the points and the estimate."""
    typer.echo(json.dumps({"points": points, "repeats": plan.repeats, "bytes": plan.total_bytes,
                           "estimated_s": plan.total_s}) if as_json else "\n".join(lines))


@app.command("fio")
def fio(
    target: Annotated[Path, typer.Option(help="Directory to measure, on the tier's filesystem.")],
    profile: Annotated[str, typer.Option(help="small-files, large-shards, randread-4k, checkpoint, or a file in --profile-dir.")],
    numjobs: Annotated[Optional[str], typer.Option(help="fio numjobs, comma-separated (default: the profile's).")] = None,
    iodepth: Annotated[Optional[str], typer.Option(help="fio iodepth, comma-separated (default: the profile's).")] = None,
    bs: Annotated[Optional[str], typer.Option(help="Block sizes, comma-separated (default: the profile's).")] = None,
    runtime: Annotated[float, typer.Option(help="Seconds measured per point.")] = 30.0,
    ramp: Annotated[float, typer.Option(help="Seconds run unmeasured before each point.")] = 5.0,
    size: Annotated[Optional[str], typer.Option(help="Data per job (default: the profile's).")] = None,
    repeats: Annotated[str, typer.Option(metavar="N", help=REPEATS_HELP)] = str(DEFAULT_REPEATS),
    direct: Annotated[bool, typer.Option("--direct", help="O_DIRECT: bypass the page cache.")] = False,
    drop_caches: Annotated[bool, typer.Option(
        help="Drop the whole machine's page cache before each buffered run (root; never with --direct). "
             "Default: the config's [bench] drop_caches.")] = False,
    label: Annotated[Optional[str], typer.Option(metavar="NAME", help=(
        "Tier name in results and plots (default: the config's name for the tier holding --target, 'hot' or a "
        "posix tier's, else the target folder's name)."))] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", metavar="PATH", help=FILE_HELP)] = None,
    profile_dir: Annotated[Optional[Path], typer.Option(help="Extra profiles (NAME.toml), searched first.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Results folder (default: bench-results/<campaign>).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per result row, then one with the paths.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="List the points and the estimated time; run nothing.")] = False,
) -> None:
    """fio sweep of a profile over numjobs x iodepth x block size on a directory."""
    from bench.fio.sweep import HEADER, estimate, open_campaign, plan_lines, point_line, run_campaign

    cfg = _found_config(config)
    drop_caches = drop_caches or bool(cfg and cfg.bench.drop_caches)  # the flag, or the config's [bench]
    campaign = open_campaign(target, profile, profile_dir=profile_dir, bs=bs, numjobs=numjobs, iodepth=iodepth, size=size,
                             out=out, runtime=runtime, ramp=ramp, direct=direct, drop_caches=drop_caches,
                             repeats=_one(repeats, int, "--repeats"), label=label or _tier_of(target, cfg))
    if direct and drop_caches:
        typer.echo("note: --drop-caches ignored: O_DIRECT bypasses the page cache", err=True)
    if dry_run:
        est = estimate(campaign)
        typer.echo(json.dumps({"tier": campaign.label,
                               "points": [dict(zip(("bs", "iodepth", "numjobs"), p)) for p in campaign.points()],
                               "repeats": campaign.repeats, "runs": est.runs, "estimated_s": est.total_s,
                               "drop_caches": campaign.drop_caches and not campaign.direct})
                   if as_json else "\n".join(plan_lines(campaign)))
        return
    warned: set[str] = set()
    bar = _SweepBar(estimate(campaign), enabled=not as_json)

    def show(point) -> None:
        for row in point.rows:
            bar.echo(json.dumps(row) if as_json else point_line(row))
        for warning in (point.warning or "").split("; ") if not as_json else ():
            if warning and warning not in warned:
                warned.add(warning)
                bar.echo(f"warning: {warning}", err=True)

    if not as_json:
        typer.echo(HEADER)
    with bar:
        result = run_campaign(campaign, on_point=show, on_run=bar.run, on_bytes=bar.add_bytes)
    paths = {"results": str(result.results_path), "manifest": str(result.manifest_path), "warning": result.warning}
    typer.echo(json.dumps(paths) if as_json else f"results: {paths['results']}\nmanifest: {paths['manifest']}")


@app.command("dataloader")
def dataloader(
    tier: Annotated[str, typer.Option(help="'hot' (files on the hot tier) or a capacity tier name.")],
    workers: Annotated[str, typer.Option(help="Reader workers per accelerator, comma-separated.")] = "1,2,4,8",
    sample_size: Annotated[str, typer.Option(help="Bytes per sample.")] = "128KiB",
    batch: Annotated[int, typer.Option(help="Samples per step.")] = 32,
    compute_ms: Annotated[float, typer.Option(help="Emulated accelerator time per step.")] = 50.0,
    samples: Annotated[int, typer.Option(help="Samples in the dataset (created if missing).")] = 4096,
    epochs: Annotated[int, typer.Option(help="Passes over the dataset per point.")] = 1,
    read_delay_ms: Annotated[float, typer.Option(help="Extra sleep per sample read: throttles the tier.")] = 0.0,
    max_accelerators: Annotated[int, typer.Option(help="Stop the accelerator search here.")] = 64,
    keep_dataset: Annotated[bool, typer.Option(help="Keep a dataset this run created (for the next run).")] = False,
    cache: Annotated[str, typer.Option(metavar="cold|warm",
                                       help="cold: evict the dataset from this host's page cache before each point; "
                                            "warm: read it once first.")] = "cold",
    mode: Annotated[Optional[str], typer.Option(metavar="dlio|storage", help=(
        "dlio: reader processes decode, collate and hand batches over shared memory, a barrier per step "
        "(as MLPerf Storage charges; hot tier); storage: the storage path only (reads, an upper bound). "
        "Default: dlio on the hot tier, storage on a capacity tier."))] = None,
    sample_format: Annotated[str, typer.Option("--format", metavar="npz|raw", help="Sample files of --mode dlio.")] = "npz",
    out: Annotated[Optional[Path], typer.Option(help="Also append the rows to OUT/results.parquet.")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", metavar="PATH", help=FILE_HELP)] = None,
    # 3, as for fio, though it triples a search's time: "accelerators fed" is a yes/no at AU 0.9 taken
    # point by point, exactly where one noisy run halves or doubles the answer; --dry-run shows the cost.
    repeats: Annotated[str, typer.Option(metavar="N", help=REPEATS_HELP)] = str(DEFAULT_REPEATS),
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object (a results row) per point.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="List the points and the estimated time; run nothing.")] = False,
) -> None:
    """Emulate a training input pipeline: samples/s, MB/s, AU, and accelerators fed at >= 90% AU."""
    from bench.dataloader import emulate as dl
    from bench.campaign import new_campaign, write_results
    from tiering.config import find_config, load_config
    from tiering.core.units import parse_size

    for value, least, option in ((batch, 1, "--batch"), (compute_ms, 0, "--compute-ms"), (samples, 1, "--samples"),
                                 (epochs, 1, "--epochs"), (read_delay_ms, 0, "--read-delay-ms"),
                                 (max_accelerators, 1, "--max-accelerators")):
        _least(value, least, option)
    pipeline = dl.Pipeline(batch=batch, compute_s=compute_ms / 1e3, epochs=epochs, read_delay_s=read_delay_ms / 1e3,
                           cache=cache)
    readers, runs = _csv(workers, int, "--workers"), _one(repeats, int, "--repeats")
    mode = mode or ("dlio" if tier == "hot" else "storage")
    if mode not in ("dlio", "storage"):
        raise UserError(f"--mode: {mode!r}: expected dlio or storage")
    dl.check_options(pipeline, runs)
    cfg, size = load_config(find_config(config)), _one(sample_size, parse_size, "--sample-size")
    load_plan, target = _loader_plan(cfg, tier, mode, pipeline, samples, size, sample_format, readers, max_accelerators,
                                     runs)
    _out_folder(out)
    if dry_run:
        _print_plan(_loader_plan_lines(load_plan, pipeline, target, mode), load_plan, as_json,
                    [{"workers": p.workers, "accelerators": p.accelerators, "steps": p.steps, "estimated_s": p.seconds}
                     for p in load_plan.points])
        return
    bar = _PointsBar(len(load_plan.points), load_plan.total_bytes, load_plan.total_s, enabled=not as_json)

    def shown(p) -> None:
        bar.point()
        if not as_json:
            bar.echo(_line(LOADER_COLUMNS, _loader_cells(p)))

    options = dict(campaign=new_campaign("dataloader"), tier=tier, max_accelerators=max_accelerators,
                   keep_dataset=keep_dataset, repeats=runs, on_point=shown, on_run=lambda p: bar.add_bytes(p.bytes))
    typer.echo(f"mode: {mode} ({'DLIO-faithful' if mode == 'dlio' else 'storage path only: an upper bound'})",
               err=as_json)
    if not as_json:
        typer.echo(_header(LOADER_COLUMNS))
    with bar:
        rows = _run_loader(cfg, tier, mode, pipeline, samples, size, sample_format, readers, options)
    for row in rows if as_json else ():
        typer.echo(json.dumps(row))
    for w, k in sorted(dl.fed_by_workers(rows).items()):
        typer.echo(f"{w} reader worker(s) per accelerator: {k} accelerator(s) fed at AU >= 90%", err=as_json)
    if out:
        typer.echo(f"results: {write_results(rows, out)}", err=as_json)


@app.command("report")
def report(
    directory: Annotated[Path, typer.Argument(help="Folder holding results.parquet files (searched recursively).")],
    out: Annotated[Optional[Path], typer.Option(help="Where to write the report and plots (default: DIRECTORY).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="md (images beside it) or html (self-contained).")] = "md",
) -> None:
    """Plots and a Markdown/HTML report over every campaign under DIRECTORY."""
    from bench.campaign import check_writable
    from bench.report.build import build

    from tiering.cli.output import show_progress

    if not directory.is_dir():
        raise UserError(f"{directory}: not an existing directory; expected the --out folder of `tiering bench ...`")
    check_writable(out or directory, "--out")

    # Each step as it starts, for the person at a terminal (not -q); a script's stderr keeps only errors.
    say = (lambda text: typer.echo(f"{text} ...", err=True)) if show_progress() else None
    typer.echo(build(directory, out, fmt, on_step=say))


def _found_config(config: Optional[Path]):
    """The config ``--config`` names (an error if it cannot be read), else the one found, else None."""
    from tiering.config import find_config, load_config

    try:
        return load_config(find_config(config))
    except UserError:
        if config is not None:
            raise
        return None


def _tier_of(target: Path, cfg) -> Optional[str]:
    """The config's name for the tier ``target`` lies on ('hot', or a posix tier's name); None when none holds
    it, or with no config (the folder's name will do)."""
    if cfg is None:
        return None
    where = target.resolve()
    roots = [("hot", cfg.hot_path)] + [(name, Path(t.url)) for name, t in cfg.tiers.items() if t.scheme == "file"]
    for name, root in roots:
        if where == root.resolve() or root.resolve() in where.parents:
            return name
    return None


class _SweepBar:
    """Rich bars on stderr over a sweep's fio runs, with the time left by the estimate, and its bytes.

    fio runs are timed, so the bytes a sweep moves are known only as it goes: the
    bytes bar counts them up without a total. Drawn only when stdout and stderr are
    both a terminal and not ``--quiet``: rich then moves the rows printed meanwhile
    above the bars; with either redirected there are none.
    """

    def __init__(self, est, enabled: bool) -> None:
        from rich.progress import BarColumn, TextColumn, TimeElapsedColumn

        self._est, self._done, self._moved = est, 0, 0
        self._progress = _progress(enabled, TextColumn("{task.description}"), BarColumn(bar_width=24),
                                   TextColumn("{task.fields[count]}"), TimeElapsedColumn(),
                                   TextColumn("{task.fields[left]}"))
        self._task = self._progress.add_task("fio", total=est.runs, count=f"0/{est.runs} runs", left="")
        self._bytes = self._progress.add_task("bytes", total=None, count="", left="")

    def add_bytes(self, n: int) -> None:
        from tiering.core.units import format_size

        self._moved += n  # after each run: that run is done
        self._progress.update(self._bytes, completed=self._moved, count=f"{format_size(self._moved)} measured")
        self._progress.update(self._task, completed=self._done, count=f"{self._done}/{self._est.runs} runs")

    def __enter__(self):
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def run(self, bs: int, iodepth: int, numjobs: int, k: int) -> None:
        from tiering.core.units import format_elapsed, format_size

        left = (self._est.runs - self._done) * self._est.run_s
        self._progress.update(self._task, completed=self._done, left=f"~{format_elapsed(left)} left",
                              count=f"{self._done}/{self._est.runs} runs",
                              description=f"bs {format_size(bs)} qd{iodepth} x{numjobs} run {k}")
        self._done += 1

    @staticmethod
    def echo(text: str, err: bool = False) -> None:
        typer.echo(text, err=err)  # while the bar is drawn, rich's redirect puts this above it


def _loader_plan(cfg, tier: str, mode: str, pipeline, samples: int, size: int, fmt: str, readers: list[int],
                 max_accelerators: int, repeats: int):
    """The campaign's plan and the target it names, without touching the tier (a store is not even opened)."""
    from bench.dataloader.plan import plan
    from bench.dataloader.samples import BENCH_FOLDER, dataset_name

    if mode == "dlio":
        from bench.dataloader import faithful

        files = faithful.open_files(cfg, tier, samples, size, fmt)
        target, missing, least = files.target, not files.root.is_dir(), 2  # the first step is not measured
    elif tier == "hot":
        root = cfg.hot_path / BENCH_FOLDER / dataset_name(samples, size)
        target, missing, least = str(root), not root.is_dir(), 1
    else:
        target, missing, least = f"{cfg.tier(tier).url.rstrip('/')}/{BENCH_FOLDER}/{dataset_name(samples, size)}/", True, 1
    load_plan = plan(pipeline, samples, size, readers, max_accelerators=max_accelerators, repeats=repeats,
                     least_steps=least, create=missing)
    return load_plan, target


def _loader_plan_lines(load_plan, pipeline, target: str, mode: str) -> list[str]:
    from bench.dataloader.plan import plan_lines

    return plan_lines(load_plan, pipeline, target, "DLIO-faithful" if mode == "dlio" else "storage path only")


def _run_loader(cfg, tier: str, mode: str, pipeline, samples: int, size: int, fmt: str, readers: list[int],
                options: dict) -> list[dict]:
    from bench.dataloader import emulate as dl
    from bench.dataloader.samples import open_dataset

    if mode == "dlio":
        from bench.dataloader import faithful

        return faithful.run(faithful.open_files(cfg, tier, samples, size, fmt), pipeline, readers, **options)
    dataset = open_dataset(cfg, tier, samples, size)
    try:
        return dl.run(dataset, pipeline, readers, **options)
    finally:
        dataset.close()


def _progress(enabled: bool, *columns):
    """A rich Progress on stderr, drawn only when stdout and stderr are both a terminal and not ``--quiet``."""
    from rich.console import Console
    from rich.progress import Progress

    from tiering.cli.output import show_progress

    console = Console(stderr=True)
    return Progress(*columns, console=console, transient=True,
                    disable=not (enabled and show_progress() and console.is_terminal and sys.stdout.isatty()))


class _PointsBar:
    """Two rich bars on stderr over a campaign's points and its bytes, with the time left by the estimate.

    The totals are the plan's; a run that does more (a dataloader search that
    bisects) raises them as it goes. ``add_bytes`` may be called from any thread.
    """

    def __init__(self, points: int, total_bytes: int, total_s: float, enabled: bool) -> None:
        from rich.progress import BarColumn, TextColumn, TimeElapsedColumn

        self._total_s, self._points, self._bytes = total_s, [0, max(points, 1)], [0, max(total_bytes, 1)]
        self._progress = _progress(enabled, TextColumn("{task.description:>6}"), BarColumn(bar_width=24),
                                   TextColumn("{task.fields[count]}"), TimeElapsedColumn(),
                                   TextColumn("{task.fields[left]}"))
        self._point_task = self._progress.add_task("points", total=self._points[1], count="", left="")
        self._byte_task = self._progress.add_task("bytes", total=self._bytes[1], count="", left="")
        self._refresh()

    def __enter__(self):
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def point(self) -> None:
        self._points[0] += 1
        self._refresh()

    def add_bytes(self, n: int) -> None:
        self._bytes[0] += n  # a lost update between threads only delays the bar by one request
        self._refresh()

    def _refresh(self) -> None:
        from tiering.core.units import format_elapsed, format_size

        (done, total), (moved, size) = self._points, self._bytes
        total, size = max(total, done), max(size, moved)
        left = self._total_s * (1 - moved / size)
        self._progress.update(self._point_task, total=total, completed=done, count=f"{done}/{total} points",
                              left=f"~{format_elapsed(left)} left")
        self._progress.update(self._byte_task, total=size, completed=moved,
                              count=f"{format_size(moved)}/{format_size(size)}")

    @staticmethod
    def echo(text: str, err: bool = False) -> None:
        typer.echo(text, err=err)  # while the bars are drawn, rich's redirect puts this above them


#: (header, width, row key, format) for the objects and dataloader tables.
OBJECT_COLUMNS = [("op", 8, "op", "{}"), ("size", 8, "block_size", "size"), ("conc", 5, "numjobs", "{}"),
                  ("ops/s", 9, "iops", "{:.0f}"), ("MB/s", 8, "bw_bytes_s", "mb"), ("p50 ms", 8, "lat_p50_s", "ms"),
                  ("p99 ms", 8, "lat_p99_s", "ms"), ("ttfb p50", 9, "ttfb_p50_s", "ms"), ("ttfb p99", 9, "ttfb_p99_s", "ms"),
                  ("spread", 7, "spread", "spread")]
LOADER_COLUMNS = [("workers", 7, "numjobs", "{}"), ("accel", 5, "accelerators", "{}"), ("steps", 6, "steps", "{}"),
                  ("samples/s", 10, "samples_s", "{:.0f}"), ("MB/s", 8, "bw_bytes_s", "mb"), ("AU", 6, "au", "{:.3f}"),
                  ("read p99 ms", 11, "lat_p99_s", "ms"), ("spread", 7, "spread", "spread")]


def _header(columns) -> str:
    return " ".join(f"{h:>{w}}" for h, w, _, _ in columns)


def _line(columns, row: dict) -> str:
    from tiering.core.units import format_size

    def cell(key: str, fmt: str) -> str:
        value = row.get(key)
        if value is None:
            return "-"
        return {"size": format_size, "mb": lambda v: f"{v / 1e6:.1f}", "ms": lambda v: f"{v * 1e3:.2f}",
                "spread": lambda v: f"{v:.1%}" + ("!" if v > SPREAD_LIMIT else "")}.get(fmt, fmt.format)(value)

    return " ".join(f"{cell(key, fmt):>{w}}" for _, w, key, fmt in columns)


def _loader_cells(p) -> dict:
    return {"numjobs": p.workers, "accelerators": p.accelerators, "steps": p.steps, "samples_s": p.samples_s,
            "bw_bytes_s": p.bw_bytes_s, "au": p.au, "lat_p99_s": p.lat_p99, "spread": p.spread}

