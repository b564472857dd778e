"""Request signatures for the OSS test server: V4 (OSS4-HMAC-SHA256) and V1 (HMAC-SHA1).

Written from the OSS documentation ("Signature version 4" and "Include
signatures in the Authorization header"). A failure raises ``AuthFailure``
with the status and error code real OSS answers with.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_tz
from urllib.parse import quote

V4 = "OSS4-HMAC-SHA256"
MAX_SKEW = 15 * 60
#: Query parameters that V1 signs (the "subresources" of the OSS docs) and that
#: can reach this server; every other parameter is left out of a V1 signature.
V1_SUBRESOURCES = frozenset({
    "acl", "uploads", "location", "cors", "logging", "website", "referer", "lifecycle", "delete", "append",
    "tagging", "objectMeta", "uploadId", "partNumber", "security-token", "position", "restore", "qos",
    "stat", "symlink", "versioning", "versions", "versionId", "continuation-token", "x-oss-process",
    "response-content-type", "response-content-language", "response-expires", "response-cache-control",
    "response-content-disposition", "response-content-encoding",
})


class AuthFailure(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _uri_encode(text: str, keep_slash: bool) -> str:
    return quote(text, safe="-_.~/" if keep_slash else "-_.~")


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def verify(
    method: str,
    bucket: str,
    key: str,
    query: list[tuple[str, str]],
    headers: Mapping[str, str],
    secrets: Callable[[str], str | None],
    region: str,
) -> str:
    """Check a request's Authorization header; returns the access key id."""
    auth = headers.get("authorization", "")
    if auth.startswith(V4 + " "):
        return _verify_v4(method, bucket, key, query, headers, secrets, region, auth)
    if auth.startswith("OSS "):
        return _verify_v1(method, bucket, key, query, headers, secrets, auth)
    raise AuthFailure(403, "AccessDenied", "AccessDenied: Anonymous access is forbidden for this operation.")


def _secret(secrets: Callable[[str], str | None], key_id: str) -> str:
    secret = secrets(key_id)
    if secret is None:
        raise AuthFailure(403, "InvalidAccessKeyId", "The OSS Access Key Id you provided does not exist.")
    return secret


def _check_signature(expected: str, given: str) -> None:
    if not hmac.compare_digest(expected, given):
        raise AuthFailure(
            403, "SignatureDoesNotMatch", "The request signature we calculated does not match the one you provided."
        )


def _parse_v4(auth: str) -> dict[str, str]:
    fields = {}
    for item in auth[len(V4) + 1 :].split(","):
        name, _, value = item.strip().partition("=")
        fields[name] = value
    if not {"Credential", "Signature"} <= fields.keys() or fields["Credential"].count("/") != 4:
        raise AuthFailure(400, "InvalidArgument", "Authorization header is malformed.")
    return fields


def _verify_v4(method, bucket, key, query, headers, secrets, region, auth) -> str:
    fields = _parse_v4(auth)
    key_id, day, scope_region, product, terminator = fields["Credential"].split("/")
    secret = _secret(secrets, key_id)
    if (scope_region, product, terminator) != (region, "oss", "aliyun_v4_request"):
        raise AuthFailure(400, "InvalidArgument", f"Invalid signing region or scope (this server is {region!r}).")
    stamp = headers.get("x-oss-date", "")
    _check_time(stamp, "%Y%m%dT%H%M%SZ")
    additional = [h for h in fields.get("AdditionalHeaders", "").split(";") if h]
    canonical = "\n".join([
        method,
        _uri_encode(f"/{bucket}/{key}" if bucket else "/", keep_slash=True),
        _canonical_query(query),
        _canonical_headers(headers, additional),
        ";".join(sorted(additional)),
        headers.get("x-oss-content-sha256", "UNSIGNED-PAYLOAD"),
    ])
    scope = f"{day}/{region}/oss/aliyun_v4_request"
    to_sign = f"{V4}\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    signing_key = ("aliyun_v4" + secret).encode()
    for part in (day, region, "oss", "aliyun_v4_request"):
        signing_key = _hmac(signing_key, part)
    _check_signature(hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest(), fields["Signature"])
    return key_id


def _canonical_query(query: list[tuple[str, str]]) -> str:
    pairs = sorted((_uri_encode(k, False), _uri_encode(v, False)) for k, v in query)
    return "&".join(f"{k}={v}" if v else k for k, v in pairs)


def _canonical_headers(headers: Mapping[str, str], additional: list[str]) -> str:
    signed = {"content-type", "content-md5", *additional}
    chosen = sorted((k.lower(), v) for k, v in headers.items() if k.lower().startswith("x-oss-") or k.lower() in signed)
    return "".join(f"{k}:{v}\n" for k, v in chosen)


def _check_time(stamp: str, fmt: str) -> None:
    try:
        when = calendar.timegm(time.strptime(stamp, fmt))
    except ValueError:
        raise AuthFailure(403, "AccessDenied", "The request has no valid date.") from None
    _check_skew(when)


def _check_skew(when: float) -> None:
    if abs(time.time() - when) > MAX_SKEW:
        raise AuthFailure(403, "RequestTimeTooSkewed", "The request time is too far from the server's time.")


def _verify_v1(method, bucket, key, query, headers, secrets, auth) -> str:
    key_id, _, signature = auth[4:].rpartition(":")
    secret = _secret(secrets, key_id)
    date = headers.get("x-oss-date") or headers.get("date", "")
    parsed = parsedate_tz(date)
    if parsed is None:
        raise AuthFailure(403, "AccessDenied", "The request has no valid date.")
    _check_skew(calendar.timegm(parsed[:9]))
    oss_headers = sorted((k.lower(), v) for k, v in headers.items() if k.lower().startswith("x-oss-"))
    sub = sorted((k, v) for k, v in query if k in V1_SUBRESOURCES)
    resource = f"/{bucket}/{key}" if bucket else "/"
    if sub:
        resource += "?" + "&".join(f"{k}={v}" if v else k for k, v in sub)
    to_sign = "\n".join([
        method, headers.get("content-md5", ""), headers.get("content-type", ""), date,
        "".join(f"{k}:{v}\n" for k, v in oss_headers) + resource,
    ])
    expected = base64.b64encode(hmac.new(secret.encode(), to_sign.encode(), hashlib.sha1).digest()).decode()
    _check_signature(expected, signature)
    return key_id
