"""Getting a machine ready for the course: ``python -m cnnviz_helpers prepare`` (``make lab`` runs it).

Fetches every course image once (then the course runs offline) and decodes the 1000
photos into the runs cache, so that lessons 01 and 13 skip JPEG decoding.
"""
from __future__ import annotations

import sys
import time

__all__ = ["fetch_course_images", "prepare"]


def _one_line(e: BaseException, limit: int = 240) -> str:
    text = " ".join(f"{type(e).__name__}: {e}".split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fetch_course_images(progress: bool = True) -> str | None:
    """Fetch every course image not yet in the cache (sha256-verified). None when all are there,
    else why not, in one line (offline without ``CNNVIZ_DATA``, a full disk, a bad mirror ...).

    The first missing file is fetched alone, without a progress bar: offline, that
    one attempt says so and nothing else is printed.
    """
    import logging

    import pooch

    from .config import data_dir
    from .data import fetch, fetch_all, registry

    reg = registry()
    names = sorted(reg)
    log = pooch.get_logger()
    level = log.level
    log.setLevel(logging.WARNING)  # not one "Downloading data from ..." line per file
    try:
        first = next((n for n in names if not (data_dir() / n).exists()), None)
        if first is not None:
            fetch(first, reg=reg)
        fetch_all(names, progress=progress)
    except Exception as e:  # report, never a traceback: the caller decides whether to go on
        return _one_line(e)
    finally:
        log.setLevel(level)
    return None


def prepare(size: int = 224, out=sys.stdout, err=sys.stderr) -> int:
    """Fetch every course image (sha256-verified; then the course runs offline) and decode the 1000
    photos once, at ``size``, into the runs cache.

    Lessons 01 and 13 then pass over decoded tensors: their first pass costs the
    forward passes only. Returns 0, or 1 (with the reason, in one line) when the
    images cannot be fetched, e.g. offline without ``CNNVIZ_DATA``; 2 for a bad ``size``.
    """
    from .dataset import PhotoSet

    from ._checks import check_int

    try:
        check_int(size, "--size", lo=8, must="an integer >= 8 (pixels)")
    except ValueError as e:
        print(f"error: {e}", file=err)
        return 2
    t = time.perf_counter()
    problem = fetch_course_images()
    if problem is not None:
        print(f"error: the course images could not be fetched ({problem}). The lessons need them: "
              f"connect once, or set CNNVIZ_DATA to a folder that has them.", file=err)
        return 1
    photos = PhotoSet(size=size)
    had = photos.cache_file.exists()
    photos.decode_all(progress=True)
    what = "already decoded" if had else "decoded"
    print(f"{len(photos)} course photos {what} at {size}x{size} in {time.perf_counter() - t:.1f} s: "
          f"{photos.cache_file}", file=out)
    return 0
