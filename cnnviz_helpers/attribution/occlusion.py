"""Occlusion (lesson 04): grey out a sliding patch and record the probabilities of all classes."""
from __future__ import annotations

import math
import time
import weakref
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .._checks import check_choice, check_index, check_int, check_size
from ..hooks import frozen
from .._util import device_of
from .targets import _image

__all__ = ["OcclusionResult", "OCCLUSION_METHODS", "best_batch_size", "occlusion", "occlusion_positions"]


def occlusion_positions(size: tuple[int, int], window, stride) -> tuple[list[int], list[int]]:
    """Top rows and left columns of the occluding patch: ``ceil((H-k)/s)+1`` positions per axis,
    starting at 0 every ``s`` pixels; the last patch is cut at the border (captum's convention).

    >>> occlusion_positions((224, 224), 32, 16)[0][:3]     # [0, 16, 32]
    """
    (kh, kw), (sh, sw) = check_size(window, "window"), check_size(stride, "stride")
    h, w = size
    if kh > h or kw > w:
        raise ValueError(f"window {(kh, kw)} is larger than the {h}x{w} image")
    if sh > kh or sw > kw:
        raise ValueError(f"stride {(sh, sw)} is larger than the window {(kh, kw)}: some pixels would never be "
                         f"occluded; use a stride <= the window")
    ys = [i * sh for i in range(math.ceil((h - kh) / sh) + 1)]
    xs = [j * sw for j in range(math.ceil((w - kw) / sw) + 1)]
    return ys, xs


@dataclass
class OcclusionResult:
    """What ``occlusion`` measured for one image.

    ``probs``: ``(nY, nX, K)``, the probabilities of all K classes with the patch
    at position (row ``ys[i]``, column ``xs[j]``); ``base``: ``(K,)`` without patch.
    ``method``: how they were computed, ``"incremental"`` or ``"full"`` (same numbers).
    """

    probs: torch.Tensor
    base: torch.Tensor
    ys: list[int]
    xs: list[int]
    window: tuple[int, int]
    stride: tuple[int, int]
    image_size: tuple[int, int]
    method: str = "full"

    def _c(self, c: int) -> int:
        return check_index(c, self.base.shape[0], "class index")

    def prob_map(self, c: int) -> torch.Tensor:
        """``(nY, nX)``: probability of class ``c`` with the patch at each position (Zeiler & Fergus's map)."""
        return self.probs[..., self._c(c)]

    def drop_map(self, c: int) -> torch.Tensor:
        """``(nY, nX)``: how much the probability of ``c`` falls when each position is occluded."""
        return self.base[self._c(c)] - self.probs[..., c]

    def attribution(self, c: int) -> torch.Tensor:
        """``(H, W)`` per pixel: the mean probability drop over every patch covering the pixel
        (``captum.attr.Occlusion``'s definition)."""
        d = self.drop_map(c)
        h, w = self.image_size
        kh, kw = self.window
        total = torch.zeros(h, w, dtype=d.dtype)
        count = torch.zeros(h, w, dtype=d.dtype)
        for i, y in enumerate(self.ys):
            for j, x in enumerate(self.xs):
                total[y:y + kh, x:x + kw] += d[i, j]
                count[y:y + kh, x:x + kw] += 1
        return total / count

    def top_classes(self, k: int = 5) -> list[int]:
        """The ``k`` most probable classes of the unoccluded image."""
        return self.base.topk(k).indices.tolist()


