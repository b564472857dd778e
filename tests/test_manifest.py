"""Named paths (operands, manifest entries) resolve to real files in the hot tier, or fail alone.

Real folders and symlinks, a posix capacity tier, the CLI as a real subprocess.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tiering.core.errors import ConfigError, UserError

DATA = b"training shard\n" * 100


def cli(root: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    if args[0] in ("archive", "release", "restore"):
        args = (args[0], "--json", *args[1:])  # the summary as JSON (for people by default)
    result = subprocess.run([sys.executable, "-m", "tiering", *args], cwd=root, input=stdin, capture_output=True,
                            timeout=60, env={**os.environ, "TIERING_CONFIG": str(root / "t.toml")})
    result.stdout, result.stderr = result.stdout.decode(), result.stderr.decode()
    assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """hot/ with d/in.bin and d/two.bin, a folder outside it, symlinks into and out of it, a posix tier."""
    for folder in ("hot/d", "outside", "state", "cap"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "t.toml").write_text('[hot]\npath = "hot"\n[catalog]\npath = "state/c.db"\n[tiers.cap]\nurl = "cap"\n')
    (tmp_path / "hot/d/in.bin").write_bytes(DATA)
    (tmp_path / "hot/d/two.bin").write_bytes(DATA * 2)
    (tmp_path / "outside/secret.bin").write_bytes(b"not yours to move")
    (tmp_path / "hot/outdir_link").symlink_to(tmp_path / "outside")
    (tmp_path / "hot/link_dir").symlink_to("d")
    (tmp_path / "hot/file_link").symlink_to("d/in.bin")
    return tmp_path


def summary(result: subprocess.CompletedProcess) -> dict:
    return json.loads(result.stdout.splitlines()[-1])


# -- operands ------------------------------------------------------------------------


def test_release_through_a_symlinked_folder_that_leaves_the_hot_tier_is_refused(root):
    """Reproduction: `release hot/outdir_link/secret.bin` exited 0 and truncated outside/secret.bin."""
    result = cli(root, "release", "hot/outdir_link/secret.bin")
    assert result.returncode == 1, result.stderr
    assert (f"failed: release hot/outdir_link/secret.bin: outside the hot tier {root}/hot "
            f"(it resolves to {root}/outside/secret.bin)") in result.stderr
    assert (root / "outside/secret.bin").read_bytes() == b"not yours to move"
    assert summary(result)["failed"] == 1


def test_archive_through_a_symlink_to_a_system_folder_copies_nothing(root):
    """Reproduction: `archive hot/etc_link/hostname` copied a file from outside into the capacity tier."""
    (root / "hot/etc_link").symlink_to("/etc")
    result = cli(root, "archive", "hot/etc_link/passwd")
    assert result.returncode == 1 and "outside the hot tier" in result.stderr
    assert list((root / "cap").rglob("*")) == []


def test_an_alias_and_its_target_are_one_record(root):
    """Reproduction: releasing link_dir/in.bin left d/in.bin reading `resident, 0B`."""
    assert cli(root, "release", "hot/link_dir/in.bin").returncode == 0
    status = cli(root, "status", "--json", "hot/d/in.bin")
    assert status.returncode == 0, status.stderr
    record = json.loads(status.stdout)
    assert (record["path"], record["state"], record["size"]) == ("d/in.bin", "released", len(DATA))
    again = cli(root, "archive", "hot/d/in.bin")  # used to record the empty stub as `archived 0B`
    assert again.returncode == 0, again.stderr
    assert json.loads(cli(root, "status", "--json", "d/in.bin").stdout)["state"] == "released"
    assert cli(root, "restore", "hot/link_dir/in.bin").returncode == 0
    assert (root / "hot/d/in.bin").read_bytes() == DATA


def test_a_final_symlink_is_refused(root):
    result = cli(root, "release", "hot/file_link")
    assert result.returncode == 1
    assert "failed: release hot/file_link: a symlink; tiering moves regular files only" in result.stderr
    assert (root / "hot/d/in.bin").read_bytes() == DATA


def test_missing_paths_fail_alone_and_the_rest_is_done(root):
    """Reproduction: `restore no/such/file` exited 0; now each missing path is one line and the rest still runs."""
    result = cli(root, "release", "no/such/file", "hot/d/in.bin", "d/missing.bin")
    assert result.returncode == 1
    assert "failed: release no/such/file: no such file" in result.stderr
    assert "failed: release d/missing.bin: no such file" in result.stderr
    assert summary(result)["failed"] == 2 and summary(result)["actions"]["release"]["done"] == 1
    assert (root / "hot/d/in.bin").stat().st_size == 0  # released: a stub
    alone = cli(root, "restore", "no/such/file")
    assert alone.returncode == 1 and "no/such/file: no such file" in alone.stderr


def test_restore_of_a_file_the_catalog_never_knew_fails_it_by_name(root):
    """A named file that was never archived has nothing to restore: one line and exit 1, not a quiet 0;
    the same file found by walking a folder is left alone."""
    result = cli(root, "restore", "d/in.bin")
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1 and "d/in.bin: not archived by tiering" in result.stderr
    dry = cli(root, "restore", "--dry-run", "d/in.bin")
    assert dry.returncode == 1 and "d/in.bin: not archived by tiering" in dry.stderr
    folder = cli(root, "restore", "d")
    assert folder.returncode == 0, folder.stderr
    assert (root / "hot/d/in.bin").stat().st_size > 0


def test_status_of_a_missing_path_is_one_line(root):
    """Reproduction: `tiering status no/such/file` printed an lstat traceback."""
    result = cli(root, "status", "no/such/file", "hot/d/in.bin")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["tiering: error: no/such/file: no such file"]
    assert "d/in.bin: resident" in result.stdout


def test_status_with_the_hot_tier_missing_names_it(root):
    """Reproduction: `tiering status` with the hot tier's path missing printed an os.statvfs traceback."""
    (root / "hot").rename(root / "elsewhere")
    result = cli(root, "status")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"tiering: error: hot tier {root}/hot: No such file or directory; check [hot] path in the config "
        "(is it mounted?)"]


