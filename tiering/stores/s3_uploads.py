"""Finding and aborting unfinished S3 multipart uploads.

obstore aborts an upload that fails in-process, but a SIGKILLed mover leaves
its upload open on the server: invisible to listings, billed as storage.
Recovery lists the uploads under a key and aborts them. obstore exposes no
API for that, so these two requests are signed here (AWS Signature V4,
path-style addressing) and sent with the standard library.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.client
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from tiering.errors import PermissionDeniedError, TransientError

_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class S3Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None
    region: str

    def __repr__(self) -> str:  # never show the secret
        return f"S3Credentials({self.access_key_id!r}, region={self.region!r})"


def _sign(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _request(endpoint: str, creds: S3Credentials, method: str, path: str, query: dict[str, str],
             timeout: float) -> tuple[int, bytes]:
    url = urlsplit(endpoint)
    now = dt.datetime.now(dt.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    canonical_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items()))
    headers = {"host": url.netloc, "x-amz-content-sha256": _EMPTY_SHA256, "x-amz-date": amz_date}
    if creds.session_token:
        headers["x-amz-security-token"] = creds.session_token
    signed = ";".join(sorted(headers))
    canonical = "\n".join([method, path, canonical_query, *(f"{k}:{headers[k]}" for k in sorted(headers)), "",
                           signed, _EMPTY_SHA256])
    scope = f"{day}/{creds.region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _sign(_sign(_sign(_sign(f"AWS4{creds.secret_access_key}".encode(), day), creds.region), "s3"), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={creds.access_key_id}/{scope}, "
                                f"SignedHeaders={signed}, Signature={signature}")
    conn_cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(url.hostname, url.port, timeout=timeout)
    try:
        conn.request(method, path + (f"?{canonical_query}" if canonical_query else ""), headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except OSError as exc:
        raise TransientError(f"{endpoint}: cannot reach the server ({exc.strerror or exc})") from exc
    finally:
        conn.close()


def _object_path(bucket: str, name: str) -> str:
    return f"/{quote(bucket, safe='')}/{quote(name, safe='/-_.~')}"


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
    status, body = _request(endpoint, creds, "DELETE", _object_path(bucket, name), {"uploadId": upload_id}, timeout)
    if status != 404:  # already gone is fine
        _check(status, body, endpoint, bucket)


def _check(status: int, body: bytes, endpoint: str, bucket: str) -> None:
    if status in (401, 403):
        raise PermissionDeniedError(f"{endpoint}/{bucket}: refused (HTTP {status}); check the tier's credentials")
    if status >= 500:
        raise TransientError(f"{endpoint}/{bucket}: server error HTTP {status}")
    if status >= 300:
        raise TransientError(f"{endpoint}/{bucket}: unexpected HTTP {status}: {body[:200]!r}")
