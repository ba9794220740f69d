"""The unit atlas (issue 15): one static web page per layer, in the spirit of OpenAI Microscope but
offline. Every unit of the layer gets a card with its own link anchor (``#<layer>-unit-<k>``):

- its top-9 photo patches (lesson 01: ``top_activations``, the same cached pass);
- its feature visualization (lesson 08's recipe: the channel's mean over all positions maximized,
  as OpenAI Microscope shows channels, with the Fourier parameterization and Lucid's transforms;
  ``objectives.channels`` runs many units in one batch);
- its dissection label (lesson 13: best concept and IoU from ``cnnviz_helpers.dissect``, the same
  colour names and texture probes; "detector" when the IoU exceeds 0.04).

Each piece is computed once and kept on disk (the dataset cache for the passes, ``runs.cached``
for the visualizations and the dissection), so the website's second build loads them.

>>> cards = unit_cards(model, "early_mid", photos, fv_size=96, fv_steps=128)
>>> HTML(atlas_html(cards))
"""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import dissect as dx

__all__ = ["Card", "anchor", "feature_visualizations", "dissection", "unit_cards", "atlas_html"]


@dataclass
class Card:
    """One unit of the atlas: its patches (k, 3, s, s), its visualization (3, S, S), both in [0, 1];
    its best concept and that IoU; its top activation over the photos; the visualization's score
    before and after the optimization."""

    layer: str
    unit: int
    patches: torch.Tensor
    visualization: torch.Tensor
    concept: str
    iou: float
    detector: bool
    top_value: float
    score_start: float
    score_end: float


def anchor(layer: str, unit: int) -> str:
    """The card's link anchor: ``early_mid-unit-17`` (letters, digits, ``-`` and ``_`` only)."""
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in str(layer))
    return f"{safe}-unit-{int(unit)}"


def feature_visualizations(model: nn.Module, layer: str, units: Sequence[int], *, size: int, steps: int,
                           batch: int = 64, seed: int = 0, progress: bool = True):
    """Lesson 08's recipe for each unit: its channel mean maximized from a seeded Fourier image.

    Returns ``(images (U, 3, size, size) in [0, 1], first-step scores (U,), last-step scores (U,))``;
    ``batch`` units are optimized together (one image each).
    """
    from . import objectives as obj
    from . import params
    from . import transforms as T
    from .optimize import optimize

    units = [int(u) for u in units]
    if not units:
        raise ValueError("feature_visualizations needs at least one unit")
    imgs, first, last = [], [], []
    for s in range(0, len(units), batch):
        chunk = units[s:s + batch]
        g = torch.Generator().manual_seed(seed + s)
        res = optimize(model, obj.channels(layer, chunk),
                       params.fft(size, batch=len(chunk), device=getattr(model, "device", None), generator=g),
                       transforms=T.standard(size / 224), steps=steps, lr=0.05,
                       desc=f"{layer}: units {chunk[0]}-{chunk[-1]}", progress=progress)
        if res.interrupted:                                              # half-optimized images are not the atlas
            raise KeyboardInterrupt(f"feature visualizations of {layer!r} interrupted at step {res.steps}")
        imgs.append(res.image.detach().cpu()); first.append(res.scores[0]); last.append(res.scores[-1])
    return torch.cat(imgs), torch.cat(first).float(), torch.cat(last).float()


def _side(photos) -> int:
    """The photos' longer side; ``TypeError`` for anything but a ``PhotoSet`` or ``TensorImages``."""
    if not hasattr(photos, "thumbnails"):
        raise TypeError(f"photos must be a PhotoSet or TensorImages, got {type(photos).__name__}")
    size = photos.size
    return max(size) if isinstance(size, tuple) else int(size)


def dissection(model: nn.Module, layer: str, photos, *, res: int, per_texture: int, batch_size: int | None = None,
               cache: bool = True, progress: bool = True):
    """Lesson 13's miniature dissection of one layer: 11 colour names on the photos, 8 generated
    textures (``per_texture`` probes each, seed 0). Returns ``dissect.dissect``'s result without the
    per-image overlaps: ``dict(best_c, best_iou, detector, IoU)``."""
    from .dataset import TensorImages, activations

    side = _side(photos)                                                 # TypeError before any pass
    kw = dict(dtype=torch.float16, batch_size=batch_size, cache=cache, progress=progress)
    acts = activations(model, [layer], photos, **kw)[layer]
    probes, masks, concept = dx.texture_probes(per_texture, seed=0, size=side)
    probe_acts = activations(model, [layer], TensorImages(probes), **kw)[layer]
    L_colour = dx.colour_masks(photos.thumbnails(res))
    L_texture = F.one_hot(concept, len(dx.TEXTURES)).bool()[:, :, None, None] & \
        (F.interpolate(masks[:, None].float(), size=(res, res), mode="bilinear") > 0.5)
    r = dx.dissect(acts, probe_acts, L_colour, L_texture)
    return {k: r[k] for k in ("best_c", "best_iou", "detector", "IoU")}


