"""The OSS test server's state: buckets, objects, multipart uploads, and its error type."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import crcmod

CHUNK = 1024 * 1024
MIN_PART = 100 * 1024
STORAGE_CLASSES = ("Standard", "IA", "Archive", "ColdArchive", "DeepColdArchive")
ARCHIVED = frozenset({"Archive", "ColdArchive", "DeepColdArchive"})
TIERS = ("Expedited", "Standard", "Bulk")
DAY = 86400.0
# CRC-64/ECMA-182 with the reflection and final XOR that OSS (and oss2) use.
crc64 = crcmod.mkCrcFun(0x142F0E1EBA9EA3693, initCrc=0, rev=True, xorOut=0xFFFFFFFFFFFFFFFF)


class OssError(Exception):
    """An error response: status, OSS error code, message and extra XML fields."""

    def __init__(self, status: int, code: str, message: str, **extra: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def no_such_key(key: str) -> OssError:
    return OssError(404, "NoSuchKey", "The specified key does not exist.", Key=key)


def not_restored() -> OssError:
    return OssError(403, "InvalidObjectState", "The operation is not valid for the object's state.")


@dataclass
class Blob:
    """Bytes on disk and what OSS computes about them."""

    path: Path
    size: int
    md5: bytes
    crc: int
    mtime: float = field(default_factory=time.time)

    @property
    def etag(self) -> str:
        return self.md5.hex().upper()


@dataclass
class Obj:
    blob: Blob
    etag: str
    kind: str  # x-oss-object-type: Normal or Multipart
    storage_class: str
    meta: dict[str, str]  # x-oss-meta-* headers, names in lower case
    content_type: str
    restore_ready: float | None = None  # when the restore under way completes
    restore_until: float | None = None  # when the restored copy expires

    size = property(lambda self: self.blob.size)
    mtime = property(lambda self: self.blob.mtime)

    def restore_state(self, now: float) -> str:
        if self.restore_ready is None or now >= (self.restore_until or 0):
            return ""
        return "ongoing" if now < self.restore_ready else "restored"

    def readable(self, now: float) -> bool:
        return self.storage_class not in ARCHIVED or self.restore_state(now) == "restored"


@dataclass
class Upload:
    key: str
    storage_class: str
    meta: dict[str, str]
    content_type: str
    initiated: float = field(default_factory=time.time)
    parts: dict[int, Blob] = field(default_factory=dict)


@dataclass
class Bucket:
    objects: dict[str, Obj] = field(default_factory=dict)
    uploads: dict[str, Upload] = field(default_factory=dict)