_BATCH_CACHE: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def best_batch_size(
    model: nn.Module,
    size: tuple[int, int],
    *,
    candidates: Sequence[int] = (1, 2, 4, 8, 16, 32, 64),
    budget_images: int = 16,
) -> int:
    """The batch size with the highest measured throughput (images/s) for ``model`` on ``size`` inputs.

    CPU throughput does not always grow with the batch: EfficientNet's depthwise
    convolutions often run fastest in small batches, AlexNet's big matrix
    products in large ones. Measures ``budget_images`` images per candidate after
    one warm-up pass, stops once two larger candidates in a row are slower, and
    remembers the answer for this model, size, device and thread count. The
    images are channels-last, the layout the course's batched passes feed
    (``occlusion``, ``dataset``): CPU convolutions run markedly faster in it.
    """
    h, w = size
    key = (int(h), int(w), str(device_of(model)), torch.get_num_threads())
    cache = _BATCH_CACHE.setdefault(model, {})
    if key in cache:
        return cache[key]
    dev = device_of(model)
    best, best_rate, worse = candidates[0], 0.0, 0
    with frozen(model), torch.no_grad():
        for b in candidates:
            xb = torch.full((b, 3, h, w), 0.5, device=dev).contiguous(memory_format=torch.channels_last)
            model(xb)  # warm-up
            reps = max(1, budget_images // b)
            _sync(dev)
            t = time.perf_counter()
            for _ in range(reps):
                model(xb)
            _sync(dev)
            rate = reps * b / (time.perf_counter() - t)
            if rate > best_rate:
                best, best_rate, worse = b, rate, 0
            else:
                worse += 1
                if worse >= 2:
                    break
    cache[key] = best
    return best


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _baseline_tensor(model: nn.Module, x: torch.Tensor, baseline) -> torch.Tensor:
    """The occluder's colour as ``(1,3,1,1)`` or a full ``(1,3,H,W)`` image, in pixel space."""
    if baseline is None:
        mean = getattr(model, "mean", None)
        if mean is None:
            raise ValueError(f"{type(model).__name__} has no .mean colour: pass baseline= (a grey level in [0,1], "
                             f"an RGB triple, or a (1,3,H,W) image)")
        return torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        b = torch.full((1, 3, 1, 1), float(baseline), dtype=x.dtype, device=x.device)
    elif isinstance(baseline, (tuple, list)) and len(baseline) == 3:
        b = torch.tensor([float(v) for v in baseline], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    elif isinstance(baseline, torch.Tensor):
        b = baseline.to(x.device, x.dtype)
        if b.dim() == 3:
            b = b[None]
        if b.shape not in ((1, 3, 1, 1), (1,) + tuple(x.shape[1:])):
            raise ValueError(f"a baseline tensor must be (1,3,1,1) or the image's shape {(1,) + tuple(x.shape[1:])}, "
                             f"got {tuple(baseline.shape)}")
    else:
        raise ValueError(f"baseline must be None (the model's mean colour), a grey level, an RGB triple or an "
                         f"image tensor, got {baseline!r}")
    if float(b.min()) < 0 or float(b.max()) > 1:
        raise ValueError(f"baseline values must lie in [0,1] (pixel space), got [{float(b.min()):.3g}, {float(b.max()):.3g}]")
    return b


OCCLUSION_METHODS = ("auto", "incremental", "full")


def occlusion(
    model: nn.Module,
    x: torch.Tensor,
    *,
    window: int | tuple[int, int] = 32,
    stride: int | tuple[int, int] = 16,
    baseline: float | Sequence[float] | torch.Tensor | None = None,
    batch_size: int | None = None,
    method: str = "auto",
    progress: bool = True,
) -> OcclusionResult:
    """Slide a ``window`` patch over one image every ``stride`` pixels and record the softmax
    probabilities of **all** classes at each position (Zeiler & Fergus 2014, lesson 04).

    ``x``: ``(1,3,H,W)`` in [0,1]. ``baseline``: the patch's content, default the model's
    mean colour (zero after normalization). Every class is available afterwards without
    recomputing (``result.prob_map(c)``). ``progress``: a tqdm bar.

    ``method``:

    - ``"incremental"``: a patch only changes the units whose receptive field it
      touches, so each stage of the network is recomputed only on the changed region
      of its map (plus the margin it reads), the rest is copied from the clean pass
      (``stages.chain_of`` finds the stages and checks them against the model). Same
      numbers as ``"full"``, several times faster on the course models. Raises
      ``stages.ChainUnavailable`` for a model whose structure it does not know.
    - ``"full"``: one forward pass of every occluded image.
    - ``"auto"`` (default): incremental where available, else full;
      ``result.method`` says which ran.

    ``batch_size``: occluded images per forward pass; ``None`` measures the fastest for
    full images (``best_batch_size``) or takes 16 positions per chunk (incremental).

    >>> occ = occlusion(model, x, window=32, stride=16)
    >>> occ.prob_map(281).shape        # (13, 13)
    """
    check_choice(method, OCCLUSION_METHODS, "occlusion method")
    x = _image(x)
    if x.shape[0] != 1:
        raise ValueError(f"occlusion explains one image (1,3,H,W), got a batch of {x.shape[0]}: loop over the images")
    win, st = check_size(window, "window"), check_size(stride, "stride")
    h, w = x.shape[-2:]
    ys, xs = occlusion_positions((h, w), win, st)
    if batch_size is not None:
        check_int(batch_size, "batch_size", lo=1, must="None (measure) or an integer >= 1")
    xd = x.detach().to(device_of(model))
    occluder = _Occluder(xd, _baseline_tensor(model, xd, baseline).expand_as(xd), win)
    positions = [(y, c) for y in ys for c in xs]
    with frozen(model), torch.no_grad():
        base, forward, bs, used = _occluded_forward(model, xd, occluder, method, batch_size)
        desc = f"occlusion {win[0]}x{win[1]}/{st[0]}"
        probs = _probabilities(forward, positions, bs, desc, progress)
    return OcclusionResult(probs.view(len(ys), len(xs), -1).to(x.device), base.to(x.device), ys, xs, win, st, (h, w),
                           method=used)


class _Occluder:
    """The occluded copies of one image ``(1,3,H,W)``: the patch ``window`` at each (row, column) of a chunk."""

    def __init__(self, x: torch.Tensor, baseline: torch.Tensor, window: tuple[int, int]) -> None:
        self.x, self.baseline, (self.kh, self.kw) = x, baseline, window

    def __call__(self, chunk: list[tuple[int, int]]) -> torch.Tensor:
        xb = self.x.repeat(len(chunk), 1, 1, 1)
        for k, (y, c) in enumerate(chunk):
            xb[k, :, y:y + self.kh, c:c + self.kw] = self.baseline[0, :, y:y + self.kh, c:c + self.kw]
        return xb

    def spans(self, chunk: list[tuple[int, int]]) -> list:
        """Per image: the changed rows and columns ``((top, bottom), (left, right))``, inclusive."""
        h, w = self.x.shape[-2:]
        return [((y, min(y + self.kh, h) - 1), (c, min(c + self.kw, w) - 1)) for y, c in chunk]


def _occluded_forward(model: nn.Module, xd: torch.Tensor, occluder: _Occluder, method: str, batch_size: int | None):
    """``(clean probabilities (K,), forward(chunk) -> logits, batch size, method used)``: the incremental
    path where the model's stages are known (``stages.chain_of``), else whole forward passes."""
    from ..stages import ChainUnavailable, chain_of

    chain = None
    if method != "full":
        try:
            chain = chain_of(model, xd, fold=True)
        except ChainUnavailable:
            if method == "incremental":
                raise
    if chain is not None:
        def incremental(chunk):
            return chain.forward_changed(occluder(chunk), occluder.spans(chunk))

        return chain.logits.softmax(-1)[0], incremental, batch_size or 16, "incremental"

    def full(chunk):
        return model(occluder(chunk).contiguous(memory_format=torch.channels_last))

    bs = batch_size if batch_size is not None else best_batch_size(model, tuple(xd.shape[-2:]))
    return model(xd).softmax(-1)[0], full, bs, "full"


def _probabilities(forward, positions: list[tuple[int, int]], batch_size: int, desc: str,
                   progress: bool) -> torch.Tensor:
    """Softmax of ``forward(chunk)`` for every position, ``batch_size`` positions at a time: ``(P, K)``."""
    from tqdm.auto import tqdm

    out = []
    bar = tqdm(total=len(positions), desc=desc, disable=not progress, leave=False)
    try:
        for s in range(0, len(positions), batch_size):
            chunk = positions[s:s + batch_size]
            out.append(forward(chunk).softmax(-1))
            bar.update(len(chunk))
    finally:
        bar.close()
    return torch.cat(out)