def _tile(p: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(p[None].float(), size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False)[0].clamp(0, 1)


def unit_cards(model: nn.Module, layer: str, photos, *, fv_size: int, fv_steps: int, k: int = 9, tile: int = 48,
               res: int = 112, per_texture: int = 20, batch_size: int | None = None,
               cache: bool = True, progress: bool = True) -> list[Card]:
    """Every unit of ``layer``: its card (top-``k`` patches, feature visualization, dissection label).

    ``photos``: a ``PhotoSet`` or ``TensorImages`` (the patches and the colour concepts come from it).
    The expensive parts are cached (``cache=False``: not): the passes in the dataset cache, the
    visualizations and the dissection in the runs cache.
    """
    from .dataset import top_activations
    from .layers import resolve_layer
    from .runs import cached

    resolve_layer(model, layer)                                          # KeyError with the valid names, first
    _side(photos)
    for v, what in ((fv_size, "fv_size"), (fv_steps, "fv_steps"), (tile, "tile"), (res, "res")):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{what} must be a positive integer, got {v!r}")
    store = cached if cache else (lambda name, compute, **_: compute())
    top = top_activations(model, [layer], photos, k=k, batch_size=batch_size, cache=cache, progress=progress)[layer]
    units = list(range(top.channels))
    fv, s0, s1 = store("atlas feature visualizations",
                       lambda: feature_visualizations(model, layer, units, size=fv_size, steps=fv_steps,
                                                      progress=progress),
                       model=model, layer=layer, size=fv_size, steps=fv_steps, seed=0)
    labels = store("atlas dissection", lambda: dissection(model, layer, photos, res=res, per_texture=per_texture,
                                                          batch_size=batch_size, cache=cache, progress=progress),
                   model=model, layer=layer, photos=photos.key, res=res, per_texture=per_texture)
    cards = []
    for u in units:
        patches = torch.stack([_tile(p, tile) for p in top.patches(u, photos, pad=True)])
        c = int(labels["best_c"][u])
        cards.append(Card(layer=layer, unit=u, patches=patches, visualization=fv[u], concept=dx.CONCEPTS[c],
                          iou=float(labels["best_iou"][u]), detector=bool(labels["detector"][u]),
                          top_value=float(top.values[u, 0]), score_start=float(s0[u]), score_end=float(s1[u])))
    return cards


def _jpeg(x: torch.Tensor | np.ndarray) -> str:
    """A data URI of the image (3, H, W) or (H, W, 3) in [0, 1], JPEG quality 90: photo patches and
    noisy visualizations compress 5x better than PNG, and the page carries every unit."""
    from PIL import Image

    a = x.permute(1, 2, 0).numpy() if isinstance(x, torch.Tensor) else x
    buf = io.BytesIO()
    Image.fromarray((np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)).save(buf, format="jpeg", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _grid(patches: torch.Tensor, cols: int = 3, gap: int = 2) -> np.ndarray:
    n, _, s, _ = patches.shape
    rows = -(-n // cols)
    canvas = np.ones((rows * (s + gap) - gap, cols * (s + gap) - gap, 3), dtype=np.float32)
    for i, p in enumerate(patches):
        r, c = divmod(i, cols)
        canvas[r * (s + gap):r * (s + gap) + s, c * (s + gap):c * (s + gap) + s] = p.permute(1, 2, 0).numpy()
    return canvas


_STYLE = """<style>
.atlas{display:grid;grid-template-columns:repeat(auto-fill,minmax(290px,1fr));gap:10px}
.atlas .card{border:1px solid #ccc;border-radius:6px;padding:6px;font-size:0.8em;line-height:1.35;scroll-margin-top:70px}
.atlas .card:target{outline:3px solid #e69f00}
.atlas .pics{display:flex;gap:4px;align-items:flex-start;margin:4px 0}
.atlas .pics img{display:block;max-width:none;height:auto;margin:0}
.atlas .det{color:#0b6e4f}
</style>"""


def atlas_html(cards: Sequence[Card]) -> str:
    """One HTML block: a grid of cards, each ``<div id="<anchor>">`` with its visualization, its top
    patches, its label and a link to itself."""
    out = [_STYLE, '<div class="atlas">']
    for c in cards:
        a = anchor(c.layer, c.unit)
        label = (f'<b class="det">{html.escape(c.concept)} detector</b>, IoU {c.iou:.3f}' if c.detector
                 else f"no detector (best: {html.escape(c.concept)}, IoU {c.iou:.3f})")
        grid = _grid(c.patches)
        out.append(
            f'<div class="card" id="{a}"><a href="#{a}"><b>{html.escape(c.layer)} unit {c.unit}</b></a>'
            f'<div class="pics"><img alt="feature visualization of unit {c.unit}" title="feature visualization" '
            f'src="{_jpeg(c.visualization)}" width="112" height="112">'
            f'<img alt="top photo patches of unit {c.unit}" title="top-{len(c.patches)} photo patches" '
            f'src="{_jpeg(grid)}" width="{grid.shape[1]}" height="{grid.shape[0]}"></div>'
            f"<div>{label}<br>top activation {c.top_value:.2f}; visualization {c.score_start:.2f} &rarr; "
            f"{c.score_end:.2f}</div></div>")
    out.append("</div>")
    return "\n".join(out)
