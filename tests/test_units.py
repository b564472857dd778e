"""Sizes and durations as written in configs and policies."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tiering.core.units import format_duration, format_size, parse_duration, parse_size

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (0, 0),
        (4096, 4096),
        ("4096", 4096),
        ("17B", 17),
        ("64MiB", 64 * MiB),
        ("64mib", 64 * MiB),
        ("64 MiB", 64 * MiB),
        ("1.5GiB", 3 * GiB // 2),
        ("512KiB", 512 * KiB),
        ("2TiB", 2 << 40),
        ("10KB", 10_000),
        ("64MB", 64_000_000),
        ("1.5GB", 1_500_000_000),
        ("3TB", 3 * 10**12),
        ("0.3KiB", 307),
        ("976.56KiB", 999_997),
    ],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("64XB", "unknown size unit 'xb'"),
        ("64 fish", "unknown size unit"),
        ("MiB", "not a number"),
        ("-5MiB", "not a number"),
        (-1, "negative"),
        ("1.3B", "whole number of bytes"),
        ("1.3", "whole number of bytes"),
        (True, "found a boolean"),
        (1.5, "found a float"),
        ([1], "found an array"),
        ("", "not a number"),
    ],
)
def test_parse_size_refuses(value, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_size(value)
    assert "expected" in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (0, 0.0),
        (30, 30.0),
        (0.25, 0.25),
        ("30", 30.0),
        ("500ms", 0.5),
        ("5s", 5.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1.5h", 5400.0),
        ("30d", 30 * 86400.0),
        ("2w", 14 * 86400.0),
        ("5 S", 5.0),
    ],
)
def test_parse_duration(text, expected):
    assert parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5 fortnights", "unknown duration unit 'fortnights'"),
        ("soon", "not a number"),
        (-1, "non-negative"),
        (float("nan"), "non-negative"),
        (float("inf"), "finite"),
        (False, "found a boolean"),
        ({"a": 1}, "found a table"),
    ],
)
def test_parse_duration_refuses(value, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_duration(value)
    assert "expected" in str(info.value)


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0B"), (1023, "1023B"), (KiB, "1KiB"), (64 * MiB, "64MiB"), (3 * GiB // 2, "1.5GiB"),
     (1_000_000, "976.56KiB"), (5 << 40, "5TiB")],
)
def test_format_size(n, text):
    assert format_size(n) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (5, "5s"), (0.5, "500ms"), (90, "90s"), (120, "2m"), (3600, "1h"), (86400 * 30, "30d"),
     (1.5, "1.5s"), (0.0015, "1.5ms"), (3601.25, "3601.25s")],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


@given(st.integers(min_value=0, max_value=1023), st.sampled_from([1, KiB, MiB, GiB, 1 << 40]))
def test_format_size_round_trips_whole_units(count, unit):
    assert parse_size(format_size(count * unit)) == count * unit


@given(st.integers(min_value=0, max_value=1 << 60))
def test_format_size_reads_back_within_half_a_percent(n):
    assert abs(parse_size(format_size(n)) - n) <= n * 0.005


@given(st.integers(min_value=0, max_value=10**9))
def test_format_duration_round_trips_milliseconds(ms):
    seconds = ms / 1000
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0ms"), (0.85, "850ms"), (4.24, "4.2s"), (12.4, "12s"), (59.6, "1m00s"), (133, "2m13s"),
     (3720, "1h02m"), (3 * 86400 + 4 * 3600 + 59, "3d04h")],
)
def test_format_elapsed(seconds, text):
    from tiering.core.units import format_elapsed

    assert format_elapsed(seconds) == text


@pytest.mark.parametrize(
    ("rate", "text"),
    [(0, "0B/s"), (512, "512B/s"), (187.6e6, "179MiB/s"), (178.89 * MiB, "179MiB/s"), (17.9 * MiB, "17.9MiB/s"),
     (1.25 * GiB, "1.25GiB/s"), (3 * GiB, "3GiB/s")],
)
def test_format_rate_uses_the_binary_units_of_sizes(rate, text):
    from tiering.core.units import format_rate

    assert format_rate(rate) == text


def test_plural():
    from tiering.core.units import plural

    assert [plural(0, "action"), plural(1, "action"), plural(2, "action"), plural(1234, "file")] == [
        "0 actions", "1 action", "2 actions", "1,234 files"]
