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


S3_POINTS = ["upload:part:2", "upload:part:5", "archive:begin:2", "archive:copied:1", "archive:copied:4", "release:begin:3", "restore:begin:2",
             "restore:fetched:3"]


@pytest.mark.parametrize("point", S3_POINTS)
def test_sigkill_with_an_s3_tier_leaves_no_unfinished_uploads(tmp_path, seaweed, monkeypatch, point):
    from conftest import S3_BUCKET, S3_KEY, S3_SECRET

    monkeypatch.setenv("CRASH_S3_SECRET", S3_SECRET)
    tier = (f'url = "s3://{S3_BUCKET}/crash-{zlib.crc32(str(tmp_path).encode())}"\nendpoint = "{seaweed.endpoint}"\n'
            f'access_key_id = "{S3_KEY}"\nsecret_access_key = "${{CRASH_S3_SECRET}}"')
    result = run_trial(tmp_path / "lab", point, files=12, seed=zlib.crc32(point.encode()), tier_toml=tier,
                       big=12 * 1024 * 1024)
    assert result.problems == [] and result.lost == [] and result.corrupt == []
    assert result.killed
