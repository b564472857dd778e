"""Typed, located reads from one table of a configuration file.

``Table`` wraps a TOML table with its file and section, so every check can fail
with the one-line message the CLI prints::

    configs/x.toml: [tiers.s3] endpoint: 'ftp://h' is not an http(s) URL; expected http(s)://host[:port]

Strings go through ``${VAR}`` / ``${VAR:-default}`` substitution first. Secret
values are never echoed in a message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tiering.core.errors import ConfigError
from tiering.core.typed import MISSING, TypedTable, did_you_mean, type_name
from tiering.stores.options import SECRET_OPTIONS

__all__ = ["SECRET_KEYS", "OptionWords", "Table", "check_path_text", "closest_hint", "type_name"]

#: Keys whose values are credentials: only ``${VAR}`` references, never shown.
SECRET_KEYS = SECRET_OPTIONS  # what the stores declare as secrets (``tiering.stores.options``)

_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_ONLY_REF = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$")
_MISSING = MISSING


def closest_hint(key: str, allowed: Iterable[str]) -> str:
    """``did you mean 'x'?``, or the list of valid keys when nothing is close."""
    allowed = sorted(allowed)
    return did_you_mean(key, allowed, "expected one of: " + ", ".join(allowed))


def check_path_text(table: Table, key: str, value: str) -> None:
    """Refuse a path no system call can take: a NUL byte, or a name longer than the system allows."""
    if "\0" in value:
        raise table.error(key, f"{value!r} contains a NUL byte", "expected a path without NUL characters")
    try:
        encoded = os.fsencode(value)
    except UnicodeError:
        raise table.error(key, f"{value!r} cannot be encoded for this system", "expected a path in the "
                          "filesystem's encoding") from None
    longest = max(len(part) for part in encoded.split(b"/"))
    if longest > 255 or len(encoded) >= 4096:
        raise table.error(key, f"{value[:60]!r}... is too long", "expected names of at most 255 bytes and "
                          "a path shorter than 4096 bytes")


class Table(TypedTable):
    """One TOML table of a configuration file, located in it, with the typed getters of
    ``core.typed`` (strings ``${VAR}``-expanded first) and the config's own: secrets, paths, endpoints."""

    #: Whether keys a full table must have may be left out (command-line options: ``OptionWords``).
    partial = False

    def __init__(self, file: str, section: str, data: Mapping[str, Any], env: Mapping[str, str] | None = None):
        super().__init__(file, data)
        self.section = section
        self.env = os.environ if env is None else env

    # -- errors ----------------------------------------------------------

    def where(self, key: str | None = None) -> str:
        label = f"[{self.section}]" if self.section else ""
        return " ".join(p for p in (label, key) if p)

    def error(self, key: str | None, problem: str, expected: str) -> ConfigError:
        """``<file>: <[section] key>: <problem>; <expected>`` as a ConfigError."""
        return ConfigError(f"{self.file}: {self.where(key)}: {problem}; {expected}")

    def check_keys(self, allowed: Iterable[str], elsewhere: Mapping[str, str] | None = None) -> None:
        """Refuse keys not in ``allowed``; ``elsewhere`` maps keys valid in other contexts to a hint."""
        allowed = set(allowed)
        for key in self.data:
            if key in allowed:
                continue
            hint = (elsewhere or {}).get(key) or closest_hint(key, allowed)
            raise ConfigError(f"{self.file}: {self.where('unknown key')} {key!r}; {hint}")

    def sub(self, name: str) -> Table:
        """The sub-table ``name`` (an empty one when absent)."""
        value = self.data.get(name, {})
        if not isinstance(value, dict):
            raise self.error(name, f"found {type_name(value)}", f"expected a table [{self._join(name)}]")
        return Table(self.file, self._join(name), value, self.env)

    def _join(self, name: str) -> str:
        return f"{self.section}.{name}" if self.section else name

    def expand(self, key: str, text: str) -> str:
        """``text`` with ``${VAR}`` and ``${VAR:-default}`` substituted from the environment."""
        fix = "export it" if key in SECRET_KEYS else "export it or write ${{{}:-default}}"

        def one(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            value = self.env.get(name, "")
            if value:
                return value
            if default is not None:
                return default
            raise self.error(key, f"environment variable {name} is not set", fix.format(name))

        return _REF.sub(one, text)

    def secret(self, key: str) -> str | None:
        """A credential: must be written as exactly one ``${VAR}`` reference."""
        if key not in self.data:
            return None
        value = self.data[key]
        if not isinstance(value, str) or not _ONLY_REF.match(value):
            found = type_name(value) if not isinstance(value, str) else "a literal value (not shown)"
            raise self.error(key, f"secrets may not be written in the file, found {found}",
                             "expected a reference to an environment variable like \"${MY_SECRET}\"")
        return self.expand(key, value)

    def path(self, key: str, base: Path, default: Any = _MISSING) -> Any:
        """A filesystem path; relative ones are taken from ``base`` (the config file's folder)."""
        value = self.string(key, default, "a path")
        if value is default:
            return value
        if not value:
            raise self.error(key, "empty path", "expected a path")
        check_path_text(self, key, value)
        # normpath, not resolve(): a hot tier reached through a symlink keeps its name.
        return Path(os.path.normpath(os.path.join(base, os.path.expanduser(value))))

    # -- URLs --------------------------------------------------------------

    def endpoint(self, key: str, default: Any = _MISSING) -> Any:
        """An ``http(s)://host[:port]`` service address."""
        value = self.string(key, default, "an http(s)://host[:port] URL")
        if value is default:
            return value
        expected = "expected http(s)://host[:port]"
        parts = urlsplit(value)
        if "@" in parts.netloc:
            raise self.error(key, "the URL contains credentials (not shown)", "expected http(s)://host[:port]; "
                             "put credentials in their own keys")
        try:
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            port_ok = False
        if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
            raise self.error(key, f"{value!r} is not an http(s) URL with a host", expected)
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise self.error(key, f"{value!r} has a path or query", expected)
        return f"{parts.scheme}://{parts.netloc}"

    def required(self) -> Any:
        """The ``default`` that makes a getter insist on its key (none when ``partial``)."""
        return None if self.partial else _MISSING


class OptionWords(Table):
    """``KEY=VALUE`` words from the command line (``--src-option``), checked by the same getters.

    Values are literal (the shell has already expanded them, so ``${VAR}`` is not
    substituted), credentials may be given in clear, booleans and integers arrive
    as text, and nothing is required: a configured tier or the environment may
    supply the rest. Errors name the option: ``--src-option: part_size: ...``.
    """

    partial = True

    def __init__(self, option: str, words: Mapping[str, str]) -> None:
        super().__init__(option, "", dict(words), env={})

    def where(self, key: str | None = None) -> str:
        return key or ""

    def expand(self, key: str, text: str) -> str:
        return text

    def secret(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is not None and not value:
            raise self.error(key, "empty", "expected a value")
        return value

    def boolean(self, key: str, default: Any = _MISSING) -> bool:
        value = self.data.get(key)
        if isinstance(value, str):
            word = value.strip().lower()
            if word not in _WORDS:
                raise self.error(key, f"{value!r} is not a boolean", "expected true or false")
            self.data[key] = _WORDS[word]
        return super().boolean(key, default)

    def integer(self, key: str, default: Any = _MISSING, minimum: int = 0, maximum: int | None = None) -> int:
        value = self.data.get(key)
        if isinstance(value, str):
            try:
                self.data[key] = int(value.strip(), 10)
            except ValueError:
                raise self.error(key, f"{value!r} is not a whole number", "expected an integer") from None
        return super().integer(key, default, minimum, maximum)


_WORDS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False, "on": True, "off": False}
