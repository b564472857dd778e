"""Crash safety: a real mover SIGKILLed at >= 30 injected points loses and corrupts nothing."""

from __future__ import annotations

import zlib

import pytest

from bench.crashlab import points, run_trial

POINTS = points(36, seed=11)


@pytest.mark.parametrize("point,kill_after", POINTS, ids=[f"{p}@{k:.1f}s" if k else p for p, k in POINTS])
def test_sigkill_then_recover_loses_nothing(tmp_path, point, kill_after):
    result = run_trial(tmp_path / "lab", point, files=24, seed=zlib.crc32(point.encode()) % 1000, kill_after=kill_after)
    assert result.problems == []
    assert result.lost == [] and result.corrupt == []
    if point.split(":")[0] != "random" and not point.startswith("any"):
        assert result.killed, f"{point} was never reached"
