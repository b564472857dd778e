"""``tiering bench report``: every campaign under a folder, side by side.

Reads each ``results.parquet`` below the folder (fio, objects and dataloader
campaigns alike), groups the rows into *series* (one tier, profile, operation,
block size and iodepth, measured at several concurrencies), and writes:

- PNG plots (``plots/``; see ``bench.report.plots``), plus fio-plot's own charts
  (``fio-plot/``) where bench-fio-layout JSON files are present;
- ``report.md`` (images linked) or ``report.html`` (images embedded), with a
  headline table per tier, engine, profile and operation: peak throughput,
  peak IOPS, p99 latency at the throughput peak, the knee concurrency
  (Kneedle on the peak's series), the USL-predicted peak concurrency, and for
  dataloader campaigns the accelerators fed at >= 90 % AU.

For dataloader campaigns the concurrency of a series is the number of
emulated accelerators (one series per reader-worker count): aggregate samples/s
against accelerators is where a tier's limit shows (below it, each added
accelerator adds its full demand).
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bench.campaign import RESULTS, conform
from bench.dataloader.emulate import AU_TARGET
from bench.report.doc import Doc, render
from bench.stats import SPREAD_LIMIT
from bench.report.scaling import MIN_USL_POINTS, NOT_ENOUGH_POINTS, efficiency, kneedle, usl_fit
from tiering.core.errors import UserError
from tiering.core.units import format_size

SeriesKey = tuple  # (engine, tier, profile, op, block_size, iodepth, workers)


@dataclass(frozen=True)
class Series:
    """One curve: a fixed workload measured at several concurrencies (sorted by ``n``)."""

    engine: str
    tier: str
    profile: str
    op: str
    block_size: int | None
    iodepth: int | None
    workers: int | None  # dataloader: reader workers per accelerator (n counts accelerators)
    n: tuple[int, ...]
    bw: tuple[float, ...]  # bytes/s
    iops: tuple[float, ...]
    p99: tuple[float | None, ...]  # seconds
    spread: tuple[float | None, ...] = ()  # (max − min) / median throughput over a point's repeats
    repeats: tuple[int | None, ...] = ()

    @property
    def group(self) -> tuple[str, str, str, str]:
        return (self.engine, self.tier, self.profile, self.op)

    @property
    def label(self) -> str:
        parts = [format_size(self.block_size)] if self.block_size else []
        parts += [f"qd{self.iodepth}"] if self.iodepth else []
        return " ".join(parts + ([f"w{self.workers}"] if self.workers else [])) or self.op

    @property
    def widest_spread(self) -> float | None:
        """The largest repeat spread along the series; None when no point was repeated."""
        return max((x for x in self.spread if x is not None), default=None)

    @property
    def knee(self) -> float | None:
        return kneedle(self.n, self.bw)

    @property
    def efficiency(self) -> list[float]:
        return efficiency(self.n, self.bw)


@dataclass(frozen=True)
class Headline:
    """One line of the headline table."""

    tier: str
    engine: str
    profile: str
    op: str
    peak_bw: float
    peak_at: str  # where the peak was measured, e.g. "1MiB x16"
    peak_iops: float
    p99_at_peak: float | None
    knee: float | None
    usl_peak: str
    accelerators: int | None  # dataloader groups only


def load(directory: str | os.PathLike[str]) -> tuple[pa.Table, list[Path]]:
    """Every ``results.parquet`` under ``directory``, conformed to SCHEMA and concatenated."""
    files = sorted(Path(directory).rglob(RESULTS))
    if not files:
        raise UserError(f"{directory}: no {RESULTS} below it; "
                        "run `tiering bench fio|objects|dataloader --out DIR` first")
    return pa.concat_tables([conform(_read(f)) for f in files]), files


def _read(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise UserError(f"{path}: not a results table ({exc}); expected a results.parquet "
                        "written by `tiering bench ... --out DIR`") from exc


def series(rows: list[dict]) -> list[Series]:
    """The scaling series in ``rows``: fio numjobs, object concurrency, dataloader accelerators."""
    points: dict[SeriesKey, dict[int, dict]] = defaultdict(dict)
    for r in rows:
        key, n = _series_key(r)
        if n is not None and r["bw_bytes_s"] is not None:
            points[key][n] = r  # a point measured by two campaigns: the last one read wins
    out = []
    for key, by_n in sorted(points.items(), key=lambda kv: tuple(str(k) for k in kv[0])):
        ns = sorted(by_n)
        out.append(Series(*key, tuple(ns), tuple(by_n[n]["bw_bytes_s"] for n in ns),
                          tuple(by_n[n]["iops"] or 0.0 for n in ns), tuple(by_n[n]["lat_p99_s"] for n in ns),
                          tuple(by_n[n]["spread"] for n in ns), tuple(by_n[n]["repeats"] for n in ns)))
    return out


def _series_key(r: dict) -> tuple[SeriesKey, int | None]:
    loader = r["engine"] == "dataloader"
    workers = r["numjobs"] if loader else None
    key = (r["engine"], r["tier"], r["profile"], r["op"], r["block_size"], r["iodepth"], workers)
    return key, r["accelerators"] if loader else r["numjobs"]


def headlines(rows: list[dict], all_series: list[Series]) -> list[Headline]:
    """One headline per (tier, engine, profile, op), in tier order."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["tier"], r["engine"], r["profile"], r["op"])].append(r)
    return [_headline(key, group, all_series) for key, group in sorted(groups.items())]


