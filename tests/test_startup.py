"""Start-up: a short call loads what its verb needs and nothing else.

Cron jobs, shell loops and the access guard's helpers start a fresh ``tiering``
for every call. Each test runs ``tiering`` in a real subprocess (``python -c``
calling ``tiering.cli.main``) on real files, and reads the modules that process
had loaded when it exited. No timings here (``python -m bench.startup`` prints
them): a module that is loaded costs its import on every call, whatever the
machine's load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from tiering.cli import VERBS

# Dump sys.modules at exit (after click's sys.exit) into the file named by the first argument.
PROBE = """\
import atexit, json, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
from tiering.cli import main
main(sys.argv[1:])
"""

#: Third-party packages no short verb needs: the policy engine's Arrow stack, the object-store
#: SDKs, fsspec (``tiered://``), watchdog (the daemon), Dask.
HEAVY = ("pyarrow", "pandas", "numpy", "obstore", "oss2", "fsspec", "watchdog", "dask", "distributed")

#: The parts of tiering that ``status FILE`` and ``restore FILE`` never use.
ENGINES = ("tiering.policy", "tiering.plan", "tiering.scan", "tiering.migrate", "tiering.daemon", "tiering.access",
           "bench")


def loaded(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """(the finished process, the modules it had loaded) of ``tiering ARGS``, run from ``tmp_path``."""
    out = tmp_path / "modules.json"
    env = {k: v for k, v in os.environ.items() if k not in ("TIERING_CONFIG", "TIERING_HOME")}
    done = subprocess.run([sys.executable, "-c", PROBE, str(out), *args], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, env=env)
    return done, set(json.loads(out.read_text()))


def under(modules: set[str], *packages: str) -> list[str]:
    """The loaded modules that are ``packages`` or inside them."""
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in packages))


def other_verbs(modules: set[str], *mine: str) -> list[str]:
    """The command modules loaded that belong to none of the verbs ``mine``."""
    theirs = {f"tiering.cli.{module}" for name, (module, _) in VERBS.items() if name not in mine}
    # a verb's module may import its options' help text from another's (FILE_HELP from config_cmd)
    shared = {"tiering.cli.config_cmd", "tiering.cli.plan_cmd"}
    return sorted(m for m in modules if m in theirs - shared)


@pytest.fixture
def workspace(tmp_path: Path) -> tuple[Path, Path]:
    """(config, a 4 KiB file on the hot tier, archived): a posix capacity tier under ``tmp_path``."""
    (tmp_path / "hot").mkdir()
    (tmp_path / "cap").mkdir()
    cfg = tmp_path / "tiering.toml"
    cfg.write_text('default_tier = "cap"\n[hot]\npath = "hot"\n[catalog]\npath = "state/catalog.db"\n'
                   '[tiers.cap]\nurl = "cap"\n')
    data = tmp_path / "hot" / "sample.bin"
    data.write_bytes(os.urandom(4096))
    done, _ = loaded(tmp_path, "archive", "-q", "-c", str(cfg), str(data))
    assert done.returncode == 0, done.stderr
    return cfg, data


def test_version_loads_no_verb_no_store_and_no_catalog(tmp_path):
    done, modules = loaded(tmp_path, "--version")
    assert done.returncode == 0 and done.stdout == f"tiering {version('tiering')}\n"
    assert under(modules, *HEAVY, "sqlite3", "asyncio", "rich", "pydantic", "importlib.metadata") == []
    assert under(modules, "tiering") == ["tiering", "tiering.cli", "tiering.core", "tiering.core.errors"]


def test_status_of_a_file_loads_neither_the_policy_engine_nor_other_verbs(tmp_path, workspace):
    cfg, data = workspace
    done, modules = loaded(tmp_path, "status", "-c", str(cfg), str(data))
    assert done.returncode == 0 and done.stdout.startswith("sample.bin: archived, 4KiB in cap"), done.stderr
    assert under(modules, *HEAVY, *ENGINES, "rich") == []
    assert under(modules, "tiering.mover", "tiering.stores.posix") == []  # status reads; it opens no tier
    assert other_verbs(modules, "status") == []


def test_restore_of_a_file_loads_neither_the_policy_engine_nor_other_verbs(tmp_path, workspace):
    cfg, data = workspace
    before = data.read_bytes()
    done, _ = loaded(tmp_path, "release", "-q", "-c", str(cfg), str(data))
    assert done.returncode == 0 and data.stat().st_size == 0, done.stderr
    done, modules = loaded(tmp_path, "restore", "-c", str(cfg), str(data))
    assert done.returncode == 0 and data.read_bytes() == before, done.stderr
    # rich draws the progress bar, for a terminal only (stderr is a pipe here)
    assert under(modules, *HEAVY, *ENGINES, "rich") == []
    assert other_verbs(modules, "apply", "archive", "release", "restore", "recover") == []


@pytest.mark.parametrize("args", [("-h",), ("-h", "status")], ids=["-h", "-h status"])
def test_the_top_help_still_lists_every_verb(tmp_path, args):
    done, _ = loaded(tmp_path, *args)
    section = done.stdout[done.stdout.index("Commands:"):done.stdout.index("Exit status")].splitlines()[1:]
    listed = [line.split()[0] for line in section if line.startswith("  ") and line.split()]
    assert done.returncode == 0 and listed == list(VERBS), done.stdout


def test_a_misspelt_verb_is_still_suggested(tmp_path):
    done, _ = loaded(tmp_path, "stauts")
    assert done.returncode == 2 and "Did you mean 'status'" in done.stderr


def test_the_version_printed_is_the_installed_one():
    import tiering

    assert tiering.__version__ == version("tiering")  # --version prints the constant; the metadata is the truth


def test_the_benchmark_runs_and_prints_every_command():
    done = subprocess.run([sys.executable, "-m", "bench.startup", "--runs", "1", "--as-is"], capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    rows = {line[:24].strip(): line[24:].split() for line in done.stdout.splitlines()[2:]}
    for label in ("python -c pass", "tiering --version", "tiering status FILE", "tiering restore FILE"):
        assert len(rows[label]) == 3 and all(value.isdigit() for value in rows[label]), done.stdout
