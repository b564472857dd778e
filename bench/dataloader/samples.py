"""Sample datasets for the dataloader emulation, read the way a training job reads them.

A dataset is ``count`` samples of ``size`` random bytes, created when missing:

- on the hot tier: files ``sample-NNNNNN.bin`` in a folder, read with plain
  ``open()`` / ``read()`` (what a PyTorch ``Dataset`` over a mounted
  filesystem does);
- on a capacity tier: objects under a prefix, uploaded with ``Store.put_file``
  and read with one ``Store.read_range(key, 0, size)`` per sample (one GET,
  as map-style object datasets do).

The cache state of a run is chosen (``--cache``): *cold* evicts a hot-tier
dataset from this host's page cache before every point (``fdatasync`` +
``posix_fadvise(DONTNEED)``, per file: no root, and no other tenant's cache is
touched); *warm* reads every sample once before the first point and evicts
nothing. Later epochs of a cold dataset smaller than RAM may still be served
from cache, which ``cache_warning`` says. (On tmpfs the pages are the data:
nothing to evict.) Objects on a capacity tier are not cached on this host:
``evict`` is a no-op there, ``warm`` reads them once (warming the server's
caches, if it has any).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from tiering.config import Config, open_tier
from tiering.core.errors import UserError
from tiering.stores import scheme_of
from tiering.stores.base import FileMeta, Store
from tiering.stores.keys import encode_key
from tiering.core.units import format_size

#: Where datasets live: a folder on the hot tier, a key prefix on a capacity tier.
BENCH_FOLDER = "tiering-bench"


class Dataset(Protocol):
    """``count`` samples addressed by index; ``read`` returns the bytes it read."""

    target: str
    count: int
    size: int
    local: bool  # on this host's filesystems (so its page cache may serve it)

    def ensure(self) -> bool:
        """Create missing samples; True when anything had to be created."""

    def read(self, index: int) -> int:
        """Read sample ``index`` completely, the way a training job would."""

    def evict(self) -> None:
        """Drop this host's cached pages of the samples (nothing else's)."""

    def warm(self) -> None:
        """Read every sample once, so a warm run starts from cache."""

    def remove(self) -> None:
        """Delete every sample (and the folder or prefix)."""

    def close(self) -> None:
        """Release what reading needed (a store's connections)."""


def dataset_name(count: int, size: int) -> str:
    return f"dataloader-{count}x{size}"


class HotDataset:
    """Samples as files in ``root`` on a POSIX filesystem."""

    def __init__(self, root: str | os.PathLike[str], count: int, size: int) -> None:
        self.root = Path(root)
        self.target = str(self.root)
        self.local = True
        self.count, self.size = count, size
        self._paths = [self.root / f"sample-{i:06d}.bin" for i in range(count)]

    def ensure(self) -> bool:
        self.root.mkdir(parents=True, exist_ok=True)
        created = False
        for path in self._paths:
            if not path.is_file() or path.stat().st_size != self.size:
                path.write_bytes(os.urandom(self.size))
                created = True
        return created

    def evict(self) -> None:
        for path in self._paths:
            _drop_cache(path)

    def warm(self) -> None:
        for index in range(self.count):
            self.read(index)

    def read(self, index: int) -> int:
        with open(self._paths[index], "rb", buffering=0) as f:
            return len(f.read())

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        try:
            self.root.parent.rmdir()  # the shared bench folder, once no dataset is left in it
        except OSError:
            pass

    def close(self) -> None:
        pass


class StoreDataset:
    """Samples as objects under ``prefix`` on a capacity tier, read through the Store layer."""

    def __init__(self, store: Store, prefix: str, count: int, size: int, jobs: int = 8) -> None:
        self.store, self.prefix = store, prefix.rstrip("/") + "/"
        self.target = f"{store.url.rstrip('/')}/{self.prefix}"
        self.local = scheme_of(store.url) == "file"
        self.count, self.size, self.jobs = count, size, jobs
        self._keys = [encode_key(f"{self.prefix}sample-{i:06d}.bin") for i in range(count)]

    def ensure(self) -> bool:
        present = {info.key for info in self.store.list(self.prefix) if info.size == self.size}
        missing = [key for key in self._keys if key not in present]
        if not missing:
            return False
        with tempfile.TemporaryDirectory(prefix="tiering-samples-") as tmp:
            def put(key: str) -> None:
                local = Path(tmp) / key.rsplit("/", 1)[-1]
                local.write_bytes(os.urandom(self.size))
                self.store.put_file(local, key, FileMeta.from_stat(local.stat(), key))
                local.unlink()

            with ThreadPoolExecutor(self.jobs, thread_name_prefix="samples") as pool:
                list(pool.map(put, missing))
        return True

    def read(self, index: int) -> int:
        return len(self.store.read_range(self._keys[index], 0, self.size))

    def evict(self) -> None:
        pass  # nothing of an object tier is cached on this host

    def warm(self) -> None:
        with ThreadPoolExecutor(self.jobs, thread_name_prefix="samples") as pool:
            list(pool.map(self.read, range(self.count)))

    def remove(self) -> None:
        with ThreadPoolExecutor(self.jobs, thread_name_prefix="samples") as pool:
            list(pool.map(self.store.delete, self._keys))

    def close(self) -> None:
        self.store.close()


def open_dataset(config: Config, tier: str, count: int, size: int) -> Dataset:
    """The dataset of ``count`` x ``size`` samples on ``tier``: "hot" or a configured capacity tier."""
    name = dataset_name(count, size)
    if tier == "hot":
        if not config.hot_path.is_dir():  # create the dataset in the hot tier, never the hot tier itself
            raise UserError(f"{config.path}: [hot] path: {config.hot_path} is not an existing directory")
        return HotDataset(config.hot_path / BENCH_FOLDER / name, count, size)
    return StoreDataset(open_tier(config, tier), f"{BENCH_FOLDER}/{name}", count, size, jobs=config.jobs)


#: How a run finds the page cache: evicted before every point, or filled before the first.
CACHES = ("cold", "warm")


def cache_warning(dataset: Dataset, cache: str = "cold") -> str | None:
    """A warning when a local dataset is (warm) or may be (fits in RAM) served from the page cache."""
    total = dataset.count * dataset.size
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if dataset.local and cache == "warm":
        return "warm cache by request (--cache warm): reads are served from the page cache, not the tier"
    if dataset.local and total < ram:
        return (f"dataset ({format_size(total)}) is smaller than RAM ({format_size(ram)}): "
                "reads after the first epoch may be served from the page cache")
    return None


def _drop_cache(path: Path) -> None:
    # Not available everywhere, and a no-op on tmpfs (whose pages are the data).
    if hasattr(os, "posix_fadvise"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)  # dirty pages cannot be dropped; write them back first
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
