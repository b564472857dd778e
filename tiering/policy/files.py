"""Policy files (TOML): load, check and compile them into a ``Policy``.

The layout (``policies/README.md`` and the shipped policies document it)::

    description = "..."                  # optional
    [classes]                            # optional: named, reusable conditions
    checkpoint = 'path ~ "**/ckpt-*/**"'
    [[rules]]                            # in order; the first match wins
    name = "old-shards"
    match = 'path ~ "shards/**" and atime_age > 30d'
    action = "release"                   # archive | release | restore | pin | exclude | transition
    tier = "oss"                         # optional; archive/release only
    storage_class = "IA"                 # optional; archive/release; required by transition
    max_files = 10000                    # optional per-run caps
    max_bytes = "10TiB"
    min_saving = 0.0005                  # optional cost terms (release/transition; ``costterms``)
    idle_past_minimum = true
    [watermark]                          # optional
    high = "85%"
    low = "70%"
    order = "lru"                        # lru | heat | expression (with weight = "...")
    [safety]                             # optional; these are the defaults
    min_age = "30m"
    skip_hardlinks = true

Every mistake is one ``PolicyError`` line naming the file, the place and what
was expected, e.g. ``policies/x.toml: rule 'old-shards': match: column 17:
expected a value after '>', found end of expression``.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tiering.core.errors import PolicyError
from tiering.policy.compiler import Condition, compile_condition, compile_value
from tiering.policy.costterms import KEYS as COST_KEYS, cost_condition
from tiering.policy.datasets import parse_datasets
from tiering.policy.fields import FIELDS
from tiering.stores.options import OPTIONS
from tiering.policy.lexer import KEYWORDS
from tiering.policy.model import (
    ACTIONS,
    CAPPED_ACTIONS,
    ORDERS,
    TIER_ACTIONS,
    WATERMARK_ACTIONS,
    Policy,
    Rule,
    Safety,
    Watermark,
)
from tiering.policy.parser import parse
from tiering.core.typed import did_you_mean
from tiering.policy.syntax import ExpressionError, Name, Node
from tiering.policy.values import Section

if TYPE_CHECKING:
    from tiering.config import Config

_TOP_KEYS = ("description", "classes", "rules", "watermark", "safety", "datasets")
_RULE_KEYS = ("name", "description", "match", "action", "tier", "storage_class", "max_files", "max_bytes",
              *COST_KEYS)
_WATERMARK_KEYS = ("high", "low", "order", "weight", "action", "tier", "storage_class", "match")
_SAFETY_KEYS = ("min_age", "skip_hardlinks")
_RULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_CLASS_NAME = re.compile(r"^[A-Za-z_]\w*$")
#: The storage classes a tier of each kind accepts, as its store declares them (none: a free label).
_STORAGE_CLASSES = {scheme: options["storage_class"].choices for scheme, options in OPTIONS.items()}


def load_policy(path: str | os.PathLike[str], config: Config | None = None) -> Policy:
    """Read, check and compile the policy file at ``path``.

    With ``config``, tier names are checked against its tiers, storage classes
    against each tier's kind, and rules without a tier get ``config.default_tier``.
    """
    shown = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        raise PolicyError(f"{shown}: cannot read the file ({exc.strerror}); expected a readable TOML file") from None
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{shown}: not UTF-8 text (byte {exc.start}); expected a TOML file") from None
    return parse_policy(text, shown, config)


def parse_policy(text: str, path: str = "<policy>", config: Config | None = None) -> Policy:
    """``load_policy`` for TOML text already in memory; ``path`` names it in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: invalid TOML: {exc}; expected TOML syntax (https://toml.io)") from None
    top = Section(path, "", data)
    top.check_keys(_TOP_KEYS)
    classes = _classes(top.table("classes", "[classes]"), config)
    rules = _rules(top, classes, config)
    watermark = _watermark(top, classes, config)
    if not rules and watermark is None:
        raise top.error(None, "no rules and no watermark", "expected at least one [[rules]] table or a [watermark] table")
    return Policy(
        path=Path(path),
        classes=classes,
        rules=rules,
        watermark=watermark,
        safety=_safety(top.table("safety", "[safety]")),
        description=top.string("description", ""),
        datasets=parse_datasets(top.table("datasets", "[datasets]")),
    )


# -- classes ---------------------------------------------------------------------


def _classes(section: Section, config: Config | None) -> dict[str, Condition]:
    texts: dict[str, str] = {}
    for name in section.data:
        if not _CLASS_NAME.match(name) or name in KEYWORDS or name in FIELDS:
            why = "is a field" if name in FIELDS else "is a keyword" if name in KEYWORDS else "is not an identifier"
            raise PolicyError(f"{section.file}: class {name!r}: the name {why}; expected a name like "
                              "'checkpoint' (letters, digits, '_'; not a field or keyword)")
        texts[name] = section.string(name)
    done: dict[str, Condition] = {}
    for name in texts:
        _build_class(name, texts, done, [], section.file, config)
    return {name: done[name] for name in texts}


def _build_class(name: str, texts: dict[str, str], done: dict[str, Condition], chain: list[str],
                 file: str, config: Config | None) -> None:
    if name in done:
        return
    if name in chain:
        cycle = " -> ".join([*chain[chain.index(name):], name])
        raise PolicyError(f"{file}: class {chain[-1]!r}: refers to itself ({cycle}); expected classes without cycles")
    where = f"{file}: class {name!r}"
    referenced = _names(_expression(lambda: parse(texts[name]), where))
    for other in referenced:
        if other in texts and other not in FIELDS:
            _build_class(other, texts, done, [*chain, name], file, config)
    done[name] = _expression(lambda: compile_condition(texts[name], done, _tiers(config)), where)


def _names(node: Node) -> set[str]:
    if isinstance(node, Name):
        return {node.name}
    children = [value for value in vars(node).values() if isinstance(value, Node)]
    children += [item for value in vars(node).values() if isinstance(value, tuple) for item in value]
    return set().union(*(_names(child) for child in children))


def _expression(build: Any, where: str) -> Any:
    try:
        return build()
    except ExpressionError as exc:
        raise PolicyError(f"{where}: {exc}") from None


def _tiers(config: Config | None) -> tuple[str, ...] | None:
    return tuple(config.tiers) if config is not None else None


# -- rules -----------------------------------------------------------------------


def _rules(top: Section, classes: dict[str, Condition], config: Config | None) -> tuple[Rule, ...]:
    rules: list[Rule] = []
    for number, section in enumerate(top.array_of_tables("rules"), start=1):
        rule = _rule(section, number, classes, config)
        for index, earlier in enumerate(rules, start=1):
            if earlier.name == rule.name:
                raise section.error(None, f"duplicate rule name (rule {index} is also {rule.name!r})",
                                    "expected a unique name per rule")
        rules.append(rule)
    return tuple(rules)


def _rule(section: Section, number: int, classes: dict[str, Condition], config: Config | None) -> Rule:
    name = section.string("name", expected='a rule name like "old-shards"')
    if not _RULE_NAME.match(name):
        raise section.error("name", f"{name!r} is not a valid rule name",
                            "expected letters, digits, '-', '_' or '.', starting with a letter or digit")
    section = section.renamed(f"rule {name!r}")
    section.check_keys(_RULE_KEYS)
    action = section.choice("action", ACTIONS)
    match = section.string("match", expected="a condition such as 'atime_age > 30d'")
    tier, storage_class = _target(section, action, TIER_ACTIONS, config) if action != "transition" else \
        (None, _transition_class(section, config))
    if costs := cost_condition(section, action, tier, storage_class, config):  # (``costterms``: as conditions)
        match = f"({match}) and {costs}"
    condition = _expression(lambda: compile_condition(match, classes, _tiers(config)), section.where("match"))
    capped = {key: section.data.get(key) for key in ("max_files", "max_bytes") if key in section.data}
    if capped and action not in CAPPED_ACTIONS:
        raise section.error(next(iter(capped)), f"not used by action {action!r}",
                            "expected caps only on " + ", ".join(CAPPED_ACTIONS) + " rules")
    return Rule(
        name=name,
        match=condition,
        action=action,
        tier=tier,
        storage_class=storage_class,
        max_files=section.integer("max_files", None, minimum=1),
        max_bytes=section.size("max_bytes", None, minimum=1),
        description=section.string("description", ""),
    )


def _target(section: Section, action: str, tier_actions: tuple[str, ...],
            config: Config | None) -> tuple[str | None, str | None]:
    """The rule's (tier, storage_class), checked against the config when there is one."""
    for key in ("tier", "storage_class"):
        if key in section.data and action not in tier_actions:
            raise section.error(key, f"not used by action {action!r}",
                                f"expected {key} only with action " + " or ".join(tier_actions))
    tier = section.string("tier", None)
    storage_class = section.string("storage_class", None)
    if config is None or action not in tier_actions:
        return tier, storage_class
    if tier is not None and tier not in config.tiers:
        hint = did_you_mean(tier, list(config.tiers), "configured tiers: " + ", ".join(config.tiers))
        raise section.error("tier", f"unknown tier {tier!r}", hint)
    tier = tier or config.default_tier
    choices = _STORAGE_CLASSES.get(config.tiers[tier].scheme)
    if storage_class is not None and choices:
        storage_class = section.choice("storage_class", choices)
    return tier, storage_class


def _transition_class(section: Section, config: Config | None) -> str:
    """A ``transition`` rule's ``storage_class`` (required; no ``tier``: the copy stays on its own tier),
    one of the classes of the config's tiers' kinds when there is a config."""
    if "tier" in section.data:
        raise section.error("tier", "not used by action 'transition'",
                            "expected only storage_class: the copy changes class on the tier it is on")
    storage_class = section.string("storage_class", expected='the class to move copies to, like "Archive"')
    choices = sorted({c for t in (config.tiers.values() if config else ()) for c in _STORAGE_CLASSES.get(t.scheme, ())})
    return section.choice("storage_class", tuple(choices)) if choices else storage_class


# -- watermark and safety ----------------------------------------------------------


def _watermark(top: Section, classes: dict[str, Condition], config: Config | None) -> Watermark | None:
    if "watermark" not in top.data:
        return None
    section = top.table("watermark", "[watermark]")
    section.check_keys(_WATERMARK_KEYS)
    high, low = section.fraction("high"), section.fraction("low")
    if not low < high:
        raise section.error("low", f"{low:.0%} is not below high ({high:.0%})", "expected low < high")
    weight_text = section.string("weight", None)
    order = section.choice("order", ORDERS, "expression" if weight_text is not None else "lru")
    if (order == "expression") != (weight_text is not None):
        key, problem = ("weight", "missing") if weight_text is None else ("weight", f"not used by order {order!r}")
        raise section.error(key, problem, "expected weight exactly when order = \"expression\"")
    action = section.choice("action", WATERMARK_ACTIONS, "release")
    tier, storage_class = _target(section, action, WATERMARK_ACTIONS, config)
    match_text = section.string("match", None)
    return Watermark(
        high=high,
        low=low,
        order=order,
        weight=None if weight_text is None else _expression(
            lambda: compile_value(weight_text, classes), section.where("weight")),
        action=action,
        tier=tier,
        storage_class=storage_class,
        match=None if match_text is None else _expression(
            lambda: compile_condition(match_text, classes, _tiers(config)), section.where("match")),
    )


def _safety(section: Section) -> Safety:
    section.check_keys(_SAFETY_KEYS)
    default = Safety()
    return Safety(
        min_age=section.duration("min_age", default.min_age),
        skip_hardlinks=section.boolean("skip_hardlinks", default.skip_hardlinks),
    )
