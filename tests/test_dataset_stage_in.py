"""Datasets staged in as units: ``tiering restore --dataset`` and the access guard's dataset read-ahead.

Real files on a posix capacity tier (the CLI) and on SeaweedFS behind a real ``tiering guard`` over a
loop-mounted ext4 (the guard, as root).
"""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from conftest import is_root
from guard_setup import guarded_setup, read_in_process
from unattended import make_file, tiering, write_setup

DATASETS = ('[[rules]]\nname = "keep"\nmatch = \'size < 0\'\naction = "release"\n'
            '[datasets]\ndirs = ["ds/*"]\nmarkers = [".dataset"]\n')
NO_DATASETS = '[[rules]]\nname = "keep"\nmatch = \'size < 0\'\naction = "release"\n'


def released_setup(tmp_path, policy: str = DATASETS):
    """Two datasets by glob (ds/a spread over sub-folders, ds/b), one by marker (m/set), loose files; all released."""
    cfg = write_setup(tmp_path, policy)
    hot = tmp_path / "hot"
    names = ([f"ds/a/{sub}/{i}.bin" for sub in ("p", "q") for i in range(3)] + ["ds/b/0.bin", "ds/b/1.bin"]
             + ["m/set/x/0.bin", "m/set/1.bin", "m/set/inner/.dataset", "m/set/inner/2.bin", "loose/0.bin"])
    for i, name in enumerate(names):
        make_file(hot / name, 1000 + i)
    (hot / "m/set/.dataset").write_bytes(b"")  # (a marker stays resident: an empty file is not released)
    (hot / "m/set/inner/.dataset").write_bytes(b"")
    released = [n for n in names if not n.endswith(".dataset")]
    done = tiering("release", "-c", str(cfg), *[str(hot / n) for n in released])
    assert done.returncode == 0, done.stderr
    return cfg, hot, released


def staged(hot, names) -> set[str]:
    return {n for n in names if (hot / n).stat().st_size > 0}


def test_restore_dataset_brings_back_every_file_of_the_named_paths_datasets(tmp_path):
    cfg, hot, names = released_setup(tmp_path)
    run = tiering("restore", "--dataset", "--json", "-c", str(cfg), str(hot / "ds/a/q/1.bin"), str(hot / "m/set/x"))
    assert run.returncode == 0, run.stderr
    want = {n for n in names if n.startswith("ds/a/")} | {"m/set/x/0.bin", "m/set/1.bin"}
    assert staged(hot, names) == want  # ds/b, the nested m/set/inner dataset and loose files stay stubs
    assert json.loads(run.stdout.strip().splitlines()[-1])["actions"] == {"restore": {"done": len(want)}}


def test_restore_dataset_of_a_folder_holding_datasets_takes_each_whole(tmp_path):
    cfg, hot, names = released_setup(tmp_path)
    run = tiering("restore", "--dataset", "-c", str(cfg), str(hot / "ds"))
    assert run.returncode == 0, run.stderr
    assert staged(hot, names) == {n for n in names if n.startswith("ds/")}


def test_restore_dataset_of_a_path_in_no_dataset_fails_it_by_name(tmp_path):
    cfg, hot, names = released_setup(tmp_path)
    run = tiering("restore", "--dataset", "-c", str(cfg), str(hot / "loose/0.bin"), str(hot / "ds/b/0.bin"))
    assert run.returncode == 1
    assert "loose/0.bin" in run.stderr and "in no dataset" in run.stderr
    assert staged(hot, names) == {"ds/b/0.bin", "ds/b/1.bin"}  # the others still ran


def test_restore_dataset_without_datasets_in_the_policy_is_a_usage_error(tmp_path):
    cfg, hot, names = released_setup(tmp_path, NO_DATASETS)
    run = tiering("restore", "--dataset", "-c", str(cfg), str(hot / "ds/a/p/0.bin"))
    assert run.returncode == 2 and "declares no datasets" in run.stderr, run.stderr
    assert staged(hot, names) == set()


def test_restore_dataset_dry_run_names_the_files(tmp_path):
    cfg, hot, names = released_setup(tmp_path)
    run = tiering("restore", "--dataset", "-n", "-c", str(cfg), str(hot / "ds/b/1.bin"))
    assert run.returncode == 0, run.stderr
    assert "would restore ds/b/0.bin" in run.stdout and "would restore ds/b/1.bin" in run.stdout
    assert staged(hot, names) == set()


# -- the access guard --------------------------------------------------------------------------------------

