"""The mover: archive, release and restore one file at a time through the state machine of
docs/DESIGN.md, journaled in the catalog (``ops``), run many at once (``executor``), settled
after a crash (``recover``), every hot-tier path opened beneath the hot tier (``beneath``).
"""
