"""Default prices of the capacity tiers' storage classes: DEFAULTS TO EDIT, not a quote.

What ``tiering cost`` and the planner's money terms start from when a
configuration does not set its own (``[cost]`` and ``[tiers.NAME.cost]``,
``tiering.config.cost``). The figures are public list prices as they were
**recalled on 2026-12-07, not fetched** (this was written without network
access): AWS S3 in us-east-1 (USD), Alibaba Cloud OSS in a Chinese mainland
region (its CNY list prices converted at about 7.2 CNY/USD, locally redundant
storage). Prices differ by region, redundancy, contract and month; check your
provider's price page and put the figures you pay in the config.

Units: money per GiB-month (GiB = 2**30 bytes, as both providers bill), per
1,000 requests, per GiB retrieved; durations in seconds. ``min_duration`` is the
minimum storage duration: an object deleted, overwritten or moved out of the
class earlier is billed for the rest of it anyway.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

#: When the table below was recalled (shown by ``tiering config check`` and ``tiering cost``).
PRICES_DATE = "2026-12-07"
PRICES_NOTE = (f"default prices recalled (not fetched) on {PRICES_DATE}: AWS us-east-1, OSS mainland China LRS; "
               "edit [cost] / [tiers.NAME.cost] to the prices you pay")

#: Request kinds a class prices (per 1,000). ``list`` and ``head`` are billed like ``put`` and ``get``
#: respectively by both providers unless set otherwise.
REQUEST_KINDS = ("put", "get", "list", "head")
#: Every kind of tier's default price table (``prices = "..."`` in ``[tiers.NAME.cost]``).
PRICE_TABLES = ("oss", "s3", "posix", "none")

_DAY = 86400.0
_HOUR = 3600.0


@dataclass(frozen=True)
class Retrieval:
    """The price and delay of restoring an archived object at one restore tier (Expedited/Standard/Bulk)."""

    per_gb: float = 0.0
    per_1000: float = 0.0  # restore requests
    delay: float = 0.0  # seconds until the object can be read, typical


@dataclass(frozen=True)
class ClassPrice:
    """What one storage class costs: storage, requests, reads, restores and the minimum duration."""

    per_gb_month: float = 0.0
    requests: dict[str, float] = field(default_factory=dict, hash=False)  # kind -> money per 1,000
    retrieval_per_gb: float = 0.0  # reading an object directly (IA-like classes charge for it)
    restore: dict[str, Retrieval] = field(default_factory=dict, hash=False)  # restore tier -> price, delay
    min_duration: float = 0.0  # seconds

    def per_1000(self, kind: str) -> float:
        """Money per 1,000 requests of ``kind`` (one of ``REQUEST_KINDS``)."""
        return self.requests.get(kind, 0.0)

    def with_values(self, **values) -> ClassPrice:
        return replace(self, **values)


def _requests(put: float, get: float) -> dict[str, float]:
    return {"put": put, "get": get, "list": put, "head": get}


def _cny(price: float) -> float:
    """An OSS list price in CNY as USD (about 7.2 CNY/USD), to three significant digits."""
    return float(f"{price / 7.2:.3g}")


#: OSS, mainland China, LRS (CNY list prices in USD). Requests: 0.01 CNY / 10,000 (Standard),
#: 0.1 CNY / 10,000 (other classes). Archive objects need RestoreObject except with real-time access.
OSS_PRICES: dict[str, ClassPrice] = {
    "Standard": ClassPrice(_cny(0.12), _requests(_cny(0.001), _cny(0.001))),
    "IA": ClassPrice(_cny(0.08), _requests(_cny(0.01), _cny(0.01)), retrieval_per_gb=_cny(0.0065),
                     min_duration=30 * _DAY),
    "Archive": ClassPrice(_cny(0.033), _requests(_cny(0.01), _cny(0.01)), min_duration=60 * _DAY, restore={
        "Standard": Retrieval(_cny(0.06), _cny(0.1), 1 * _HOUR)}),
    "ColdArchive": ClassPrice(_cny(0.015), _requests(_cny(0.01), _cny(0.01)), min_duration=180 * _DAY, restore={
        "Expedited": Retrieval(_cny(0.2), _cny(30), 1 * _HOUR),
        "Standard": Retrieval(_cny(0.06), _cny(3), 5 * _HOUR),
        "Bulk": Retrieval(_cny(0.03), _cny(0.3), 12 * _HOUR)}),
    "DeepColdArchive": ClassPrice(_cny(0.0075), _requests(_cny(0.01), _cny(0.01)), min_duration=180 * _DAY,
                                  restore={"Expedited": Retrieval(_cny(0.3), _cny(30), 12 * _HOUR),
                                           "Standard": Retrieval(_cny(0.1), _cny(3), 48 * _HOUR)}),
}

#: S3 in us-east-1 (USD).
S3_PRICES: dict[str, ClassPrice] = {
    "STANDARD": ClassPrice(0.023, _requests(0.005, 0.0004)),
    "STANDARD_IA": ClassPrice(0.0125, _requests(0.01, 0.001), retrieval_per_gb=0.01, min_duration=30 * _DAY),
    "GLACIER_IR": ClassPrice(0.004, _requests(0.02, 0.01), retrieval_per_gb=0.03, min_duration=90 * _DAY),
    "GLACIER": ClassPrice(0.0036, _requests(0.03, 0.0004), min_duration=90 * _DAY, restore={
        "Expedited": Retrieval(0.03, 10.0, 5 * 60.0),
        "Standard": Retrieval(0.01, 0.05, 4 * _HOUR),
        "Bulk": Retrieval(0.0, 0.0, 8 * _HOUR)}),
    "DEEP_ARCHIVE": ClassPrice(0.00099, _requests(0.05, 0.0004), min_duration=180 * _DAY, restore={
        "Standard": Retrieval(0.02, 0.10, 12 * _HOUR),
        "Bulk": Retrieval(0.0025, 0.025, 48 * _HOUR)}),
}

#: An HDD array or NAS path: one class (its label is free). A rough amortized guess, no request charges.
POSIX_PRICES: dict[str, ClassPrice] = {"": ClassPrice(0.015)}

#: The table each ``prices = "..."`` names; "none": every class free until the config prices it.
DEFAULT_PRICES: dict[str, dict[str, ClassPrice]] = {"oss": OSS_PRICES, "s3": S3_PRICES, "posix": POSIX_PRICES,
                                                    "none": {}}
#: The price table a tier gets by its kind (``TierConfig.scheme``).
TABLE_OF_SCHEME = {"oss": "oss", "s3": "s3", "file": "posix"}
#: The class an object is in when neither the catalog nor the tier names one (the store's default).
DEFAULT_CLASS = {"oss": "Standard", "s3": "STANDARD", "file": ""}

#: The hot tier (NVMe, a parallel filesystem): a rough default per GiB-month, 10x object storage.
HOT_PER_GB_MONTH = 0.20
CURRENCY = "USD"
