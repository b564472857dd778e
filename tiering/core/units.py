"""Sizes and durations as people write them: ``"64MiB"``, ``"500ms"``, ``"30d"``.

Used by the configuration file and the policy engine. Parsers raise
``ValueError`` whose message says what was expected; callers add the file and
key. Sizes are whole bytes (``int``); durations are seconds (``float``).

- sizes: an integer (bytes) or a number with a unit: ``B``; binary ``KiB``,
  ``MiB``, ``GiB``, ``TiB``, ``PiB``; decimal ``KB``, ``MB``, ``GB``, ``TB``,
  ``PB``. Units are case-insensitive (``64mib``); a space before the unit is allowed.
  Fractions of a unit round to the nearest byte (``"0.3KiB"`` is 307 bytes).
- durations: a number (seconds) or a number with a unit: ``ms``, ``s``, ``m``,
  ``h``, ``d``, ``w``.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

SIZE_UNITS: dict[str, int] = {
    "b": 1,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
    "pib": 1 << 50,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "pb": 10**15,
}
DURATION_UNITS: dict[str, float] = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

SIZE_EXPECTED = "a size like 4096, '512KiB', '64MiB' or '1.5GB'"
DURATION_EXPECTED = "a duration like 30, '500ms', '5s', '2m', '1h' or '30d'"

_NUMBER_UNIT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*$")
_BINARY = ("PiB", "TiB", "GiB", "MiB", "KiB")


def _split(text: str, expected: str) -> tuple[Decimal, str]:
    match = _NUMBER_UNIT.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a number with an optional unit; expected {expected}")
    try:
        return Decimal(match.group(1)), match.group(2).lower()
    except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
        raise ValueError(f"{text!r} is not a number; expected {expected}") from None


def _type_name(value: object) -> str:
    return {bool: "a boolean", float: "a float", list: "an array", dict: "a table"}.get(
        type(value), type(value).__name__
    )


def parse_size(value: int | str) -> int:
    """Bytes in ``value``: a non-negative int, or a string such as ``"64MiB"``."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"found {_type_name(value)}; expected {SIZE_EXPECTED}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} is negative; expected {SIZE_EXPECTED}")
        return value
    number, unit = _split(value, SIZE_EXPECTED)
    if unit and unit not in SIZE_UNITS:
        names = "B, KiB, MiB, GiB, TiB, PiB, KB, MB, GB, TB, PB"
        raise ValueError(f"unknown size unit {unit!r} in {value!r}; expected one of {names}")
    if unit in ("", "b") and number != number.to_integral_value():
        raise ValueError(f"{value!r} is not a whole number of bytes; expected {SIZE_EXPECTED}")
    return int((number * SIZE_UNITS[unit or "b"]).to_integral_value(ROUND_HALF_UP))


def parse_duration(value: int | float | str) -> float:
    """Seconds in ``value``: a non-negative number, or a string such as ``"500ms"``."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"found {_type_name(value)}; expected {DURATION_EXPECTED}")
    if isinstance(value, int | float):
        if not value >= 0 or value == float("inf"):
            raise ValueError(f"{value} is not a finite, non-negative number; expected {DURATION_EXPECTED}")
        return float(value)
    number, unit = _split(value, DURATION_EXPECTED)
    if unit and unit not in DURATION_UNITS:
        raise ValueError(f"unknown duration unit {unit!r} in {value!r}; expected one of ms, s, m, h, d, w")
    return float(number * Decimal(str(DURATION_UNITS[unit or "s"])))


def format_size(n: int) -> str:
    """``n`` bytes in the largest binary unit that keeps it readable: ``"64MiB"``.

    Exact (``parse_size(format_size(n)) == n``) when ``n`` is a whole multiple of
    that unit; otherwise rounded to two decimals, e.g. ``"1.43MiB"``.
    """
    for unit in _BINARY:
        scale = SIZE_UNITS[unit.lower()]
        if abs(n) >= scale:
            if n % scale == 0:
                return f"{n // scale}{unit}"
            return f"{n / scale:.2f}".rstrip("0").rstrip(".") + unit
    return f"{n}B"


def format_duration(seconds: float) -> str:
    """A duration in the largest unit that divides it evenly: ``"5s"``, ``"500ms"``, ``"2h"``, ``"1.5s"``."""
    for unit in ("w", "d", "h", "m", "s"):
        scale = DURATION_UNITS[unit]
        if seconds >= scale and seconds % scale == 0:
            return f"{int(seconds // scale)}{unit}"
    if seconds == 0:
        return "0s"
    number, unit = (seconds, "s") if seconds >= 1 else (seconds * 1000, "ms")
    return f"{number:.6f}".rstrip("0").rstrip(".") + unit


def format_elapsed(seconds: float) -> str:
    """How long something took, for people: ``"850ms"``, ``"4.2s"``, ``"2m13s"``, ``"1h02m"``, ``"3d04h"``.

    Two units at most, the second zero-padded; not meant to be parsed back
    (``format_duration`` is, for configs).
    """
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def format_rate(bytes_per_second: float) -> str:
    """A transfer rate in the binary units sizes use, three significant digits: ``"179MiB/s"``, ``"1.25GiB/s"``."""
    n = max(0.0, bytes_per_second)
    for unit in _BINARY:
        scale = SIZE_UNITS[unit.lower()]
        if n >= scale:
            return f"{_three_digits(n / scale)}{unit}/s"
    return f"{_three_digits(n)}B/s" if n >= 1 else "0B/s"


def _three_digits(x: float) -> str:
    # 3 significant digits without exponent notation: 1.25, 17.9, 179, 1023
    text = f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 100 else f"{x:.0f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def plural(n: int, noun: str, plural_form: str | None = None) -> str:
    """``"1 file"``, ``"2 files"``, ``"1,234 actions"``: a count with its noun agreeing."""
    return f"{n:,} {noun if n == 1 else plural_form or noun + 's'}"
