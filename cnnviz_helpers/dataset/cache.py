"""The results cache of the dataset passes: where it lives, how results are keyed, atomic writes."""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

__all__ = ["CACHE_ENV", "CacheWarning", "cache_enabled", "runs_dir", "model_fingerprint"]

CACHE_ENV = "CNNVIZ_CACHE"


_FORMAT = 2  # bump when what is stored changes (2: photos decoded upright by their EXIF orientation)


class CacheWarning(UserWarning):
    """The results cache could not be read or written; results are recomputed, nothing else changes."""


_OFF = {"0", "off", "false", "no"}


def cache_enabled() -> bool:
    """False when ``CNNVIZ_CACHE=0`` (or off/false/no): nothing is read from or written to the runs cache."""
    return os.environ.get(CACHE_ENV, "").strip().lower() not in _OFF


def runs_dir() -> Path:
    """The cache of dataset passes: ``$CNNVIZ_CACHE`` or the OS user cache (``~/.cache/cnnviz-runs``).

    Not created here: it is created on the first write. ``CNNVIZ_CACHE=0`` turns the cache off
    (``cache_enabled``); this is then the default folder, which nothing reads or writes.
    """
    env = os.environ.get(CACHE_ENV)
    if env and env.strip().lower() not in _OFF:
        return Path(env).expanduser().resolve()
    import pooch

    return Path(pooch.os_cache("cnnviz-runs"))


def model_fingerprint(model: nn.Module) -> str:
    """A sha1 of the model's class, name, parameters and buffers (names, shapes, dtypes and values).

    Two untrained ``load_model(name, weights=None)`` calls give two fingerprints:
    their random weights differ, and so do their results.
    """
    h = hashlib.sha1()
    h.update(type(model).__name__.encode())
    h.update(str(getattr(model, "name", "")).encode())
    for n, t in list(model.named_parameters()) + list(model.named_buffers()):
        t = t.detach()
        h.update(f"{n}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _digest(*parts: object) -> str:
    return hashlib.sha1(repr(parts).encode()).hexdigest()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


# ---------------------------------------------------------------- on-disk cache

def _cache_load(path: Path, key: str) -> dict | None:
    if not cache_enabled() or not path.exists():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: recompute and overwrite
        warnings.warn(f"ignoring unreadable cache file {str(path)!r} ({type(e).__name__}: {e}); recomputing",
                      CacheWarning, stacklevel=3)
        return None
    if not isinstance(data, dict) or data.get("key") != key:
        warnings.warn(f"ignoring cache file {str(path)!r}: it was written for other settings; recomputing",
                      CacheWarning, stacklevel=3)
        return None
    return data


def _cache_save(path: Path, data: dict) -> None:
    """Atomic write (temporary file, then rename); a cache that cannot be written only warns."""
    if not cache_enabled():
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                torch.save(data, fh)
            os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache is not secret
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as e:
        warnings.warn(
            f"cannot write the results cache {str(path.parent)!r} ({e}); results are not kept for the next run. "
            f"Set {CACHE_ENV} to a writable folder, or pass cache=False.", CacheWarning, stacklevel=3)
