"""Every bench verb's bad values are one line and exit 2, before anything runs: counts of zero or below,
a --label that cannot name a folder, a missing folder, a folder that cannot be written; and fio's tier
takes its name from the config when --label is not given."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

needs_fio = pytest.mark.skipif(shutil.which("fio") is None, reason="fio is not installed (Debian: apt-get install fio)")


def bench_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TIERING_CONFIG"}
    return subprocess.run([sys.executable, "-m", "tiering", "bench", *args], capture_output=True, text=True,
                          timeout=60, check=False, cwd=cwd, env=env)


def one_line_error(done: subprocess.CompletedProcess[str], says: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert len(done.stderr.splitlines()) == 1 and done.stdout == "", done.stderr
    assert done.stderr.startswith(f"tiering: error: {says}"), done.stderr


def config(tmp_path: Path) -> Path:
    (tmp_path / "hot").mkdir()
    (tmp_path / "cap").mkdir()
    cfg = tmp_path / "tiering.toml"
    cfg.write_text('[hot]\npath = "hot"\n[catalog]\npath = "state/c.db"\n[tiers.hdd]\nurl = "cap"\n')
    return cfg


@needs_fio
@pytest.mark.parametrize("args, says", [
    (["--repeats", "0"], "--repeats: '0': expected a positive value"),  # was click's four-line usage text
    (["--repeats", "-1"], "--repeats: '-1': expected a positive value"),
    (["--repeats", "two"], "--repeats: 'two' is not a whole number"),
    (["--numjobs", "0"], "--numjobs: expected positive values"),
    (["--iodepth", "1,-2"], "--iodepth: expected positive values"),
    (["--runtime", "0"], "--runtime: 0: expected a positive number of seconds"),
    (["--ramp", "-1"], "--ramp: -1: expected 0 or more seconds"),
    (["--label", "nvme 0*"], "--label: 'nvme 0*': expected a tier name"),
    (["--label", ".."], "--label: '..': expected a tier name"),
    (["--label", "a/b"], "--label: 'a/b': expected a tier name"),
])
def test_fio_bad_values_are_one_line(tmp_path, args, says):
    one_line_error(bench_cli("fio", "--target", str(tmp_path), "--profile", "randread-4k", *args, "--dry-run"), says)


@pytest.mark.parametrize("args, says", [
    (["--batch", "0"], "--batch: 0: expected 1 or more"),  # these five were click's four-line usage text
    (["--samples", "-3"], "--samples: -3: expected 1 or more"),
    (["--epochs", "0"], "--epochs: 0: expected 1 or more"),
    (["--compute-ms", "-1"], "--compute-ms: -1: expected 0 or more"),
    (["--max-accelerators", "0"], "--max-accelerators: 0: expected 1 or more"),
    (["--cache", "hot"], "--cache: 'hot': expected one of cold, warm"),
])
def test_dataloader_bad_values_are_one_line(tmp_path, args, says):
    cfg = config(tmp_path)
    one_line_error(bench_cli("dataloader", "--tier", "hot", "--config", str(cfg), *args, "--dry-run"), says)


@pytest.fixture
def read_only(tmp_path) -> Path:
    """A read-only tmpfs: not writable even by root (as a read-only NFS export or a full quota would be)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only tmpfs needs root")
    mount = tmp_path / "ro"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


@needs_fio
def test_fio_target_and_out_must_be_writable(tmp_path, read_only):
    # Before, a read-only target printed the table header and failed after laying out (exit 1);
    # a read-only --out failed only when the first point's results were written.
    one_line_error(bench_cli("fio", "--target", str(read_only), "--profile", "randread-4k", "-n"),
                   f"--target: {read_only} is not writable")
    one_line_error(bench_cli("fio", "--target", str(tmp_path), "--profile", "randread-4k", "--out",
                             str(read_only / "results"), "-n"), f"--out: {read_only / 'results'}: {read_only} is not")


def test_objects_dataloader_and_report_check_their_folders_first(tmp_path, read_only):
    cfg = config(tmp_path)
    out = str(read_only / "results")
    says = f"--out: {out}: {read_only} is not writable"
    one_line_error(bench_cli("objects", "--tier", "hdd", "--config", str(cfg), "--out", out, "-n"), says)
    one_line_error(bench_cli("dataloader", "--tier", "hot", "--config", str(cfg), "--out", out, "-n"), says)
    one_line_error(bench_cli("report", str(tmp_path), "--out", out), says)
    one_line_error(bench_cli("report", str(tmp_path / "absent")), f"{tmp_path / 'absent'}: not an existing directory")


@needs_fio
def test_fio_names_the_tier_as_the_config_does(tmp_path, monkeypatch):
    from tiering.cli.bench_cmd import _found_config, _tier_of
    from tiering.config import load_config

    cfg = config(tmp_path)
    (tmp_path / "hot" / "bench").mkdir()
    (tmp_path / "scratch").mkdir()
    done = bench_cli("fio", "--target", str(tmp_path / "hot" / "bench"), "--profile", "randread-4k", "-n", "--json",
                     "--config", str(cfg))
    assert done.returncode == 0 and json.loads(done.stdout)["tier"] == "hot", done.stderr  # was "bench"
    assert _tier_of(tmp_path / "cap", load_config(cfg)) == "hdd"
    assert _tier_of(tmp_path / "scratch", load_config(cfg)) is None  # on no tier: the folder's name will do
    monkeypatch.delenv("TIERING_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path / "scratch")  # no tiering.toml here
    assert _found_config(None) is None and _tier_of(tmp_path / "hot" / "bench", None) is None


@needs_fio
def test_the_configs_bench_table_asks_for_cache_drops_and_direct_io_still_never_does(tmp_path):
    cfg = config(tmp_path)
    (tmp_path / "hot" / "bench").mkdir()
    args = ("fio", "--target", str(tmp_path / "hot" / "bench"), "--profile", "randread-4k", "-n", "--json",
            "--config", str(cfg))
    assert json.loads(bench_cli(*args).stdout)["drop_caches"] is False  # off unless asked
    cfg.write_text(cfg.read_text() + "\n[bench]\ndrop_caches = true\n")
    assert json.loads(bench_cli(*args).stdout)["drop_caches"] is True
    assert json.loads(bench_cli(*args, "--direct").stdout)["drop_caches"] is False
    cfg.write_text(cfg.read_text().replace("drop_caches = true", 'drop_caches = "yes"'))
    bad = bench_cli(*args)
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1 and "drop_caches" in bad.stderr, bad.stderr
