"""The peer comparisons' shared rules (bench/peers/tools.py): turn order and when outputs are deleted."""

from __future__ import annotations

from bench.peers.tools import Outputs, rotation


def test_each_tool_goes_first_in_turn():
    tools = ("tiering", "s5cmd", "rclone")
    assert [rotation(tools, r)[0] for r in range(4)] == ["tiering", "s5cmd", "rclone", "tiering"]
    assert all(sorted(rotation(tools, r)) == sorted(tools) for r in range(3))


def make(folder):
    folder.mkdir()
    (folder / "f").write_bytes(b"x")
    return folder


def test_copies_that_fit_are_deleted_only_when_the_set_is_done(tmp_path):
    outputs = Outputs(copy_bytes=1 << 20, copies=3, budget=4 << 20)
    made = [make(tmp_path / f"out{i}") for i in range(3)]
    for folder in made:
        outputs.done_with(folder)
    assert outputs.keep and all(folder.exists() for folder in made)
    outputs.clear()
    assert not any(folder.exists() for folder in made)


def test_copies_that_would_not_fit_are_deleted_right_away(tmp_path):
    outputs = Outputs(copy_bytes=4 << 30, copies=9, budget=16 << 30)
    folder = make(tmp_path / "big")
    outputs.done_with(folder)
    assert not outputs.keep and not folder.exists()
