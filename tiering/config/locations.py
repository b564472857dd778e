"""Where tiering writes must stay apart from the hot tier, checked where the kernel will put the bytes.

Overlaps lose data: a posix capacity tier that is (or lies inside) the hot tier
has its objects scanned, archived and released as if they were data — with
``url`` equal to the hot tier, releasing a file deletes it —; a hot tier inside
a capacity tier has files overwritten by objects whose keys mirror its paths;
a catalog inside the hot tier is archived and released under the mover's feet.

Paths are compared after resolving ``..`` and symlinks (``os.path.realpath``; a
path that does not exist yet resolves through its nearest existing parent), so
``cap/../hot`` and a symlink ``cap -> hot`` are caught as well as ``hot``.

``check_locations`` runs when a configuration is loaded and again at the start
of every run (``mover_session``, each scan), since a symlink or mount may have
changed since.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from tiering.core.errors import ConfigError

if TYPE_CHECKING:
    from tiering.config import Config

__all__ = ["check_hot_tier", "check_locations"]

#: A location the hot tier may not contain either (a folder tiering owns whole), or only not lie in.
_OWNED, _FILE = "owned", "file"


def check_hot_tier(config: Config) -> None:
    """A hot tier that is not an existing directory is the config's mistake (``ConfigError``, exit 2).

    Not part of ``check_locations``: a config may be checked on a machine where
    the hot tier is not mounted; every verb that works on it calls this first.
    """
    if not config.hot_path.is_dir():
        raise ConfigError(f"{config.path}: [hot] path: {config.hot_path} is not an existing directory "
                          "(is it mounted?)")


def check_locations(config: Config) -> None:
    """Refuse (``ConfigError``, one line naming both paths) any location that overlaps the hot tier.

    Capacity folders, the OSS checkpoint folders and the inventory folder may
    neither be, lie inside, nor contain the hot tier; the catalog, its lock and
    the daemon's log file, may not be or lie inside it. (A
    catalog folder that merely *contains* the hot tier is fine: it holds the
    catalog's files beside the hot tier, never in it.)
    """
    hot = config.hot_path
    hot_real = os.path.realpath(hot)
    for where, path, kind in _locations(config):
        real = os.path.realpath(path)
        problem = _overlap(real, hot_real, kind)
        if problem:
            raise ConfigError(f"{config.path}: {where}: {_shown(path, real)} {problem} {_shown(hot, hot_real)}; "
                              "expected a location apart from the hot tier ([hot] path)")


def _locations(config: Config) -> Iterator[tuple[str, os.PathLike[str] | str, str]]:
    catalog = config.catalog_path
    yield "[catalog] path", catalog, _FILE
    yield "[catalog] path (its lock file)", catalog.with_name(catalog.name + ".lock"), _FILE
    yield "[catalog] path (its inventory folder)", catalog.parent / "inventory", _OWNED
    for tier in config.tiers.values():
        if tier.scheme == "file":
            yield f"[tiers.{tier.name}] url", tier.url, _OWNED
        if tier.options.get("checkpoint_dir"):
            yield f"[tiers.{tier.name}] checkpoint_dir", tier.options["checkpoint_dir"], _OWNED
    if config.daemon.log_file is not None:
        yield "[daemon] log_file", config.daemon.log_file, _FILE
    # (the trace folder is tiering's own: inside the hot tier its files would be scanned, archived and
    # recorded as accesses of their own)
    yield "[trace] dir", config.trace.folder(catalog), _OWNED


def _overlap(real: str, hot_real: str, kind: str) -> str:
    if real == hot_real:
        return "is the hot tier"
    if _inside(real, hot_real):
        return "lies inside the hot tier"
    if kind == _OWNED and _inside(hot_real, real):
        return "contains the hot tier"
    return ""


def _inside(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip("/") + "/")


def _shown(path: os.PathLike[str] | str, real: str) -> str:
    given = os.fspath(path)
    return given if os.path.normpath(given) == real else f"{given} (really {real})"
