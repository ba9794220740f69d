"""ipywidgets controls shared by every lesson (imported lazily: ``from cnnviz_helpers import widgets``).

The pattern: a lesson computes what is expensive once (activations of every
layer, occlusion probabilities of every class, optimized images per setting)
and keeps it in a cache; ``Explorer`` wires controls to a cheap ``render``
function that draws from that cache into an ``ipywidgets.Image`` as PNG bytes,
so moving a control redraws in milliseconds. ``render`` may return an
``(H,W)`` map (colour-mapped), an ``(H,W,3)`` image, a tensor in the course
convention, or a matplotlib figure (slower: ~100 ms).

Introduced in lesson 03.
"""
from __future__ import annotations

import io
import time
from typing import Any, Callable, Sequence

import numpy as np
import torch

__all__ = [
    "to_png",
    "Explorer",
    "layer_dropdown",
    "channel_slider",
    "class_dropdown",
    "image_picker",
    "int_slider",
    "float_slider",
    "log_slider",
    "steps_slider",
]


def _w():
    import ipywidgets

    return ipywidgets


def to_png(x: Any, *, cmap: str = "viridis", size: int | None = 320, vmin: float | None = None,
           vmax: float | None = None) -> bytes:
    """PNG bytes of a map ``(H,W)`` (colour-mapped, scaled to [vmin, vmax] or its own range),
    an image ``(H,W,3)``/tensor ``(1,3,H,W)`` in [0,1], or a matplotlib figure.

    ``size``: the longer side in pixels (nearest-neighbour upscaling keeps
    feature-map pixels crisp); ``None`` keeps the native size.
    """
    from PIL import Image

    if hasattr(x, "savefig"):
        buf = io.BytesIO()
        x.savefig(buf, format="png", dpi=80, bbox_inches="tight")
        import matplotlib.pyplot as plt

        plt.close(x)
        return buf.getvalue()
    a = x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    a = np.squeeze(a)
    if a.ndim == 3 and a.shape[0] == 3 and a.shape[-1] != 3:
        a = a.transpose(1, 2, 0)
    if a.ndim == 2:
        import matplotlib

        lo = float(a.min()) if vmin is None else vmin
        hi = float(a.max()) if vmax is None else vmax
        a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a, dtype=np.float32)
        a = matplotlib.colormaps[cmap](np.clip(a, 0, 1))[..., :3]
    if a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)
    img = Image.fromarray(a)
    if size is not None:
        s = size / max(img.size)
        if abs(s - 1) > 1e-6:
            img = img.resize((max(1, round(img.size[0] * s)), max(1, round(img.size[1] * s))),
                             Image.NEAREST if s > 1 else Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="png", compress_level=1)
    return buf.getvalue()


