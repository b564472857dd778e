"""The layers of docs/DESIGN.md hold: ``lint-imports`` checks the contract in pyproject.toml.

A module that imports from a layer above its own (say ``tiering.core`` importing the CLI, or the
stores importing the mover) fails this test, function-level imports included.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"], cwd=root,
                          capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(root)}, check=False)


def test_the_layers_contract_is_kept():
    done = lint(REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "1 kept, 0 broken" in done.stdout


def test_an_import_from_a_higher_layer_breaks_the_contract(tmp_path):
    """The check can fail: the ground floor importing the mover is reported, naming both."""
    for name in ("tiering", "bench"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    units = tmp_path / "tiering/core/units.py"
    units.write_text(units.read_text() + "\n\ndef _upward():\n    from tiering.mover.ops import Mover  # noqa\n")
    done = lint(tmp_path)
    assert done.returncode != 0
    assert "BROKEN" in done.stdout and "tiering.core.units -> tiering.mover.ops" in done.stdout, done.stdout[-3000:]
