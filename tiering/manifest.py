"""Dataset manifests for stage-in: which files a training job is about to read.

Accepted forms (by file suffix):

- ``.parquet``: a column ``path`` (binary or string);
- ``.json``: a list of paths, or of objects with a ``"path"`` key, or an
  object with a ``"files"`` list of either;
- anything else: text, one path per line (blank lines and ``#`` comments skipped).

Paths are relative to the hot tier, or absolute paths inside it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from tiering.errors import UserError


def read_manifest(path: Path, hot: Path) -> Iterator[bytes]:
    """Relative paths (exact bytes) named by the manifest at ``path``."""
    if not path.is_file():
        raise UserError(f"manifest {path} does not exist")
    for raw in _entries(path):
        yield relative_to_hot(raw, hot, origin=str(path))


def from_command_line(raw: str, hot: Path) -> bytes:
    """A path typed by a user: absolute, relative to the cwd when that lands inside the hot
    tier, else relative to the hot tier itself."""
    data = os.fsencode(raw)
    if not data.startswith(b"/"):
        here = os.path.abspath(data)
        root = os.fsencode(str(hot)).rstrip(b"/") + b"/"
        if here.startswith(root):
            return relative_to_hot(here, hot)
    return relative_to_hot(data, hot)


def relative_to_hot(raw: bytes | str, hot: Path, origin: str = "") -> bytes:
    """``raw`` as a path relative to the hot tier; refuses paths outside it."""
    data = os.fsencode(raw)
    if data.startswith(b"/"):
        root = os.fsencode(str(hot)).rstrip(b"/") + b"/"
        if not data.startswith(root):
            raise UserError(f"{origin + ': ' if origin else ''}{os.fsdecode(data)!r} is outside the hot tier {hot}")
        data = data[len(root):]
    norm = os.path.normpath(data) if data else data
    if not norm or norm == b"." or norm.startswith(b"../") or norm == b"..":
        raise UserError(f"{origin + ': ' if origin else ''}{os.fsdecode(data)!r} is not a file inside the hot tier {hot}")
    return norm


def _entries(path: Path) -> Iterator[bytes | str]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(columns=["path"]):
            yield from batch.column(0).to_pylist()
        return
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except ValueError as exc:
            raise UserError(f"manifest {path}: not valid JSON ({exc})") from None
        items = data.get("files", []) if isinstance(data, dict) else data
        for item in items:
            yield item["path"] if isinstance(item, dict) else item
        return
    for line in path.read_bytes().splitlines():
        if line.strip() and not line.lstrip().startswith(b"#"):
            yield line
