"""``bench report``: valid PNGs, a headline per tier, the scaling analysis, fio-plot's charts."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from bench.campaign import write_results
from bench.report.build import build, headlines, load, series
from bench.report.scaling import USLFit

pytest.importorskip("matplotlib", reason="the report's plots need the bench extra (matplotlib)")

PNG = b"\x89PNG\r\n\x1a\n"
#: fio on "disk" follows this USL exactly: its peak is at sqrt(0.95 / 0.004) ~ 15.4 jobs.
DISK = USLFit(200e6, 0.05, 0.004, 1.0)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG and data[12:16] == b"IHDR" and len(data) > 2000, path
    return struct.unpack(">II", data[16:24])


def fio_rows(tier: str, model: USLFit) -> list[dict]:
    rows = []
    for iodepth in (1, 16):
        for n in (1, 2, 4, 8, 16, 32):
            bw = model.predict(n) * (1 if iodepth == 1 else 1.5)
            rows.append({"campaign": f"fio-{tier}", "engine": "fio", "tier": tier, "target": f"/mnt/{tier}",
                         "profile": "random-4k", "op": "randread", "block_size": 4096, "numjobs": n,
                         "iodepth": iodepth, "bw_bytes_s": bw, "iops": bw / 4096, "lat_p99_s": 1e-4 * n * iodepth,
                         "repeats": 3, "spread": 0.25 if (tier, iodepth, n) == ("disk", 16, 8) else 0.02})
    return rows


def object_rows() -> list[dict]:
    return [{"campaign": "obj", "engine": "objects", "tier": "seaweed", "target": "s3://b", "profile": "objects",
             "op": op, "block_size": 1 << 20, "numjobs": n, "bw_bytes_s": 50e6 * n / (1 + 0.3 * (n - 1)),
             "iops": 50.0 * n, "lat_p99_s": 0.01 * n, "ttfb_p50_s": 0.001} for op in ("put", "get") for n in (1, 4, 16)]


def loader_rows(tier: str, fed: int) -> list[dict]:
    return [{"campaign": f"dl-{tier}", "engine": "dataloader", "tier": tier, "target": tier, "op": "load",
             "profile": "dataloader-b32-50ms", "block_size": 131072, "numjobs": 4, "accelerators": k,
             "au": 0.99 if k <= fed else 0.6, "samples_s": 640.0 * min(k, fed + 0.5), "iops": 640.0 * min(k, fed + 0.5),
             "bw_bytes_s": 640.0 * 131072 * min(k, fed + 0.5), "lat_p99_s": 0.002 * k} for k in (1, 2, 4, 8, 6, 5)]


@pytest.fixture
def campaigns(tmp_path) -> Path:
    root = tmp_path / "campaigns"
    write_results(fio_rows("disk", DISK) + fio_rows("tmpfs", USLFit(2e9, 0.01, 0.0, 1.0)), root / "fio")
    write_results(object_rows() + loader_rows("seaweed", 1), root / "objects")
    write_results(loader_rows("tmpfs", 5), root / "loader" / "nested")
    return root


def test_markdown_report_with_valid_plots(campaigns, tmp_path):
    report = build(campaigns, tmp_path / "report")
    assert report == tmp_path / "report" / "report.md"
    text = report.read_text()
    headline = text.split("## Headline")[1].split("\n\n")[1].splitlines()
    assert {line.split("|")[1].strip() for line in headline[2:]} == {"disk", "tmpfs", "seaweed"}
    pngs = sorted((tmp_path / "report" / "plots").glob("*.png"))
    names = {p.name for p in pngs}
    assert {"tiers.png", "accelerators.png", "scaling-fio-disk-random-4k-randread.png",
            "efficiency-fio-disk-random-4k-randread.png", "latency-objects-seaweed-objects-get.png"} <= names
    for png in pngs:
        width, height = png_size(png)
        assert width > 100 and height > 100
        assert f"](plots/{png.name})" in text
    from matplotlib.image import imread

    assert imread(tmp_path / "report" / "plots" / "tiers.png").shape[2] in (3, 4)


def test_report_flags_spread_and_fits_only_enough_points(campaigns, tmp_path):
    text = build(campaigns, tmp_path / "report").read_text()
    scaling = text.split("## Scaling analysis")[1].split("\n\n")[1].splitlines()[2:]
    cells = {(r.split("|")[1].strip(), r.split("|")[4].strip(), r.split("|")[5].strip()): r for r in scaling}
    assert "25.0% ⚠ > 10%" in cells[("disk", "randread", "4KiB qd16")]
    assert "2.0%" in cells[("disk", "randread", "4KiB qd1")] and "⚠" not in cells[("disk", "randread", "4KiB qd1")]
    get = cells[("seaweed", "get", "1MiB")]  # three concurrencies: no fit, and it says so
    assert "not enough points to fit (3 of 6 concurrencies)" in get and "R²" not in get
    disk = cells[("disk", "randread", "4KiB qd1")]
    assert "+0.0 +0.0 +0.0 +0.0 +0.0 +0.0" in disk  # six points exactly on the curve: residuals shown per point


def test_headline_figures(campaigns):
    data, files = load(campaigns)
    assert len(files) == 3
    rows = data.to_pylist()
    heads = {(h.tier, h.engine, h.op): h for h in headlines(rows, series(rows))}
    disk = heads[("disk", "fio", "randread")]
    assert disk.peak_at == "4KiB x16 qd16"  # the USL peak (15.4) rounds to the 16-job point
    assert disk.usl_peak == "15.4" and disk.accelerators is None
    assert disk.knee is not None and 2 <= disk.knee <= 8
    assert heads[("tmpfs", "fio", "randread")].usl_peak == "beyond measured range"
    assert heads[("tmpfs", "dataloader", "load")].accelerators == 5
    assert heads[("seaweed", "dataloader", "load")].accelerators == 1
    assert heads[("seaweed", "objects", "get")].p99_at_peak == pytest.approx(0.16)


def test_html_report_is_self_contained(campaigns, tmp_path):
    report = build(campaigns, tmp_path / "html", fmt="html")
    text = report.read_text()
    assert report.suffix == ".html" and text.count("data:image/png;base64,") >= 5
    assert "src='plots/" not in text and "<td>seaweed</td>" in text


@pytest.mark.parametrize("fmt, link", [("md", "]({})"), ("html", "href='{}'")])
def test_report_links_every_png_and_the_raw_parquet(tmp_path, fmt, link):
    root = tmp_path / "campaigns"  # two small campaigns: a few plots are enough to check the links
    write_results([r for r in fio_rows("disk", DISK) if r["iodepth"] == 1], root / "fio")
    write_results(loader_rows("tmpfs", 2)[:3], root / "loader")
    out = tmp_path / fmt
    text = build(root, out, fmt=fmt).read_text()
    pngs = sorted(out.rglob("*.png"))
    assert len(pngs) >= 5
    for path in pngs + sorted(root.rglob("results.parquet")):
        rel = os.path.relpath(path, out)
        assert link.format(rel) in text, rel


def test_no_results_is_a_user_error(tmp_path):
    from tiering.core.errors import UserError

    with pytest.raises(UserError, match="no results.parquet"):
        build(tmp_path)


@pytest.mark.skipif(shutil.which("fio") is None, reason="fio is not installed")
def test_fio_plot_charts_bench_fio_layout(tmp_path):
    root = tmp_path / "campaign"
    write_results(loader_rows("tmpfs", 1), root)
    folder = root / "disk" / "4k"  # bench-fio's layout: <label>/<bs>/<mode>-<iodepth>-<numjobs>.json
    folder.mkdir(parents=True)
    for numjobs in (1, 2):
        argv = ["fio", "--name=t", f"--directory={tmp_path}", "--rw=randread", "--bs=4k", "--size=256k",
                "--iodepth=1", f"--numjobs={numjobs}", "--group_reporting", "--output-format=json+",
                f"--output={folder / f'randread-1-{numjobs}.json'}"]
        subprocess.run(argv, check=True, capture_output=True, timeout=30)
    text = build(root, tmp_path / "report").read_text()
    charts = sorted((tmp_path / "report" / "fio-plot").glob("*.png"))
    assert len(charts) == 2, text.split("## fio-plot charts")[-1]
    for png in charts:
        png_size(png)
        assert f"](fio-plot/{png.name})" in text


def test_cli_report_says_what_it_is_doing_on_a_terminal(campaigns, tmp_path):
    import shlex
    import sys

    if shutil.which("script") is None:
        pytest.skip("needs script(1) for a terminal")
    argv = [sys.executable, "-m", "tiering", "bench", "report", str(campaigns), "--out", str(tmp_path / "r")]
    done = subprocess.run(["script", "-qec", shlex.join(argv), "/dev/null"], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stdout
    steps = [line.strip() for line in done.stdout.splitlines()]
    assert steps[0].startswith("reading results under ") and "3 file(s)" in steps[1] and "series" in steps[1]
    assert any(s.startswith("drawing plots") for s in steps)
    assert steps[-2:] == [f"writing {tmp_path / 'r' / 'report.md'} ...", str(tmp_path / "r" / "report.md")]
    quiet = subprocess.run(["script", "-qec", shlex.join([*argv, "-q"]), "/dev/null"], capture_output=True, text=True,
                           timeout=120, check=False)
    assert quiet.stdout.strip() == str(tmp_path / "r" / "report.md")  # -q: the path only
    piped = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert piped.stderr == "" and piped.stdout.strip() == str(tmp_path / "r" / "report.md")  # a script's stderr: errors only
