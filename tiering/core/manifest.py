"""The files a command names: operands and dataset manifests, resolved to real paths in the hot tier.

Every path a user names resolves to a *real* path under the hot tier or is
refused. Symlinked folders on the way are followed (the parent's ``realpath``)
and the result must still lie under the hot tier's real path; a final component
that is itself a symlink is refused, since tiering moves regular files only; a
path that does not exist is refused. The relative path handed on is the real
one, so an alias (``link_dir/in.bin``) and its target (``d/in.bin``) are one
catalog record, never two.

A refusal belongs to its path alone: ``resolve_operands`` and ``read_manifest``
yield ``Resolved(rel)`` or ``Refused(path, reason)`` for each path, so a command
does the rest and counts the refused as failed. A manifest that cannot be read
at all is one ``UserError``.

Manifest forms, by file suffix (``-`` reads standard input and tells the form
from its first bytes):

- ``.parquet``: a column ``path`` (binary or string);
- ``.json``: a list of paths, or of objects with a ``"path"`` key, or an
  object with a ``"files"`` list of either;
- anything else: text, one path per line (blank lines and ``#`` comments skipped).

Entries are relative to the hot tier, or absolute paths inside it. Operands
typed on a command line may also be relative to the current folder when that
lands inside the hot tier.
"""

from __future__ import annotations

import io
import json
import os
import stat
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from tiering.core.display import show_path
from tiering.core.errors import ConfigError, PathError, UserError

__all__ = ["Resolved", "Refused", "HotTier", "resolve_operands", "from_command_line", "read_manifest"]

STDIN = Path("-")
#: The reason a path that does not exist is refused (``--ignore-missing`` leaves those out).
MISSING = "no such file"


@dataclass(frozen=True)
class Resolved:
    """A named path that is a real entry under the hot tier: ``rel`` is relative to it, symlinks resolved."""

    rel: bytes


@dataclass(frozen=True)
class Refused:
    """A named path that was refused, and why (one line)."""

    path: bytes  # as the user gave it
    reason: str

    def __str__(self) -> str:
        return f"{show_path(self.path)}: {self.reason}"

    @property
    def error(self) -> PathError:
        return PathError(str(self), path=self.path)


class HotTier:
    """Resolves named paths against the hot tier at ``root`` (``ConfigError`` if it is not a folder)."""

    def __init__(self, root: Path) -> None:
        self.root = os.fsencode(os.path.abspath(root))
        self.real = os.path.realpath(self.root)
        self._folders: dict[bytes, bytes] = {}  # a manifest names many files per folder: resolve each folder once
        if not os.path.isdir(self.real):
            raise ConfigError(f"hot tier {root}: no such folder; check [hot] path in the config (is it mounted?)")

    def operand(self, raw: str) -> bytes:
        """A command-line path: absolute; relative to the cwd when that lands in the hot tier; else to the hot tier."""
        data = os.fsencode(raw)
        shown = show_path(data)
        if data.startswith(b"/"):
            return self._rel(data, shown)
        here = os.path.abspath(data)
        if _inside(here, self.root) or _inside(self._real(here), self.real):
            return self._rel(here, shown)
        there = os.path.join(self.root, data)
        if os.path.lexists(here) and not os.path.lexists(there):
            raise PathError(f"{shown}: outside the hot tier {os.fsdecode(self.root)} (it is {show_path(self._real(here))})",
                            path=data)
        return self._rel(there, shown)

    def entry(self, raw: bytes | str) -> bytes:
        """A manifest entry: relative to the hot tier, or absolute inside it."""
        data = os.fsencode(raw)
        return self._rel(data if data.startswith(b"/") else os.path.join(self.root, data), show_path(data))

    def _rel(self, candidate: bytes, shown: str) -> bytes:
        if b"\0" in candidate:
            raise PathError(f"{shown}: contains a NUL byte; not a path", path=candidate.replace(b"\0", b""))
        real = self._real(candidate)
        if not _inside(real, self.real):
            where = "is the hot tier itself" if real == self.real else "outside the hot tier"
            resolved = f" (it resolves to {show_path(real)})" if real != os.path.normpath(candidate) else ""
            raise PathError(f"{shown}: {where} {os.fsdecode(self.root)}{resolved}", path=candidate)
        try:
            mode = os.lstat(real).st_mode
        except (FileNotFoundError, NotADirectoryError):
            raise PathError(f"{shown}: {MISSING}", path=candidate) from None
        except OSError as exc:
            raise PathError(f"{shown}: {exc.strerror}", path=candidate) from exc
        if stat.S_ISLNK(mode):
            raise PathError(f"{shown}: a symlink; tiering moves regular files only", path=candidate)
        return real[len(self.real.rstrip(b"/")) + 1:]

    def _real(self, path: bytes) -> bytes:
        """``path`` with every folder on the way resolved, the final name kept as it is (not followed)."""
        folder, name = os.path.split(path)
        if name in (b"", b".", b".."):
            return os.path.realpath(path)
        real = self._folders.get(folder)
        if real is None:
            if len(self._folders) >= 65536:
                self._folders.clear()
            real = self._folders[folder] = os.path.realpath(folder or b".")
        return os.path.join(real, name)


