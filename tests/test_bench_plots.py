"""The report's plots, read back: one metric per axis, tiers by name, 1, 2, 4 ticks, lines in x order,
titles inside the figure, and a footer of conditions in every PNG (its text chunks) and in the report."""

from __future__ import annotations

import shutil

import pytest

from bench.campaign import write_results
from bench.fio.sweep import open_campaign, run_campaign
from bench.report import plots
from bench.report.build import build, headlines, load, series
from bench.report.scaling import USLFit
from bench.results import table

pytest.importorskip("matplotlib", reason="the report's plots need the bench extra (matplotlib)")
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from PIL import Image  # noqa: E402  (matplotlib's own dependency)

MODEL = USLFit(200e6, 0.05, 0.004, 1.0)


def fio_rows(tier: str, ns=(1, 2, 4, 8, 16, 32)) -> list[dict]:
    # p99 falls then rises with n: drawn in n order, the throughput-vs-p99 line would zigzag.
    p99 = {1: 3e-4, 2: 2e-4, 4: 4e-4, 8: 1e-3, 16: 3e-3, 32: 9e-3}
    return table([{"campaign": f"fio-{tier}", "engine": "fio", "tier": tier, "target": f"/mnt/{tier}", "profile": "randread-4k",
             "op": "randread", "block_size": 4096, "numjobs": n, "iodepth": 1, "bw_bytes_s": MODEL.predict(n),
             "iops": MODEL.predict(n) / 4096, "lat_p99_s": p99[n]} for n in ns]).to_pylist()


def loader_rows(tier: str) -> list[dict]:
    return table([{"campaign": f"dl-{tier}", "engine": "dataloader", "tier": tier, "target": tier, "op": "load",
             "profile": "dataloader-b32-50ms", "block_size": 131072, "numjobs": 2, "accelerators": k,
             "au": 0.99 if k < 4 else 0.5, "samples_s": 600.0 * k, "iops": 600.0 * k, "bw_bytes_s": 600.0 * 131072 * k,
             "lat_p99_s": 0.002 * k} for k in (1, 2, 4)]).to_pylist()


def inside(fig, *artists) -> bool:
    """Whether every artist (a title, a label) lies within the figure once drawn (one draw for them all)."""
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    frame = fig.bbox
    for artist in artists:
        box = artist.get_window_extent(renderer)
        if not (frame.x0 - 1 <= box.x0 and box.x1 <= frame.x1 + 1 and frame.y0 - 1 <= box.y0 and box.y1 <= frame.y1 + 1):
            return False
    return True


def test_scaling_puts_one_metric_on_each_axis_with_power_of_two_ticks():
    rows = fio_rows("nvme")
    (s,) = series(rows)
    fig = plots.scaling([s], "nvme · fio · randread-4k · randread")
    axes = fig.get_axes()
    assert [ax.get_ylabel() for ax in axes] == ["throughput (MB/s)", "IOPS (ops/s)", "p99 latency (ms)"]
    for ax in axes:
        assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "4", "8", "16", "32"]
        for line in ax.get_lines():
            xs = list(line.get_xdata())
            assert xs == sorted(xs)
    assert inside(fig, fig._suptitle)


def test_latency_lines_run_in_x_order():
    (s,) = series(fio_rows("nvme"))
    fig = plots.latency([s], "nvme · fio · randread-4k · randread")
    (ax,) = fig.get_axes()
    xs = list(ax.get_lines()[0].get_xdata())
    assert xs == sorted(xs) and len(xs) == 6  # 2 (n=2) before 3 (n=1): no zigzag


def test_efficiency_title_fits():
    (s,) = series(fio_rows("a-rather-long-tier-name"))
    fig = plots.efficiency_map([s], "a-rather-long-tier-name · fio · randread-4k · randread")
    assert inside(fig, fig._suptitle)
    assert [t.get_text() for t in fig.get_axes()[0].get_xticklabels()] == ["1", "2", "4", "8", "16", "32"]


