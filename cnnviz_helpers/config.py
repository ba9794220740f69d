"""Run-time settings read from the environment (no module-level state beyond reading it).

- ``CNNVIZ_QUICK=1``: quick mode. Notebooks shrink image sizes, step counts and
  dataset sizes (never the code path); CI sets it.
- ``CNNVIZ_DATA``: folder of the course images cache (default: the OS cache dir,
  e.g. ``~/.cache/cnnviz``). CI points it at ``../shared/data``.
- ``CNNVIZ_DATA_URL``: optional base URL that replaces the pinned URLs of the
  registry (a local mirror).
- ``CNNVIZ_MALLOC_TUNING=0``: leave the C allocator as it is (see ``tune_allocator``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

__all__ = ["quick_mode", "pick", "data_dir", "tune_allocator", "QUICK_ENV", "DATA_ENV", "DATA_URL_ENV"]

QUICK_ENV = "CNNVIZ_QUICK"
DATA_ENV = "CNNVIZ_DATA"
DATA_URL_ENV = "CNNVIZ_DATA_URL"
MALLOC_ENV = "CNNVIZ_MALLOC_TUNING"

T = TypeVar("T")


def quick_mode() -> bool:
    """True when ``CNNVIZ_QUICK`` is set to 1/true/yes (case-insensitive)."""
    return os.environ.get(QUICK_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def pick(full: T, quick: T) -> T:
    """``quick`` in quick mode, else ``full``: sizes and step counts, never code paths.

    >>> steps = pick(full=200, quick=10)
    """
    return quick if quick_mode() else full


def data_dir() -> Path:
    """The course image cache: ``$CNNVIZ_DATA`` or the OS user cache folder."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser().resolve()
    import pooch

    return Path(pooch.os_cache("cnnviz"))


def tune_allocator() -> bool:
    """Keep freed feature maps in the process instead of handing them back to the OS.

    glibc's ``malloc`` serves blocks above a (dynamic) threshold with ``mmap`` and
    unmaps them when freed, so every forward pass of a CNN on a CPU maps, page-faults
    and unmaps its large activations again (benchmarks/NOTES.md has the numbers).
    This sets glibc's mmap threshold to 64 MiB and its trim threshold to 128 MiB
    (``mallopt``; the same as the ``MALLOC_MMAP_THRESHOLD_`` and
    ``MALLOC_TRIM_THRESHOLD_`` environment variables), for the whole process: call
    it once, at the start (each lesson's first cell and the benchmarks do; importing
    ``cnnviz_helpers`` does not). A no-op, returning False, off glibc or with
    ``CNNVIZ_MALLOC_TUNING=0``. The process then holds up to 128 MiB of freed memory.

    >>> from cnnviz_helpers import tune_allocator; tune_allocator()
    """
    if os.environ.get(MALLOC_ENV, "").strip().lower() in {"0", "false", "no", "off"}:
        return False
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 64 << 20)) and bool(libc.mallopt(m_trim_threshold, 128 << 20))
