"""The runs cache for a lesson's expensive cells: compute once, load on every later run (issue 13).

An instructor runs a lesson before class and again, live: the second run should not wait.
``cached(name, compute, model=model, steps=200, ...)`` returns ``compute()``'s result, stored on disk
in the runs cache (``dataset.runs_dir()``), keyed by

- ``name`` (the cell's job, e.g. ``"07 faithfulness table"``),
- the model's fingerprint (a hash of its weights: another model, or an untrained one, recomputes),
- the helpers' code (a hash of the package's source: changed helpers recompute),
- the cell's parameters (every keyword argument: a changed step count recomputes).

A cell served from the cache says so in one line, with the result's age. ``CNNVIZ_CACHE=0``
turns the cache off (every cell computes, nothing is written). A corrupt or foreign cache file
is recomputed with a ``CacheWarning``, never a crash. ``python -m cnnviz_helpers prepare
--lessons`` runs the lessons once to fill it.

Results must be what ``torch.load(weights_only=True)`` reads back: tensors, numbers, strings,
``None``, and lists, tuples and dicts of them (numpy arrays are stored as tensors and come back
as numpy arrays).

    >>> curves = cached("07 deletion curves", lambda: deletion_curves(model, X), model=model, steps=STEPS)
"""
from __future__ import annotations

import functools
import hashlib
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np
import torch

from .dataset.cache import _cache_load, _cache_save, _digest, _safe, cache_enabled, model_fingerprint, runs_dir

__all__ = ["cached", "cache_enabled", "helpers_fingerprint"]

T = TypeVar("T")
_NUMPY = "__numpy__"


@functools.lru_cache(maxsize=1)
def helpers_fingerprint() -> str:
    """A sha1 of every source file of ``cnnviz_helpers`` (computed once per process)."""
    h = hashlib.sha1()
    pkg = Path(__file__).resolve().parent
    for p in sorted(pkg.rglob("*.py")):
        h.update(str(p.relative_to(pkg)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def _encode(value: Any, where: str) -> Any:
    if isinstance(value, np.ndarray):
        return {_NUMPY: torch.from_numpy(np.ascontiguousarray(value))}
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        out = [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return out if isinstance(value, list) else tuple(out)
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, (str, int))]
        if bad:
            raise TypeError(f"cached: {where} has a key {bad[0]!r} of type {type(bad[0]).__name__}; "
                            "dict keys must be strings or integers")
        return {k: _encode(v, f"{where}[{k!r}]") for k, v in value.items()}
    raise TypeError(f"cached: {where} is a {type(value).__name__}, which the runs cache cannot store; return "
                    "tensors, numpy arrays, numbers, strings, None, or lists/tuples/dicts of them")


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {_NUMPY}:
            return value[_NUMPY].numpy()
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_decode(v) for v in value)
    return value


def _age(seconds: float) -> str:
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            n = seconds / size
            return f"{n:.0f} {unit}{'s' if unit == 'day' and round(n) != 1 else ''}"
    return f"{seconds:.0f} s"


def cached(name: str, compute: Callable[[], T], *, model: torch.nn.Module | None = None, **params: Any) -> T:
    """``compute()``, or its result stored by an earlier run with the same name, model, helpers and ``params``.

    ``params``: every setting the result depends on (step counts, sizes, photo names, seeds); their
    ``repr`` is part of the key, so pass plain values. Prints one line when the result is loaded.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"cached needs a name for the cell's result, got {name!r}")
    if not callable(compute):
        raise TypeError(f"cached: compute must be a function of no arguments, got {type(compute).__name__}")
    if not cache_enabled():
        return compute()
    fp = model_fingerprint(model) if model is not None else None
    key = _digest("cell", name, fp, helpers_fingerprint(), sorted((k, repr(v)) for k, v in params.items()))
    path = runs_dir() / "cells" / f"{_safe(name)[:60]}-{key[:20]}.pt"
    hit = _cache_load(path, key)
    if hit is not None and "value" in hit:
        print(f"{name}: from the runs cache (computed {_age(time.time() - float(hit.get('time', 0)))} ago; "
              f"CNNVIZ_CACHE=0 recomputes)")
        return _decode(hit["value"])
    value = compute()
    _cache_save(path, {"key": key, "time": time.time(), "value": _encode(value, name)})
    return value
