"""One rule for showing a path to people (tiering.core.display.show_path), used by every layer."""

from __future__ import annotations

from pathlib import Path

from tiering.core.display import show_path
from tiering.scan import ScanSummary


def test_printable_names_are_shown_exactly_others_escaped_on_one_line():
    assert show_path("datasets/ünï code/it's a \\ \"name\".bin".encode()) == "datasets/ünï code/it's a \\ \"name\".bin"
    assert show_path(b"new\nline\ttab\x1b") == "new\\nline\\ttab\\x1b"
    assert show_path(b"caf\xc3\xa9-\xff") == "café-\\udcff"  # a byte that is not UTF-8: os.fsdecode's \udcNN
    assert "\n" not in show_path(b"a\n\r\x00b")


def test_the_scanner_shows_example_paths_by_the_same_rule():
    odd = (b"new\nline", b"\xff\xfe", b"back\\slash")
    summary = ScanSummary(Path("/hot"), 0, 0, 0, 0, 0, {"vanished": 3}, {"vanished": odd}, 0.1)
    assert summary.to_json()["error_examples"]["vanished"] == [show_path(p) for p in odd]
    assert summary.to_json()["error_examples"]["vanished"] == ["new\\nline", "\\udcff\\udcfe", "back\\slash"]
