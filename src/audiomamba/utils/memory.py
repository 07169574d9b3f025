"""Process memory tuning for long CPU inference."""

from __future__ import annotations

import contextlib
import ctypes
import platform
from typing import Iterator

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc mallopt parameters (malloc.h) and their defaults:
_GLIBC_DEFAULTS = {_M_TRIM_THRESHOLD: 128 * 1024, _M_MMAP_MAX: 65536}


@contextlib.contextmanager
def keep_freed_memory(enabled: bool = True) -> Iterator[None]:
    """On glibc, malloc serves large blocks (> 32 MB at most) with fresh ``mmap`` pages and unmaps them when freed,
    so every large activation of a long file is page-faulted in again: about a third of the time of a 10-minute
    file on a CPU.  Inside this context malloc takes every block from its heap and keeps freed memory for reuse
    (``mallopt``: no mmap, trim threshold 2 GB); on exit the glibc defaults are set again (which also turns off
    glibc's dynamic mmap threshold).  No effect elsewhere (macOS, Windows, musl)."""
    libc = None
    if enabled and platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        libc = ctypes.CDLL(None)
    if libc is None:
        yield
        return
    libc.mallopt(_M_MMAP_MAX, 0)
    libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    try:
        yield
    finally:
        for param, value in _GLIBC_DEFAULTS.items():
            libc.mallopt(param, value)
