"""The ground floor every layer may use: the error table (``errors``), sizes and durations
(``units``), event-loop helpers (``aio``), how paths are shown (``display``), the inventory
schema (``inventory``), the file states (``states``), what one action did to one item
(``result``), manifests (``manifest``) and the fault points tests crash at (``faults``).

Nothing here imports from any other part of tiering.
"""
