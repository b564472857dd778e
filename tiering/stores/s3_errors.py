"""The one table for S3 answers: an obstore exception, a ``NetworkError`` or an HTTP status and S3 error
code becomes the project's error (``tiering.core.errors``), whichever client asked."""

from __future__ import annotations

import re
from collections.abc import Callable

import obstore.exceptions as oe

from tiering.core.errors import StoreError
from tiering.stores.codes import classify_answer
from tiering.stores.keys import shown_key
from tiering.stores.s3_http import NetworkError

_STATUS = re.compile(r"status code: (\d{3})")
_CODE = re.compile(r"<Code>([^<]+)</Code>")


def translate(exc: Exception, url: str, key: str) -> StoreError:
    """The project error for an obstore exception or a ``NetworkError``: the one table for this store."""
    text = str(exc)
    status = int(m.group(1)) if (m := _STATUS.search(text)) else 0
    code = m.group(1) if (m := _CODE.search(text)) else ""
    return classify(url, key, status, code, text.splitlines()[0][:160] if text else type(exc).__name__,
                    not_found=isinstance(exc, (oe.NotFoundError, FileNotFoundError)),
                    denied=isinstance(exc, (oe.PermissionDeniedError, oe.UnauthenticatedError)),
                    network=isinstance(exc, NetworkError) or (not status and _looks_like_network(text)))


def classify(url: str, key: str, status: int, code: str, text: str = "", *, not_found: bool = False,
             denied: bool = False, network: bool = False) -> StoreError:
    """The project error for an S3 failure: HTTP ``status``, S3 error ``code`` and a fallback ``text``.

    The same answers mean the same on OSS (``stores.oss.translate``): see ``tiering.core.errors`` for
    what each class tells the caller to do.
    """
    return classify_answer(f"{url}: {shown_key(key)}", url, key, status, code, text, not_found=not_found,
                           denied=denied, network=network)


def _looks_like_network(text: str) -> bool:
    lowered = text.lower()
    return any(s in lowered for s in ("error sending request", "timed out", "connection", "broken pipe", "reset"))


#: What a request through obstore or ``s3_http`` may raise that is not yet the project's.
SDK_ERRORS = (oe.BaseError, OSError, ValueError, NetworkError)


class Translated:
    """Within it, an SDK error leaves as ``error(exc, key)``, the project's error, with the SDK's as its cause
    (or as it is, when ``error`` returns it unchanged). The one place that wraps every S3 call, blocking or not."""

    __slots__ = ("_error", "_key")

    def __init__(self, error: Callable[[Exception, str], Exception], key: str) -> None:
        self._error = error
        self._key = key

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if isinstance(exc, SDK_ERRORS) and (error := self._error(exc, self._key)) is not exc:
            raise error from exc
        return False
