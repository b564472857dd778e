"""The project's own error classes.

Every layer above the stores sees only these. They are classified by what the
caller should do about them (STYLE.md, "Errors"):

- ``TransientError``: try again later; the one retry loop (``stores.retry``) does.
- ``NotFoundError`` / ``PermissionDeniedError`` / ``IntegrityError``: this item
  failed; record it and carry on with the others.
- ``FatalError`` (and ``ConfigError``, ``PolicyError``): stop the run; nothing else will work.

``UserError`` marks mistakes a person can fix (bad config, bad key); the CLI
prints its message as one line, without a traceback.
"""

from __future__ import annotations


class TieringError(Exception):
    """Base of every error this project raises on purpose."""


class UserError(TieringError):
    """A mistake in what the user gave us; the message is the whole story."""


class ConfigError(UserError):
    """A configuration file is malformed; the message names the file and key."""


class PolicyError(UserError):
    """A policy file or expression is malformed; the message names the file, rule and column."""


class CatalogBusyError(TieringError):
    """Another process holds the catalog's writer lock; ``holder`` says who."""

    def __init__(self, message: str, holder: dict | None = None) -> None:
        super().__init__(message)
        self.holder = holder or {}


class StoreError(TieringError):
    """Something went wrong talking to a capacity tier."""

    def __init__(self, message: str, *, store: str = "", key: str = "") -> None:
        super().__init__(message)
        self.store = store
        self.key = key


class NotFoundError(StoreError):
    """The object (or the bucket) does not exist."""


class PermissionDeniedError(StoreError):
    """Credentials are missing, wrong, or not allowed to do this."""


class TransientError(StoreError):
    """A failure that may go away: timeouts, refused connections, 5xx, throttling."""


class FatalError(StoreError):
    """A failure that retrying will not fix."""


class NeedsRestoreError(StoreError):
    """The object sits in an archive storage class and must be restored first."""


class IntegrityError(StoreError):
    """Bytes did not match their size or checksum; nothing was accepted."""


class SourceChangedError(IntegrityError):
    """The local file changed while it was being copied."""


class InvalidKeyError(UserError):
    """A key or path would address something outside the tier's prefix."""
