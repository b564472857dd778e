"""``tiering simulate``: replay an access trace against an inventory and policies, with the real planner.

``replay`` runs one policy at one hot-tier size (``Scenario``) over a trace
(``Accesses``: the trace as inventory file numbers); ``report`` makes the
side-by-side rows, costs and plots; ``run`` is the use case the CLI calls.
"""

from tiering.ops.simulate.replay import Accesses, Replay, Scenario, replay
from tiering.ops.simulate.run import Simulation, simulate

__all__ = ["Accesses", "Replay", "Scenario", "Simulation", "replay", "simulate"]