def _inside(path: bytes, folder: bytes) -> bool:
    return path.startswith(folder.rstrip(b"/") + b"/")


def resolve_operands(paths: Iterable[str], hot: Path) -> Iterator[Resolved | Refused]:
    """Each command-line path resolved (``Resolved``) or refused (``Refused``), in order.

    ``ConfigError`` at once when the hot tier itself is missing.
    """
    return _each(paths, HotTier(hot).operand)


def _each(names: Iterable[bytes | str], resolve) -> Iterator[Resolved | Refused]:
    for name in names:
        shown = show_path(os.fsencode(name))
        try:
            yield Resolved(resolve(name))
        except PathError as exc:
            message = str(exc)
            yield Refused(os.fsencode(name), message[len(shown) + 2:] if message.startswith(shown + ": ") else message)


def from_command_line(raw: str, hot: Path) -> bytes:
    """One command-line path as a real path relative to the hot tier; ``PathError`` when refused."""
    return HotTier(hot).operand(raw)


def read_manifest(path: Path, hot: Path, *, ignore_missing: bool = False,
                  stdin: BinaryIO | None = None) -> Iterator[Resolved | Refused]:
    """Each entry of the manifest at ``path`` (``-``: ``stdin``), resolved or refused.

    A missing entry is refused unless ``ignore_missing`` (then it is left out).
    A manifest that cannot be read, or is not one of the forms above, is a
    ``UserError`` naming it, raised before the first entry is yielded.
    """
    entries = _entries(path, stdin)
    for outcome in _each(entries, HotTier(hot).entry):
        if ignore_missing and isinstance(outcome, Refused) and outcome.reason == MISSING:
            continue
        yield outcome


def _entries(path: Path, stdin: BinaryIO | None) -> list[bytes | str]:
    shown = "standard input" if path == STDIN else f"manifest {path}"
    try:
        data = (stdin or sys.stdin.buffer).read() if path == STDIN else path.read_bytes()
    except OSError as exc:
        raise UserError(f"{shown}: cannot read it ({exc.strerror or exc})") from None
    form = _sniff(data) if path == STDIN else {".parquet": "parquet", ".json": "json"}.get(path.suffix, "text")
    entries = {"parquet": _parquet, "json": _json, "text": _text}[form](data, shown)
    for i, entry in enumerate(entries, 1):
        if not isinstance(entry, bytes | str):
            raise UserError(f"{shown}: entry {i} is {_type(entry)}; expected a path (a string)")
        if not entry:
            raise UserError(f"{shown}: entry {i} is empty; expected a path")
    return entries


def _sniff(data: bytes) -> str:
    if data.startswith(b"PAR1"):
        return "parquet"
    return "json" if data.lstrip()[:1] in (b"[", b"{", b'"') else "text"


def _text(data: bytes, shown: str) -> list[bytes]:
    return [line.rstrip(b"\r") for line in data.split(b"\n") if line.strip() and not line.lstrip().startswith(b"#")]


def _json(data: bytes, shown: str) -> list[Any]:
    expected = 'expected a list of paths, of {"path": ...} objects, or an object with a "files" list'
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UserError(f"{shown}: not UTF-8 text (byte {exc.start}); {expected}") from None
    except ValueError as exc:
        raise UserError(f"{shown}: not valid JSON ({exc}); {expected}") from None
    items = doc.get("files") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        found = "an object without a \"files\" list" if isinstance(doc, dict) else _type(doc)
        raise UserError(f"{shown}: found {found}; {expected}")
    out = []
    for i, item in enumerate(items, 1):
        if isinstance(item, dict):
            if "path" not in item:
                raise UserError(f"{shown}: entry {i} has no \"path\" key; {expected}")
            item = item["path"]
        out.append(item)
    return out


def _parquet(data: bytes, shown: str) -> list[Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(io.BytesIO(data))
        names = table.schema_arrow.names
        if "path" not in names:
            raise UserError(f"{shown}: no \"path\" column (columns: {', '.join(names) or 'none'}); "
                            "expected a string or binary column named path")
        kind = table.schema_arrow.field("path").type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind)
                or pa.types.is_large_binary(kind)):
            raise UserError(f"{shown}: the \"path\" column holds {kind}; expected strings or binary")
        return [v for batch in table.iter_batches(columns=["path"]) for v in batch.column(0).to_pylist()]
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"{shown}: not a readable Parquet file ({exc})") from None


def _type(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)
