"""Page-cache residency read from the kernel (mincore(2)), for the bench tests' cache checks."""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
from pathlib import Path

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def resident_fraction(path: Path) -> float:
    """The share of ``path``'s pages in the page cache, from mincore(2)."""
    size = path.stat().st_size
    with open(path, "rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) as m:
        pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
        vec = (ctypes.c_ubyte * pages)()
        buf = ctypes.c_char.from_buffer(m)  # the mapping's address (a private map: nothing is written)
        try:
            if _libc.mincore(ctypes.c_void_p(ctypes.addressof(buf)), ctypes.c_size_t(size), vec) != 0:
                raise OSError(ctypes.get_errno(), "mincore failed")
        finally:
            del buf  # the mmap cannot close while a ctypes buffer exports it
        return sum(v & 1 for v in vec) / pages