# -- manifests -----------------------------------------------------------------------


def released(root: Path) -> None:
    assert cli(root, "release", "hot/d/in.bin", "hot/d/two.bin").returncode == 0


def test_a_manifest_on_stdin_stages_in_and_missing_entries_fail(root):
    released(root)
    result = cli(root, "restore", "--manifest", "-", stdin=b"d/in.bin\nd/gone.bin\n# comment\n\nd/two.bin\n")
    assert result.returncode == 1
    assert "failed: restore d/gone.bin: no such file" in result.stderr
    assert (root / "hot/d/in.bin").read_bytes() == DATA and (root / "hot/d/two.bin").read_bytes() == DATA * 2


def test_ignore_missing_leaves_missing_entries_out(root):
    released(root)
    (root / "m.json").write_text(json.dumps({"files": [{"path": "d/in.bin"}, "d/gone.bin", str(root / "hot/d/two.bin")]}))
    result = cli(root, "restore", "--manifest", "m.json", "--ignore-missing")
    assert result.returncode == 0, result.stderr
    assert summary(result)["failed"] == 0 and summary(result)["actions"]["restore"]["done"] == 2


def test_manifest_entries_outside_the_hot_tier_fail_alone(root):
    released(root)
    entries = ["outdir_link/secret.bin", "../outside/secret.bin", "d/in.bin", "/etc/passwd"]
    (root / "m.txt").write_text("\n".join(entries) + "\n")
    result = cli(root, "restore", "--manifest", "m.txt")
    assert result.returncode == 1
    assert summary(result)["failed"] == 3 and summary(result)["actions"]["restore"]["done"] == 1
    for entry in entries[:2] + entries[3:]:
        assert f"failed: restore {entry}: outside the hot tier" in result.stderr


