"""Server error codes that mean the same on every S3-like protocol (S3 and OSS).

One list, so the same answer is classified the same whichever store gives it
(``stores.s3.classify``, ``stores.oss.translate``).
"""

from __future__ import annotations

#: The credentials are wrong, unknown or expired: a configuration mistake (``CredentialsError``).
CREDENTIAL_CODES = frozenset({
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidSecurityToken", "SecurityTokenExpired",
    "ExpiredToken", "InvalidToken", "TokenRefreshRequired", "AuthorizationHeaderMalformed",
})

#: The request was refused for this machine's clock: no retry helps, no other file fares better.
CLOCK_CODES = frozenset({"RequestTimeTooSkewed"})

#: The store refuses this object's name: that file fails, the rest go on (``KeyRejectedError``).
KEY_CODES = frozenset({"KeyTooLongError", "KeyTooLong", "InvalidObjectName", "InvalidURI", "InvalidKey"})