GUARD_POLICY = ('[[rules]]\nname = "keep"\nmatch = \'size < 0\'\naction = "release"\n'
                '[watermark]\nhigh = 0.99\nlow = 0.9\n[datasets]\ndirs = ["ds/*"]\n')
DATASET = [f"ds/a/p/{i}.bin" for i in range(3)] + ["ds/a/q/0.bin", "ds/a/q/1.bin"]
OUTSIDE = ["ds/b/0.bin", "other/0.bin"]


@pytest.fixture
def gd(ext4_loop, tmp_path, seaweed):
    """A guarded hot tier on ext4 (SeaweedFS's S3 as its tier) whose config names a policy with datasets ds/*;
    the 5-file dataset ds/a (two folders), another dataset and a loose file, all released. Guard not started."""
    if not is_root():
        pytest.skip("fanotify permission events need root")
    setup = guarded_setup(ext4_loop / tmp_path.name, tmp_path, seaweed.endpoint)
    (tmp_path / "policy.toml").write_text(GUARD_POLICY)
    setup.config.write_text(f'policy = "{tmp_path}/policy.toml"\n' + setup.config.read_text())
    setup.write({name: os.urandom(30_000 + i) for i, name in enumerate(DATASET + OUTSIDE)})
    setup.release()
    yield setup
    setup.stop_guard()
    shutil.rmtree(setup.guard_dir, ignore_errors=True)
    shutil.rmtree(setup.hot, ignore_errors=True)


def wait_restored(g, names, timeout: float = 20) -> set[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any((g.hot / n).stat().st_size == 0 for n in names):
        time.sleep(0.1)
    return {n for n in names if (g.hot / n).stat().st_size > 0}


def test_a_read_in_a_dataset_stages_the_whole_dataset_in(gd):
    gd.start_guard()
    assert read_in_process(["cat", str(gd.hot / "ds/a/p/1.bin")]).stdout == gd.files["ds/a/p/1.bin"]
    assert wait_restored(gd, DATASET) == set(DATASET)
    for name in DATASET:  # verified, the guard's own restore path
        assert (gd.hot / name).read_bytes() == gd.files[name]
    time.sleep(1.0)
    assert all((gd.hot / n).stat().st_size == 0 for n in OUTSIDE)  # another dataset, a loose file: stubs
    assert "ds/a/p/1.bin: staging in 4 more file(s) of its dataset" in gd.stop_guard()


def test_with_stage_datasets_false_only_the_folder_read_ahead_happens(gd):
    gd.config.write_text(gd.config.read_text().replace("[guard]\n", "[guard]\nstage_datasets = false\n"))
    gd.start_guard()
    assert read_in_process(["cat", str(gd.hot / "ds/a/p/1.bin")]).stdout == gd.files["ds/a/p/1.bin"]
    assert wait_restored(gd, ["ds/a/p/2.bin"]) == {"ds/a/p/2.bin"}  # the folder's read-ahead
    time.sleep(1.5)
    assert all((gd.hot / n).stat().st_size == 0 for n in ["ds/a/p/0.bin", "ds/a/q/0.bin", "ds/a/q/1.bin", *OUTSIDE])


def test_stage_in_stops_at_the_high_watermark(gd):
    st = os.statvfs(gd.hot)
    full = (st.f_blocks - st.f_bfree) / st.f_blocks  # the hot tier is at its high watermark already
    (gd.config.parent / "policy.toml").write_text(GUARD_POLICY.replace("high = 0.99\nlow = 0.9",
                                                                       f"high = {full:.9f}\nlow = {full / 2:.9f}"))
    gd.start_guard()
    assert read_in_process(["cat", str(gd.hot / "ds/a/p/1.bin")]).stdout == gd.files["ds/a/p/1.bin"]
    assert wait_restored(gd, ["ds/a/p/2.bin"]) == {"ds/a/p/2.bin"}  # the folder's read-ahead is not bounded
    time.sleep(1.5)
    assert all((gd.hot / n).stat().st_size == 0 for n in ["ds/a/p/0.bin", "ds/a/q/0.bin", "ds/a/q/1.bin"])
    assert "staging in" not in gd.stop_guard()


def test_within_takes_files_in_order_until_one_does_not_fit():
    from tiering.access.stagein import within

    sizes = {b"a": 10, b"b": 20, b"c": 5, b"d": 1}
    assert within(list(sizes), sizes.__getitem__, 35) == [b"a", b"b", b"c"]
    assert within(list(sizes), sizes.__getitem__, 29) == [b"a"]  # c would fit, but a dataset comes in from its start
    assert within(list(sizes), sizes.__getitem__, -1) == []