class Explorer:
    """Controls + one image, redrawn by ``render(**values)`` whenever a control moves.

    >>> ex = Explorer(render, layer=layer_dropdown(model, names), channel=channel_slider(31))
    >>> ex            # displays in Jupyter; ex.last_ms is the last redraw's time

    ``on_change``: optional ``{control name: callback(new_value, explorer)}`` run
    before the redraw (e.g. to set a slider's maximum when the layer changes).
    ``caption``: optional ``caption(**values) -> str`` shown above the image (label the figure).
    ``computing``: the names of the controls whose change makes ``render`` compute
    (optimize, occlude ...) rather than draw from a cache. They update when released,
    not on every step of a drag (``continuous_update=False``), and while ``render``
    runs the explorer says "computing..."; a ``render`` that calls
    ``explorer.step(done, total)`` also gets a progress bar (``explorer.progress``). Controls that only
    redraw from a cache stay continuous.
    """

    def __init__(self, render: Callable[..., Any], *, title: str | None = None, size: int = 360,
                 on_change: dict[str, Callable[[Any, "Explorer"], None]] | None = None,
                 caption: Callable[..., str] | None = None, computing: Sequence[str] = (),
                 **controls: Any) -> None:
        w = _w()
        if not controls:
            raise ValueError("Explorer needs at least one control, e.g. channel=channel_slider(31)")
        computing = (computing,) if isinstance(computing, str) else tuple(computing)
        unknown = [n for n in computing if n not in controls]
        if unknown:
            raise ValueError(f"computing names {unknown}, which are not controls of this explorer; "
                             f"its controls: {', '.join(controls)}")
        self.render = render
        self.controls = controls
        self.computing = frozenset(computing)
        self.size = size
        self.on_change = on_change or {}
        self.image = w.Image(format="png", layout=w.Layout(max_width=f"{size}px", height="auto"))
        self.caption = caption
        self.caption_html = w.HTML()
        self.status = w.HTML()
        self.progress = w.FloatProgress(value=0, min=0, max=1, layout=w.Layout(visibility="hidden"))
        self.last_ms = float("nan")
        self.redraws = 0
        for name, c in controls.items():
            if name in self.computing and hasattr(c, "continuous_update"):
                c.continuous_update = False
            c.observe(lambda ch, name=name: self._changed(name, ch["new"]), names="value")
        header = [w.HTML(f"<b>{title}</b>")] if title else []
        self.box = w.VBox(header + [w.HBox(list(controls.values()), layout=w.Layout(flex_flow="row wrap")),
                                    self.caption_html, self.image, w.HBox([self.status, self.progress])])
        self.redraw()

    def step(self, done: int, total: int) -> None:
        """Advance the progress bar while ``render`` computes (``done`` of ``total``)."""
        self.progress.layout.visibility = "visible"
        self.progress.value = min(1.0, done / total) if total else 1.0

    def values(self) -> dict[str, Any]:
        return {k: c.value for k, c in self.controls.items()}

    def _changed(self, name: str, value: Any) -> None:
        if name in self.on_change:
            self.on_change[name](value, self)
        self.redraw(computing=name in self.computing)

    def redraw(self, computing: bool = False) -> None:
        """Draw ``render(**values)``; ``computing``: say so and show the progress bar meanwhile."""
        t = time.perf_counter()
        values = self.values()
        if computing:
            self.status.value = "<small>computing...</small>"
            self.progress.value = 0  # shown by the first step(): a render that reports nothing shows no bar
        try:
            out = self.render(**values)
            if self.caption is not None:
                self.caption_html.value = f"<i>{self.caption(**values)}</i>"
            self.image.value = out if isinstance(out, bytes) else to_png(out, size=self.size)
        finally:
            self.progress.layout.visibility = "hidden"
        self.last_ms = (time.perf_counter() - t) * 1000
        self.redraws += 1
        self.status.value = f"<small>{'computed' if computing else 'redrawn'} in {self.last_ms:.0f} ms</small>"

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.box)


def _style():
    return {"description_width": "initial"}


def layer_dropdown(names: Sequence[str], value: str | None = None, description: str = "layer"):
    """A dropdown of layer names (aliases or dotted names)."""
    names = list(names)
    if not names:
        raise ValueError("layer_dropdown needs at least one layer name")
    return _w().Dropdown(options=names, value=value or names[0], description=description, style=_style())


def channel_slider(max_channel: int, value: int = 0, description: str = "channel"):
    """An integer slider 0..max_channel (a unit/channel of a layer)."""
    return _w().IntSlider(min=0, max=max_channel, value=value, description=description, continuous_update=True,
                          style=_style())


def class_dropdown(categories: Sequence[str], first: Sequence[int] = (), value: int | None = None,
                   description: str = "class"):
    """A dropdown of (label, index) over all classes, ``first`` (e.g. the top-5) listed first."""
    first = [int(i) for i in first]
    rest = [i for i in range(len(categories)) if i not in set(first)]
    opts = [(f"{categories[i]} ({i})", i) for i in first + rest]
    return _w().Dropdown(options=opts, value=value if value is not None else (first or rest)[0],
                         description=description, style=_style())


def image_picker(options: Sequence[str] | dict[str, Any], value: Any = None, description: str = "image"):
    """A dropdown of images: a list of names, or ``{label: value}``."""
    return _w().Dropdown(options=options, value=value, description=description, style=_style()) if value is not None \
        else _w().Dropdown(options=options, description=description, style=_style())


def int_slider(lo: int, hi: int, value: int, step: int = 1, description: str = ""):
    """An integer slider (window, stride, octave ...)."""
    return _w().IntSlider(min=lo, max=hi, value=value, step=step, description=description, style=_style())


def float_slider(lo: float, hi: float, value: float, step: float = 0.01, description: str = ""):
    """A float slider (alpha, epsilon ...)."""
    return _w().FloatSlider(min=lo, max=hi, value=value, step=step, description=description, style=_style())


def log_slider(lo_exp: float, hi_exp: float, value: float, description: str = "λ"):
    """A slider over 10**lo_exp .. 10**hi_exp (regularization strength λ, loss weights)."""
    return _w().FloatLogSlider(min=lo_exp, max=hi_exp, value=value, base=10, step=0.25, description=description,
                               style=_style())


def steps_slider(options: Sequence[int], value: int | None = None, description: str = "steps"):
    """Optimization steps, chosen among precomputed/cached counts (a selection slider)."""
    options = [int(o) for o in options]
    return _w().SelectionSlider(options=options, value=value if value is not None else options[-1],
                                description=description, style=_style())
