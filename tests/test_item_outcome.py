"""The mover's Outcome and migrate's ItemResult are one idea: a shared base, their own fields unchanged."""

from __future__ import annotations

import pickle
from dataclasses import asdict, fields

from tiering.core.result import DONE, FAILED, NOOP, SKIPPED, ItemOutcome
from tiering.migrate.result import ItemResult
from tiering.mover.outcome import Outcome


def test_both_results_share_one_base_and_keep_their_fields():
    assert [f.name for f in fields(Outcome)] == ["path", "action", "status", "reason", "bytes", "tier", "stop", "warning"]
    assert [f.name for f in fields(ItemResult)] == ["key", "action", "status", "bytes", "reason", "stop"]
    moved, copied = Outcome(b"a", "archive", DONE, "", 5, "cap"), ItemResult("a", "copy", FAILED, 0, "disk full", stop=3)
    assert isinstance(moved, ItemOutcome) and isinstance(copied, ItemOutcome)
    assert (moved.ok, moved.fatal, copied.ok, copied.fatal) == (True, False, False, True)
    assert Outcome(b"a", "pin", NOOP).ok and not ItemResult("a", "copy", SKIPPED).ok
    assert asdict(copied) == {"key": "a", "action": "copy", "status": "failed", "bytes": 0, "reason": "disk full", "stop": 3}
    assert not hasattr(moved, "__dict__")  # still slotted: one small frozen value per file
    assert pickle.loads(pickle.dumps(moved)) == moved
