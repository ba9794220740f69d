"""Figures: image grids, channel grids, heat-map overlays.

Plotting takes tensors (``(N,3,H,W)``/``(3,H,W)`` in [0,1], or ``(H,W)`` maps)
or numpy arrays, accepts ``ax=`` where it draws one panel, returns the figure
and never calls ``plt.show()``. Introduced in lesson 03.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from .images import to_numpy

__all__ = ["show_image", "image_grid", "channel_grid", "overlay", "normalize_map", "figure_to_array"]


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _inches(inches: float, size: float | None) -> float:
    """A panel's side in inches; ``size=`` is its deprecated old name (``size`` means pixels in the course)."""
    if size is None:
        return inches
    import warnings

    warnings.warn("the panel side is inches= (size= means pixels elsewhere in the course)", DeprecationWarning,
                  stacklevel=3)
    return size


def normalize_map(m: torch.Tensor | np.ndarray, *, symmetric: bool = False) -> np.ndarray:
    """For display only: a map scaled to [0,1] (``symmetric``: to [-1,1] around 0, keeping zero at 0)."""
    a = m.detach().float().cpu().numpy() if isinstance(m, torch.Tensor) else np.asarray(m, dtype=np.float32)
    a = np.squeeze(a)
    if symmetric:
        s = float(np.abs(a).max())
        return a / s if s > 0 else a
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def show_image(x, *, ax=None, title: str | None = None):
    """One image in [0,1] (tensor or HWC array) on ``ax`` (a new figure if None); returns the figure."""
    plt = _plt()
    if ax is None:
        fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(to_numpy(x), interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    return ax.figure


def image_grid(
    images: Sequence | torch.Tensor,
    *,
    titles: Sequence[str] | None = None,
    ncols: int | None = None,
    inches: float = 2.0,
    size: float | None = None,
    suptitle: str | None = None,
    cmap: str | None = None,
    row_labels: Sequence[str] | None = None,
):
    """A grid of images (tensors ``(3,H,W)``/``(H,W)`` or arrays); returns the figure.

    ``ncols`` defaults to a near-square grid; ``row_labels`` label the first column.
    """
    plt = _plt()
    if isinstance(images, torch.Tensor):
        images = list(images)
    n = len(images)
    if n == 0:
        raise ValueError("image_grid needs at least one image")
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    inches = _inches(inches, size)
    fig, axes = plt.subplots(nrows, ncols, figsize=(inches * ncols, inches * nrows + (0.4 if suptitle else 0)),
                             squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= n:
            continue
        im = images[k]
        arr = to_numpy(im) if isinstance(im, torch.Tensor) else np.asarray(im)
        if arr.ndim == 2:
            ax.imshow(arr, cmap=cmap or "viridis", interpolation="nearest")
        else:
            ax.imshow(np.clip(arr, 0, 1), interpolation="nearest")
        if titles is not None and k < len(titles) and titles[k]:
            ax.set_title(titles[k], fontsize=8)
    if row_labels is not None:
        for r, lab in enumerate(row_labels[:nrows]):
            ax = axes[r, 0]
            ax.set_axis_on()
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            ax.set_ylabel(lab, fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def channel_grid(
    act: torch.Tensor,
    channels: Sequence[int] | None = None,
    *,
    ncols: int = 8,
    inches: float = 1.4,
    size: float | None = None,
    cmap: str = "viridis",
    suptitle: str | None = None,
    shared_scale: bool = False,
):
    """Feature maps of one image, ``act``: ``(C,H,W)`` or ``(1,C,H,W)``; one panel per channel, titled ``c<k>``.

    Each panel has its own colour scale unless ``shared_scale`` (then one
    scale over all panels, so their magnitudes compare).
    """
    plt = _plt()
    a = act.detach().float().cpu()
    if a.dim() == 4:
        if a.shape[0] != 1:
            raise ValueError(f"channel_grid takes the activations of one image, got a batch of {a.shape[0]}")
        a = a[0]
    if a.dim() != 3:
        raise ValueError(f"channel_grid needs (C,H,W) activations, got shape {tuple(a.shape)}")
    C = a.shape[0]
    channels = list(range(min(C, 32))) if channels is None else list(channels)
    bad = [c for c in channels if not 0 <= c < C]
    if bad:
        raise IndexError(f"channel(s) {bad} out of range: this layer has channels 0..{C - 1}")
    nrows = math.ceil(len(channels) / ncols)
    inches = _inches(inches, size)
    fig, axes = plt.subplots(nrows, ncols, figsize=(inches * ncols, inches * nrows + (0.5 if suptitle else 0)),
                             squeeze=False)
    vmin, vmax = (float(a[channels].min()), float(a[channels].max())) if shared_scale else (None, None)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k < len(channels):
            ax.imshow(a[channels[k]].numpy(), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_title(f"c{channels[k]}", fontsize=7)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def overlay(image, heat, *, ax=None, alpha: float = 0.5, cmap: str = "jet", title: str | None = None,
            colorbar: bool = False, symmetric: bool = False):
    """A heat map (``(h,w)``, any size) over an image, upsampled bilinearly; returns the figure.

    The map is scaled to [0,1] for display only (``symmetric``: to [-1,1], for signed maps).
    """
    plt = _plt()
    img = to_numpy(image)
    h = heat.detach().float().cpu() if isinstance(heat, torch.Tensor) else torch.as_tensor(np.asarray(heat), dtype=torch.float32)
    h = h.squeeze()
    if h.dim() != 2:
        raise ValueError(f"a heat map must be 2-D (h,w), got shape {tuple(h.shape)}")
    if tuple(h.shape) != img.shape[:2]:
        h = torch.nn.functional.interpolate(h[None, None], size=img.shape[:2], mode="bilinear", align_corners=False)[0, 0]
    m = normalize_map(h, symmetric=symmetric)
    if ax is None:
        fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(img)
    im = ax.imshow(m, cmap=("bwr" if symmetric and cmap == "jet" else cmap), alpha=alpha,
                   vmin=-1 if symmetric else 0, vmax=1)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return ax.figure


def figure_to_array(fig) -> np.ndarray:
    """Render a figure to an ``(H,W,4)`` uint8 array (for GIFs and pixel comparisons)."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba()).copy()