@pytest.mark.parametrize("name, content, problem", [
    ("m.json", b"[1, null]", "entry 1 is a number; expected a path"),
    ("m.json", b'"d/in.bin"', "found a string; expected a list of paths"),
    ("m.json", b'{"paths": []}', 'found an object without a "files" list'),
    ("m.json", b"[{\"name\": \"x\"}]", 'entry 1 has no "path" key'),
    ("m.json", b"[\"a\",", "not valid JSON"),
    ("m.parquet", None, 'no "path" column (columns: name)'),
    ("m.parquet", b"PAR1 not really", "not a readable Parquet file"),
])
def test_a_malformed_manifest_is_one_line(root, name, content, problem):
    """Reproductions: `[1,null]` raised TypeError, a Parquet file without `path` IndexError, and a bare
    JSON string was read one character at a time."""
    if content is None:
        pq.write_table(pa.table({"name": ["d/in.bin"]}), root / name)
    else:
        (root / name).write_bytes(content)
    result = cli(root, "restore", "--manifest", name)
    assert result.returncode == 2, result.stdout + result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"tiering: error: manifest {name}: ") and problem in line
    assert result.stdout == ""


def test_an_unreadable_manifest_is_one_line(root):
    for name in ("nowhere.txt", "state"):  # missing, a folder
        result = cli(root, "restore", "--manifest", name)
        assert result.returncode == 2
        [line] = result.stderr.splitlines()
        assert line.startswith(f"tiering: error: manifest {name}: cannot read it (")


def test_a_parquet_manifest_with_binary_paths(root):
    from tiering.core.manifest import Refused, Resolved, read_manifest

    pq.write_table(pa.table({"path": pa.array([b"d/in.bin", b"d/\xffnope"], pa.binary())}), root / "m.parquet")
    out = list(read_manifest(root / "m.parquet", root / "hot"))
    assert out == [Resolved(b"d/in.bin"), Refused(b"d/\xffnope", "no such file")]
    assert str(out[1]) == "d/\\udcffnope: no such file"


def test_a_parquet_manifest_on_stdin(root):
    from tiering.core.manifest import Resolved, read_manifest

    sink = io.BytesIO()
    pq.write_table(pa.table({"path": ["d/two.bin"]}), sink)
    assert list(read_manifest(Path("-"), root / "hot", stdin=io.BytesIO(sink.getvalue()))) == [Resolved(b"d/two.bin")]


# -- the resolver itself ---------------------------------------------------------------


def test_operands_resolve_from_the_cwd_or_the_hot_tier(root, monkeypatch):
    from tiering.core.manifest import from_command_line

    hot = root / "hot"
    monkeypatch.chdir(root / "hot/d")
    assert from_command_line("in.bin", hot) == b"d/in.bin"  # relative to the cwd, inside the hot tier
    monkeypatch.chdir(root)
    assert from_command_line("d/in.bin", hot) == b"d/in.bin"  # relative to the hot tier
    assert from_command_line(str(hot / "link_dir/../d/./in.bin"), hot) == b"d/in.bin"
    monkeypatch.chdir(root / "outside")
    with pytest.raises(Exception, match="secret.bin: outside the hot tier"):
        from_command_line("secret.bin", hot)


def test_a_hot_tier_reached_through_a_symlink_accepts_either_spelling(root):
    from tiering.core.manifest import from_command_line

    (root / "hot_alias").symlink_to(root / "hot")
    assert from_command_line(str(root / "hot/d/in.bin"), root / "hot_alias") == b"d/in.bin"
    assert from_command_line(str(root / "hot_alias/d/in.bin"), root / "hot") == b"d/in.bin"


def test_the_hot_tier_itself_and_odd_names_are_refused(root):
    from tiering.core.manifest import Refused, resolve_operands

    out = list(resolve_operands([str(root / "hot"), "d/..", "d/in.bin\0x"], root / "hot"))
    assert [type(o) for o in out] == [Refused] * 3
    assert "is the hot tier itself" in out[0].reason and "is the hot tier itself" in out[1].reason
    assert out[2].reason == "contains a NUL byte; not a path"


def test_a_missing_hot_tier_is_a_config_error(root):
    from tiering.core.manifest import resolve_operands

    with pytest.raises(ConfigError, match="hot tier .*/nothere: no such folder"):
        resolve_operands(["x"], root / "nothere")
    assert issubclass(ConfigError, UserError)
