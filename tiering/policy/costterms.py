"""Cost terms of a rule: money and minimum durations as conditions, from the config's cost model.

Two optional keys of a ``[[rules]]`` table whose action moves data (``release``,
``transition``) add to its ``match``, as plain conditions built when the policy
loads (so they run vectorized with the rest and ``plan --explain`` shows them
fact by fact)::

    min_saving = 0.0005        # only moves that save at least this much per file per month
    idle_past_minimum = true   # only files likely to stay idle past the target class's minimum

- ``min_saving`` (money per month, in ``[cost] currency``): the move's saving per
  GiB-month is fixed by the prices, so the term is a size: ``release`` frees the
  hot tier (``hot_per_gb_month``) and pays the target class; ``transition`` pays
  the target class instead of the class the copy is in, on its own tier (one
  ``tier == ... and storage_class == ...`` clause per priced class that is dearer
  than the target; ``""``, no recorded class, is the tier's own). A move that
  never saves is a ``PolicyError``.
- ``idle_past_minimum``: a file is taken as likely to stay idle about as long
  again as it has been idle already (the rule of thumb caches evict by), so
  it must have gone unread (``atime_age``) at least the target class's minimum
  storage duration and have no recent reads (``heat < 1``); a transition also
  waits until the copy has served the minimum of the class it leaves
  (``archived_age``). Moving earlier risks reading it back, or moving it on,
  before a minimum is served: the early-deletion charge.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from tiering.config.prices import ClassPrice
from tiering.core.units import format_duration
from tiering.policy.values import Section

if TYPE_CHECKING:
    from tiering.config import Config

#: The rule keys this module reads.
KEYS = ("min_saving", "idle_past_minimum")
GIB = float(1 << 30)


def cost_condition(section: Section, action: str, tier: str | None, storage_class: str | None,
                   config: Config | None) -> str:
    """The condition text the rule's cost terms add to its ``match`` ('' when it has none)."""
    wanted = [key for key in KEYS if key in section.data]
    if not wanted:
        return ""
    if action not in ("release", "transition"):
        raise section.error(wanted[0], f"not used by action {action!r}", "expected cost terms only with "
                            "release or transition (an archive keeps the hot copy: it never saves money)")
    if config is None:
        raise section.error(wanted[0], "needs the configuration's prices", "expected the policy loaded with a config")
    terms = []
    if "min_saving" in section.data:
        terms.append(_saving(section, action, tier, storage_class, config))
    if section.boolean("idle_past_minimum", False):
        terms.append(_idle(action, tier, storage_class, config))
    return " and ".join(f"({t})" for t in terms if t)


def _money(section: Section, key: str) -> float:
    value = section.data[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise section.error(key, f"found {value!r}", "expected an amount of money per month, a number like 0.001")
    return float(value)


def _saving(section: Section, action: str, tier: str | None, storage_class: str | None, config: Config) -> str:
    model = config.cost
    floor = _money(section, "min_saving")
    if action == "release":
        price = model.price(tier or config.default_tier, storage_class) or ClassPrice()
        per_gib = model.hot_per_gb_month - price.per_gb_month
        if per_gib <= 0:
            raise section.error("min_saving", f"a release to {tier} costs more per month than the hot tier",
                                "expected a cheaper class, or no min_saving")
        return f"size >= {_bytes(floor, per_gib)}B"
    clauses = []
    for name, prices in model.tiers.items():
        target = prices.price(storage_class)
        if target is None:
            continue
        for cls, price in prices.classes.items():
            per_gib = price.per_gb_month - target.per_gb_month
            if cls == storage_class or per_gib <= 0:
                continue
            shown = f'storage_class in ["{cls}", ""]' if cls == prices.default_class else f'storage_class == "{cls}"'
            clauses.append(f'(tier == "{name}" and {shown} and size >= {_bytes(floor, per_gib)}B)')
    if not clauses:
        raise section.error("min_saving", f"no class of any tier costs more than {storage_class}",
                            "expected a target class that is cheaper than where copies are now")
    return " or ".join(clauses)


def _bytes(floor: float, per_gib: float) -> int:
    """The smallest size whose move saves ``floor`` a month at ``per_gib`` saved per GiB-month."""
    return max(0, math.ceil(floor / per_gib * GIB))


def _idle(action: str, tier: str | None, storage_class: str | None, config: Config) -> str:
    model = config.cost
    tiers = [tier or config.default_tier] if action == "release" else list(model.tiers)
    minimum = max((p.min_duration for t in tiers if (p := model.price(t, storage_class))), default=0.0)
    term = f"atime_age >= {_days(minimum)} and heat < 1"
    if action == "transition":  # and the copy has served the minimum of the class it leaves
        served = {cls: p.min_duration for t in tiers for cls, p in model.tiers[t].classes.items()
                  if p.min_duration and cls != storage_class}
        term += "".join(f' and (storage_class != "{cls}" or archived_age >= {_days(d)})'
                        for cls, d in sorted(served.items()))
    return term


def _days(seconds: float) -> str:
    return format_duration(float(int(seconds)))
