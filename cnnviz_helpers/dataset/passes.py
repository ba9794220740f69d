"""The dataset passes: one forward pass over a photo set with several layers captured
(``top_activations``, ``activations``)."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .._checks import check_choice, check_int
from .._names import resolve_layers
from .._util import device_of
from ..hooks import capture
from ..receptive import receptive_field
from .cache import _FORMAT, _cache_load, _cache_save, _digest, _safe, model_fingerprint, runs_dir
from .photos import PhotoSet, TensorImages, _bar, _input_hw, _source
from .relevance import _classes, _logit_grads, _relevance_maps, _target
from .topk import StreamingTopK, TopK, _rf_to_dict, _topk_result

__all__ = ["REDUCTIONS", "top_activations", "activations"]

REDUCTIONS = (None, "max", "mean")


_MAX_BYTES = 4 << 30  # refuse to build an activations tensor larger than this (4 GiB)


def _probe_shapes(model: nn.Module, names: list[str], hw: tuple[int, int]) -> dict[str, tuple[int, ...]]:
    """Output shape (without batch) of each layer, from one forward pass on a blank image."""
    with capture(model, names, detach=True) as rec, torch.no_grad():
        model(torch.zeros(1, 3, *hw, device=device_of(model)))
        rec.check_called()
        return {n: tuple(rec[n].shape[1:]) for n in names}


def _check_batch(batch_size: int | None) -> int | None:
    return None if batch_size is None else check_int(batch_size, "batch_size", lo=1)


def _stream(model: nn.Module, names: list[str], src: PhotoSet | TensorImages, batch_size: int | None,
            workers: int | None, progress: bool, consume: Callable[..., None],
            cache: bool, desc: str, grad_layers: Sequence[str] = (), target=None) -> None:
    """One forward pass over ``src`` with every layer of ``names`` captured; ``consume(start, acts)``
    per batch (``consume(start, acts, grads)`` with ``grad_layers``: then each batch also runs one
    backward of the sum of its photos' logits of class ``target`` (``"label"``: each photo's own)
    to those layers, the graph starting at the first of them, and ``grads[n]`` is dS/dA there).

    Hooks and model state are owned by ``capture`` (removed and restored in its
    ``finally``); it switches in-place modules off for the pass, so a recorded
    conv output is not rectified in place by the next ReLU before ``consume``
    sees it. Any other in-place change of a recorded output (``out += identity``,
    ``F.relu(x, inplace=True)``) is detected by its version counter and refused.
    """
    dev = device_of(model)
    if batch_size is None:  # measured only when there is a pass to run (a cached call runs none)
        from ..attribution import best_batch_size

        # the measurement costs about 16 images per candidate: only batches up to an eighth of the pass
        # are tried, so that it stays a fraction of the pass (a small pass on a big model: VGG16, 100 photos)
        candidates = tuple(b for b in (1, 2, 4, 8, 16, 32, 64) if b <= max(1, len(src) // 8))
        batch_size = best_batch_size(model, _input_hw(src), candidates=candidates,
                                     budget_images=min(16, max(1, len(src) // 8)))
    bar = _bar(len(src), desc, progress)
    try:
        grad_layers = list(grad_layers)
        # no_grad: with grad_layers, capture switches grad mode on at the first of them (the layers before run
        # as in inference, a grad-mode forward costs a fifth more) and off after the pass
        with capture(model, names, detach=not grad_layers, grad_from=grad_layers) as rec, torch.no_grad():
            for start, xb in src.batches(batch_size, workers=workers, cache=cache):
                x = xb.to(dev)
                x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
                x = x.contiguous(memory_format=torch.channels_last)  # CPU convolutions: several times faster
                out = rec.run(x)  # one forward per batch, the last batch's activations forgotten first
                rec.check_unmodified()
                if grad_layers:
                    y = _classes(target, src, start, xb.shape[0])
                    grads = _logit_grads(out, [rec[n] for n in grad_layers], y)
                    consume(start, {n: rec[n].detach() for n in names}, dict(zip(grad_layers, grads)))
                else:
                    consume(start, {n: rec[n] for n in names})
                del out
                bar.update(xb.shape[0])
    finally:
        bar.close()


def top_activations(
    model: nn.Module,
    layers: str | Sequence[str],
    photos: PhotoSet | TensorImages | torch.Tensor | None = None,
    *,
    k: int = 9,
    batch_size: int | None = None,
    workers: int | None = None,
    cache: bool = True,
    progress: bool = True,
    relevance: str | int | None = None,
    relevance_layers: str | Sequence[str] | None = None,
) -> dict[str, TopK]:
    """For every unit of each layer, the ``k`` photos that activate it most, in one pass.

    ``layers``: names or aliases (``"block2"``, ``"conv5"``); ``photos``: a
    ``PhotoSet`` (default: all 1000 course photos at the model's input size), a
    ``TensorImages`` or an ``(N,3,H,W)`` float tensor in [0,1]. A unit's score
    on a photo is its maximum over positions (one patch per photo, as in the
    lecture's figures); ranking is streamed (``StreamingTopK``). Returns
    ``{layer: TopK}``; ``TopK.patches(unit, photos)`` crops the receptive fields.
    With ``cache``, results (with their receptive fields) are read from /
    written to ``runs_dir()``: a cached call runs no forward pass at all.
    ``batch_size``: photos per forward pass; ``None`` measures the fastest
    (``attribution.best_batch_size``, once per model and size) when a pass runs.

    ``relevance``: also rank by relevance to a class, in the same pass (``None``:
    off). ``"label"``: each photo's own class (a ``PhotoSet``); an index or a class
    name: that class for every photo. ``R_c(x) = sum_ij A_c(x)_ij dS_y/dA_c(x)_ij``
    (``S_y`` the logit) comes from one backward per batch, from the logits down to
    the ``relevance_layers`` (default: all of ``layers``; a deep layer's backward is
    cheap, an early one's costs nearly a full backward). Those layers' ``TopK`` get
    ``.relevance`` (the top-k by ``R``), ``.table`` and ``.relevance.table`` (every
    photo's ``m`` and ``R``, ``(N,C)``) and ``.rank_correlation()``.

    >>> top = top_activations(model, ["block2", "block5"], PhotoSet(range(0, 1000, 10)))
    >>> top["block5"].values.shape        # (112, 9): 112 units, 9 photos each
    """
    resolved = resolve_layers(model, layers)  # KeyError with the closest names, before any work
    names = list(resolved)
    src = _source(photos) if photos is not None else PhotoSet(size=getattr(model, "input_size", 224))
    k = check_int(k, "k", lo=1, hi=len(src))
    batch_size = _check_batch(batch_size)
    if workers is not None:
        check_int(workers, "workers", lo=0)
    target = _target(model, src, relevance)
    if relevance_layers is not None and target is None:
        raise ValueError("relevance_layers is given but relevance is None: pass relevance='label' or a class")
    rel = [] if target is None else (names if relevance_layers is None
                                     else list(resolve_layers(model, relevance_layers)))
    outside = [n for n in rel if n not in resolved]
    if outside:
        raise ValueError(f"relevance_layers {outside} are not among the ranked layers: {', '.join(names)}")
    hw = _input_hw(src)
    entries = _entries(model, resolved, "topk", cache, (src.key, k))  # without relevance: the keys of before
    entries.update(_entries(model, {n: resolved[n] for n in rel}, "topk", cache, (src.key, k, "relevance", target),
                            tag="rel-"))
    cached, todo = _from_cache(entries, cache, lambda data: True)
    out = {n: _topk_result(n, resolved[n][0], data, hw, src.key) for n, data in cached.items()}
    if todo:
        todo_rel = [n for n in todo if n in rel]
        for n, data in _rank(model, todo, src, k, batch_size, workers, progress, cache, todo_rel, target).items():
            data["key"] = entries[n][0]
            if cache:
                _cache_save(entries[n][1], data)
            out[n] = _topk_result(n, resolved[n][0], data, hw, src.key)
    return {n: out[n] for n in names}


def _rank(model: nn.Module, todo: list[str], src, k: int, batch_size: int | None, workers: int | None,
          progress: bool, cache: bool, rel: Sequence[str] = (), target=None) -> dict[str, dict]:
    """One pass over ``src``: per layer, the top-``k`` photos of every unit and the layer's receptive field;
    for the layers ``rel``, also the top-``k`` by relevance to ``target`` and both full ``(N,C)`` tables."""
    hw = _input_hw(src)
    shapes = _probe_shapes(model, todo, hw)
    rfs: dict[str, dict | None] = {}
    for n in todo:
        s = shapes[n]
        if len(s) not in (1, 3):
            raise ValueError(f"layer {n!r} outputs shape {s} per image; expected (C,H,W) or (C,)")
        spatial = len(s) == 3 and s[1] * s[2] > 1
        rfs[n] = _rf_to_dict(receptive_field(model, n, hw)) if spatial else None  # errors before the pass
    acc = {n: StreamingTopK(shapes[n][0], k) for n in todo}
    acc_r = {n: StreamingTopK(shapes[n][0], k) for n in rel}
    tables = {n: (torch.empty(len(src), shapes[n][0]), torch.empty(len(src), shapes[n][0])) for n in rel}

    def consume(start: int, acts: dict[str, torch.Tensor], grads: dict[str, torch.Tensor] | None = None) -> None:
        for n in todo:
            acc[n].update(acts[n], start)
        for n in rel:
            a = acts[n]
            r, pos = _relevance_maps(a, grads[n])
            acc_r[n].update_scores(r, pos, start, tuple(a.shape[-2:]) if a.dim() == 4 else (1, 1))
            b = a.shape[0]
            tables[n][0][start:start + b] = (a.flatten(2).amax(2) if a.dim() == 4 else a).float().cpu()
            tables[n][1][start:start + b] = r

    desc = f"top-{k} of {len(todo)} layer(s)" + (f", relevance of {len(rel)}" if rel else "")
    _stream(model, todo, src, batch_size, workers, progress, consume, cache, desc, grad_layers=rel, target=target)
    out = {n: {"values": a.values, "images": a.images, "rows": a.rows, "cols": a.cols,
               "map_size": list(a.map_size), "rf": rfs[n]} for n, a in acc.items()}
    for n, a in acc_r.items():
        out[n].update(table=tables[n][0], target=target,
                      relevance={"values": a.values, "images": a.images, "rows": a.rows, "cols": a.cols,
                                 "table": tables[n][1]})
    return out


def _entries(model: nn.Module, resolved: dict, kind: str, cache: bool, parts: tuple, tag: str = "") -> dict:
    """Per layer, the cache key of its result and the file that holds it: ``{name: (key, path)}``. The key
    hashes the model's weights (when caching), the layer, ``parts`` (photo set, settings) and the format."""
    fp = model_fingerprint(model) if cache else ""
    model_name = _safe(str(getattr(model, "name", "model")))
    out = {}
    for n, (dotted, _) in resolved.items():
        key = _digest(kind, fp, dotted, *parts, _FORMAT)
        out[n] = (key, runs_dir() / kind / f"{model_name}-{_safe(dotted)}-{tag}{key[:20]}.pt")
    return out


def _from_cache(entries: dict, cache: bool, usable: Callable[[dict], bool]) -> tuple[dict, list[str]]:
    """``(results read from the cache, layers still to compute)``."""
    found, todo = {}, []
    for n, (key, path) in entries.items():
        data = _cache_load(path, key) if cache else None
        if data is not None and usable(data):
            found[n] = data
        else:
            todo.append(n)
    return found, todo


def activations(
    model: nn.Module,
    layers: str | Sequence[str],
    photos: PhotoSet | TensorImages | torch.Tensor | None = None,
    *,
    reduction: str | None = None,
    dtype: torch.dtype = torch.float32,
    batch_size: int | None = None,
    workers: int | None = None,
    cache: bool = True,
    progress: bool = True,
    reduce: str | None = None,
) -> dict[str, torch.Tensor]:
    """The outputs of each layer for every photo, in one pass: ``{layer: (N, C, H, W) or (N, C)}`` on the CPU.

    ``reduction``: ``None`` (keep the maps), ``"max"`` or ``"mean"`` over positions
    (``(N, C)``: e.g. ``"mean"`` of the last conv block is the pooled embedding).
    ``dtype``: storage type (``torch.float16`` halves memory). Refuses, before
    the pass, a result larger than 4 GiB. Photos, cache and ``batch_size`` as in
    ``top_activations``. (``reduce=`` is the old name of ``reduction``: deprecated.)

    >>> emb = activations(model, "pool", photos)["pool"].flatten(1)   # (N, 1280)
    """
    if reduce is not None:
        import warnings

        if reduction is not None:
            raise TypeError("give reduction= only (reduce= is its deprecated old name), not both")
        warnings.warn("activations(reduce=...) is deprecated: the course's word is reduction=", DeprecationWarning,
                      stacklevel=2)
        reduction = reduce
    reduce = check_choice(reduction, REDUCTIONS, "reduction")
    resolved = resolve_layers(model, layers)
    names = list(resolved)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype (torch.float32, torch.float16), got {dtype!r}")
    src = _source(photos) if photos is not None else PhotoSet(size=getattr(model, "input_size", 224))
    batch_size = _check_batch(batch_size)
    if workers is not None:
        check_int(workers, "workers", lo=0)
    n_img = len(src)
    entries = _entries(model, resolved, "acts", cache, (src.key, reduce, str(dtype)), tag=f"{reduce or 'maps'}-")
    cached, todo = _from_cache(entries, cache, lambda d: d["acts"].shape[0] == n_img and d["acts"].dtype == dtype)
    out = {n: data["acts"] for n, data in cached.items()}
    if todo:
        for n, acts in _collect(model, todo, src, reduce, dtype, batch_size, workers, progress, cache).items():
            if cache:
                _cache_save(entries[n][1], {"key": entries[n][0], "acts": acts})
            out[n] = acts
    return {n: out[n] for n in names}


def _collect(model: nn.Module, todo: list[str], src, reduce: str | None, dtype: torch.dtype,
             batch_size: int | None, workers: int | None, progress: bool, cache: bool) -> dict[str, torch.Tensor]:
    """One pass over ``src``: every layer's outputs (reduced over positions with ``reduce``) on the CPU.
    The size of the result is checked against the 4 GiB limit before the pass."""
    n_img = len(src)
    shapes = _probe_shapes(model, todo, _input_hw(src))
    out_shapes = {n: (shapes[n][0],) if (reduce is not None and len(shapes[n]) == 3) else shapes[n] for n in todo}
    total = sum(n_img * int(np.prod(s)) for s in out_shapes.values()) * torch.finfo(dtype).bits // 8
    if total > _MAX_BYTES:
        big = ", ".join(f"{n} {out_shapes[n]}" for n in todo)
        raise ValueError(f"the activations of {n_img} photos would take {total / 2**30:.1f} GiB ({big} per photo), "
                         f"above the 4 GiB limit: use reduction='max'/'mean', dtype=torch.float16 or fewer photos")
    store = {n: torch.empty((n_img, *out_shapes[n]), dtype=dtype) for n in todo}

    def consume(start: int, acts: dict[str, torch.Tensor]) -> None:
        for n in todo:
            a = acts[n]
            if reduce is not None and a.dim() == 4:
                a = a.amax((2, 3)) if reduce == "max" else a.mean((2, 3))
            store[n][start:start + a.shape[0]] = a.to("cpu", dtype)

    _stream(model, todo, src, batch_size, workers, progress, consume, cache, f"activations of {len(todo)} layer(s)")
    return store