def _headline(key: tuple, group: list[dict], all_series: list[Series]) -> Headline:
    tier, engine, profile, op = key
    peak = max(group, key=lambda r: r["bw_bytes_s"] or 0.0)
    home_key = _series_key(peak)[0]
    home = next((s for s in all_series if (s.engine, s.tier, s.profile, s.op, s.block_size, s.iodepth, s.workers)
                 == home_key), None)
    fit = usl_fit(home.n, home.bw) if home else None
    fed = None
    if engine == "dataloader":
        fed = max((r["accelerators"] for r in group if (r["au"] or 0) >= AU_TARGET), default=0)
    return Headline(
        tier, engine, profile, op, peak["bw_bytes_s"] or 0.0, _where(peak),
        max(r["iops"] or 0.0 for r in group), peak["lat_p99_s"], home.knee if home else None,
        fit.peak_label(max(home.n)) if fit and home else _unfitted(home), fed,
    )


def _unfitted(s: Series | None) -> str:
    return f"{NOT_ENOUGH_POINTS} ({len(s.n) if s else 0} of {MIN_USL_POINTS} concurrencies)"


def _where(r: dict) -> str:
    """Where a point was measured: "1MiB x16 qd4", or "128KiB w4 x8 accelerators"."""
    at = [format_size(r["block_size"])] if r["block_size"] else []
    if r["engine"] == "dataloader":
        return " ".join(at + [f"w{r['numjobs']}", f"x{r['accelerators']} accelerators"])
    at += [f"x{r['numjobs']}"] if r["numjobs"] else []
    return " ".join(at + ([f"qd{r['iodepth']}"] if r["iodepth"] else []))


def build(directory: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, fmt: str = "md",
          on_step: Callable[[str], None] | None = None) -> Path:
    """Write the plots and the report for every campaign under ``directory``; returns the report's path.

    ``on_step(text)`` is told each step as it starts (reading, fitting, drawing, fio-plot, writing):
    the caller's running commentary.
    """
    say = on_step or (lambda text: None)
    try:
        from bench.report import plots  # matplotlib is an optional dependency: imported only here
    except ImportError as exc:
        raise UserError(f"bench report needs matplotlib ({exc.name} is missing): pip install 'tiering[bench]'") from exc
    if fmt not in ("md", "html"):
        raise UserError(f"unknown report format {fmt!r}; expected md or html")
    say(f"reading results under {directory}")
    data, files = load(directory)
    rows = data.to_pylist()
    out_dir = Path(out) if out else Path(directory)
    all_series = series(rows)
    say(f"read {len(rows)} point(s) from {len(files)} file(s); fitting {len(all_series)} series")
    heads = headlines(rows, all_series)
    say(f"drawing plots into {out_dir / 'plots'}")
    manifests = _manifests(Path(directory))
    images = plots.draw_all(all_series, heads, rows, out_dir / "plots", footer=footer(manifests, rows))
    say(f"drew {len(images)} plot(s); running fio-plot on the fio result folders (if installed)")
    fio_images, fio_notes = plots.fio_plot(Path(directory), out_dir / "fio-plot")
    # Name the results folder relative to the report, so a report moved with its data stays true.
    shown = os.path.relpath(Path(directory).absolute(), out_dir.absolute())
    doc = _document(shown, files, rows, all_series, heads)
    doc.section("Raw data")
    doc.para(f"Conditions: {footer(manifests, rows)}.")
    doc.links(list(files) + sorted(manifests))
    doc.section("Plots")
    for path, caption in images:
        doc.image(path, caption)
    if fio_images or fio_notes:
        doc.section("fio-plot charts")
        for note in fio_notes:
            doc.para(note)
        for path, caption in fio_images:
            doc.image(path, caption)
    report = out_dir / f"report.{fmt}"
    say(f"writing {report}")
    report.write_text(render(doc, fmt, base=out_dir), encoding="utf-8")
    return report


def _manifests(directory: Path) -> dict[Path, dict]:
    """Every fio manifest under ``directory`` (they hold the tool versions and the filesystem of each target)."""
    found = {}
    for path in sorted(directory.rglob("manifest*.json")):
        try:
            found[path] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # not ours, or half-written: the footer makes do without it
    return found


