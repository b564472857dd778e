"""Nothing tiering writes may overlap the hot tier: checked on load and again at every run.

Real folders and real symlinks; the CLI runs as a real subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tiering.config import load_config
from tiering.core.errors import ConfigError

OSS = ('url = "oss://my-bucket"\nendpoint = "https://oss-cn-hangzhou.aliyuncs.com"\n'
       'checkpoint_dir = "{ckpt}"\n')


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tiering", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "TIERING_CONFIG": ""})


def config(root: Path, *, hot: str = "hot", catalog: str = "state/c.db", tier: str = 'url = "cap"') -> Path:
    (root / "hot").mkdir(exist_ok=True)
    (root / "state").mkdir(exist_ok=True)
    path = root / "t.toml"
    path.write_text(f'[hot]\npath = "{hot}"\n[catalog]\npath = "{catalog}"\n[tiers.h]\n{tier}\n')
    return path


def test_capacity_tier_that_is_the_hot_tier_is_refused_and_release_deletes_nothing(tmp_path):
    """The issue's reproduction: `config check` said ok and `release hot/x.bin` deleted x.bin."""
    cfg = config(tmp_path, tier='url = "hot"')
    data = os.urandom(7000)
    (tmp_path / "hot" / "x.bin").write_bytes(data)
    check = cli("config", "check", str(cfg), cwd=tmp_path)
    assert check.returncode == 2, check.stdout + check.stderr
    assert "ok:" not in check.stdout and "Traceback" not in check.stderr
    [line] = check.stderr.splitlines()
    assert f"[tiers.h] url: {tmp_path}/hot is the hot tier {tmp_path}/hot" in line
    release = cli("release", "-c", str(cfg), "hot/x.bin", cwd=tmp_path)
    assert release.returncode == 2, release.stdout + release.stderr
    assert len(release.stderr.splitlines()) == 1 and "is the hot tier" in release.stderr
    assert (tmp_path / "hot" / "x.bin").read_bytes() == data


@pytest.mark.parametrize("tier, problem", [
    ('url = "cap/../hot"', "is the hot tier"),
    ('url = "hot/cap"', "lies inside the hot tier"),
    ('url = "."', "contains the hot tier"),
    ('url = "file://hot/sub/../cap"', "lies inside the hot tier"),
])
def test_capacity_tier_overlapping_the_hot_tier_is_refused(tmp_path, tier, problem):
    with pytest.raises(ConfigError) as caught:
        load_config(config(tmp_path, tier=tier))
    message = str(caught.value)
    assert "\n" not in message and f"[tiers.h] url: {tmp_path}" in message
    assert f"{problem} {tmp_path}/hot;" in message


def test_capacity_tier_symlinked_to_the_hot_tier_is_refused(tmp_path):
    (tmp_path / "hot").mkdir()
    (tmp_path / "cap").symlink_to(tmp_path / "hot")
    with pytest.raises(ConfigError, match=rf"url: {tmp_path}/cap \(really {tmp_path}/hot\) is the hot tier"):
        load_config(config(tmp_path))


def test_hot_tier_inside_a_capacity_tier_through_a_symlink_is_refused(tmp_path):
    (tmp_path / "disk" / "cap").mkdir(parents=True)
    (tmp_path / "disk" / "cap" / "hot").mkdir()
    (tmp_path / "hot_link").symlink_to(tmp_path / "disk" / "cap" / "hot")
    with pytest.raises(ConfigError, match="contains the hot tier hot_link|contains the hot tier .*hot_link"):
        load_config(config(tmp_path, hot="hot_link", tier='url = "disk/cap"'))


@pytest.mark.parametrize("catalog", ["hot/c.db", "hot/state/deeper/c.db", "state/../hot/c.db"])
def test_catalog_inside_the_hot_tier_is_refused(tmp_path, catalog):
    with pytest.raises(ConfigError, match=r"\[catalog\] path: .* lies inside the hot tier"):
        load_config(config(tmp_path, catalog=catalog))


def test_inventory_folder_that_is_the_hot_tier_is_refused(tmp_path):
    """Snapshots go to <catalog folder>/inventory: a hot tier of that name would be written into."""
    with pytest.raises(ConfigError, match=r"inventory folder\): .* is the hot tier"):
        load_config(config(tmp_path, hot="state/inventory", catalog="state/c.db"))


def test_oss_checkpoint_dir_inside_the_hot_tier_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"\[tiers.h\] checkpoint_dir: .* lies inside the hot tier"):
        load_config(config(tmp_path, tier=OSS.format(ckpt="hot/.ckpt")))


@pytest.mark.parametrize("trace", ["hot/.trace", "hot", "."])
def test_a_trace_folder_overlapping_the_hot_tier_is_refused(tmp_path, trace):
    """The daemon would record, scan and archive its own trace files as accesses and data."""
    cfg = config(tmp_path)
    cfg.write_text(cfg.read_text() + f'[trace]\ndir = "{trace}"\n')
    with pytest.raises(ConfigError, match=r"\[trace\] dir: .* (lies inside|is|contains) the hot tier"):
        load_config(cfg)


