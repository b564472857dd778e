"""S3 storage classes and archive restores: the requests obstore cannot make.

- ``set_storage_class``: CopyObject of an object onto itself with a new
  ``x-amz-storage-class`` (on the server, never through the hot tier). The
  metadata goes again with ``x-amz-metadata-directive: REPLACE``, as a HEAD
  read it: AWS takes ``COPY`` for a change of class, SeaweedFS refuses a copy
  onto itself unless the metadata is replaced. The copy is checked: same
  size and metadata, the new class.
- ``restore``: RestoreObject (``POST ?restore``) of a GLACIER or DEEP_ARCHIVE
  object for ``Days`` at a retrieval tier (Expedited/Standard/Bulk).
- ``readable_now``: whether an object can be read, from its class and its
  ``x-amz-restore`` header; ``S3Store``'s HEADs through ``s3_http`` (the
  mover's ``head_async``) fill ``ObjectInfo.readable`` with it. (obstore's
  HEAD shows neither header: the blocking ``head`` cannot tell.)

Signed here (AWS Signature V4, path-style addressing, ``sigv4``) and sent with
the standard library, as ``s3_uploads`` does. An S3 CopyObject may fail with
status 200 and an ``<Error>`` body: that is checked.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import re
import time
from urllib.parse import urlsplit

from tiering.core.errors import IntegrityError, TransientError, UserError
from tiering.stores.base import ObjectInfo
from tiering.stores.options import S3_ARCHIVE_CLASSES, S3_STORAGE_CLASSES
from tiering.stores.s3_errors import classify
from tiering.stores.sigv4 import Signer, canonical_query, quote_path

_CODE = re.compile(rb"<Code>([^<]+)</Code>")
_RESTORE_BODY = ('<RestoreRequest xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Days>{days}</Days>'
                 "<GlacierJobParameters><Tier>{tier}</Tier></GlacierJobParameters></RestoreRequest>")
_RESTORE_TIERS = ("Expedited", "Standard", "Bulk")


class S3Archive:
    """Mixin of ``S3Store``: ``SupportsStorageClass`` and ``SupportsRestore``."""

    #: Defaults of ``restore``: the tier's ``restore_tier`` and ``restore_days`` options (``S3Store``).
    restore_tier = "Standard"
    restore_days = 1

    def set_storage_class(self, key: str, storage_class: str) -> None:
        """Move ``key`` to another class in place: a copy onto itself (archived ones need a restore first)."""
        wanted = next((c for c in S3_STORAGE_CLASSES if c.lower() == storage_class.lower()), None)
        if wanted is None:
            raise UserError(f"{self.url}: unknown storage class {storage_class!r}; "
                            f"expected one of {', '.join(S3_STORAGE_CLASSES)}")
        before = self._head_headers(key)
        kept = {k: v for k, v in before.items() if k.startswith("x-amz-meta-") or k == "content-type"}
        headers = {"x-amz-copy-source": quote_path(self.bucket, self._name(key)), "x-amz-storage-class": wanted,
                   "x-amz-metadata-directive": "REPLACE", **kept}
        self._call(key, lambda: self._checked(key, *self._send("PUT", key, {}, headers)))
        after = self._head_headers(key)
        # (Not the ETag: a copy of a multipart object gets the MD5 of its whole body as its new one.)
        same = all(after.get(k) == v for k, v in kept.items()) and after.get("content-length") == before.get(
            "content-length")
        if not same or after.get("x-amz-storage-class", "STANDARD") != wanted:
            raise IntegrityError(f"{self.url}: {key}: the copy onto itself did not keep the object as it was "
                                 f"(class {after.get('x-amz-storage-class', 'STANDARD')}, wanted {wanted})",
                                 store=self.url, key=key)

    def restore(self, key: str, *, tier: str | None = None, days: int | None = None) -> None:
        """Ask for a readable copy of a GLACIER/DEEP_ARCHIVE object for ``days`` at ``tier``; a restore
        already under way (or done: its copy's life is extended) is fine. Other classes: nothing to do."""
        tier = next((t for t in _RESTORE_TIERS if t.lower() == (tier or self.restore_tier).lower()), None)
        if tier is None:
            raise UserError(f"{self.url}: restore tier must be one of {', '.join(_RESTORE_TIERS)}")
        if self._head_headers(key).get("x-amz-storage-class") not in S3_ARCHIVE_CLASSES:
            return  # readable as it is
        body = _RESTORE_BODY.format(days=int(days or self.restore_days), tier=tier).encode()
        headers = {"content-md5": base64.b64encode(hashlib.md5(body).digest()).decode(),
                   "content-type": "application/xml"}

        def ask() -> None:
            status, answer, _ = self._send("POST", key, {"restore": ""}, headers, body)
            if status == 409:  # RestoreAlreadyInProgress: somebody (maybe us) already asked
                return
            self._checked(key, status, answer)

        self._call(key, ask)

    def wait_restored(self, key: str, *, timeout: float, poll: float = 5.0) -> ObjectInfo:
        """Poll a HEAD until ``key`` is readable; ``TransientError`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            h = self._head_headers(key)
            if readable_now(h.get("x-amz-storage-class", ""), h.get("x-amz-restore", "")):
                return self.head(key)
            if time.monotonic() + poll > deadline:
                raise TransientError(f"{self.url}: {key}: still being restored after {timeout:g}s",
                                     store=self.url, key=key)
            time.sleep(poll)

    def _head_headers(self, key: str) -> dict[str, str]:
        """The (lower-case) headers of a HEAD of ``key``, as the server sent them."""
        def head() -> dict[str, str]:
            status, body, headers = self._send("HEAD", key, {}, {})
            self._checked(key, status, body, headers)
            return headers

        return self._call(key, head)

    def _send(self, method: str, key: str, query: dict[str, str], headers: dict[str, str],
              body: bytes = b"") -> tuple[int, bytes, dict[str, str]]:
        """One signed request for ``key``: status, body and (lower-case) headers of the answer."""
        url = urlsplit(self._endpoint)
        path, q = quote_path(self.bucket, self._name(key)), canonical_query(query)
        payload = hashlib.sha256(body).hexdigest()
        signed = Signer(self._creds).sign(method, url.netloc, path, q, headers, payload_sha256=payload)
        conn_cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        conn = conn_cls(url.hostname, url.port, timeout=30)
        try:
            conn.request(method, path + (f"?{q}" if q else ""), body=body or None, headers=signed)
            resp = conn.getresponse()
            return resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()}
        except (OSError, http.client.HTTPException) as exc:
            raise TransientError(f"{self.url}: {key}: cannot reach the server "
                                 f"({getattr(exc, 'strerror', None) or exc})", store=self.url, key=key) from exc
        finally:
            conn.close()

    def _checked(self, key: str, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        """Raise the project's error for a failed answer, including S3's "200 with an <Error> body"."""
        failed = status >= 300 or (status == 200 and body.lstrip().startswith(b"<?xml") and b"<Error>" in body)
        if failed:
            code = m.group(1).decode("utf-8", "replace") if (m := _CODE.search(body)) else ""
            raise classify(self.url, key, 500 if status == 200 else status, code)


def readable_now(storage_class: str, restore: str) -> bool:
    """Whether an object of ``storage_class`` whose ``x-amz-restore`` header is ``restore`` can be read."""
    return storage_class not in S3_ARCHIVE_CLASSES or 'ongoing-request="false"' in restore
