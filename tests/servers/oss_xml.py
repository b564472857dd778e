"""XML bodies of the OSS test server: no namespaces, element names as in the OSS API docs."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote


class BadXml(ValueError):
    """A request body that is not the XML the operation expects."""


def iso8601(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))


def _build(parent: ET.Element, content: Any) -> None:
    """Children from (tag, value) pairs; a value that is a list of pairs nests."""
    for tag, value in content:
        child = ET.SubElement(parent, tag)
        if isinstance(value, list):
            _build(child, value)
        elif value is not None:
            child.text = str(value)


def document(root: str, content: Iterable[tuple[str, Any]]) -> bytes:
    element = ET.Element(root)
    _build(element, list(content))
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(element, encoding="utf-8")


def error(code: str, message: str, request_id: str, host: str, **extra: str) -> bytes:
    content = [("Code", code), ("Message", message), ("RequestId", request_id), ("HostId", host), *extra.items()]
    return document("Error", content)


def encoder(url: bool):
    """How names appear in a listing: percent-encoded with ``encoding-type=url``."""
    return (lambda s: quote(s, safe="/")) if url else (lambda s: s)


def object_entry(key: str, obj, enc, owner: bool = True) -> tuple[str, list]:
    fields = [("Key", enc(key)), ("LastModified", iso8601(obj.mtime)), ("ETag", f'"{obj.etag}"'),
              ("Type", obj.kind), ("Size", obj.size), ("StorageClass", obj.storage_class)]
    if owner:
        fields.append(("Owner", [("ID", "0"), ("DisplayName", "0")]))
    return ("Contents", fields)


def list_parts(bucket: str, key: str, upload_id: str, marker: int, parts: list, max_parts: int,
               truncated: bool) -> bytes:
    content = [("Bucket", bucket), ("Key", key), ("UploadId", upload_id), ("PartNumberMarker", marker),
               ("NextPartNumberMarker", parts[-1][0] if parts else marker), ("MaxParts", max_parts),
               ("IsTruncated", str(truncated).lower())]
    for number, part in parts:
        content.append(("Part", [("PartNumber", number), ("LastModified", iso8601(part.mtime)),
                                 ("ETag", f'"{part.etag}"'), ("HashCrc64ecma", part.crc), ("Size", part.size)]))
    return document("ListPartsResult", content)


def _children(node: ET.Element, tag: str) -> list[ET.Element]:
    return [c for c in node if c.tag == tag]


def parse(body: bytes, root: str) -> ET.Element:
    try:
        element = ET.fromstring(body)
    except ET.ParseError as exc:
        raise BadXml(f"The XML you provided was not well-formed: {exc}") from None
    if element.tag != root:
        raise BadXml(f"Expected <{root}>, got <{element.tag}>.")
    return element


def parse_complete(body: bytes) -> list[tuple[int, str]]:
    """(part number, etag) pairs of a CompleteMultipartUpload body, in the order given."""
    parts = []
    for node in _children(parse(body, "CompleteMultipartUpload"), "Part"):
        number, etag = node.findtext("PartNumber"), node.findtext("ETag")
        if number is None or etag is None or not number.isdigit():
            raise BadXml("Each Part needs a PartNumber and an ETag.")
        parts.append((int(number), etag.strip().strip('"').upper()))
    return parts


def parse_delete(body: bytes) -> tuple[bool, list[str]]:
    root = parse(body, "Delete")
    keys = [node.findtext("Key") or "" for node in _children(root, "Object")]
    return (root.findtext("Quiet") or "false").lower() == "true", keys


def parse_restore(body: bytes) -> tuple[int | None, str | None]:
    """Days and JobParameters/Tier of a RestoreRequest body (None where absent)."""
    root = parse(body, "RestoreRequest")
    days = root.findtext("Days")
    if days is not None and not days.strip().isdigit():
        raise BadXml("Days must be a whole number.")
    return (int(days) if days is not None else None), root.findtext("JobParameters/Tier")
