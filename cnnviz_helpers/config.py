"""Run-time settings read from the environment (no module-level state beyond reading it).

- ``CNNVIZ_QUICK=1``: quick mode. Notebooks shrink image sizes, step counts and
  dataset sizes (never the code path); CI sets it.
- ``CNNVIZ_DATA``: folder of the course images cache (default: the OS cache dir,
  e.g. ``~/.cache/cnnviz``). CI points it at ``../shared/data``.
- ``CNNVIZ_DATA_URL``: optional base URL that replaces the pinned URLs of the
  registry (a local mirror).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

__all__ = ["quick_mode", "pick", "data_dir", "QUICK_ENV", "DATA_ENV", "DATA_URL_ENV"]

QUICK_ENV = "CNNVIZ_QUICK"
DATA_ENV = "CNNVIZ_DATA"
DATA_URL_ENV = "CNNVIZ_DATA_URL"

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
