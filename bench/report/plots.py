"""The report's PNG plots (matplotlib, no display) and fio-plot's native charts.

Figures are built with ``matplotlib.figure.Figure`` directly, never through
``pyplot``: no global state, no GUI backend, safe from any thread; saving a
PNG uses the Agg renderer.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

from bench.dataloader.emulate import AU_TARGET

Image = tuple[Path, str]  # (png path, caption)

#: A fio result in bench-fio's layout: ``<label>/<bs>/<mode>-<iodepth>-<numjobs>.json``.
FIO_JSON = re.compile(r"^(?P<mode>[a-z]+)-(?P<iodepth>\d+)-(?P<numjobs>\d+)\.json$")


def draw_all(all_series, heads, rows: list[dict], out: Path, footer: str = "") -> list[Image]:
    """Every plot the report shows, written under ``out``; ``footer`` (tools, host, kernel, fs, date) on each."""
    out.mkdir(parents=True, exist_ok=True)
    images: list[Image] = []
    groups: dict[tuple, list] = defaultdict(list)
    for s in all_series:
        groups[s.group].append(s)
    for group, members in groups.items():
        name, title = _slug(*group), " · ".join(str(g) for g in (group[1], group[0], group[2], group[3]))
        images.append(_save(scaling(members, title), out / f"scaling-{name}.png",
                            f"throughput, IOPS and p99 against concurrency, {title}", footer))
        images.append(_save(efficiency_map(members, title), out / f"efficiency-{name}.png",
                            f"scaling efficiency, {title}", footer))
        if any(p is not None for s in members for p in s.p99):
            images.append(_save(latency(members, title), out / f"latency-{name}.png",
                                f"throughput against p99, {title}", footer))
    if heads:
        images.append(_save(tiers(heads), out / "tiers.png", "peak per workload, tiers side by side", footer))
    loads = [r for r in rows if r["engine"] == "dataloader" and r["au"] is not None]
    if loads:
        images.append(_save(accelerators(loads), out / "accelerators.png", "accelerators fed per tier and profile",
                            footer))
    return images


def concurrency_axis(ax, ns) -> None:
    """A log2 concurrency axis labelled 1, 2, 4, ... at the measured values (never 2⁰, 2¹)."""
    ax.set_xscale("log", base=2)
    ticks = sorted({n for n in ns if n and n > 0})
    if ticks:
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())


def scaling(members, title: str) -> Figure:
    """Throughput, IOPS and p99 latency against concurrency: one metric per panel, one line per block size / iodepth."""
    has_p99 = any(p is not None for s in members for p in s.p99)
    fig = Figure(figsize=(15 if has_p99 else 11, 4.4), layout="constrained")
    axes = fig.subplots(1, 3 if has_p99 else 2)
    metrics = [("throughput (MB/s)", lambda s: [b / 1e6 for b in s.bw]), ("IOPS (ops/s)", lambda s: list(s.iops))]
    if has_p99:
        metrics.append(("p99 latency (ms)", lambda s: [None if p is None else p * 1e3 for p in s.p99]))
    ns = [n for s in members for n in s.n]
    for ax, (ylabel, values) in zip(axes, metrics):
        for s in members:
            pts = sorted((n, v) for n, v in zip(s.n, values(s)) if v is not None)  # lines in x order
            ax.plot([n for n, _ in pts], [v for _, v in pts], marker="o", label=s.label)
        concurrency_axis(ax, ns)
        latencies = [v for line in ax.get_lines() for v in line.get_ydata()] if ylabel.startswith("p99") else []
        if latencies and min(latencies) > 0 and max(latencies) / min(latencies) > 30:
            ax.set_yscale("log")  # queue depths spread latency over decades: a linear axis flattens the short ones
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("concurrency (numjobs / requests / accelerators)")
        ax.set_ylabel(ylabel)
        ax.set_title(ylabel.split(" (")[0], fontsize="medium")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(title, wrap=True)
    return fig


def efficiency_map(members, title: str) -> Figure:
    """Heatmap of E(n) = T(n) / (n T(1)): rows are series, columns concurrency."""
    cols = sorted({n for s in members for n in s.n})
    grid = np.full((len(members), len(cols)), np.nan)
    for i, s in enumerate(members):
        for n, e in zip(s.n, s.efficiency):
            grid[i, cols.index(n)] = e
    # Wide enough for its title: a narrow grid clipped "scaling efficiency, <tier> · fio · ..." before.
    fig = Figure(figsize=(max(7.5, 1.2 + 0.9 * len(cols)), 1.8 + 0.45 * len(members)), layout="constrained")
    ax = fig.subplots()
    finite = grid[np.isfinite(grid)]
    image = ax.imshow(grid, cmap="RdYlGn", vmin=0.0, vmax=max(1.0, float(finite.max()) if finite.size else 1.0),
                      aspect="auto")
    for (i, j), e in np.ndenumerate(grid):
        if math.isfinite(e):
            ax.text(j, i, f"{e:.2f}", ha="center", va="center", fontsize="small")
    ax.set_xticks(range(len(cols)), [f"{c:g}" for c in cols])
    ax.set_yticks(range(len(members)), [s.label for s in members])
    ax.set_xlabel("concurrency n")
    fig.colorbar(image, ax=ax, label="E(n) = T(n) / (n T(1))")
    fig.suptitle(f"scaling efficiency\n{title}", fontsize="medium")
    return fig


def latency(members, title: str) -> Figure:
    """Throughput against p99 latency along each series, its knee marked; lines run in latency order."""
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.subplots()
    for s in members:
        pts = sorted((p * 1e3, b / 1e6, n) for p, b, n in zip(s.p99, s.bw, s.n) if p is not None)
        line, = ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=s.label)
        for x, y, n in pts:
            ax.annotate(f"{n:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize="x-small")
        knee = next((p for p in pts if s.knee is not None and p[2] == s.knee), None)
        if knee:
            ax.plot([knee[0]], [knee[1]], marker="*", markersize=16, color=line.get_color(), linestyle="none",
                    label=f"knee {s.label} (n={knee[2]:g})")
    if all(p is not None and p > 0 for s in members for p in s.p99):
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels collide on short decades
    ax.set_xlabel("p99 latency (ms)")
    ax.set_ylabel("throughput (MB/s)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.suptitle(f"{title}\n(points labelled with concurrency)", fontsize="medium")
    return fig


#: The rate each engine's rows count in ``iops``: fio operations, object requests, dataloader samples.
RATE_UNIT = {"fio": "IOPS", "objects": "requests/s", "dataloader": "samples/s"}


def tier_metrics(heads) -> list[tuple[str, Callable]]:
    """The rows of the tiers chart: (axis label, value of a headline or None), one metric each.

    The rate's label is the workload's own unit (``{rate}`` is filled per column).
    """
    rows: list[tuple[str, Callable]] = [
        ("peak throughput (MB/s)", lambda h: h.peak_bw / 1e6 if h.peak_bw else None),
        ("peak {rate}", lambda h: h.peak_iops or None),
        ("p99 latency at peak (ms)", lambda h: None if h.p99_at_peak is None else h.p99_at_peak * 1e3),
    ]
    if any(h.accelerators is not None for h in heads):
        rows.append((f"accelerators fed (AU >= {AU_TARGET:.0%})", lambda h: h.accelerators))
    return rows


def tiers(heads) -> Figure:
    """Tiers side by side: a column per workload, a row per metric, one bar per tier in every panel.

    Every axis carries one metric in one unit: fio, object and dataloader peaks
    are different quantities at different scales (on one shared MB/s axis the
    small ones vanish and the comparison invites reading across workloads), and
    a throughput, a rate and a latency never share an axis either.
    """
    workloads = sorted({(h.engine, h.profile, h.op) for h in heads})
    names = sorted({h.tier for h in heads})
    by_key = {(h.tier, h.engine, h.profile, h.op): h for h in heads}
    metrics = tier_metrics(heads)
    fig = Figure(figsize=(max(6.0, 2.9 * len(workloads) + 1.0), 2.5 * len(metrics) + 1.0), layout="constrained")
    grid = fig.subplots(len(metrics), len(workloads), squeeze=False)
    colours = {tier: f"C{i}" for i, tier in enumerate(names)}
    for col, (engine, profile, op) in enumerate(workloads):
        titled = False
        for row, (label, value) in enumerate(metrics):
            ax = grid[row][col]
            bars = [(t, value(by_key[(t, engine, profile, op)])) for t in names if (t, engine, profile, op) in by_key]
            bars = [(t, v) for t, v in bars if v is not None]
            if not bars:
                ax.set_visible(False)
                continue
            drawn = ax.bar(range(len(bars)), [v for _, v in bars], color=[colours[t] for t, _ in bars])
            ax.bar_label(drawn, labels=[_figure(v) for _, v in bars], fontsize="x-small")  # a 0 bar still says 0
            ax.set_ylim(0, max(1.0 if label.startswith("accelerators") else 0.0, max(v for _, v in bars)) * 1.15 or 1)
            ax.set_xticks(range(len(bars)), [t for t, _ in bars], fontsize="small",
                          rotation=30 if sum(len(t) for t, _ in bars) > 24 else 0)
            ax.set_ylabel(label.format(rate=RATE_UNIT.get(engine, "ops/s")), fontsize="small")
            ax.grid(True, axis="y", alpha=0.3)
            if label.startswith("accelerators"):
                ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # whole accelerators: no 0.5 ticks
            if not titled:
                ax.set_title("\n".join(dict.fromkeys((engine, profile, op))), fontsize="small")
                titled = True
    fig.suptitle("tiers side by side: one metric per panel, one workload per column")
    return fig


def _figure(value: float) -> str:
    """A bar's value as a label: whole numbers from 100 up, three significant digits below."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def accelerators(loads: list[dict]) -> Figure:
    """Left: accelerators fed at >= 90 % AU per tier and profile; right: AU against accelerators."""
    fig = Figure(figsize=(11, 4.4), layout="constrained")
    bars, curves = fig.subplots(1, 2)
    fed: dict[str, int] = defaultdict(int)
    lines: dict[str, dict[int, float]] = defaultdict(dict)
    for r in loads:
        label = f"{r['tier']}\n{r['profile']}"
        fed[label] = max(fed[label], r["accelerators"] if r["au"] >= AU_TARGET else 0)
        lines[f"{r['tier']} {r['profile']} w={r['numjobs']}"][r["accelerators"]] = r["au"]
    bars.bar(range(len(fed)), list(fed.values()))
    bars.set_xticks(range(len(fed)), list(fed), fontsize="x-small")
    bars.set_ylabel(f"accelerators fed (AU >= {AU_TARGET:.0%})")
    bars.set_title("accelerators fed", fontsize="medium")
    for label, points in sorted(lines.items()):
        ks = sorted(points)
        curves.plot(ks, [points[k] for k in ks], marker="o", label=label)
    curves.axhline(AU_TARGET, color="grey", linestyle="--", linewidth=1)
    concurrency_axis(curves, [r["accelerators"] for r in loads])
    curves.set_xlabel("emulated accelerators")
    curves.set_ylabel("accelerator utilisation (AU)")
    curves.set_title("AU against accelerators", fontsize="medium")
    curves.set_ylim(0, 1.05)
    curves.legend(fontsize="x-small")
    fig.suptitle("dataloader emulation")
    return fig


