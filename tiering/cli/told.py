"""``--verbose`` on the move verbs: a line per file as each action ends.

``Telling`` stands in for the mover in ``execute``: it forwards everything,
and hands each ``Outcome`` of the four actions to ``tell`` on the way back.
The mover stays as it is; only the CLI wants these lines.
"""

from __future__ import annotations

from collections.abc import Callable


class Telling:
    """The mover, telling each action's outcome."""

    _ACTIONS = ("archive_async", "release_async", "restore_async", "pin_async")

    def __init__(self, mover, tell: Callable) -> None:
        object.__setattr__(self, "_mover", mover)
        object.__setattr__(self, "_tell", tell)

    def __getattr__(self, name: str):
        attr = getattr(self._mover, name)
        if name not in self._ACTIONS:
            return attr

        async def action(*args, **kwargs):
            outcome = await attr(*args, **kwargs)
            self._tell(outcome)
            return outcome

        return action

    def __setattr__(self, name: str, value) -> None:  # settings (transfer_jobs, an offloading store) reach the mover
        setattr(self._mover, name, value)

    def __delattr__(self, name: str) -> None:  # ... and leave it again (the Dask executor's offloading ends)
        delattr(self._mover, name)


def line(outcome) -> str:
    """``done: archive runs/a.pt (3.81MiB)``; the reason for anything not done."""
    from tiering.core.display import show_path
    from tiering.core.units import format_size

    detail = f" ({format_size(outcome.bytes)})" if outcome.status == "done" and outcome.bytes else ""
    reason = f": {outcome.reason}" if outcome.reason and outcome.status != "done" else ""
    return f"{outcome.status}: {outcome.action} {show_path(outcome.path)}{detail}{reason}"
