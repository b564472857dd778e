"""fio sweeps: profiles, job files, the json+ parser against fio's own figures, layout, manifest, CLI.

Every run is a real fio (the Debian package) on a temp directory, one second
per point. How the parser is checked against fio:

- percentiles: fio's own percentile list is reproduced *exactly* from the
  json+ bins, for every job of a multi-job run and for the merged histogram of
  a ``group_reporting`` run;
- merging: one fio invocation reports per-job figures and fio's own total for
  the very same I/Os (two fio clients on one fio server: ``client_stats`` holds
  each job plus fio's "All clients" sum), and our merge of the jobs equals that
  total: I/O count, bytes, IOPS and the sample-weighted mean latency.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from bench.fio import parse as fio_parse
from bench.fio.sweep import bs_label, open_campaign, run_campaign
from bench.fio.env import MEMORY_FILESYSTEMS, mount_of
from bench.fio.profiles import (
    ProfileError,
    available,
    job_file,
    load_profile,
    profile_dirs,
)
from bench.results import SCHEMA
from tiering.core.errors import UserError

pytestmark = pytest.mark.skipif(shutil.which("fio") is None, reason="fio is not installed (Debian: apt-get install fio)")

MiB = 1 << 20
JOB = """[{name}]
directory={directory}
rw=randread
bs=4096
size=4194304
ioengine=libaio
iodepth=4
numjobs={numjobs}
time_based=1
runtime=1
{extra}
"""


def fio_json(tmp_path: Path, *, numjobs: int = 3, extra: str = "") -> dict:
    job = tmp_path / f"job-{numjobs}-{len(extra)}.fio"
    job.write_text(JOB.format(name="job", directory=tmp_path, numjobs=numjobs, extra=extra))
    done = subprocess.run(["fio", "--output-format=json+", str(job)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout[done.stdout.index("{"):])


def assert_reproduces_fio_percentiles(clat: dict) -> None:
    bins = fio_parse.merge_bins([clat["bins"]])
    assert sum(bins.values()) == clat["N"] and len(clat["percentile"]) == 17  # fio's default list
    for key, value in clat["percentile"].items():
        assert fio_parse.percentile(bins, float(key), clat["N"]) == value, f"p{key}"


def test_percentiles_reproduce_fio_for_every_job(tmp_path):
    jobs = fio_json(tmp_path, numjobs=3)["jobs"]
    assert len(jobs) == 3
    for job in jobs:
        assert_reproduces_fio_percentiles(job["read"]["clat_ns"])


def test_percentiles_reproduce_fio_on_its_merged_group_histogram(tmp_path):
    (group,) = fio_json(tmp_path, numjobs=3, extra="group_reporting=1")["jobs"]
    assert group["job options"]["numjobs"] == "3"
    assert_reproduces_fio_percentiles(group["read"]["clat_ns"])


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the rounding case is specific to x87 long double")
def test_rank_rounds_like_fios_long_double():
    # 30/100*100 is 30.000000000000000002 in x87 long double, so fio needs 31 samples.
    assert fio_parse.percentile({1000: 30, 2000: 70}, 30.0) == 2000
    assert fio_parse.percentile({1000: 50, 2000: 50}, 50.0) == 1000
    assert fio_parse.percentile({}, 99.0) is None


def assert_per_job_iops_add_up(jobs: list[dict], total_iops: float) -> None:
    """Per-job IOPS sum to the total, up to the spread of job runtimes (fio divides the sum by the longest)."""
    runtimes = [j["read"]["runtime"] for j in jobs]
    per_job = sum(j["read"]["iops"] for j in jobs)
    assert total_iops * (1 - 1e-9) <= per_job <= total_iops * max(runtimes) / min(runtimes) * (1 + 1e-9)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fio_server(tmp_path):
    port = _free_port()
    server = subprocess.Popen(["fio", f"--server=ip:127.0.0.1,{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail("fio --server did not start listening")
            time.sleep(0.05)
    yield f"ip:127.0.0.1,{port}"
    server.terminate()
    server.wait(10)


def test_merged_jobs_equal_fios_own_total_for_the_same_run(tmp_path, fio_server):
    # Two clients of one fio server: fio reports every job *and* sums them ("All clients").
    args = ["fio", "--output-format=json+"]
    for name in ("a", "b"):
        job = tmp_path / f"{name}.fio"
        job.write_text(JOB.format(name=name, directory=tmp_path, numjobs=2, extra=""))
        args += [f"--client={fio_server}", str(job)]
    done = subprocess.run(args, capture_output=True, text=True, check=True, timeout=60)
    stats = json.loads(done.stdout[done.stdout.index("\n{") + 1:])["client_stats"]
    jobs = [s for s in stats if s["jobname"] != "All clients"]
    (total,) = [s["read"] for s in stats if s["jobname"] == "All clients"]
    assert len(jobs) == 4
    merged = fio_parse.merge_jobs(jobs, "read")
    assert merged["bytes"] == total["io_bytes"]
    assert merged["iops"] == pytest.approx(total["iops"], rel=1e-9)
    assert merged["lat_mean_s"] * 1e9 == pytest.approx(total["clat_ns"]["mean"], rel=1e-9)
    assert sum(fio_parse.merge_bins(j["read"]["clat_ns"]["bins"] for j in jobs).values()) == total["clat_ns"]["N"]
    assert_per_job_iops_add_up(jobs, total["iops"])
    for job in jobs:
        assert_reproduces_fio_percentiles(job["read"]["clat_ns"])


# -- profiles ---------------------------------------------------------------


def test_builtin_profiles_load_and_make_job_files(tmp_path):
    assert {"small-files", "large-shards", "randread-4k", "checkpoint"} <= set(available(profile_dirs()))
    small = load_profile("small-files")
    text = job_file(small, tmp_path, bs=131072, numjobs=4, iodepth=16, runtime=2, ramp=0.5, direct=True, size=4 * MiB)
    lines = set(text.splitlines())
    assert {"rw=randread", "file_service_type=random", "filesize=131072", "nrfiles=32", "size=4194304", "bs=131072",
            "numjobs=4", "iodepth=16", "time_based=1", "runtime=2", "ramp_time=500ms", "direct=1"} <= lines
    checkpoint = load_profile("checkpoint")
    assert checkpoint.mode == "write" and checkpoint.options["end_fsync"] == "1" and not checkpoint.reads


def test_user_profile_dir_adds_and_shadows(tmp_path):
    (tmp_path / "mixed.toml").write_text('description = "mine"\n[fio]\nrw = "randrw"\nsize = "2MiB"\n[sweep]\nbs = ["8KiB"]\n')
    (tmp_path / "checkpoint.toml").write_text('[fio]\nrw = "write"\nsize = "1MiB"\n')
    assert load_profile("mixed", tmp_path).sweep["bs"] == (8192,)
    assert load_profile("checkpoint", tmp_path).options == {"rw": "write", "size": str(MiB)}


@pytest.mark.parametrize("text, expected", [
    ('[fio]\nrw = "read"\nnumjobs = 4\n', "numjobs is set by the sweep"),
    ('[fio]\nsize = "1GiB"\n', "must set rw"),
    ('[fio]\nrw = "read"\nsize = "1 parsec"\n', "size"),
    ('[fio]\nrw = "read"\n[sweep]\nqd = [1]\n', "[sweep] qd"),
])
def test_malformed_profile_is_one_line_naming_the_file(tmp_path, text, expected):
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(ProfileError) as err:
        load_profile("bad", tmp_path)
    assert expected in str(err.value) and "bad.toml" in str(err.value) and "\n" not in str(err.value)


def test_unknown_profile_suggests_the_closest():
    with pytest.raises(ProfileError, match="did you mean 'small-files'"):
        load_profile("smal-files")


# -- campaigns --------------------------------------------------------------


def campaign(target: Path, out: Path, profile: str = "randread-4k", **options):
    options = {"numjobs": "1", "iodepth": "1", "runtime": 1, "ramp": 0, "size": "2MiB", "out": out, "repeats": 1, **options}
    return run_campaign(open_campaign(target, profile, **options))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    (root / "disk").mkdir()
    return campaign(root / "disk", root / "out", numjobs="1,2", iodepth="1,2", size="4MiB")


def test_layout_is_bench_fios(sweep):
    out = sweep.campaign.out_dir
    for qd in (1, 2):
        for nj in (1, 2):
            result = out / "disk" / "4k" / f"randread-{qd}-{nj}.json"
            data = json.loads(result.read_text())
            assert data["jobs"][0]["job options"]["iodepth"] == str(qd)
            assert "bins" in data["jobs"][0]["read"]["clat_ns"]  # json+
            assert f"numjobs={nj}" in result.with_suffix(".fio").read_text().splitlines()
    assert not (sweep.campaign.target / "tiering-bench-fio").exists()  # data files removed


def test_fio_plot_charts_the_layout(sweep, tmp_path):
    fio_plot = Path(sys.executable).with_name("fio-plot")
    if not fio_plot.exists():
        pytest.skip("fio-plot is not installed (pip install fio-plot)")
    png = tmp_path / "iops.png"
    subprocess.run([str(fio_plot), "-i", str(sweep.campaign.out_dir / "disk" / "4k"), "-T", "tiering", "-L", "-t", "iops",
                    "-r", "randread", "-d", "1", "2", "-n", "1", "2", "-o", str(png)],
                   check=True, capture_output=True, cwd=tmp_path, timeout=120, env={**os.environ, "MPLBACKEND": "Agg"})
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_parquet_rows_follow_the_schema_and_fio(sweep):
    data = pq.read_table(sweep.results_path)
    assert data.schema.equals(SCHEMA, check_metadata=False)
    rows = data.to_pylist()
    assert [(r["iodepth"], r["numjobs"]) for r in rows] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    for row in rows:
        assert row["engine"] == "fio" and row["op"] == "randread" and row["block_size"] == 4096
        assert row["tier"] == "disk" and row["profile"] == "randread-4k" and row["campaign"] == sweep.campaign.id
        jobs = json.loads((sweep.campaign.out_dir / row["result_path"]).read_text())["jobs"]
        assert len(jobs) == row["numjobs"]
        assert row["bytes"] == sum(j["read"]["io_bytes"] for j in jobs)
        ios, runtime = sum(j["read"]["total_ios"] for j in jobs), max(j["read"]["runtime"] for j in jobs)
        assert row["iops"] == pytest.approx(ios / runtime * 1000, rel=1e-12)
        assert_per_job_iops_add_up(jobs, row["iops"])
        assert 0 < row["lat_p50_s"] <= row["lat_p99_s"] <= row["lat_p999_s"]
        assert row["bw_bytes_s"] == pytest.approx(row["iops"] * 4096, rel=1e-9)


def test_manifest_records_the_environment(sweep):
    manifest = json.loads(sweep.manifest_path.read_text())
    mount = mount_of(sweep.campaign.target)
    assert manifest["fio_version"].startswith("fio-")
    assert os.uname().release in manifest["kernel"]
    assert manifest["mount"]["fstype"] == mount.fstype and manifest["mount"]["options"]
    assert manifest["device"]["source"] == mount.source
    assert manifest["ram_bytes"] > 0 and manifest["dataset_bytes"] == 2 * 4 * MiB
    assert manifest["dataset_to_ram"] == pytest.approx(8 * MiB / manifest["ram_bytes"])
    assert manifest["direct"] is False and manifest["cache_drop"]["requested"] is False  # dropping is opt-in
    assert manifest["cache_drop"]["points_dropped"] == 0 and not any(p["cache_dropped"] for p in manifest["points"])
    revision = manifest["git"]["revision"]
    assert revision == "unknown" or len(revision) == 40
    assert manifest["profile"]["options"]["rw"] == "randread"
    for point in manifest["points"]:
        assert (sweep.campaign.out_dir / point["job_file"]).is_file()
        assert (sweep.campaign.out_dir / point["result"]).is_file()


@pytest.fixture
def tmpfs(tmp_path):
    if os.geteuid() != 0:
        shm = Path("/dev/shm")
        if mount_of(shm) is None or mount_of(shm).fstype != "tmpfs":
            pytest.skip("needs root to mount a tmpfs, or a tmpfs /dev/shm")
        target = shm / f"tiering-fio-test-{os.getpid()}"
        target.mkdir()
        yield target
        shutil.rmtree(target, ignore_errors=True)
        return
    target = tmp_path / "tmpfs"
    target.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(target)], check=True)
    yield target
    subprocess.run(["umount", str(target)], check=False)


def test_tmpfs_target_warns_in_every_row_and_the_manifest(tmpfs, tmp_path):
    result = campaign(tmpfs, tmp_path / "out", numjobs="1,2")
    rows = pq.read_table(result.results_path).to_pylist()
    assert len(rows) == 2 and all("tmpfs" in r["warning"] for r in rows)
    assert "tmpfs" in json.loads(result.manifest_path.read_text())["warning"]


def test_direct_io_on_a_disk_directory_has_no_warning(tmp_path):
    mount = mount_of(tmp_path)
    if mount is None or mount.fstype in MEMORY_FILESYSTEMS:
        pytest.skip(f"{tmp_path} is not on a disk-backed filesystem")
    try:
        os.close(os.open(tmp_path / "probe", os.O_CREAT | os.O_WRONLY | os.O_DIRECT))
    except OSError:
        pytest.skip(f"{mount.fstype} at {mount.mount_point} does not support O_DIRECT")
    (tmp_path / "disk").mkdir()
    result = campaign(tmp_path / "disk", tmp_path / "out", direct=True)
    assert [r["warning"] for r in pq.read_table(result.results_path).to_pylist()] == [None]
    manifest = json.loads(result.manifest_path.read_text())
    assert manifest["warning"] is None and manifest["direct"] is True


def test_buffered_reads_of_a_small_data_set_warn_without_a_cache_drop(tmp_path):
    (tmp_path / "disk").mkdir()
    result = campaign(tmp_path / "disk", tmp_path / "out", drop_caches=False)
    assert "page cache" in result.points[0].warning


@pytest.mark.parametrize("profile, op", [("small-files", "randread"), ("large-shards", "read"), ("checkpoint", "write")])
def test_each_builtin_profile_runs(tmp_path, profile, op):
    (tmp_path / "t").mkdir()
    result = campaign(tmp_path / "t", tmp_path / "out", profile, bs="64KiB", size="1MiB", drop_caches=False)
    (row,) = result.points[0].rows
    assert row["op"] == op and row["bytes"] > 0 and row["lat_p99_s"] > 0
    assert (tmp_path / "out" / "t" / bs_label(65536) / f"{op}-1-1.json").is_file()


def test_mixed_profile_gives_a_row_per_direction(tmp_path):
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "mixed.toml").write_text('[fio]\nrw = "randrw"\nsize = "1MiB"\n')
    (tmp_path / "t").mkdir()
    result = campaign(tmp_path / "t", tmp_path / "out", "mixed", profile_dir=tmp_path / "profiles", bs="4KiB", drop_caches=False)
    assert [r["op"] for r in result.points[0].rows] == ["randrw:read", "randrw:write"]


def test_bad_sweep_values_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="--bs"):
        open_campaign(tmp_path, "randread-4k", bs="4XB")
    with pytest.raises(UserError, match="--numjobs"):
        open_campaign(tmp_path, "randread-4k", numjobs="0")
    (tmp_path / "nosize.toml").write_text('[fio]\nrw = "read"\n')
    with pytest.raises(ProfileError, match="sets no size"):
        open_campaign(tmp_path, "nosize", profile_dir=tmp_path)
    assert open_campaign(tmp_path, "nosize", profile_dir=tmp_path, size="1MiB").size == MiB


# -- the command line --------------------------------------------------------


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from tiering.cli import main; main()", "bench", "fio", *args],
                          check=False, capture_output=True, text=True, env=env, timeout=120)


def test_cli_runs_a_point_and_prints_it(tmp_path):
    (tmp_path / "t").mkdir()
    done = cli("--target", str(tmp_path / "t"), "--profile", "randread-4k", "--numjobs", "2", "--iodepth", "1",
               "--runtime", "1", "--ramp", "0", "--size", "1MiB", "--no-drop-caches", "--out", str(tmp_path / "out"), "--json")
    assert done.returncode == 0, done.stderr
    row, paths = [json.loads(line) for line in done.stdout.splitlines()]
    assert row["numjobs"] == 2 and row["iops"] > 0 and "page cache" in row["warning"]
    assert Path(paths["results"]).is_file() and Path(paths["manifest"]).is_file()


def test_cli_unknown_profile_suggests_the_closest(tmp_path):
    done = cli("--target", str(tmp_path), "--profile", "large-shard")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "did you mean 'large-shards'" in done.stderr


def test_cli_missing_target_is_one_line(tmp_path):
    done = cli("--target", str(tmp_path / "absent"), "--profile", "randread-4k")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "absent" in done.stderr


def test_cli_missing_fio_is_one_line(tmp_path):
    done = cli("--target", str(tmp_path), "--profile", "randread-4k", env={**os.environ, "PATH": str(tmp_path)})
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "fio not found" in done.stderr
