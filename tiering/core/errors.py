"""The project's own error classes, and the one table of what each means.

Every layer above the stores sees only these. Each class says what the caller
should do about it (STYLE.md, "Errors") through its ``scope``:

- ``RETRY``: try again (``TransientError``); the one retry loop
  (``stores.retry``) does, and when it gives up the failure becomes
  ``TierUnavailableError``: the tier is in trouble, not one file.
- ``ITEM``: this item failed; record it, carry on with the others, list it at
  the end (``NotFoundError``, ``PermissionDeniedError``, ``IntegrityError``,
  ``NeedsRestoreError``, ``RefusedError``, ``KeyRejectedError``, ``PathError``;
  ``ClaimedError``, which the mover reports as skipped).
- ``RUN``: the run cannot go on; start nothing new (``TierUnavailableError``,
  ``FatalError``, ``CatalogError``, a hot tier that is full).
- ``CONFIG``: a mistake a person fixes in the config, the command line or the
  environment (``UserError`` and below, ``CredentialsError``); one line, exit 2.

``scope_of`` and ``exit_status`` apply the table to any exception, so the
mover, ``migrate``, ``restore`` and the bench decide alike. Causes are chained
(``raise ... from exc``) so ``--debug`` shows the root.
"""

from __future__ import annotations

import errno

#: What a caller does about an error (``scope_of``).
RETRY, ITEM, RUN, CONFIG = "retry", "item", "run", "config"

#: Exit statuses: the one contract of every verb (README, ``tiering --help``).
EXIT_OK = 0  # done
EXIT_FAILED = 1  # the command ran and some items failed, or the run could not go on
EXIT_USAGE = 2  # a user mistake: bad config, bad arguments, missing or wrong credentials
EXIT_STORE = 3  # a capacity tier could not be reached, or answered so that nothing can go on
EXIT_BUSY = 4  # another tiering process holds the catalog (the message names it)
#: Nothing failed, but some work is under way elsewhere and not done yet: archived objects whose restore
#: was requested from their store (sysexits' EX_TEMPFAIL: run the same command again later to finish it).
EXIT_PENDING = 75
EXIT_INTERRUPTED = 130  # SIGINT/SIGTERM: what was in flight finished, nothing new started

#: Local errnos that doom a whole run, not one file: a full or read-only disk, no descriptors left.
RUN_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EMFILE, errno.ENFILE, errno.EROFS})


class TieringError(Exception):
    """Base of every error this project raises on purpose."""

    scope = RUN


class UserError(TieringError):
    """A mistake in what the user gave us; the message is the whole story."""

    scope = CONFIG


class ConfigError(UserError):
    """A configuration file is malformed; the message names the file and key."""


class PolicyError(UserError):
    """A policy file or expression is malformed; the message names the file, rule and column."""


class InvalidKeyError(UserError):
    """A key or path would address something outside the tier's prefix."""


class PathError(TieringError):
    """A path named by the user (operand or manifest entry) is missing, not ours, or not a file we move.

    An item failure: the other paths still run, and the command exits 1.
    """

    scope = ITEM

    def __init__(self, message: str, *, path: bytes = b"") -> None:
        super().__init__(message)
        self.path = path


class CatalogBusyError(TieringError):
    """Another process holds the catalog's writer lock; ``holder`` says who."""

    def __init__(self, message: str, holder: dict | None = None) -> None:
        super().__init__(message)
        self.holder = holder or {}


class ClaimedError(TieringError):
    """Another run is acting on this file (its catalog claim), or acted on it since this one looked:
    this item is skipped, not failed; the next cycle sees the file as it is then."""

    scope = ITEM


class CatalogError(TieringError):
    """The catalog cannot be read or written (disk full, unwritable folder): the run cannot go on."""

    scope = RUN


class StoreError(TieringError):
    """Something went wrong talking to a capacity tier."""

    scope = RUN

    def __init__(self, message: str, *, store: str = "", key: str = "") -> None:
        super().__init__(message)
        self.store = store
        self.key = key


class NotFoundError(StoreError):
    """The object does not exist."""

    scope = ITEM


class PermissionDeniedError(StoreError):
    """The tier refuses this one request (an object's ACL, a policy on a prefix)."""

    scope = ITEM


class CredentialsError(StoreError, UserError):
    """Credentials are missing, malformed or refused (unknown key id, bad signature, expired token).

    A configuration mistake: exit 2 in every verb, whichever store says it.
    """

    scope = CONFIG


class TransientError(StoreError):
    """A failure that may go away: timeouts, refused connections, 5xx, throttling."""

    scope = RETRY


class ThrottledError(TransientError):
    """The tier asked us to slow down (503 SlowDown, 429, OSS ServerBusy): retried like any transient
    failure, and the endpoint's concurrency limiter (``stores.limiter``) takes it as a signal to send less."""


class TierUnavailableError(StoreError):
    """The tier could not be reached, or kept failing, for the whole retry policy: the run stops."""

    scope = RUN


class FatalError(StoreError):
    """The tier answered in a way no retry will fix and no other file will fare better with
    (no such bucket, a malformed response, this machine's clock far off the server's)."""

    scope = RUN


class RefusedError(StoreError):
    """The tier refused this one request with an answer we have no better name for (an unexpected 4xx)."""

    scope = ITEM


class KeyRejectedError(RefusedError):
    """The store refuses this one object's name (too long, not representable)."""


class NeedsRestoreError(StoreError):
    """The object sits in an archive storage class and must be restored first."""

    scope = ITEM


class IntegrityError(StoreError):
    """Bytes did not match their size or checksum; nothing was accepted."""

    scope = ITEM


class SourceChangedError(IntegrityError):
    """The local file changed while it was being copied."""


class ListingError(StoreError):
    """A listing could not be completed: what was listed must not be taken for the whole."""

    scope = RUN


def scope_of(exc: BaseException) -> str:
    """What to do about ``exc``: ``RETRY``, ``ITEM``, ``RUN`` or ``CONFIG``.

    Local ``OSError``s fail their item, except the errnos that doom every item
    (``RUN_ERRNOS``). Anything else is a bug, which stops the run.
    """
    if isinstance(exc, TieringError):
        return exc.scope
    if isinstance(exc, OSError):
        return RUN if exc.errno in RUN_ERRNOS else ITEM
    return RUN


def exit_status(exc: BaseException) -> int:
    """The exit status a command ends with when ``exc`` stopped it (the README's table)."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, CatalogBusyError):
        return EXIT_BUSY
    if isinstance(exc, UserError):
        return EXIT_USAGE
    if isinstance(exc, StoreError) and exc.scope in (RUN, RETRY):
        return EXIT_STORE
    return EXIT_FAILED
