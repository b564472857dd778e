"""AWS Signature Version 4 for the S3 requests this project sends itself.

Most S3 traffic goes through obstore, which signs its own requests. Two
kinds do not: the multipart-upload housekeeping obstore has no API for
(``s3_uploads``), and the small-object requests of ``s3_http``. Both sign
here: header-based SigV4, path as given (S3 does not normalise or re-encode
the path, so the canonical URI is the encoded path on the wire).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import quote

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
#: The payload hash that tells S3 the body is not part of the signature (its
#: integrity is then carried by ``Content-MD5``, which is signed).
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


@dataclass(frozen=True)
class S3Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None
    region: str

    def __repr__(self) -> str:  # never show the secret
        return f"S3Credentials({self.access_key_id!r}, region={self.region!r})"


def quote_path(bucket: str | None, name: str) -> str:
    """The request path of object ``name``: ``/bucket/name`` (path style) or ``/name``, percent-encoded."""
    encoded = quote(name, safe="/-_.~")
    return f"/{quote(bucket, safe='')}/{encoded}" if bucket else f"/{encoded}"


def canonical_query(query: dict[str, str]) -> str:
    return "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items()))


class Signer:
    """Signs requests with one set of credentials; the day's signing key is derived once per day."""

    def __init__(self, creds: S3Credentials, service: str = "s3") -> None:
        self.creds = creds
        self._service = service
        self._day_key = ("", b"")  # (day, its signing key): one tuple, so threads never see a torn pair

    def _signing_key(self, day: str) -> bytes:
        cached_day, key = self._day_key
        if day != cached_day:
            key = f"AWS4{self.creds.secret_access_key}".encode()
            for part in (day, self.creds.region, self._service, "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._day_key = (day, key)
        return key

    def sign(self, method: str, host: str, path: str, query: str = "", headers: dict[str, str] | None = None,
             payload_sha256: str = EMPTY_SHA256, now: dt.datetime | None = None) -> dict[str, str]:
        """Every header the request must carry (``headers`` plus host, date, token and authorization).

        ``headers`` keys must be lower-case; all of them are signed. ``query``
        is already in canonical form (``canonical_query``).
        """
        stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
        day = stamp[:8]
        signed = {**(headers or {}), "host": host, "x-amz-content-sha256": payload_sha256, "x-amz-date": stamp}
        if self.creds.session_token:
            signed["x-amz-security-token"] = self.creds.session_token
        names = sorted(signed)
        header_list = ";".join(names)
        canonical = "\n".join([method, path, query, *(f"{k}:{signed[k].strip()}" for k in names), "",
                               header_list, payload_sha256])
        scope = f"{day}/{self.creds.region}/{self._service}/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(self._signing_key(day), to_sign.encode(), hashlib.sha256).hexdigest()
        signed["authorization"] = (f"AWS4-HMAC-SHA256 Credential={self.creds.access_key_id}/{scope}, "
                                   f"SignedHeaders={header_list}, Signature={signature}")
        return signed
