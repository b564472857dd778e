"""Each store's options, declared once: name, kind, default and a one-line doc.

The stores take their defaults from here, the config loader
(``tiering.config.tiers``) checks ``[tiers.NAME]`` tables and ``--src-option``
words against it, ``tiering config check`` formats values by it, and the
README's table of store options is checked against it by the tests. The
declarations live here rather than in each store's module so that reading a
configuration does not import a store's SDK (``oss2`` alone takes ~0.25 s).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30

#: How a config value is checked (``tiering.config.values.Table``'s getter of the same name).
KINDS = ("string", "label", "secret", "endpoint", "boolean", "integer", "size", "duration", "choice", "path")

S3_STORAGE_CLASSES = (
    "STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE",
    "REDUCED_REDUNDANCY",
)
OSS_STORAGE_CLASSES = ("Standard", "IA", "Archive", "ColdArchive", "DeepColdArchive")
#: OSS classes whose objects must be restored before they can be read.
OSS_ARCHIVE_CLASSES = frozenset(OSS_STORAGE_CLASSES[2:])
OSS_RESTORE_TIERS = ("Expedited", "Standard", "Bulk")
#: S3 classes whose objects must be restored before they can be read.
S3_ARCHIVE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
#: Every class (any store) whose objects must be restored before they can be read.
ARCHIVE_CLASSES = OSS_ARCHIVE_CLASSES | S3_ARCHIVE_CLASSES


@dataclass(frozen=True)
class StoreOption:
    """One option a store takes from its tier's configuration."""

    name: str  # the key in the store's ``options`` mapping
    kind: str  # one of KINDS
    default: Any  # what the store uses when the option is not given (None: nothing, or see ``shown``)
    doc: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    required: bool = False
    #: The key in a config file when it is not ``name`` (``part_jobs`` for ``jobs``).
    key: str = ""
    #: The default as people read it, where it is not a plain value (an environment variable ...).
    shown: str = ""
    #: False for a key every tier takes that this store does not use itself (posix part sizes).
    used: bool = True

    def __post_init__(self) -> None:
        assert self.kind in KINDS, self.kind

    @property
    def config_key(self) -> str:
        return self.key or self.name

    @property
    def shown_default(self) -> str:
        """The default for documentation: ``shown``, else the value, else "" (required or nothing)."""
        if self.shown:
            return self.shown
        if self.default is None:
            return ""
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        if self.kind == "size":
            return f"{self.default // MiB} MiB" if self.default % MiB == 0 else f"{self.default} B"
        if self.kind == "duration":
            return f"{self.default:g} s"
        return str(self.default)


class StoreOptions:
    """The options of one kind of store, in the order a config check reads them."""

    def __init__(self, store: str, *options: StoreOption) -> None:
        self.store = store  # "posix", "s3", "oss"
        self._options = {o.name: o for o in options}

    def __iter__(self) -> Iterator[StoreOption]:
        return iter(self._options.values())

    def __getitem__(self, name: str) -> StoreOption:
        return self._options[name]

    def __contains__(self, name: object) -> bool:
        return name in self._options

    def default(self, name: str) -> Any:
        """The declared default of ``name`` (a KeyError names an undeclared option: declare it first)."""
        return self._options[name].default

    def config_keys(self) -> tuple[str, ...]:
        return tuple(o.config_key for o in self)


def _part_options(*, lo: int, hi: int | None, used: bool = True) -> tuple[StoreOption, ...]:
    """The part settings every tier takes; a configured tier inherits ``[concurrency]``'s where it sets none.

    ``lo``/``hi``: the smallest and largest part the service accepts (the last part of an upload may be smaller).
    """
    unused = "; carried, not used: posix copies a file whole" if not used else ""
    return (
        StoreOption("part_size", "size", 64 * MiB if used else None, f"size of one part of a large transfer{unused}",
                    minimum=lo, maximum=hi, shown="[concurrency]", used=used),
        StoreOption("multipart_threshold", "size", 64 * MiB if used else None,
                    f"files from this size on go in parts{unused}", minimum=1, shown="[concurrency]", used=used),
        StoreOption("jobs", "integer", 4 if used else None, f"parts of one file moved at once{unused}", minimum=1,
                    key="part_jobs", shown="[concurrency]", used=used),
    )


