"""The cost model: ``[cost]`` and each tier's ``[tiers.NAME.cost]``, over the defaults of ``prices``.

::

    [cost]                         # all optional, these are the defaults
    currency = "USD"               # a label: every price below is in this currency
    hot_per_gb_month = 0.20        # the hot tier (NVMe / parallel filesystem), per GiB-month

    [tiers.oss.cost]               # optional: this tier's prices
    prices = "oss"                 # default table: by the tier's kind ("oss", "s3", "posix"), or "none"
    IA = { per_gb_month = 0.011, min_duration = "30d" }     # one class: keys unset keep the table's

    [tiers.oss.cost.ColdArchive]   # the same, as a table
    per_gb_month = 0.002
    put_per_1000 = 0.0014          # also get_per_1000, list_per_1000, head_per_1000
    retrieval_per_gb = 0           # reading the object directly (IA-like classes)
    min_duration = "180d"          # minimum storage duration
    restore.Bulk = { per_gb = 0.004, per_1000 = 0.04, delay = "12h" }   # by restore tier

Money is per GiB (2**30 bytes) and per 1,000 requests. A class a tier's kind
does not know (a posix tier's label, a class missing from ``prices = "none"``)
may be priced here; a class nobody prices costs nothing, and ``tiering cost``
says so. Every mistake is one ``ConfigError`` line naming the file and key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tiering.config.prices import (
    CURRENCY,
    DEFAULT_CLASS,
    DEFAULT_PRICES,
    HOT_PER_GB_MONTH,
    PRICE_TABLES,
    PRICES_NOTE,
    REQUEST_KINDS,
    TABLE_OF_SCHEME,
    ClassPrice,
    Retrieval,
)
from tiering.config.values import Table, closest_hint, type_name
from tiering.stores.options import OPTIONS
from tiering.core.errors import ConfigError
from tiering.core.units import format_duration

__all__ = ["ClassPrice", "CostModel", "Retrieval", "TierPrices", "parse_cost", "describe_cost"]

_COST_KEYS = ("currency", "hot_per_gb_month")
_CLASS_KEYS = ("per_gb_month", *(f"{kind}_per_1000" for kind in REQUEST_KINDS), "retrieval_per_gb", "min_duration",
               "restore")
_RESTORE_KEYS = ("per_gb", "per_1000", "delay")
_RESTORE_TIERS = ("Expedited", "Standard", "Bulk")


@dataclass(frozen=True)
class TierPrices:
    """One capacity tier's prices: by storage class, and the class its objects are in unless recorded."""

    table: str  # the default table it started from (``prices``)
    default_class: str
    classes: dict[str, ClassPrice] = field(hash=False)

    def price(self, storage_class: str | None) -> ClassPrice | None:
        """The class's prices (the default class's when ``storage_class`` is empty); None: nobody priced it."""
        return self.classes.get(storage_class or self.default_class)


@dataclass(frozen=True)
class CostModel:
    """Every price ``tiering cost`` and the planner use, resolved from the config over the defaults."""

    currency: str = CURRENCY
    hot_per_gb_month: float = HOT_PER_GB_MONTH
    tiers: dict[str, TierPrices] = field(default_factory=dict, hash=False)

    def price(self, tier: str, storage_class: str | None) -> ClassPrice | None:
        """The prices of ``storage_class`` on ``tier`` (None: unknown tier or an unpriced class)."""
        prices = self.tiers.get(tier)
        return prices.price(storage_class) if prices else None

    def class_of(self, tier: str, storage_class: str | None) -> str:
        """The class an object is in: as recorded, else the tier's default."""
        prices = self.tiers.get(tier)
        return storage_class or (prices.default_class if prices else "")


def parse_cost(top: Table, tiers: Mapping[str, Any]) -> CostModel:
    """``[cost]`` and every ``[tiers.NAME.cost]`` of the file ``top`` (``tiers``: the parsed ``TierConfig``s)."""
    table = top.sub("cost")
    table.check_keys(_COST_KEYS)
    return CostModel(
        currency=table.string("currency", CURRENCY),
        hot_per_gb_month=_money(table, "hot_per_gb_month", HOT_PER_GB_MONTH),
        tiers={name: _tier(top.sub("tiers").sub(name).sub("cost"), tier) for name, tier in tiers.items()},
    )


