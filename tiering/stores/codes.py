"""Server error codes that mean the same on every S3-like protocol (S3 and OSS).

One table, so the same answer is classified the same whichever store gives it
(``classify_answer``, used by ``stores.s3.classify`` and ``stores.oss.translate``).
"""

from __future__ import annotations

from tiering.core.errors import (
    CredentialsError,
    FatalError,
    KeyRejectedError,
    NeedsRestoreError,
    NotFoundError,
    PermissionDeniedError,
    RefusedError,
    StoreError,
    ThrottledError,
    TransientError,
)

#: The credentials are wrong, unknown or expired: a configuration mistake (``CredentialsError``).
CREDENTIAL_CODES = frozenset({
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidSecurityToken", "SecurityTokenExpired",
    "ExpiredToken", "InvalidToken", "TokenRefreshRequired", "AuthorizationHeaderMalformed",
})

#: The request was refused for this machine's clock: no retry helps, no other file fares better.
CLOCK_CODES = frozenset({"RequestTimeTooSkewed"})

#: The store refuses this object's name: that file fails, the rest go on (``KeyRejectedError``).
KEY_CODES = frozenset({"KeyTooLongError", "KeyTooLong", "InvalidObjectName", "InvalidURI", "InvalidKey"})

#: The object (or multipart upload) is not there: that item fails.
NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchUpload"})

#: Worth asking again: the server is busy or failed this once (``BadDigest``: the body was damaged on the way).
TRANSIENT_CODES = frozenset({"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "ServerBusy",
                             "TooManyRequests", "BadDigest"})
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: The server says it is overloaded and asks for fewer requests (``ThrottledError``): S3's SlowDown family,
#: OSS's rate limits; any 429 or 503 answer means the same whatever its code.
THROTTLE_CODES = frozenset({"SlowDown", "SlowDownRead", "SlowDownWrite", "ServiceUnavailable", "ServerBusy",
                            "TooManyRequests", "RequestThrottled", "Throttling", "QpsLimitExceeded",
                            "DownloadTrafficRateLimitExceeded", "UploadTrafficRateLimitExceeded"})
THROTTLE_STATUSES = frozenset({429, 503})


def classify_answer(where: str, url: str, key: str, status: int, code: str, detail: str = "", *,
                    not_found: bool = False, denied: bool = False, network: bool = False,
                    transient: frozenset[str] = TRANSIENT_CODES, note: str = "") -> StoreError:
    """The project error for a server's answer (HTTP ``status``, error ``code``), decided once for S3 and OSS.

    ``where`` names the tier and key for the message; ``detail`` stands in when there is neither a
    status nor a code; ``not_found``/``denied``/``network`` are what the client library already knew;
    ``note`` ends the message (OSS: the request id). See ``tiering.core.errors`` for what each class
    tells the caller to do.
    """
    said = f"{where}: {code or (f'HTTP {status}' if status else detail)}{note}"

    def error(cls, why: str = "") -> StoreError:
        return cls(f"{said} ({why})" if why else said, store=url, key=key)

    if code in CREDENTIAL_CODES:
        return error(CredentialsError, "the tier's credentials are wrong or expired")
    if code in CLOCK_CODES:
        return error(FatalError, "this machine's clock is too far off the server's")
    if code == "NoSuchBucket":
        return error(FatalError, "no such bucket")
    if code == "InvalidObjectState":
        return error(NeedsRestoreError, "the object is archived; run restore first")
    if not_found or code in NOT_FOUND_CODES or status == 404:
        return error(NotFoundError, "no such upload" if code == "NoSuchUpload" else "no such object")
    if code in KEY_CODES:
        return error(KeyRejectedError, "the store refuses this name")
    if denied or code == "AccessDenied" or status in (401, 403):
        return error(PermissionDeniedError, "access denied")
    if code in THROTTLE_CODES or status in THROTTLE_STATUSES:
        return error(ThrottledError)
    if code in transient or status in TRANSIENT_STATUSES:
        return error(TransientError)
    if not status and network:
        return TransientError(f"{where}: cannot reach the server", store=url, key=key)
    if 400 <= status < 500:
        return error(RefusedError)
    return error(FatalError)