def test_locations_apart_from_the_hot_tier_are_accepted(tmp_path):
    """Siblings, a catalog folder that holds the hot tier beside its files, paths that do not exist yet."""
    assert load_config(config(tmp_path)).tiers["h"].url == str(tmp_path / "cap")
    assert load_config(config(tmp_path, catalog="c.db", tier='url = "not/yet/cap"'))
    assert load_config(config(tmp_path, hot="hot2/x", tier=OSS.format(ckpt="state/ckpt")))
    (tmp_path / "capacity").mkdir()
    (tmp_path / "cap_link").symlink_to(tmp_path / "capacity")
    assert load_config(config(tmp_path, tier='url = "cap_link"'))


def test_a_symlink_swapped_in_after_loading_is_refused_at_run_time(tmp_path):
    """The config was fine when loaded; the run finds the capacity folder now points at the hot tier."""
    from tiering.config import check_locations
    from tiering.ops.session import mover_session
    from tiering.scan import fresh_snapshot

    (tmp_path / "cap").mkdir()
    cfg = load_config(config(tmp_path))
    (tmp_path / "hot" / "x.bin").write_bytes(b"precious")
    (tmp_path / "cap").rmdir()
    (tmp_path / "cap").symlink_to(tmp_path / "hot")
    with pytest.raises(ConfigError, match="is the hot tier"):
        check_locations(cfg)
    with pytest.raises(ConfigError, match="is the hot tier"), mover_session(cfg, "release"):
        pass  # pragma: no cover  (never entered)
    with pytest.raises(ConfigError, match="is the hot tier"):
        fresh_snapshot(cfg)
    assert not (tmp_path / "state" / "c.db").exists()  # refused before the catalog was opened
    assert (tmp_path / "hot" / "x.bin").read_bytes() == b"precious"


# -- paths no system call can take ------------------------------------------------


@pytest.mark.parametrize("key, value", [("[hot]\npath", "hot\\u0000x"), ("[catalog]\npath", "state/c\\u0000.db"),
                                        ("[tiers.h]\nurl", "cap\\u0000")])
def test_a_path_with_a_nul_byte_is_one_config_error(tmp_path, key, value):
    """A NUL in the hot path used to pass `config check` and raise ValueError in `scan`."""
    section, name = key.split("\n")
    values = {"[hot]": "hot", "[catalog]": "state/c.db", "[tiers.h]": "cap"}
    text = "".join(f'{s}\n{"url" if s == "[tiers.h]" else "path"} = "{value if s == section else v}"\n'
                   for s, v in values.items())
    (tmp_path / "t.toml").write_text(text)
    result = cli("config", "check", "t.toml", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    [line] = result.stderr.splitlines()
    assert f"{section} {name}:" in line and "NUL" in line
    scan = cli("scan", "-c", "t.toml", cwd=tmp_path)
    assert scan.returncode == 2 and "Traceback" not in scan.stderr and "NUL" in scan.stderr


def test_a_hot_path_that_is_a_file_is_one_config_error(tmp_path):
    (tmp_path / "hot.bin").write_bytes(b"not a folder")
    with pytest.raises(ConfigError, match=r"\[hot\] path: .*/hot.bin is not a folder"):
        load_config(config(tmp_path, hot="hot.bin"))


def test_a_name_too_long_is_one_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"\[hot\] path: .* is too long"):
        load_config(config(tmp_path, hot="h" * 300))


# -- a catalog folder that cannot be written -----------------------------------------------


@pytest.fixture
def small_mount(tmp_path):
    """A 64 KiB tmpfs at ``tmp_path/state`` (needs root), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    state = tmp_path / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(state)], check=True)
    yield state
    subprocess.run(["umount", str(state)], check=True)


@pytest.mark.parametrize("trouble, words", [("full", "No space left on device"), ("ro", "Read-only file system")])
def test_a_full_or_read_only_catalog_folder_is_one_line_naming_it(tmp_path, small_mount, trouble, words):
    """Reproduction: the lock raised PermissionError / OSError [Errno 28] as a traceback."""
    cfg = config(tmp_path)
    (tmp_path / "cap").mkdir()
    (tmp_path / "hot" / "x.bin").write_bytes(b"keep me")
    if trouble == "full":
        with open(small_mount / "fill", "wb") as fill, pytest.raises(OSError):
            fill.write(b"\0" * (128 << 10))
            fill.flush()
    else:
        subprocess.run(["mount", "-o", "remount,ro", str(small_mount)], check=True)
    result = cli("archive", "-c", str(cfg), "hot/x.bin", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.splitlines() == [f"tiering: error: catalog {small_mount}/c.db: cannot write its lock file "
                                          f"{small_mount}/c.db.lock ({words}); expected a writable folder with "
                                          "free space"]
    assert (tmp_path / "hot" / "x.bin").read_bytes() == b"keep me" and not list((tmp_path / "cap").iterdir())