def _tier(table: Table, tier: Any) -> TierPrices:
    default_table = TABLE_OF_SCHEME.get(tier.scheme, "none")
    name = table.choice("prices", PRICE_TABLES, default_table)
    default_class = tier.storage_class or DEFAULT_CLASS.get(tier.scheme, "")
    classes = dict(DEFAULT_PRICES[name])
    if "" in classes and default_class:  # a posix tier's one class, under the label it gives it
        classes[default_class] = classes.pop("")
    known = OPTIONS[tier.scheme]["storage_class"].choices if tier.scheme in OPTIONS else ()
    own = {k: v for k, v in table.data.items() if k in _CLASS_KEYS}  # the tier's default class, set in place
    if own:
        classes[default_class] = _class(Table(table.file, table.section, own, table.env),
                                        classes.get(default_class, ClassPrice()))
    for key in table.data:
        if key == "prices" or key in own:
            continue
        if known and key not in known:
            hint = closest_hint(key, ("prices", *_CLASS_KEYS, *known))
            raise ConfigError(f"{table.file}: {table.where('unknown key or storage class')} {key!r}; {hint}")
        classes[key] = _class(table.sub(key), classes.get(key, ClassPrice()))
    return TierPrices(name, default_class, classes)


def _class(table: Table, base: ClassPrice) -> ClassPrice:
    table.check_keys(_CLASS_KEYS)
    requests = {kind: _money(table, f"{kind}_per_1000", base.per_1000(kind)) for kind in REQUEST_KINDS}
    restore = dict(base.restore)
    where = table.sub("restore")
    where.check_keys(_RESTORE_TIERS)
    for name in where.data:
        one, old = where.sub(name), restore.get(name, Retrieval())
        one.check_keys(_RESTORE_KEYS)
        restore[name] = Retrieval(_money(one, "per_gb", old.per_gb), _money(one, "per_1000", old.per_1000),
                                  one.duration("delay", old.delay))
    return ClassPrice(
        per_gb_month=_money(table, "per_gb_month", base.per_gb_month),
        requests={k: v for k, v in requests.items() if v},
        retrieval_per_gb=_money(table, "retrieval_per_gb", base.retrieval_per_gb),
        restore=restore,
        min_duration=table.duration("min_duration", base.min_duration),
    )


def _money(table: Table, key: str, default: float) -> float:
    """A price: a non-negative number (an integer or a float; not a string)."""
    value = table.data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise table.error(key, f"found {type_name(value)} ({value!r})", "expected a price: a number like 0.0125")
    if value < 0 or value != value or value == float("inf"):
        raise table.error(key, f"{value!r} is not a price", "expected a number at least 0")
    return float(value)


# -- describe ------------------------------------------------------------------


def describe_cost(model: CostModel) -> list[str]:
    """The resolved cost model as TOML lines: ``[cost]``, then one inline table per class of each tier."""
    lines = ["", f"# {PRICES_NOTE}", "[cost]", f"currency = {_text(model.currency)}",
             f"hot_per_gb_month = {_number(model.hot_per_gb_month)}"]
    for name, prices in model.tiers.items():
        lines += ["", f"[tiers.{name}.cost]   # objects with no recorded class: {prices.default_class or '(label)'}",
                  f"prices = {_text(prices.table)}"]
        lines += [f"{_key(cls)} = {_inline(price)}" for cls, price in prices.classes.items()]
    return lines


def _inline(price: ClassPrice) -> str:
    parts = [f"per_gb_month = {_number(price.per_gb_month)}"]
    parts += [f"{kind}_per_1000 = {_number(price.per_1000(kind))}" for kind in REQUEST_KINDS if price.per_1000(kind)]
    if price.retrieval_per_gb:
        parts.append(f"retrieval_per_gb = {_number(price.retrieval_per_gb)}")
    if price.min_duration:
        parts.append(f"min_duration = {_text(format_duration(price.min_duration))}")
    if price.restore:
        tiers = ", ".join(f"{t} = {{ per_gb = {_number(r.per_gb)}, per_1000 = {_number(r.per_1000)}, "
                          f"delay = {_text(format_duration(r.delay))} }}" for t, r in price.restore.items())
        parts.append(f"restore = {{ {tiers} }}")
    return "{ " + ", ".join(parts) + " }"


def _number(value: float) -> str:
    return f"{value:.6g}" if "e" not in f"{value:.6g}" else f"{value:.10f}".rstrip("0")


def _text(value: str) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


def _key(name: str) -> str:
    import re

    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else _text(name)