def footer(manifests: dict[Path, dict], rows: list[dict]) -> str:
    """One line of conditions, as fio-plot prints under its charts: tools, host, kernel, filesystems, dates."""
    import matplotlib

    docs = list(manifests.values())
    fio = sorted({d["fio_version"] for d in docs if d.get("fio_version")})
    revs = sorted({(d.get("git") or {}).get("revision", "unknown")[:10] + ("+dirty" if (d.get("git") or {}).get("dirty")
                                                                             else "") for d in docs})
    uname = os.uname()
    hosts = sorted({d["host"] for d in docs if d.get("host")}) or [uname.nodename]
    kernels = sorted({d["kernel"].split()[1] for d in docs if len(d.get("kernel", "").split()) > 1}) or [uname.release]
    fs = sorted({f"{d.get('label')}: {d['mount']['fstype']}" for d in docs if d.get("mount")})
    dates = sorted(d["created"][:10] for d in docs if d.get("created"))
    when = (dates[0] if dates[0] == dates[-1] else f"{dates[0]}..{dates[-1]}") if dates else time.strftime("%Y-%m-%d")
    parts = [", ".join(fio) or None, f"tiering {', '.join(revs)}" if revs else None, f"matplotlib {matplotlib.__version__}",
             f"host {', '.join(hosts)}", f"Linux {', '.join(kernels)}", f"fs {'; '.join(fs)}" if fs else None,
             f"measured {when}", f"{len(rows)} points"]
    return " · ".join(p for p in parts if p)


def _document(directory, files, rows, all_series: list[Series], heads: list[Headline]) -> Doc:
    doc = Doc("Storage benchmark report")
    campaigns = sorted({(r["campaign"], r["engine"], r["tier"]) for r in rows})
    doc.para(f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} from {len(files)} results file(s) under "
             f"`{directory}`: {len(campaigns)} campaign/tier pair(s), {len(rows)} points.")
    doc.section("Headline")
    doc.table(["tier", "engine", "profile", "op", "peak throughput", "at", "peak IOPS", "p99 at peak",
               "knee (concurrency)", "USL peak concurrency", "accelerators fed (AU >= 90%)"],
              [_headline_cells(h) for h in heads])
    doc.para(METHODS)
    doc.section("Scaling analysis")
    doc.table(["tier", "engine", "profile", "op", "series", "n", "repeats", "spread (max)", "efficiency E(n)", "knee",
               "USL λ", "σ", "κ", "R²", "residuals (% of fit, by n)", "N*"],
              [_series_cells(s) for s in all_series])
    warnings = sorted({(r["tier"], r["warning"]) for r in rows if r["warning"]})
    if warnings:
        doc.section("Warnings")
        doc.bullets([f"{tier}: {text}" for tier, text in warnings])
    return doc


METHODS = (
    "Throughput is bytes/s in MB/s (10^6). Concurrency n: fio numjobs, concurrent object requests, or "
    "emulated accelerators (dataloader, series per reader-worker count w). Knee: Kneedle on throughput against "
    "concurrency of the series holding the peak. USL: least-squares fit of X(N) = λN / (1 + σ(N−1) + κN(N−1)); "
    "peak concurrency N* = sqrt((1−σ)/κ), or 'beyond measured range' when κ ≈ 0 (no retrograde). The USL is fitted "
    f"only to series with at least {MIN_USL_POINTS} distinct concurrencies (three parameters fit three points "
    "exactly); its residuals show how far each measured point lies from the curve. Repeats: each fio point runs "
    "that many times and the median run (by throughput) is kept; spread = (max − min) / median throughput over the "
    "repeats, flagged above 10 %. Accelerators fed: measured, "
    "not derived: k emulated accelerators (each with its own reader workers, all sharing the tier) were run "
    "for k = 1, 2, 4, ... until AU = compute / (compute + wait) fell below 0.9, then bisected; the largest k "
    "measured at AU >= 0.9 is shown."
)


def _headline_cells(h: Headline) -> list[str]:
    return [h.tier, h.engine, h.profile, h.op, _mbs(h.peak_bw), h.peak_at, f"{h.peak_iops:,.0f}",
            _ms(h.p99_at_peak), _num(h.knee), h.usl_peak, "—" if h.accelerators is None else str(h.accelerators)]


def _series_cells(s: Series) -> list[str]:
    fit = usl_fit(s.n, s.bw)
    usl = [f"{fit.lam / 1e6:.1f} MB/s", f"{fit.sigma:.4f}", f"{fit.kappa:.2e}", f"{fit.r2:.3f}",
           " ".join(f"{100 * r:+.1f}" for r in fit.residuals), fit.peak_label(max(s.n))] if fit else \
        [_unfitted(s)] + ["—"] * 5
    eff = " ".join(f"{e:.2f}" for e in s.efficiency)
    repeats = sorted({r for r in s.repeats if r})
    return [s.tier, s.engine, s.profile, s.op, s.label, " ".join(map(str, s.n)),
            "/".join(map(str, repeats)) or "1", _spread(s.widest_spread), eff, _num(s.knee), *usl]


def _spread(value: float | None) -> str:
    """A spread cell, flagged past ``SPREAD_LIMIT`` (the point is not reproducible to 10 %)."""
    if value is None:
        return "—"
    return f"{value:.1%}" + (" ⚠ > 10%" if value > SPREAD_LIMIT else "")


def _mbs(bw: float) -> str:
    return f"{bw / 1e6:,.1f} MB/s"


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds * 1e6:.1f} µs" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"


def _num(value: float | None) -> str:
    return "none" if value is None else f"{value:g}"
