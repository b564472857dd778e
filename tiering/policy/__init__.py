"""The policy engine: which files are cold, and why.

A policy file (TOML, ``policies/README.md``) holds named file classes, ordered
rules and an optional watermark. Their conditions are written in a small
expression language (``size > 1GiB and atime_age > 30d``) that is parsed by
hand, type-checked, and compiled to ``pyarrow.compute`` expressions evaluated
over whole record batches of the inventory, never row by row.

Layers, bottom up: ``lexer`` → ``parser`` (syntax tree, ``syntax``) →
``checker`` (names, kinds) → ``compiler`` (pyarrow) beside ``reference`` (the
same meaning, per row) and ``explain`` (reasons); ``fields`` defines every field
both ways; ``files`` loads policy files into the values of ``model``.

The API a planner needs::

    policy = load_policy("policies/default.toml", config)
    cols = needed_columns(*(rule.match for rule in policy.rules))
    batch = augment(batch, cols, now)          # once per batch
    mask = project(batch, rule.match.arrow)    # per rule; or rule.match.mask(raw_batch, now)
    rule.match.explain(row, now)               # ["atime_age 41d > 30d", ...]

``now`` is an int of ns since the epoch (or an aware datetime), fixed once per run.
"""

from tiering.core.errors import PolicyError
from tiering.policy.compiler import (
    Compiled,
    Condition,
    Value,
    as_ns,
    compile_condition,
    compile_value,
    needed_columns,
    project,
)
from tiering.policy.explain import explain, format_duration, format_value
from tiering.policy.fields import FIELDS, STATES, TYPES, augment
from tiering.policy.files import load_policy, parse_policy
from tiering.policy.model import ACTIONS, ORDERS, Policy, Rule, Safety, Watermark
from tiering.policy.parser import parse
from tiering.policy.reference import evaluate_row
from tiering.policy.syntax import ExpressionError

__all__ = [
    "ACTIONS", "FIELDS", "ORDERS", "STATES", "TYPES",
    "Compiled", "Condition", "ExpressionError", "Policy", "PolicyError", "Rule", "Safety", "Value", "Watermark",
    "as_ns", "augment", "compile_condition", "compile_value", "evaluate_row", "explain", "format_duration",
    "format_value", "load_policy", "needed_columns", "parse", "parse_policy", "project",
]
