"""Datasets: folders whose files heat and cool together (a policy's ``[datasets]`` table).

::

    [datasets]
    dirs = ["datasets/*"]      # each folder a glob matches (the whole path of the folder) is one dataset
    markers = [".dataset"]     # each folder holding a file of one of these names is one dataset

A file belongs to the dataset of its deepest enclosing folder declared by a
marker, else of the longest folder a ``dirs`` glob matches (globs tried in
order); files of no dataset keep their own heat. Training reads a dataset
shard by shard, an epoch touching every shard once, so per-file heat calls
each shard cold until the next epoch needs all of them; pooled, the dataset's
heat is its hottest file's and its last access its newest file's, for every
file of it (``tiering.plan.datasets`` pools them before the rules run). So
reading part of a dataset keeps the whole of it hot, and once nothing of it
was read for long, rules and the watermark see all of its files cold at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tiering.policy.patterns import GLOB, arrow_pattern, glob_body
from tiering.policy.values import Section

DATASET_KEYS = ("dirs", "markers")


@dataclass(frozen=True)
class Datasets:
    """The ``[datasets]`` table: folder globs and marker file names (see the module docstring)."""

    dirs: tuple[str, ...] = ()
    markers: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.dirs or self.markers)

    def roots(self, paths: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Each path's dataset folder (binary, relative to the hot tier; null: in no dataset). ``paths``
        must be the whole inventory when markers are declared (a marker may be anywhere in it)."""
        paths = paths.combine_chunks() if isinstance(paths, pa.ChunkedArray) else paths
        roots = pa.nulls(len(paths), pa.binary())
        if self.markers:
            roots = _by_markers(paths, self.markers)
        for pattern in self.dirs:
            found = pc.struct_field(pc.extract_regex(paths, rf"(?s)^(?P<root>{glob_body(pattern.encode())})/"), [0])
            roots = pc.coalesce(roots, found)
        return roots

    def ids(self, paths: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
        """(each path's dataset number, -1 for none; the datasets' folders, by number)."""
        encoded = self.roots(paths).dictionary_encode()
        return pc.fill_null(encoded.indices, -1).to_numpy().astype(np.int64), encoded.dictionary


def _by_markers(paths: pa.Array, markers: tuple[str, ...]) -> pa.Array:
    """The deepest folder holding a marker that encloses each path (null: none)."""
    names = pc.struct_field(pc.extract_regex(paths, r"(?s)(?:^|/)(?P<name>[^/]*)$"), [0])
    marked = pc.filter(paths, pc.is_in(names, pa.array([m.encode() for m in markers], pa.binary())))
    folders = pc.fill_null(pc.struct_field(pc.extract_regex(marked, r"(?s)^(?P<dir>.*)/[^/]*$"), [0]), b"")
    folders = pc.unique(folders)
    roots = pa.nulls(len(paths), pa.binary())
    if not len(folders):
        return roots
    depths = pc.add(pc.count_substring(folders, "/"), 1).to_numpy()
    for depth in sorted(set(depths.tolist()), reverse=True):  # the deepest marker wins
        at = pc.filter(folders, pa.array(depths == depth))
        prefix = pc.struct_field(pc.extract_regex(paths, rf"(?s)^(?P<p>(?:[^/]*/){{{depth - 1}}}[^/]*)/"), [0])
        roots = pc.if_else(pc.and_(pc.is_null(roots), pc.fill_null(pc.is_in(prefix, at), False)), prefix, roots)
    if b"" in folders.to_pylist():  # a marker at the top: the whole hot tier is one dataset
        roots = pc.fill_null(roots, b"")
    return roots


def parse_datasets(section: Section) -> Datasets:
    """Check and read ``[datasets]`` (an empty one when absent)."""
    section.check_keys(DATASET_KEYS)
    dirs = _strings(section, "dirs", "folder globs like [\"datasets/*\"]")
    for pattern in dirs:
        try:
            arrow_pattern(GLOB, pattern.encode())
        except ValueError as exc:
            raise section.error("dirs", f"{pattern!r}: {exc}", "expected a glob of folders like \"datasets/*\"")
    markers = _strings(section, "markers", "file names like [\".dataset\"]")
    for name in markers:
        if not name or "/" in name:
            raise section.error("markers", f"{name!r} is not a file name", "expected a name without '/'")
    return Datasets(dirs, markers)


def _strings(section: Section, key: str, expected: str) -> tuple[str, ...]:
    value = section.data.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise section.error(key, f"found {type(value).__name__}", f"expected a list of strings: {expected}")
    return tuple(value)
