"""Object keys: how a file's relative path becomes a key, exactly and reversibly.

Filenames on the hot tier are arbitrary bytes (anything but ``/`` and NUL).
Object keys must be valid UTF-8, and S3-compatible servers mangle some
characters (SeaweedFS turns ``\\`` into ``/``). A key therefore mirrors the
relative path character for character where that is safe, and percent-encodes
(``%XX``, upper-case hex) every byte that is not:

- bytes that are not part of valid UTF-8;
- characters that are not printable (control, format, separators other than
  the ASCII space, unassigned code points);
- ``%`` itself (so decoding is unambiguous) and ``\\``.

``a b/ünï.txt`` stays ``a b/ünï.txt``; ``new\\nline`` becomes ``new%0Aline``.
Only canonical keys are accepted back: a key that is not exactly what
``encode_key`` would produce for its path is refused, so one file has one key.
Absolute paths, empty segments, ``.`` and ``..`` are refused, so nothing can
address outside a tier's prefix.

A key can be longer than a store allows: a legal 255-byte name of ``%``
encodes to 765 bytes, which SeaweedFS refuses (``KeyTooLongError``), and OSS
refuses keys over 1,023 bytes (``InvalidObjectName``). Such a file fails on
its own with ``KeyRejectedError`` (an item error: the rest of the run goes on)
and stays resident; the key is never mapped to another (say, a hash). Chosen
because a mapped key breaks what the tier promises: the bucket mirrors the
hot tier's paths and can be browsed and rebuilt without us; a second naming
scheme would need its own lookup on every restore and listing, and the files
it would save are names no tool but ours could find in the bucket anyway.
The per-file message names the file and the store's refusal.
"""

from __future__ import annotations

import os
import re

from tiering.core.errors import InvalidKeyError

_HEX = re.compile(r"%([0-9A-F]{2})")
_ESCAPED = frozenset("%\\")


def _check_segments(segments: list[bytes], original: object) -> None:
    for seg in segments:
        if seg in (b"", b".", b".."):
            raise InvalidKeyError(f"path {original!r} has an empty, '.' or '..' segment")
        if b"\0" in seg:
            raise InvalidKeyError(f"path {original!r} contains a NUL byte")


def _encode_segment(seg: bytes) -> str:
    try:
        text = seg.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and text.isprintable() and not _ESCAPED.intersection(text):
        return text  # the common case: nothing to escape
    out: list[str] = []
    i = 0
    while i < len(seg):
        ch, width = _next_char(seg, i)
        if ch is not None and ch.isprintable() and ch not in _ESCAPED:
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in seg[i : i + width])
        i += width
    return "".join(out)


def _next_char(data: bytes, i: int) -> tuple[str | None, int]:
    """Decode one UTF-8 character at ``data[i]``; ``(None, 1)`` if invalid there."""
    lead = data[i]
    width = 1 if lead < 0x80 else 2 if lead >> 5 == 6 else 3 if lead >> 4 == 14 else 4 if lead >> 3 == 30 else 0
    if width == 0:
        return None, 1
    try:
        return data[i : i + width].decode("utf-8"), width
    except UnicodeDecodeError:
        return None, 1


def encode_key(relpath: bytes | str) -> str:
    """The object key (relative to a tier's prefix) for a relative file path."""
    raw = os.fsencode(relpath)
    if raw.startswith(b"/"):
        raise InvalidKeyError(f"path {relpath!r} is absolute; expected a path relative to the tier")
    segments = raw.split(b"/")
    _check_segments(segments, relpath)
    return "/".join(_encode_segment(s) for s in segments)


def _unescape(match: re.Match[str]) -> str:
    byte = int(match.group(1), 16)
    # Bytes >= 0x80 become lone surrogates, which "surrogateescape" turns back into bytes.
    return chr(byte) if byte < 0x80 else chr(0xDC00 + byte)


def decode_key(key: str) -> bytes:
    """The relative path bytes a key stands for; refuses non-canonical keys."""
    if not isinstance(key, str) or not key:
        raise InvalidKeyError(f"key {key!r} is empty or not a string")
    raw = _HEX.sub(_unescape, key)
    relpath = raw.encode("utf-8", "surrogateescape")
    if encode_key(relpath) != key:
        raise InvalidKeyError(f"key {key!r} is not in canonical form (expected {encode_key(relpath)!r})")
    return relpath


def join_key(prefix: str, key: str) -> str:
    """The full object name of ``key`` under a tier prefix (which may be empty)."""
    decode_key(key)  # validates: no escape from the prefix
    return f"{prefix.strip('/')}/{key}" if prefix.strip("/") else key


def split_key(prefix: str, full: str) -> str:
    """Inverse of ``join_key``: the key of a full object name under ``prefix``."""
    p = prefix.strip("/")
    if p:
        if not full.startswith(p + "/"):
            raise InvalidKeyError(f"object {full!r} is not under prefix {p!r}")
        return full[len(p) + 1 :]
    return full


def shown_key(key: str, limit: int = 120) -> str:
    """``key`` as an error message shows it: whole, or cut with its length when very long; "(bucket)" if empty."""
    if not key:
        return "(bucket)"
    return key if len(key) <= limit else f"{key[:limit // 2]}...({len(key.encode())} bytes)"
