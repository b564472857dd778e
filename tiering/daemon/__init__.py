"""The long-running service: ``tiering daemon`` (see ``tiering.daemon.service``).

Modules: ``service`` (the loop), ``events`` (file events into heat and
pending writes), ``rescan`` (what events missed), ``metrics`` (Prometheus
text endpoint), ``signals`` (bounded stop, reload).
"""

from tiering.daemon.service import Daemon

__all__ = ["Daemon"]
