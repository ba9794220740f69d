"""The crop arithmetic of the incremental forward pass (private; ``stages`` re-exports ``dirty_span``).

Along one axis a local stage has the geometry ``(k, s, p)``: output unit ``u``
reads input units ``u*s - p .. u*s - p + k - 1``. ``dirty_span`` turns a changed
input range into the input crop to recompute and the output range it yields;
``run_on_changed`` applies that to a whole chain of stages (lesson 04).
"""
from __future__ import annotations

import torch

__all__ = ["Geometry", "dirty_span", "run_on_changed"]

Geometry = tuple[int, int, int]  # (k, s, p) along one axis


def _crop_consistent(fn, rows: Geometry, cols: Geometry, inp: torch.Tensor, out: torch.Tensor) -> bool:
    (h, w), (ho, wo) = inp.shape[-2:], out.shape[-2:]
    ph = dirty_span(rows, h // 3, max(h // 3, h // 2), h, ho)
    pw = dirty_span(cols, w // 3, max(w // 3, w // 2), w, wo)
    if ph is None or pw is None:
        return False
    ((c0, c1), (a, b), oa), ((d0, d1), (e, f), oe) = ph, pw
    res = fn(inp[..., c0:c1 + 1, d0:d1 + 1].clone())
    part = res[..., oa:oa + b - a + 1, oe:oe + f - e + 1]
    ref = out[..., a:b + 1, e:f + 1]
    return part.shape == ref.shape and float((part - ref).abs().max()) <= 1e-4 * (1.0 + float(ref.abs().max()))


def dirty_span(geom: Geometry | None, lo: int, hi: int, n_in: int, n_out: int):
    """Along one axis: input units ``lo..hi`` (inclusive) have changed. Returns
    ``((c0, c1), (a, b), o)``: recompute the stage on input units ``c0..c1``; its
    outputs ``o .. o + b - a`` are the changed output units ``a..b``, exact;
    everything else of the output is unchanged. ``None`` when no output changes.

    ``c0`` is a multiple of the stage's stride, so the crop's outputs fall on the
    full map's grid, and the crop holds every input unit those outputs read,
    so the padding the stage adds at the crop's edges never reaches them.
    """
    if geom is None:
        return (0, n_in - 1), (0, n_out - 1), 0
    k, s, p = geom
    a = max(0, -((p - k + 1 + lo) // -s))  # ceil((lo + p - k + 1) / s)
    b = min(n_out - 1, (hi + p) // s)
    if a > b:
        return None
    c0 = (max(0, a * s - p) // s) * s
    c1 = min(n_in - 1, b * s - p + k - 1)
    return (c0, c1), (a, b), a - c0 // s


def _stride(geom) -> int:
    return 1 if geom is None else geom[1]


def _common_length(crops: list[tuple[int, int]], n: int, geom) -> int:
    """A crop length that holds every crop ``(c0, c1)`` and, placed at the map's end, starts on the
    stride's grid (so every grown crop can stay inside the map)."""
    s = _stride(geom)
    length = max(c1 - c0 + 1 for c0, c1 in crops)
    return min(n, length + (n - length) % s)


def _grown_start(crop: tuple[int, int], length: int, n: int, geom) -> int:
    """Start of the crop of ``length`` that contains ``crop``, on the stride's grid, inside ``0..n-1``."""
    c0, c1 = crop
    start = min(c0, n - length)  # n - length is on the grid by _common_length (or 0)
    start -= start % _stride(geom)
    assert 0 <= start <= c0 and start + length - 1 >= c1, (crop, length, n, geom)
    return start


_WHOLE_MAP_FRACTION = 0.6  # crops larger than this part of the map: run the stage on whole maps (measured)


def run_on_changed(chain, xb: torch.Tensor, spans) -> torch.Tensor:
    """``chain`` (a ``stages.Chain``): logits of the images ``xb``, which differ from the checked image ``chain.clean[0]`` only inside
    ``spans[i] = ((top, bottom), (left, right))`` (inclusive): each local stage is recomputed
    on the changed region of its input (plus the margin it reads) and pasted into a copy of
    its clean output; the crops of all images grow to one size and go through the stage together.
    Stages run on channels-last tensors: CPU convolutions (depthwise ones above all) are
    markedly faster in that layout; the values are the same up to float rounding."""
    cur = xb
    live = list(range(xb.shape[0]))  # images whose maps still differ from the clean ones
    for i, stage in enumerate(chain.local):
        clean_out = chain.clean[i + 1]
        plans = _plans(stage, spans, live, tuple(cur.shape[-2:]), tuple(clean_out.shape[-2:]))
        n_h, n_w = clean_out.shape[-2:]
        if not plans:  # nothing changed any more (a strided stage dropped the changed units)
            cur, live, spans = _clean_batch(clean_out, cur.shape[0]), [], {}
            continue
        if _mostly_changed(plans, tuple(cur.shape[-2:])):
            # the changed regions cover most of the map: one plain forward of the whole batch beats
            # many crops (from here on every later stage runs whole too)
            cur = stage.fn(cur.contiguous(memory_format=torch.channels_last))
            spans = {k: ((0, n_h - 1), (0, n_w - 1)) for k in plans}
        else:
            cur = _run_on_crops(stage, cur, plans, clean_out)
            spans = {k: (plans[k][0][1], plans[k][1][1]) for k in plans}
        live = list(plans)
    return chain.tail(cur)


def _plans(stage, spans, live: list[int], n_in: tuple[int, int], n_out: tuple[int, int]) -> dict:
    """Per image still changing: ``(rows plan, cols plan)`` of ``dirty_span``; images whose change
    no longer reaches this stage's output are left out."""
    plans = {}
    for k in live:
        (t, b), (l, r) = spans[k]
        ph = dirty_span(stage.rows, t, b, n_in[0], n_out[0])
        pw = dirty_span(stage.cols, l, r, n_in[1], n_out[1])
        if ph is not None and pw is not None:
            plans[k] = (ph, pw)
    return plans


def _mostly_changed(plans: dict, n_in: tuple[int, int]) -> bool:
    area = max((ph[0][1] - ph[0][0] + 1) * (pw[0][1] - pw[0][0] + 1) for ph, pw in plans.values())
    return area >= _WHOLE_MAP_FRACTION * n_in[0] * n_in[1]


def _clean_batch(clean_out: torch.Tensor, n: int) -> torch.Tensor:
    return clean_out.expand(n, *clean_out.shape[1:]).clone()


def _run_on_crops(stage, cur: torch.Tensor, plans: dict, clean_out: torch.Tensor) -> torch.Tensor:
    """The stage's output for the batch ``cur``: its clean output with the changed regions recomputed.

    One crop size for the whole batch (a single call of the stage): each crop grows to the
    largest, staying on the stride's grid and inside the map.
    """
    n_in_h, n_in_w = cur.shape[-2:]
    nxt = _clean_batch(clean_out, cur.shape[0])
    members = list(plans)
    lh = _common_length([plans[k][0][0] for k in members], n_in_h, stage.rows)
    lw = _common_length([plans[k][1][0] for k in members], n_in_w, stage.cols)
    starts = [(_grown_start(plans[k][0][0], lh, n_in_h, stage.rows),
               _grown_start(plans[k][1][0], lw, n_in_w, stage.cols)) for k in members]
    crops = torch.stack([cur[k, :, r0:r0 + lh, q0:q0 + lw] for k, (r0, q0) in zip(members, starts)])
    res = stage.fn(crops.contiguous(memory_format=torch.channels_last))
    for j, (k, (r0, q0)) in enumerate(zip(members, starts)):
        ((_, (a, b), _), (_, (e, f), _)) = plans[k]
        oa, oe = a - r0 // _stride(stage.rows), e - q0 // _stride(stage.cols)
        nxt[k, :, a:b + 1, e:f + 1] = res[j, :, oa:oa + b - a + 1, oe:oe + f - e + 1]
    return nxt
