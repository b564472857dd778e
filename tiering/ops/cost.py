"""What ``tiering cost`` reports: what each tier costs per month now, and what a plan would change.

Now: the hot tier's used bytes (its filesystem's ``statvfs``: everything on it,
managed or not) at ``[cost] hot_per_gb_month``, and each capacity tier's bytes
by storage class as the catalog holds them (archived, released and dirty files
each have one object) at that class's price.

The plan's change, action by action (``tiering.plan``'s actions table):

- ``archive`` of a resident file: its bytes join the target tier/class (one PUT);
  of a dirty file: its object is replaced (one PUT, no change in bytes);
- ``release``: its bytes leave the hot tier (and, not yet archived, join the target as above);
- ``restore``: its bytes come back to the hot tier (one GET, plus the class's
  retrieval and, for an archive class, its restore at the tier's ``restore_tier``);
- ``transition``: its object leaves its class (as the catalog records it, else its
  tier's) for the rule's, in place: one COPY request (billed as a PUT of the
  target class); an object that leaves its class before that class's minimum
  duration (counted from when it was archived) adds the rest of that minimum
  to ``one_time`` (the early-deletion charge);
- ``pin``: nothing.

Money terms per tier/class: ``per_month`` now and ``plan_per_month`` (the change
per month once the plan is applied), ``one_time`` (the plan's requests and
retrievals), ``min_commitment`` (what the moved bytes are billed for at least,
the class's minimum storage duration, even if they leave the class at once),
``at_risk`` files and bytes (moved while changed more recently than that
minimum duration ago: a file that keeps changing is archived again, and the
replaced object is billed to the end of its minimum), and ``readback_once``
(the retrieval cost of reading every moved byte back once). A month is 30 days;
a GB is a GiB (2**30 bytes), as the providers bill.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from tiering.catalog import Catalog
from tiering.config import Config
from tiering.config.cost import ClassPrice, CostModel
from tiering.config.prices import PRICES_NOTE
from tiering.core.states import FileState

if TYPE_CHECKING:
    from tiering.plan import Plan

GIB = float(1 << 30)
MONTH = 30 * 86400.0
#: The name of the hot tier's row.
HOT = "hot"
#: States whose file has an object on a capacity tier.
_ON_CAPACITY = (FileState.ARCHIVED, FileState.RELEASED, FileState.DIRTY)


@dataclass
class TierCost:
    """One row of the report: the hot tier, or one capacity tier's storage class."""

    tier: str
    storage_class: str
    files: int | None = 0  # None for the hot tier (statvfs counts bytes, not files)
    bytes: int = 0
    per_gb_month: float = 0.0
    per_month: float = 0.0
    plan_files: int = 0  # files the plan adds (negative: removes)
    plan_bytes: int = 0
    plan_per_month: float = 0.0
    one_time: float = 0.0
    min_commitment: float = 0.0
    at_risk_files: int = 0
    at_risk_bytes: int = 0
    readback_once: float = 0.0
    min_duration: float = 0.0  # seconds
    priced: bool = True  # False: no price in the config or the defaults (counted as free)

    def as_json(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class CostReport:
    """Every tier's row, the currency, and whether a plan was priced."""

    currency: str
    rows: list[TierCost] = field(default_factory=list)
    planned: int = 0  # actions in the priced plan (0 with no plan)
    with_plan: bool = False
    note: str = PRICES_NOTE

    def total(self, name: str) -> float:
        return sum(getattr(r, name) for r in self.rows)

    def summary(self) -> dict:
        """The one JSON object of ``tiering cost --json``: totals, then every row."""
        keys = ("per_month", "plan_per_month", "one_time", "min_commitment", "readback_once")
        return {"currency": self.currency, **{k: round(self.total(k), 6) for k in keys},
                "after_plan_per_month": round(self.total("per_month") + self.total("plan_per_month"), 6),
                "planned_actions": self.planned, "with_plan": self.with_plan,
                "unpriced": [f"{r.tier}/{r.storage_class}" for r in self.rows if not r.priced],
                "note": self.note, "tiers": [r.as_json() for r in self.rows]}


class _Rows:
    """The report's rows by (tier, class), made on first use and priced from the model."""

    def __init__(self, config: Config) -> None:
        self.config, self.model = config, config.cost
        self.rows: dict[tuple[str, str], TierCost] = {}

    def get(self, tier: str, storage_class: str | None) -> tuple[TierCost, ClassPrice]:
        cls = self.model.class_of(tier, storage_class)
        price = self.model.price(tier, cls)
        row = self.rows.get((tier, cls))
        if row is None:
            row = self.rows[(tier, cls)] = TierCost(tier, cls, priced=price is not None)
            if price is not None:
                row.per_gb_month, row.min_duration = price.per_gb_month, price.min_duration
        return row, price or ClassPrice()


def current_cost(config: Config, catalog: Catalog | None, hot_used: int | None = None) -> CostReport:
    """What every tier costs per month now. ``hot_used``: the hot tier's used bytes (default: ``statvfs``)."""
    from tiering.plan import Usage

    model: CostModel = config.cost
    report = CostReport(model.currency)
    used = Usage.of(config.hot_path).used if hot_used is None else hot_used
    hot = TierCost(HOT, "", None, used, model.hot_per_gb_month, used / GIB * model.hot_per_gb_month)
    rows = _Rows(config)
    for name in config.tiers:  # every configured tier shows, holding something or not
        rows.get(name, None)
    for tier, cls, files, size in _on_capacity(catalog):
        row, price = rows.get(tier, cls)
        row.files += files
        row.bytes += size
        row.per_month += size / GIB * price.per_gb_month
    report.rows = [hot, *rows.rows.values()]
    return report


def _on_capacity(catalog: Catalog | None) -> Iterable[tuple[str, str | None, int, int]]:
    """(tier, storage_class, files, bytes) of the catalog's objects, grouped."""
    if catalog is None:
        return []
    import pyarrow as pa
    import pyarrow.compute as pc

    table = catalog.columns("files", {"state": pa.string(), "tier": pa.string(), "storage_class": pa.string(),
                                      "size": pa.int64()})
    table = table.filter(pc.and_(pc.is_in(table["state"], pa.array([str(s) for s in _ON_CAPACITY])),
                                 pc.is_valid(table["tier"])))
    grouped = table.group_by(["tier", "storage_class"], use_threads=False).aggregate([("state", "count"),
                                                                                      ("size", "sum")])
    return [(r["tier"], r["storage_class"], r["state_count"], r["size_sum"] or 0) for r in grouped.to_pylist()]


def price_plan(config: Config, report: CostReport, plan: Plan, catalog: Catalog | None,
               now: float | None = None) -> CostReport:
    """Add ``plan``'s change to ``report`` (made by ``current_cost``), action by action (the module's rules)."""
    now = time.time() if now is None else now
    rows = _Rows(config)
    rows.rows = {(r.tier, r.storage_class): r for r in report.rows[1:]}
    hot = report.rows[0]
    for batch in plan.actions.to_batches(max_chunksize=4096):  # rows, without the reasons plan.rows() makes
        for row in batch.to_pylist():
            _price_action(config, rows, hot, row, catalog, now)
    report.rows = [hot, *rows.rows.values()]
    report.planned, report.with_plan = len(plan), True
    return report


def _price_action(config: Config, rows: _Rows, hot: TierCost, row: dict, catalog: Catalog | None,
                  now: float) -> None:
    action, size, state = row["action"], int(row["size"] or 0), row["state"] or FileState.RESIDENT
    if action == "restore":
        _restore(config, rows, hot, row, catalog)
        return
    if action == "transition":
        _transition(rows, row, catalog, now)
        return
    if action not in ("archive", "release"):
        return
    if state in (FileState.RESIDENT, FileState.DIRTY):  # a new object (or a replaced one) on the target
        target, price = rows.get(row["target_tier"], row["storage_class"])
        target.one_time += price.per_1000("put") / 1000
        if state == FileState.RESIDENT:
            _arrive(target, price, size, row, now)
    if action == "release":
        hot.plan_bytes -= size
        hot.plan_per_month -= size / GIB * hot.per_gb_month


def _arrive(target: TierCost, price: ClassPrice, size: int, row: dict, now: float) -> None:
    """``size`` bytes of one file join ``target``: its monthly price, minimum, risk and read-back."""
    gib = size / GIB
    target.plan_files += 1
    target.plan_bytes += size
    target.plan_per_month += gib * price.per_gb_month
    target.min_commitment += gib * price.per_gb_month * price.min_duration / MONTH
    changed = row.get("mtime_ns")
    if price.min_duration and changed is not None and now - changed / 1e9 < price.min_duration:
        target.at_risk_files += 1
        target.at_risk_bytes += size
    target.readback_once += _readback(price, gib, None)


def _readback(price: ClassPrice, gib: float, restore_tier: str | None) -> float:
    """Reading ``gib`` of one object back once: a GET, the class's retrieval, and its restore if it has one."""
    money = price.per_1000("get") / 1000 + gib * price.retrieval_per_gb
    if price.restore:
        tier = restore_tier if restore_tier in price.restore else next(iter(price.restore))
        money += gib * price.restore[tier].per_gb + price.restore[tier].per_1000 / 1000
    return money


def _transition(rows: _Rows, row: dict, catalog: Catalog | None, now: float) -> None:
    """One object changes class in place: it leaves its class for the target, one COPY, maybe early."""
    record = catalog.get(row["path"]) if catalog is not None else None
    size, tier = int(row["size"] or 0), row["target_tier"]
    source, old = rows.get(tier, record.storage_class if record else None)
    target, new = rows.get(tier, row["storage_class"])
    if (source.tier, source.storage_class) == (target.tier, target.storage_class):
        return
    gib = size / GIB
    source.plan_files -= 1
    source.plan_bytes -= size
    source.plan_per_month -= gib * old.per_gb_month
    _arrive(target, new, size, {}, now)
    target.one_time += new.per_1000("put") / 1000
    source.one_time += _early_deletion(old, gib, record.archived_at if record else None, now)


def _early_deletion(price: ClassPrice, gib: float, since: float | None, now: float) -> float:
    """What an object of ``gib`` in a class since ``since`` is billed for leaving it now: the rest of the
    class's minimum duration (0 when it has served it, or when nobody knows since when)."""
    if not price.min_duration or since is None:
        return 0.0
    left = price.min_duration - (now - since)
    return gib * price.per_gb_month * left / MONTH if left > 0 else 0.0


def _restore(config: Config, rows: _Rows, hot: TierCost, row: dict, catalog: Catalog | None) -> None:
    record = catalog.get(row["path"]) if catalog is not None else None
    size = int(row["size"] or 0)  # a stub's true size: the planner joins it from the catalog
    tier = (record.tier if record else None) or row["target_tier"]
    source, price = rows.get(tier, record.storage_class if record else None)
    restore_tier = config.tiers[tier].options.get("restore_tier") if tier in config.tiers else None
    source.one_time += _readback(price, size / GIB, restore_tier)
    hot.plan_bytes += size
    hot.plan_per_month += size / GIB * hot.per_gb_month


# -- plan --explain --------------------------------------------------------------------------------------------


def explain_money(config: Config, row: dict | None, policy, now_ns: int) -> list[str]:
    """``plan --explain``'s money lines for the rule that decides ``row`` (from ``find_row``); none when no
    rule moves the file. Saving per month (hot tier freed less the capacity class's price), the minimum the
    class bills, whether the file is at risk of leaving it earlier, and what reading it back once costs."""
    if row is None or row.get("type") != "file":
        return []
    import pyarrow as pa

    from tiering.policy import augment, needed_columns

    facts = augment(pa.Table.from_pylist([row]), needed_columns(*[r.match for r in policy.rules]) | {"mtime_age"},
                    now_ns).to_pylist()[0]
    rule = next((r for r in policy.rules if r.match.evaluate_row(facts, now_ns)), None)
    if rule is None or rule.action not in ("archive", "release", "restore", "transition"):
        return []
    if rule.action == "transition":
        return _transition_lines(config, rule, row)
    return _money_lines(config, rule, row, facts["mtime_age"], now_ns)


def _transition_lines(config: Config, rule, row: dict) -> list[str]:
    """A transition's money: the saving per month between the two classes, the new class's minimum,
    and what reading the file back would cost and wait from there."""
    from tiering.core.units import format_duration

    model, cur = config.cost, config.cost.currency
    tier = row.get("tier") or config.default_tier
    state = row.get("state") or FileState.RESIDENT
    if state not in (FileState.ARCHIVED, FileState.RELEASED):
        return [f"  money: nothing: a {state} file has no current capacity copy to move"]
    gib = int(row.get("size") or 0) / GIB
    was, to = model.class_of(tier, row.get("storage_class") or None), rule.storage_class
    old, new = model.price(tier, was) or ClassPrice(), model.price(tier, to) or ClassPrice()
    saving = gib * (old.per_gb_month - new.per_gb_month)
    lines = [f"  money: transition {tier}/{was} -> {tier}/{to} in place {'saves' if saving >= 0 else 'costs'} "
             f"{show_money(abs(saving))} {cur}/month ({show_money(gib * old.per_gb_month)} -> "
             f"{show_money(gib * new.per_gb_month)}); one COPY {show_money(new.per_1000('put') / 1000)} {cur}"]
    if old.min_duration:
        lines.append(f"  money: {was} bills at least {format_duration(old.min_duration)}: leaving it sooner after "
                     "archiving is charged for the rest")
    if new.min_duration:
        lines.append(f"  money: {to} bills at least {format_duration(new.min_duration)} "
                     f"({show_money(gib * new.per_gb_month * new.min_duration / MONTH)} {cur}) even if it leaves early")
    lines.append(f"  money: reading it back once from {to} costs {show_money(_readback(new, gib, None))} {cur}"
                 + (f" and waits about {format_duration(next(iter(new.restore.values())).delay)}"
                    if new.restore else ""))
    return lines


def _money_lines(config: Config, rule, row: dict, idle: float, now_ns: int) -> list[str]:
    from tiering.core.units import format_duration, format_elapsed

    model, cur = config.cost, config.cost.currency
    state = row.get("state") or FileState.RESIDENT
    gib = int(row.get("size") or 0) / GIB
    tier = (row.get("tier") if rule.action == "restore" else None) or rule.tier or config.default_tier
    cls = model.class_of(tier, None if rule.action == "restore" else rule.storage_class)
    price = model.price(tier, cls) or ClassPrice()
    where = f"{tier}/{cls}" if cls else tier
    hot = gib * model.hot_per_gb_month
    if rule.action == "restore":
        # (priced at the tier's own class: the catalog's record of the object's class is not read here)
        back = _readback(price, gib, config.tiers[tier].options.get("restore_tier") if tier in config.tiers else None)
        return [f"  money: restoring from {where} costs {show_money(back)} {cur} once; the hot tier then costs "
                f"{show_money(hot)} {cur}/month more"]
    adds = state == FileState.RESIDENT  # a new object joins the class (a dirty file's replaces its own)
    keep = gib * price.per_gb_month if adds else 0.0
    saving = (hot if rule.action == "release" else 0.0) - keep
    verb = "saves" if saving >= 0 else "costs"
    lines = [f"  money: {rule.action} to {where} {verb} {show_money(abs(saving))} {cur}/month "
             f"(hot tier {show_money(hot if rule.action == 'release' else 0.0)} freed, {where} {show_money(keep)} added)"]
    if price.min_duration and adds:
        floor = gib * price.per_gb_month * price.min_duration / MONTH
        risk = ("AT RISK: changed " + format_elapsed(idle) + " ago, sooner than the minimum"
                if idle < price.min_duration else f"unchanged for {format_elapsed(idle)}")
        lines.append(f"  money: {where} bills at least {format_duration(price.min_duration)} ({show_money(floor)} {cur}) "
                     f"even if it leaves early; {risk}")
    lines.append(f"  money: reading it back once costs {show_money(_readback(price, gib, None))} {cur}"
                 + (f" and waits about {format_duration(next(iter(price.restore.values())).delay)}"
                    if price.restore else ""))
    return lines


def show_money(amount: float, sign: str = "") -> str:
    """Money for people: cents from 1 up, three significant digits below (a small tier's cost is not 0.00),
    never an exponent. ``sign="+"`` shows the sign of a change."""
    if abs(amount) >= 1:
        return f"{amount:{sign},.2f}"
    if abs(amount) < 5e-9:
        return f"{sign}0" if sign else "0"
    import math

    places = min(8, 2 - math.floor(math.log10(abs(amount))))
    return f"{amount:{sign}.{places}f}"

