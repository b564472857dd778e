"""Prove a capacity tier works: one file through put, head, get, compare and delete.

``tiering demo`` runs ``demo(config)``; ``tiering config check --probe`` runs
``probe``. Library code: nothing here prints; results are values the CLI renders.
"""

from __future__ import annotations

import filecmp
import os
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from tiering.config import Config, open_tier
from tiering.errors import IntegrityError, NotFoundError, TieringError
from tiering.stores.base import FileMeta, ObjectInfo, Store
from tiering.stores.checksum import checksum_file
from tiering.stores.keys import encode_key
from tiering.units import format_size

#: Where ``demo`` writes its sample, relative to the hot tier (and so its object key).
SAMPLE = "tiering-demo/sample.bin"


@dataclass(frozen=True)
class RoundTripResult:
    """What one round trip moved, and how fast."""

    store: str  # the tier's URL
    key: str
    size: int
    checksum: str
    put_seconds: float
    get_seconds: float

    @property
    def put_mb_s(self) -> float:
        return self.size / 1e6 / max(self.put_seconds, 1e-9)

    @property
    def get_mb_s(self) -> float:
        return self.size / 1e6 / max(self.get_seconds, 1e-9)

    def summary(self) -> str:
        """One line: size, checksum prefix and throughput each way."""
        return (
            f"round trip ok: {self.key} ({format_size(self.size)}, {self.checksum[:23]}...) via {self.store}: "
            f"put {self.put_mb_s:.1f} MB/s, get {self.get_mb_s:.1f} MB/s; verified and deleted"
        )


def write_sample(path: Path, size: int) -> Path:
    """Write ``size`` random bytes to ``path`` (creating its folders)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 1 << 20))
            f.write(chunk)
            left -= len(chunk)
    return path


def roundtrip(store: Store, path: str | Path, key: str) -> RoundTripResult:
    """Copy ``path`` to ``key`` and back, check size and bytes each way, then delete the object.

    Raises ``IntegrityError`` on any mismatch and leaves no object behind.
    """
    path = Path(path)
    st = os.stat(path)
    checksum, size = checksum_file(path)
    try:
        started = time.perf_counter()
        store.put_file(path, key, FileMeta.from_stat(st, key, checksum))
        put_seconds = time.perf_counter() - started
        _expect(store.head(key), size, checksum, store, key)
        get_seconds = _get_and_compare(store, path, key, checksum, size)
    except BaseException:
        with suppress(TieringError):
            store.delete(key)
        raise
    store.delete(key)
    _expect_gone(store, key)
    return RoundTripResult(store.url, key, size, checksum, put_seconds, get_seconds)


def _get_and_compare(store: Store, path: Path, key: str, checksum: str, size: int) -> float:
    # Beside the source, as a restore would be: same filesystem, same permissions.
    with tempfile.TemporaryDirectory(prefix=".tiering-selftest-", dir=path.parent) as tmp:
        copy = Path(tmp) / "copy"
        started = time.perf_counter()
        store.get_file(key, copy)
        seconds = time.perf_counter() - started
        if checksum_file(copy) != (checksum, size) or not filecmp.cmp(path, copy, shallow=False):
            message = f"{store.url}: {key}: the copy read back differs from {path}"
            raise IntegrityError(message, store=store.url, key=key)
    return seconds


def _expect(info: ObjectInfo, size: int, checksum: str, store: Store, key: str) -> None:
    if info.size != size or info.checksum != checksum:
        raise IntegrityError(
            f"{store.url}: {key}: stored {info.size} bytes {info.checksum or '(no checksum)'}, "
            f"expected {size} bytes {checksum}",
            store=store.url,
            key=key,
        )


def _expect_gone(store: Store, key: str) -> None:
    try:
        store.head(key)
    except NotFoundError:
        return
    raise IntegrityError(f"{store.url}: {key}: still present after delete", store=store.url, key=key)


def probe(store: Store) -> ObjectInfo | None:
    """The first object of the tier's listing (None for an empty tier): proof it answers."""
    listing = store.list()
    try:
        return next(iter(listing), None)
    finally:
        close = getattr(listing, "close", None)
        if close:
            close()


def demo(config: Config, size: int = 1 << 20) -> RoundTripResult:
    """What ``tiering demo`` does until the mover exists.

    Creates the hot tier's folder (and the default tier's, when it is a local
    path: the demo sets up a fresh local configuration), writes a sample of
    ``size`` random bytes into the hot tier and round-trips it through the
    default capacity tier. The sample stays on the hot tier; the object does not.
    """
    config.hot_path.mkdir(parents=True, exist_ok=True)
    tier = config.tier()
    if tier.scheme == "file":
        Path(tier.url).mkdir(parents=True, exist_ok=True)
    sample = write_sample(config.hot_path / SAMPLE, size)
    store = open_tier(config)
    try:
        return roundtrip(store, sample, encode_key(SAMPLE))
    finally:
        store.close()