def test_tiers_puts_one_metric_on_each_axis_and_names_tiers():
    rows = fio_rows("nvme") + fio_rows("scratch") + loader_rows("nvme")
    heads = headlines(rows, series(rows))
    fig = plots.tiers(heads)
    shown = [ax for ax in fig.get_axes() if ax.get_visible()]
    columns: dict[str, list] = {}
    for ax in shown:  # a column per workload: its top panel carries the workload's name
        columns.setdefault(round(ax.get_position().x0, 3), []).append(ax)
    named = {next(a.get_title() for a in col if a.get_title()): col for col in columns.values()}
    assert set(named) == {"fio\nrandread-4k\nrandread", "dataloader\ndataloader-b32-50ms\nload"}
    fio, loader = named["fio\nrandread-4k\nrandread"], named["dataloader\ndataloader-b32-50ms\nload"]
    assert [ax.get_ylabel() for ax in fio] == ["peak throughput (MB/s)", "peak IOPS", "p99 latency at peak (ms)"]
    assert [ax.get_ylabel() for ax in loader] == ["peak throughput (MB/s)", "peak samples/s", "p99 latency at peak (ms)",
                                                  "accelerators fed (AU >= 90%)"]
    for ax in fio:
        assert [t.get_text() for t in ax.get_xticklabels()] == ["nvme", "scratch"]
    heights = {ax.get_ylabel(): [bar.get_height() for bar in ax.patches] for ax in fio}
    peak = max(r["bw_bytes_s"] for r in rows if r["engine"] == "fio")
    assert heights["peak throughput (MB/s)"] == pytest.approx([peak / 1e6] * 2)  # MB/s only on the MB/s axis
    assert heights["peak IOPS"] == pytest.approx([peak / 4096] * 2)
    assert [bar.get_height() for bar in loader[3].patches] == [2]  # k = 4 fell below 90 % AU
    assert inside(fig, fig._suptitle, *(t for ax in shown for t in (ax.title, ax.yaxis.label)))


@pytest.mark.parametrize("draw", ["scaling", "efficiency_map", "latency", "tiers", "accelerators"])
def test_every_title_fits_its_figure(draw):
    tier = "a-rather-long-tier-name-for-a-parallel-filesystem"
    rows = fio_rows(tier) + fio_rows("nvme") + loader_rows(tier)
    all_series = series(rows)
    fio_series = [s for s in all_series if s.engine == "fio"]
    title = f"{tier} · fio · randread-4k · randread"
    fig = {"scaling": lambda: plots.scaling(fio_series, title), "efficiency_map": lambda: plots.efficiency_map(fio_series, title),
           "latency": lambda: plots.latency(fio_series, title), "tiers": lambda: plots.tiers(headlines(rows, all_series)),
           "accelerators": lambda: plots.accelerators([r for r in rows if r["engine"] == "dataloader"])}[draw]()
    texts = [fig._suptitle] + [t for ax in fig.get_axes() if ax.get_visible() for t in (ax.title, ax.xaxis.label,
                                                                                         ax.yaxis.label)]
    texts = [t for t in texts if t is not None and t.get_text()]
    assert len(texts) >= 3 and inside(fig, *texts), [t.get_text() for t in texts if not inside(fig, t)]


@pytest.mark.skipif(shutil.which("fio") is None, reason="fio is not installed")
def test_report_labels_the_tier_and_footers_every_png(tmp_path):
    results = tmp_path / "results"
    (tmp_path / "benchdir").mkdir()
    run_campaign(open_campaign(tmp_path / "benchdir", "randread-4k", numjobs="1,2", iodepth="1", runtime=1, ramp=0,
                               size="1MiB", repeats=1, out=results, label="nvme"))
    write_results(loader_rows("hot"), results)
    report = build(results, tmp_path / "report")
    text = report.read_text()
    rows = load(results)[0].to_pylist()
    assert {r["tier"] for r in rows} == {"nvme", "hot"} and "benchdir" not in text
    pngs = sorted((tmp_path / "report" / "plots").glob("*.png"))
    assert pngs and "](../results/results.parquet)" in text and "](../results/manifest.json)" in text
    for png in pngs:
        assert f"](plots/{png.name})" in text
        meta = Image.open(png).text
        assert meta["Title"] and meta["Title"] in text  # the caption the report shows
        footer = meta["Description"]
        assert footer.startswith("fio-") and "host " in footer and "Linux " in footer and "fs nvme: " in footer
        assert "measured 20" in footer
    assert f"Conditions: {footer}." in text
