"""``python -m bench.vs_dlio --dry-run``: the comparison's points and its estimated duration, with nothing run
(DLIO itself is opt-in and not needed for this)."""

from __future__ import annotations

import re

import pytest

from bench import vs_dlio


def test_dry_run_prints_the_estimate_and_runs_nothing(tmp_path, capsys):
    assert vs_dlio.main(["--dry-run", "--workdir", str(tmp_path), "--dlio-venv", str(tmp_path / "absent")]) is None
    said = capsys.readouterr().out
    assert re.match(r"8 point\(s\) x 3 round\(s\) x 2 tools, 400 files of 2,097,152 bytes \(generated first\): "
                    r"estimated (\d+)m\d\ds on a quiet host", said), said
    assert int(re.search(r"estimated (\d+)m", said)[1]) < 15  # the README's run stays under a quarter hour
    assert list(tmp_path.iterdir()) == []  # no data set, no DLIO run


def test_the_estimate_grows_with_the_files_rounds_and_start_ups():
    class Args:
        files, size, batch, rounds = 400, 2 << 20, 4, 3

    points = [(50.0, 1, "cold")]
    one = vs_dlio.estimate_s(Args, points, generate=False)
    steps = 400 // 4
    assert one == 3 * (vs_dlio.DLIO_START_S + vs_dlio.OURS_START_S + 2 * steps * 0.05)  # compute-bound: 5 s a run
    Args.files = 4000
    generator = vs_dlio.DLIO_START_S + 4000 * (2 << 20) / vs_dlio.GENERATE_BYTES_S
    assert vs_dlio.estimate_s(Args, points, generate=True) == pytest.approx(
        3 * (vs_dlio.DLIO_START_S + vs_dlio.OURS_START_S + 2 * 1000 * 0.05) + generator)
