"""Finding and aborting unfinished S3 multipart uploads.

obstore aborts an upload that fails in-process, but a SIGKILLed mover leaves
its upload open on the server: invisible to listings, billed as storage.
Recovery lists the uploads under a key and aborts them. obstore exposes no
API for that, so these two requests are signed here (AWS Signature V4,
path-style addressing, ``sigv4``) and sent with the standard library.
"""

from __future__ import annotations

import http.client
import xml.etree.ElementTree as ET
from urllib.parse import quote, urlsplit

from tiering.errors import PermissionDeniedError, TransientError
from tiering.stores.sigv4 import S3Credentials, Signer, canonical_query, quote_path


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
    except OSError as exc:
        raise TransientError(f"{endpoint}: cannot reach the server ({exc.strerror or exc})") from exc
    finally:
        conn.close()


def list_uploads(endpoint: str, creds: S3Credentials, bucket: str, prefix: str, timeout: float = 10) -> list[tuple[str, str]]:
    """(key, upload id) of every unfinished multipart upload whose key starts with ``prefix``."""
    status, body = _request(endpoint, creds, "GET", f"/{quote(bucket, safe='')}", {"uploads": "", "prefix": prefix}, timeout)
    _check(status, body, endpoint, bucket)
    root = ET.fromstring(body)
    uploads = []
    for upload in root.iter():
        if upload.tag.rsplit("}", 1)[-1] == "Upload":
            fields = {child.tag.rsplit("}", 1)[-1]: child.text or "" for child in upload}
            uploads.append((fields.get("Key", ""), fields.get("UploadId", "")))
    return uploads


def abort_upload(endpoint: str, creds: S3Credentials, bucket: str, name: str, upload_id: str, timeout: float = 10) -> None:
    status, body = _request(endpoint, creds, "DELETE", quote_path(bucket, name), {"uploadId": upload_id}, timeout)
    if status != 404:  # already gone is fine
        _check(status, body, endpoint, bucket)


def _check(status: int, body: bytes, endpoint: str, bucket: str) -> None:
    if status in (401, 403):
        raise PermissionDeniedError(f"{endpoint}/{bucket}: refused (HTTP {status}); check the tier's credentials")
    if status >= 500:
        raise TransientError(f"{endpoint}/{bucket}: server error HTTP {status}")
    if status >= 300:
        raise TransientError(f"{endpoint}/{bucket}: unexpected HTTP {status}: {body[:200]!r}")
