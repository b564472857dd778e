"""The use cases the CLI and the daemon compose: one policy cycle (``cycle``), the steps it
strings together (``workflow``: inventory, plan), a mover session (``session``), what a hand-run
verb acts on (``selection``), status, the demo and the self-test.
"""