def fio_plot(directory: Path, out: Path, timeout: float = 120.0) -> tuple[list[Image], list[str]]:
    """fio-plot's charts for every bench-fio-layout folder under ``directory``: images and notes."""
    found: dict[tuple[Path, str], set[int]] = defaultdict(set)
    for path in directory.rglob("*.json"):
        match = FIO_JSON.match(path.name)
        if match:
            found[(path.parent, match["mode"])].add(int(match["iodepth"]))
    if not found:
        return [], []
    binary = Path(sys.executable).parent / "fio-plot"
    binary = str(binary) if binary.exists() else shutil.which("fio-plot")
    if not binary:
        return [], ["fio-plot is not installed (pip install 'tiering[bench]'): its charts were skipped."]
    out.mkdir(parents=True, exist_ok=True)
    images, notes = [], []
    for (folder, mode), depths in sorted(found.items()):
        title = str(folder.relative_to(directory)) or folder.name
        name = _slug(title, mode)
        # The 3D chart covers the whole numjobs x iodepth grid; the 2D one is numjobs scaling at the deepest queue.
        deepest = str(max(depths))
        for kind, args in (("3d-iops", ["-L", "-t", "iops"]), (f"numjobs-qd{deepest}", ["-N", "-d", deepest])):
            png = out / f"{name}-{kind}.png"
            error = _run([binary, "-i", str(folder.absolute()), "-T", f"{title} {mode}", "-r", mode, *args,
                          "-o", str(png.absolute())],
                         png, timeout)
            if error:
                notes.append(f"fio-plot {kind} for {title} ({mode}) failed: {error}")
            else:
                images.append((png, f"fio-plot {kind}: {title} {mode}"))
    return images, notes


def _run(argv: list[str], png: Path, timeout: float) -> str | None:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=png.parent,
                              check=False)
    except subprocess.TimeoutExpired:
        return f"no answer within {timeout:g}s"
    if done.returncode != 0 or not png.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        return tail[0]
    return None


def _save(fig: Figure, path: Path, caption: str, footer: str = "") -> Image:
    """Write ``fig`` with the footer under it; the caption and footer also go in the PNG's text chunks."""
    if footer:
        fig.get_layout_engine().set(rect=(0, 0.05, 1, 0.95))  # room for the footer below the panels
        fig.text(0.5, 0.01, footer, ha="center", va="bottom", fontsize="x-small", color="dimgrey", wrap=True)
    fig.savefig(path, dpi=100, metadata={"Title": caption, "Description": footer,
                                        "Software": f"tiering bench report (matplotlib {matplotlib.__version__})"})
    return path, caption


def _slug(*parts: object) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(str(p) for p in parts if p not in (None, ""))).strip("-")
