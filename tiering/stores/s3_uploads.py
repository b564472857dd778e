"""Finding and aborting unfinished S3 multipart uploads.

obstore aborts an upload that fails in-process, but a SIGKILLed mover leaves
its upload open on the server: invisible to listings, billed as storage.
Recovery lists the uploads under a key and aborts them. obstore exposes no
API for that, so these two requests are signed here (AWS Signature V4,
path-style addressing, ``sigv4``) and sent with the standard library.
"""

from __future__ import annotations

import http.client
import re
import xml.etree.ElementTree as ET
from urllib.parse import quote, urlsplit

from tiering.core.errors import FatalError, TransientError
from tiering.stores.s3_errors import classify
from tiering.stores.sigv4 import S3Credentials, Signer, canonical_query, quote_path

_CODE = re.compile(rb"<Code>([^<]+)</Code>")


def _request(endpoint: str, creds: S3Credentials, method: str, path: str, query: dict[str, str],
             timeout: float) -> tuple[int, bytes]:
    url = urlsplit(endpoint)
    q = canonical_query(query)
    headers = Signer(creds).sign(method, url.netloc, path, q)
    conn_cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(url.hostname, url.port, timeout=timeout)
    try:
        conn.request(method, path + (f"?{q}" if q else ""), headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (OSError, http.client.HTTPException) as exc:
        raise TransientError(f"{endpoint}: cannot reach the server ({getattr(exc, 'strerror', None) or exc})",
                             store=endpoint) from exc
    finally:
        conn.close()


def list_uploads(endpoint: str, creds: S3Credentials, bucket: str, prefix: str, timeout: float = 10,
                 *, url: str = "", retry=None, page_size: int = 0) -> list[tuple[str, str]]:
    """(key, upload id) of every unfinished multipart upload whose key starts with ``prefix``.

    Follows truncated answers: a bucket with more than a page (1,000, or
    ``page_size``) of open uploads has all of them found. AWS pages by key
    (``NextKeyMarker`` with ``NextUploadIdMarker``); SeaweedFS by upload id
    alone (no ``NextKeyMarker``, and a ``key-marker`` would skip keys), so the
    markers go back as the server gave them. Each page is one call of
    ``retry`` (a ``RetryPolicy``) when one is given.
    """
    uploads: list[tuple[str, str]] = []
    seen: set[str] = set()
    markers = ("", "")
    while True:
        query = {"uploads": "", "prefix": prefix}
        if page_size:
            query["max-uploads"] = str(page_size)
        if markers[0]:
            query["key-marker"] = markers[0]
        if markers[1]:
            query["upload-id-marker"] = markers[1]

        def page(query=query) -> tuple[int, bytes]:
            status, body = _request(endpoint, creds, "GET", f"/{quote(bucket, safe='')}", query, timeout)
            _check(status, body, url or f"{endpoint}/{bucket}", prefix)
            return status, body

        _, body = retry.call(page) if retry is not None else page()
        found, truncated, markers = _parse_uploads(body, url or f"{endpoint}/{bucket}")
        new = [upload for upload in found if upload[1] not in seen]
        uploads += new
        seen.update(upload_id for _, upload_id in new)
        if not truncated:
            return uploads
        if not new:
            raise FatalError(f"{url or endpoint}: the list of unfinished uploads does not advance past "
                             f"{len(uploads):,}", store=url or endpoint)


def _parse_uploads(body: bytes, where: str) -> tuple[list[tuple[str, str]], bool, tuple[str, str]]:
    """The uploads of one ListMultipartUploads page, whether it is truncated, and the markers of the next."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise FatalError(f"{where}: the server sent a malformed list of uploads ({exc})", store=where) from exc
    found, top = [], {}
    for child in root:
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == "Upload":
            fields = {c.tag.rsplit("}", 1)[-1]: c.text or "" for c in child}
            found.append((fields.get("Key", ""), fields.get("UploadId", "")))
        else:
            top[tag] = child.text or ""
    truncated = top.get("IsTruncated", "false").lower() == "true"
    markers = (top.get("NextKeyMarker", ""), top.get("NextUploadIdMarker", ""))
    if truncated and not any(markers):
        raise FatalError(f"{where}: the server said the list of uploads goes on but gave no marker", store=where)
    return found, truncated, markers


def abort_upload(endpoint: str, creds: S3Credentials, bucket: str, name: str, upload_id: str, timeout: float = 10,
                 *, url: str = "") -> None:
    status, body = _request(endpoint, creds, "DELETE", quote_path(bucket, name), {"uploadId": upload_id}, timeout)
    if status != 404:  # already gone is fine
        _check(status, body, url or f"{endpoint}/{bucket}", name)


def _check(status: int, body: bytes, url: str, key: str) -> None:
    """Raise the project's error for a failed answer: the same table as every other S3 request (``s3_errors.classify``)."""
    if status < 300:
        return
    code = m.group(1).decode("utf-8", "replace") if (m := _CODE.search(body)) else ""
    raise classify(url, key, status, code)