POSIX_OPTIONS = StoreOptions(
    "posix",
    StoreOption("storage_class", "label", "", "a free label for reports; the store does not read it",
                used=False),
    *_part_options(lo=1, hi=None, used=False),
    StoreOption("fsync", "boolean", True, "fsync each object and its folder; false only for benchmarks on scratch "
                "space"),
)

S3_OPTIONS = StoreOptions(
    "s3",
    StoreOption("storage_class", "choice", "", "class of new objects",
                choices=S3_STORAGE_CLASSES, shown="the bucket's (STANDARD)"),
    *_part_options(lo=5 * MiB, hi=5 * GiB),
    StoreOption("endpoint", "endpoint", None, "the service's http(s)://host[:port]",
                shown="$AWS_ENDPOINT_URL, else AWS for the region"),
    StoreOption("region", "string", "us-east-1", "signing region", shown="$AWS_REGION, $AWS_DEFAULT_REGION, us-east-1"),
    StoreOption("access_key_id", "string", None, "key id (a pair with secret_access_key)", shown="$AWS_ACCESS_KEY_ID"),
    StoreOption("secret_access_key", "secret", None, "secret key, as a ${VAR} reference",
                shown="$AWS_SECRET_ACCESS_KEY"),
    StoreOption("session_token", "secret", None, "session token of temporary credentials",
                shown="$AWS_SESSION_TOKEN"),
    StoreOption("allow_http", "boolean", None, "allow a plain-http endpoint", shown="true for an http:// endpoint"),
    StoreOption("virtual_hosted_style", "boolean", False, "address bucket.host/key instead of host/bucket/key"),
    StoreOption("restore_tier", "choice", "Standard", "how fast GLACIER/DEEP_ARCHIVE objects are restored",
                choices=OSS_RESTORE_TIERS),
    StoreOption("restore_days", "integer", 1, "how long a restored copy stays readable", minimum=1),
    StoreOption("connect_timeout", "duration", 5.0, "time to connect"),
    StoreOption("request_timeout", "duration", 300.0, "time for one whole request"),
)

OSS_OPTIONS = StoreOptions(
    "oss",
    StoreOption("storage_class", "choice", "Standard", "class of new objects", choices=OSS_STORAGE_CLASSES),
    *_part_options(lo=100 * KiB, hi=5 * GiB),
    StoreOption("endpoint", "endpoint", None, "e.g. https://oss-cn-hangzhou.aliyuncs.com", required=True),
    StoreOption("region", "string", None, "signing region (V4 signatures; V1 without one)",
                shown="from oss-REGION.aliyuncs.com"),
    StoreOption("access_key_id", "string", None, "key id (a pair with access_key_secret)", shown="$OSS_ACCESS_KEY_ID"),
    StoreOption("access_key_secret", "secret", None, "secret key, as a ${VAR} reference",
                shown="$OSS_ACCESS_KEY_SECRET"),
    StoreOption("security_token", "secret", None, "STS token of temporary credentials", shown="$OSS_SESSION_TOKEN"),
    StoreOption("restore_tier", "choice", "Standard", "how fast archived objects are restored",
                choices=OSS_RESTORE_TIERS),
    StoreOption("restore_days", "integer", 1, "how long a restored copy stays readable", minimum=1, maximum=365),
    StoreOption("connect_timeout", "duration", 5.0, "time to connect", minimum=0.1),
    StoreOption("read_timeout", "duration", 60.0, "time to wait for each answer", minimum=1),
    StoreOption("checkpoint_dir", "path", None, "state of resumable uploads and downloads",
                shown="$XDG_CACHE_HOME/tiering/oss-checkpoints"),
)

#: URL scheme (as ``stores.scheme_of`` names it) -> that store's options.
OPTIONS: dict[str, StoreOptions] = {"file": POSIX_OPTIONS, "s3": S3_OPTIONS, "oss": OSS_OPTIONS}

#: Options whose values are credentials: never printed, never in a repr.
SECRET_OPTIONS = frozenset(o.name for options in OPTIONS.values() for o in options if o.kind == "secret")
