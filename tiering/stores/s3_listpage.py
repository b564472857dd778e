"""One ListObjectsV2 page read raw, for the names obstore cannot hold.

obstore parses every listed name into its ``Path`` type, which refuses
control characters (``\\n``), empty segments (``a//b``) and ``.``/``..``
segments; one such object makes its whole listing page fail, and with it
every listing of the prefix. S3 allows those names, so a listing must still
yield them: the caller (the one who would copy, restore or delete the object)
decides that that one item fails. ``list_page`` asks for the page itself
(AWS Signature V4, path-style, ``encoding-type=url`` so any name survives the
XML) and returns it in obstore's own batch shape, so a listing can go on
with obstore after its last name.
"""

from __future__ import annotations

import http.client
import xml.etree.ElementTree as ET
from urllib.parse import quote, unquote, urlsplit

from tiering.core.errors import FatalError, PermissionDeniedError, TransientError
from tiering.stores.sigv4 import S3Credentials, Signer, canonical_query

PAGE = 1000


def list_page(endpoint: str, creds: S3Credentials, bucket: str, directory: str | None, after: str | None,
              *, url: str, timeout: float = 30.0) -> list[dict]:
    """Up to ``PAGE`` objects under ``directory/`` (the whole bucket for None) after the name ``after``.

    Each as obstore lists it: ``{"path", "size", "e_tag"}``; an empty list at the end.
    """
    query = {"list-type": "2", "max-keys": str(PAGE), "encoding-type": "url"}
    if directory:
        query["prefix"] = directory.rstrip("/") + "/"
    if after:
        query["start-after"] = after
    status, body = _get(endpoint, creds, f"/{quote(bucket, safe='')}", canonical_query(query), url, timeout)
    if status in (401, 403):
        raise PermissionDeniedError(f"{url}: listing refused (HTTP {status})", store=url)
    if status >= 500 or status in (408, 429):
        raise TransientError(f"{url}: listing failed: HTTP {status}", store=url)
    if status != 200:
        raise FatalError(f"{url}: listing failed: HTTP {status}: {body[:200]!r}", store=url)
    return _objects(body, url)


def _get(endpoint: str, creds: S3Credentials, path: str, query: str, url: str, timeout: float) -> tuple[int, bytes]:
    where = urlsplit(endpoint)
    headers = Signer(creds).sign("GET", where.netloc, path, query)
    conn_cls = http.client.HTTPSConnection if where.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(where.hostname, where.port, timeout=timeout)
    try:
        conn.request("GET", f"{path}?{query}", headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    except OSError as exc:
        raise TransientError(f"{url}: cannot reach the server ({exc.strerror or exc})", store=url) from exc
    finally:
        conn.close()


def _objects(body: bytes, url: str) -> list[dict]:
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise FatalError(f"{url}: a listing answer that is not XML ({exc})", store=url) from exc
    encoded = any(_tag(e) == "EncodingType" and (e.text or "").lower() == "url" for e in root)
    objects = []
    for item in root:
        if _tag(item) != "Contents":
            continue
        fields = {_tag(child): child.text or "" for child in item}
        name = unquote(fields.get("Key", "")) if encoded else fields.get("Key", "")
        try:
            size = int(fields.get("Size", ""))
        except ValueError:
            raise FatalError(f"{url}: a listing answer without a usable Size for {name!r}", store=url) from None
        objects.append({"path": name, "size": size, "e_tag": fields.get("ETag", "")})
    return objects


def _tag(element: ET.Element) -> str:
    return element.tag.rsplit("}", 1)[-1]
