"""Attribution: which pixels made the model say "cat"? (lessons 04-07)

Every function takes a model in the course convention (images ``(N,3,H,W)``
float in [0,1], normalization inside the model) and returns tensors on the
input's device, never min-max normalized (plotting does that for display).

- ``occlusion``: grey out a sliding patch, record the probabilities of **all**
  classes for every patch position in batched passes (lesson 04).
- ``gradient``, ``saliency``, ``input_x_gradient``, ``smoothgrad``: the
  gradient of a score with respect to the input pixels (lesson 05);
  ``Neuron(layer, channel, position)`` makes the score one unit of a feature map.
- ``guided_backprop``, ``deconvnet``: the same backward pass with the ReLU
  rule changed (``gradient(..., rule=...)``, lesson 06).
- ``cam``, ``gradcam``, ``guided_gradcam``: class activation maps (lesson 07).
- ``cascading_randomization``, ``rank_correlation``: the sanity checks of
  Adebayo et al. 2018; ``deletion_insertion``: faithfulness curves
  (Petsiuk et al. 2018).

A *target* says which score to explain: a class index (``281``), a class
name (``"tabby"``, course models only), one index or name per image, a
``Neuron``, or a callable ``f(logits) -> (N,)`` scores. Class scores are the
pre-softmax logits S_c, as in Simonyan et al.

Every helper leaves the model as it found it (hooks, training flags,
``requires_grad``, ``.grad``, ReLU ``inplace`` flags), also on errors: it
works through ``hooks.frozen`` and ``hooks.relu_rule`` and computes
gradients with ``torch.autograd.grad``.
"""
from __future__ import annotations

import contextlib
import copy
import math
import numbers
import time
import weakref
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .hooks import RELU_FAMILY, LayerNotCalledError, frozen, relu_rule
from .images import check_image
from .layers import _device_of, resolve_layer

__all__ = [
    "Neuron",
    "Target",
    "OcclusionResult",
    "FaithfulnessCurves",
    "class_scores",
    "gradient",
    "saliency",
    "saliency_map",
    "input_x_gradient",
    "smoothgrad",
    "guided_backprop",
    "deconvnet",
    "occlusion",
    "occlusion_positions",
    "best_batch_size",
    "cam",
    "gradcam",
    "guided_gradcam",
    "upsample_map",
    "functional_relus",
    "cascading_randomization",
    "rank_correlation",
    "deletion_insertion",
]


# ---------------------------------------------------------------- targets


@dataclass(frozen=True)
class Neuron:
    """The score of one unit of a feature map: ``act[n, channel, i, j]`` of ``layer``'s output.

    ``position=(i, j)`` picks one unit (row i, column j of the map);
    ``position=None`` sums the whole channel (its "total activation").
    ``at="input"`` reads the layer's input instead of its output.

    >>> gradient(model, x, Neuron("block4", channel=12, position=(7, 3)))
    """

    layer: str
    channel: int
    position: tuple[int, int] | None = None
    at: str = "output"

    def __post_init__(self) -> None:
        if not isinstance(self.layer, str):
            raise TypeError(f"Neuron.layer must be a layer name (str), got {type(self.layer).__name__}")
        if isinstance(self.channel, bool) or not isinstance(self.channel, numbers.Integral) or self.channel < 0:
            raise ValueError(f"Neuron.channel must be an integer >= 0, got {self.channel!r}")
        object.__setattr__(self, "channel", int(self.channel))
        if self.position is not None:
            p = self.position
            if (not isinstance(p, (tuple, list)) or len(p) != 2
                    or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 0 for v in p)):
                raise ValueError(f"Neuron.position must be None or (row, column) integers >= 0, got {p!r}")
            object.__setattr__(self, "position", (int(p[0]), int(p[1])))
        if self.at not in _AT:
            raise ValueError(f"Neuron.at must be one of {', '.join(_AT)}, got {self.at!r}")


Target = Union[int, str, Sequence[Union[int, str]], torch.Tensor, Neuron, Callable[[torch.Tensor], torch.Tensor]]

_AT = ("output", "input")


def _num_classes(model: nn.Module) -> int | None:
    cats = getattr(model, "categories", None)
    return len(cats) if cats else None


def _class_targets(model: nn.Module, target, n: int) -> torch.Tensor | None:
    """Validate a class target (before any work) -> LongTensor (n,) on CPU; None for Neuron/callable."""
    if isinstance(target, Neuron) or (callable(target) and not isinstance(target, torch.Tensor)):
        return None
    if isinstance(target, torch.Tensor):
        if target.dtype in (torch.float16, torch.float32, torch.float64, torch.bool):
            raise TypeError(f"a class target tensor must hold integer indices, got dtype {target.dtype}")
        items = target.flatten().tolist()
        if target.dim() == 0:
            items = [int(target)]
    elif isinstance(target, (list, tuple)):
        items = list(target)
    else:
        items = [target]
    if len(items) == 1 and n > 1:
        items = items * n
    if len(items) != n:
        raise ValueError(f"got {len(items)} class targets for a batch of {n} images: give one target, or one per image")
    k = _num_classes(model)
    out = []
    for t in items:
        if isinstance(t, bool):
            raise TypeError(f"a class target must be an index or a class name, not {t!r}")
        if isinstance(t, str):
            if not hasattr(model, "class_index"):
                raise TypeError(f"class name {t!r} needs a course model with .categories; "
                                f"{type(model).__name__} has none: pass a class index")
            t = model.class_index(t)
        if not isinstance(t, numbers.Integral):
            raise TypeError(f"a class target must be an int index or a class name, got {type(t).__name__}: {t!r}")
        t = int(t)
        if t < 0 or (k is not None and t >= k):
            valid = f"0..{k - 1}" if k is not None else "0 or more"
            raise IndexError(f"class index {t} is out of range: valid indices are {valid}")
        out.append(t)
    return torch.tensor(out, dtype=torch.long)


def _select(target, classes: torch.Tensor | None, logits: torch.Tensor, acts: dict) -> torch.Tensor:
    """Per-image scores (N,) of the target."""
    if classes is not None:
        if classes.max() >= logits.shape[1]:
            raise IndexError(f"class index {int(classes.max())} is out of range: the model has "
                             f"{logits.shape[1]} outputs (valid indices 0..{logits.shape[1] - 1})")
        return logits.gather(1, classes.to(logits.device)[:, None])[:, 0]
    if isinstance(target, Neuron):
        a = acts[("neuron", target.layer, target.at)]
        if a.dim() != 4:
            raise ValueError(f"Neuron needs a feature map (N,C,H,W) at layer {target.layer!r}, got shape {tuple(a.shape)}")
        if target.channel >= a.shape[1]:
            raise IndexError(f"channel {target.channel} is out of range: layer {target.layer!r} has channels "
                             f"0..{a.shape[1] - 1}")
        if target.position is None:
            return a[:, target.channel].sum((1, 2))
        i, j = target.position
        if i >= a.shape[2] or j >= a.shape[3]:
            raise IndexError(f"position {(i, j)} is outside the {a.shape[2]}x{a.shape[3]} map of layer {target.layer!r}: "
                             f"rows 0..{a.shape[2] - 1}, columns 0..{a.shape[3] - 1}")
        return a[:, target.channel, i, j]
    s = target(logits)
    if not isinstance(s, torch.Tensor) or s.shape != logits.shape[:1]:
        raise ValueError(f"a callable target must return one score per image, shape ({logits.shape[0]},), "
                         f"got {type(s).__name__} {tuple(getattr(s, 'shape', ()))}")
    return s


def class_scores(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Logits ``(N, K)`` of ``x`` (no gradient, model state untouched): a convenience for targets.

    >>> class_scores(model, x).argmax(1)   # the predicted classes
    """
    x = _image(x)
    with frozen(model), torch.no_grad():
        return model(x.to(_device_of(model))).to(x.device)


# ---------------------------------------------------------------- forward/backward machinery


def _image(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    x = check_image(x, name)
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ValueError(f"{name} must hold pixel values in [0,1] (course models normalize inside), "
                         f"got values in [{lo:.3g}, {hi:.3g}]")
    return x


class _Taps:
    """Record the output (or input) of named modules during one forward; first call of a reused module wins.

    The recorded tensor is passed on as a clone, so a later in-place operation
    (``out += identity``, an in-place ReLU) cannot change what we recorded or
    the gradient we take with respect to it.
    """

    def __init__(self, model: nn.Module, taps: dict) -> None:
        # taps: key -> (layer name, at); resolved now, before any hook exists
        self.model = model
        self.spec = {k: (name, at) + resolve_layer(model, name) for k, (name, at) in taps.items()}
        self.values: dict = {}
        self.handles: list = []

    @contextlib.contextmanager
    def active(self) -> Iterator[dict]:
        try:
            for key, (name, at, dotted, mod) in self.spec.items():
                if at == "output":
                    def hook(m, inp, out, key=key):
                        if key in self.values or not isinstance(out, torch.Tensor):
                            return None
                        self.values[key] = out
                        return out.clone()
                    self.handles.append(mod.register_forward_hook(hook))
                else:
                    def pre(m, inp, key=key):
                        if key in self.values or not inp or not isinstance(inp[0], torch.Tensor):
                            return None
                        self.values[key] = inp[0]
                        return (inp[0].clone(),) + tuple(inp[1:])
                    self.handles.append(mod.register_forward_pre_hook(pre))
            yield self.values
        finally:
            for h in self.handles:
                h.remove()
            self.handles.clear()

    def check(self) -> None:
        missing = [(n, d) for k, (n, at, d, _) in self.spec.items() if k not in self.values]
        if missing:
            raise LayerNotCalledError(
                f"layer(s) {', '.join(f'{n!r} ({d})' for n, d in missing)} never ran in forward() "
                f"(or gave no tensor): is this layer used in the model's forward()?")


_FUNCTIONAL_RELUS: "weakref.WeakKeyDictionary[nn.Module, list[str]]" = weakref.WeakKeyDictionary()
_RELU_FUNCS = {"relu", "relu_", "relu6", "hardtanh", "hardtanh_", "threshold", "threshold_"}


class _CountRelu(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if self.depth == 0 and name in _RELU_FUNCS:
            self.calls.append(name)
        return func(*args, **(kwargs or {}))


def functional_relus(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of ReLU-like *functional* calls (``F.relu``, ``torch.relu``, ``F.relu6`` ...) made in
    ``model(x)`` outside ``nn.ReLU``/``nn.ReLU6`` modules: calls whose backward the guided and
    deconvnet rules cannot reach. Empty for the course's AlexNet, VGG, ResNet and EfficientNet;
    GoogLeNet (``F.relu`` in every ``BasicConv2d``) gives a long list. Traced once per model.
    """
    if model in _FUNCTIONAL_RELUS:
        return list(_FUNCTIONAL_RELUS[model])
    x = _image(x)
    mode = _CountRelu()
    handles = []
    try:
        for m in model.modules():
            if isinstance(m, RELU_FAMILY):
                def pre(mod, inp):
                    mode.depth += 1

                def post(mod, inp, out):
                    mode.depth -= 1
                handles.append(m.register_forward_pre_hook(pre))
                handles.append(m.register_forward_hook(post))
        with frozen(model), torch.no_grad(), mode:
            model(x[:1].to(_device_of(model)))
    finally:
        for h in handles:
            h.remove()
    _FUNCTIONAL_RELUS[model] = list(mode.calls)
    return list(mode.calls)


def _check_rule(model: nn.Module, x: torch.Tensor, rule: str) -> None:
    if rule == "gradient":
        return
    calls = functional_relus(model, x)
    if calls:
        kinds = ", ".join(sorted(set(calls)))
        raise ValueError(
            f"{rule} backprop cannot be applied to {getattr(model, 'name', type(model).__name__)!r}: its forward() "
            f"makes {len(calls)} functional ReLU call(s) ({kinds}) outside nn.ReLU/nn.ReLU6 modules, whose "
            f"backward would silently stay the plain gradient. Use a model built from nn.ReLU modules "
            f"(alexnet, vgg16, resnet18, efficientnet_lite0), or use rule='gradient'")


def _run(
    model: nn.Module,
    x: torch.Tensor,
    target: Target,
    *,
    rule: str = "gradient",
    taps: dict | None = None,
    wrt_input: bool = True,
) -> tuple[torch.Tensor | None, dict, dict, torch.Tensor]:
    """One forward + one backward. Returns (grad wrt x or None, activations, their gradients, logits).

    ``taps``: key -> (layer, at) of activations to record (and differentiate with respect to).
    Everything is validated before the model runs.
    """
    if rule not in ("gradient", "guided", "deconvnet"):
        raise ValueError(f"unknown rule {rule!r}: choose one of gradient, guided, deconvnet")
    x = _image(x)
    classes = _class_targets(model, target, x.shape[0])
    if not (classes is not None or isinstance(target, Neuron) or callable(target)):
        raise TypeError(f"unsupported target {target!r}")
    taps = dict(taps or {})
    asked = list(taps)
    if isinstance(target, Neuron):
        taps[("neuron", target.layer, target.at)] = (target.layer, target.at)
    tapper = _Taps(model, taps)  # resolves every layer name (KeyError) before anything runs
    _check_rule(model, x, rule)
    dev = _device_of(model)
    with relu_rule(model, rule), frozen(model), tapper.active() as acts:
        xg = x.detach().to(dev).requires_grad_(True)  # builds the graph; only what is asked is differentiated
        with torch.enable_grad():
            logits = model(xg)
            tapper.check()
            score = _select(target, classes, logits, acts).sum()
            keys = [k for k in asked if k in acts]
            inputs = ([xg] if wrt_input else []) + [acts[k] for k in keys]
            if not score.requires_grad:
                raise RuntimeError("the target score does not depend on the input: nothing to differentiate")
            grads = torch.autograd.grad(score, inputs, allow_unused=True)
    if wrt_input and grads[0] is None:
        raise RuntimeError("the target score does not depend on the input pixels: nothing to differentiate")
    gx = grads[0].to(x.device) if wrt_input else None
    gacts = dict(zip(keys, grads[1:] if wrt_input else grads))
    return gx, {k: acts[k].detach() for k in keys}, gacts, logits.detach()


# ---------------------------------------------------------------- gradients (lessons 05, 06)


def gradient(model: nn.Module, x: torch.Tensor, target: Target, *, rule: str = "gradient") -> torch.Tensor:
    """∂score/∂x: ``(N,3,H,W)``, the same shape as ``x``; signed, not normalized.

    ``rule``: how the backward pass crosses each ReLU/ReLU6 (lesson 06), with f
    the ReLU's input and R the gradient arriving from above:
    ``"gradient"`` R·(f>0) (plain backprop, lesson 05); ``"guided"``
    R·(f>0)·(R>0) (Springenberg et al.); ``"deconvnet"`` R·(R>0) (Zeiler & Fergus).
    For ReLU6 "f>0" reads "0<f<6". Models with functional ReLUs or other
    activation kinds raise ``ValueError`` for guided/deconvnet.

    >>> g = gradient(model, x, "tabby")          # (1,3,224,224)
    """
    return _run(model, x, target, rule=rule)[0]


def saliency_map(grad: torch.Tensor) -> torch.Tensor:
    """Simonyan et al.'s saliency: ``max_c |grad|`` over the colour channels, ``(N,3,H,W) -> (N,H,W)``, >= 0."""
    if grad.dim() != 4:
        raise ValueError(f"saliency_map takes an (N,C,H,W) gradient, got shape {tuple(grad.shape)}")
    return grad.abs().amax(1)


def saliency(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """The saliency map of lesson 05: ``max_c |∂S/∂x_c|``, ``(N,H,W)``, values >= 0.

    >>> s = saliency(model, x, 281)               # (1,224,224)
    """
    return saliency_map(gradient(model, x, target))


def input_x_gradient(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """Gradient × input, ``x · ∂S/∂x``, ``(N,3,H,W)`` signed (lesson 05).

    ``x`` is in pixel space [0,1] (black = 0), so black pixels get zero.
    """
    return x.detach() * gradient(model, x, target)


def smoothgrad(
    model: nn.Module,
    x: torch.Tensor,
    target: Target,
    *,
    samples: int = 25,
    stdev: float = 0.15,
    generator: torch.Generator | None = None,
    batch_size: int = 16,
    rule: str = "gradient",
) -> torch.Tensor:
    """SmoothGrad (Smilkov et al. 2017): the mean of ``gradient(x + ε)`` over ``samples`` draws of
    ε ~ N(0, stdev²) per pixel, ``(N,3,H,W)`` signed (take ``saliency_map`` to display it).

    ``stdev`` is in pixel units (images span [0,1], so 0.15 is the paper's 15 % noise level).
    The noise of all ``N*samples`` draws is drawn in one call, image-major (as captum's
    NoiseTunnel does), from ``generator`` (default: a fresh generator seeded 0, so results
    repeat); gradients are computed ``batch_size`` noisy images at a time.
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
    if not (isinstance(stdev, (int, float)) and stdev >= 0):
        raise ValueError(f"stdev must be a number >= 0 (pixel units), got {stdev!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    x = _image(x)
    n = x.shape[0]
    classes = _class_targets(model, target, n)
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    noise = torch.randn((n * samples,) + tuple(x.shape[1:]), generator=g, device=g.device) * stdev
    noisy = x.detach().repeat_interleave(samples, 0) + noise.to(x.device)  # (N*samples, 3, H, W), may leave [0,1]
    rep = classes.repeat_interleave(samples) if classes is not None else None
    grads = []
    for s in range(0, n * samples, batch_size):
        xb = noisy[s:s + batch_size]
        tb = rep[s:s + batch_size] if rep is not None else target
        grads.append(_run_unchecked(model, xb, tb, rule))
    return torch.cat(grads).view(n, samples, *x.shape[1:]).mean(1)  # image-major, as the noise


def _run_unchecked(model: nn.Module, xb: torch.Tensor, target, rule: str) -> torch.Tensor:
    """``gradient`` for noisy images, which may leave [0,1] (SmoothGrad)."""
    if isinstance(target, torch.Tensor):
        classes = target
    else:
        classes = _class_targets(model, target, xb.shape[0])
    if classes is None and not (isinstance(target, Neuron) or callable(target)):
        raise TypeError(f"unsupported target {target!r}")
    taps = {("neuron", target.layer, target.at): (target.layer, target.at)} if isinstance(target, Neuron) else {}
    tapper = _Taps(model, taps)
    _check_rule(model, xb.clamp(0, 1), rule)
    with relu_rule(model, rule), frozen(model), tapper.active() as acts:
        xg = xb.detach().to(_device_of(model)).requires_grad_(True)
        with torch.enable_grad():
            logits = model(xg)
            tapper.check()
            (g,) = torch.autograd.grad(_select(target, classes, logits, acts).sum(), xg)
    return g.to(xb.device)


def guided_backprop(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """Guided backpropagation (Springenberg et al. 2015), ``(N,3,H,W)`` signed: ``gradient(rule="guided")``.

    Needs ReLU/ReLU6 *modules*; see ``gradient`` (lesson 06).
    """
    return gradient(model, x, target, rule="guided")


def deconvnet(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """Zeiler & Fergus's deconvnet backward, ``(N,3,H,W)`` signed: ``gradient(rule="deconvnet")`` (lesson 06)."""
    return gradient(model, x, target, rule="deconvnet")


# ---------------------------------------------------------------- occlusion (lesson 04)


def _pair(v, what: str) -> tuple[int, int]:
    if isinstance(v, int) and not isinstance(v, bool):
        v = (v, v)
    if (not isinstance(v, (tuple, list)) or len(v) != 2
            or not all(isinstance(a, int) and not isinstance(a, bool) for a in v)):
        raise ValueError(f"{what} must be an int or an (h, w) pair of ints, got {v!r}")
    if min(v) < 1:
        raise ValueError(f"{what} must be >= 1, got {tuple(v)}")
    return int(v[0]), int(v[1])


def occlusion_positions(size: tuple[int, int], window, stride) -> tuple[list[int], list[int]]:
    """Top rows and left columns of the occluding patch: ``ceil((H-k)/s)+1`` positions per axis,
    starting at 0 every ``s`` pixels; the last patch is cut at the border (captum's convention).

    >>> occlusion_positions((224, 224), 32, 16)[0][:3]     # [0, 16, 32]
    """
    (kh, kw), (sh, sw) = _pair(window, "window"), _pair(stride, "stride")
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
        k = self.base.shape[0]
        if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < k:
            raise IndexError(f"class index {c!r} is out of range: valid indices are 0..{k - 1}")
        return c

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
    key = (int(h), int(w), str(_device_of(model)), torch.get_num_threads())
    cache = _BATCH_CACHE.setdefault(model, {})
    if key in cache:
        return cache[key]
    dev = _device_of(model)
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
    from .stages import ChainUnavailable, chain_of

    if method not in OCCLUSION_METHODS:
        raise ValueError(f"unknown occlusion method {method!r}: choose one of {', '.join(OCCLUSION_METHODS)}")
    x = _image(x)
    if x.shape[0] != 1:
        raise ValueError(f"occlusion explains one image (1,3,H,W), got a batch of {x.shape[0]}: loop over the images")
    win, st = _pair(window, "window"), _pair(stride, "stride")
    h, w = x.shape[-2:]
    ys, xs = occlusion_positions((h, w), win, st)
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be None (measure) or an integer >= 1, got {batch_size!r}")
    dev = _device_of(model)
    xd = x.detach().to(dev)
    base_img = _baseline_tensor(model, xd, baseline).expand_as(xd)
    positions = [(y, c) for y in ys for c in xs]
    kh, kw = win
    from tqdm.auto import tqdm

    def occluded(chunk) -> torch.Tensor:
        xb = xd.repeat(len(chunk), 1, 1, 1)
        for k, (y, c) in enumerate(chunk):
            xb[k, :, y:y + kh, c:c + kw] = base_img[0, :, y:y + kh, c:c + kw]
        return xb

    out = []
    with frozen(model), torch.no_grad():
        chain = None
        if method != "full":
            try:
                chain = chain_of(model, xd, fold=True)
            except ChainUnavailable:
                if method == "incremental":
                    raise
        base = (chain.logits if chain is not None else model(xd)).softmax(-1)[0]
        if chain is not None:
            bs = batch_size if batch_size is not None else 16

            def forward(chunk):
                spans = [((y, min(y + kh, h) - 1), (c, min(c + kw, w) - 1)) for y, c in chunk]
                return chain.forward_changed(occluded(chunk), spans)
        else:
            bs = batch_size if batch_size is not None else best_batch_size(model, (h, w))

            def forward(chunk):
                return model(occluded(chunk).contiguous(memory_format=torch.channels_last))

        bar = tqdm(total=len(positions), desc=f"occlusion {kh}x{kw}/{st[0]}", disable=not progress, leave=False)
        try:
            for s in range(0, len(positions), bs):
                chunk = positions[s:s + bs]
                out.append(forward(chunk).softmax(-1))
                bar.update(len(chunk))
        finally:
            bar.close()
    probs = torch.cat(out).view(len(ys), len(xs), -1).to(x.device)
    return OcclusionResult(probs, base.to(x.device), ys, xs, win, st, (h, w),
                           method="incremental" if chain is not None else "full")


# ---------------------------------------------------------------- CAM and Grad-CAM (lesson 07)


def upsample_map(m: torch.Tensor, size: tuple[int, int], *, mode: str = "bilinear") -> torch.Tensor:
    """Resize maps ``(N,h,w)`` (or ``(h,w)``) to ``size`` = (H, W): bilinear (``align_corners=False``)
    or ``"nearest"``; values are not rescaled."""
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"unknown mode {mode!r}: choose bilinear or nearest")
    squeeze = m.dim() == 2
    t = m[None, None] if squeeze else m[:, None]
    if t.dim() != 4:
        raise ValueError(f"upsample_map takes (N,h,w) or (h,w) maps, got shape {tuple(m.shape)}")
    kw = {"align_corners": False} if mode == "bilinear" else {}
    r = F.interpolate(t, size=tuple(size), mode=mode, **kw)
    return r[0, 0] if squeeze else r[:, 0]


def _cam_head(model: nn.Module, pool: str | None, fc: str | None) -> tuple[str, str, nn.Module, nn.Linear]:
    pool = pool if pool is not None else getattr(model, "penultimate", None)
    fc = fc if fc is not None else getattr(model, "classifier", None)
    if pool is None or fc is None:
        raise ValueError(f"{type(model).__name__} has no .penultimate/.classifier: pass pool= (the global average "
                         f"pooling layer) and fc= (the final linear layer) by name")
    pdot, pmod = resolve_layer(model, pool)
    fdot, fmod = resolve_layer(model, fc)
    size = getattr(pmod, "output_size", None)
    gap = isinstance(pmod, nn.AdaptiveAvgPool2d) and size in (1, (1, 1), [1, 1])
    if not gap or not isinstance(fmod, nn.Linear):
        name = getattr(model, "name", type(model).__name__)
        raise ValueError(
            f"CAM needs a global-average-pooling layer followed by a linear classifier; in {name!r} the pool layer "
            f"{pool!r} ({pdot}) is {type(pmod).__name__} and the classifier {fc!r} ({fdot}) is {type(fmod).__name__}. "
            f"CAM works for efficientnet_lite0/2, googlenet and resnet18; use gradcam(model, x, target, layer) "
            f"for any other model (e.g. layer='conv5' on alexnet)")
    return pool, fdot, pmod, fmod


def cam(
    model: nn.Module,
    x: torch.Tensor,
    target: int | str | Sequence[int | str] | torch.Tensor,
    *,
    pool: str | None = None,
    fc: str | None = None,
) -> torch.Tensor:
    """Class activation map (Zhou et al. 2016): ``CAM_c(i,j) = Σ_k w_k^c F_k(i,j)``, ``(N,h,w)`` signed.

    ``F``: the feature maps entering the global average pooling layer ``pool``
    (default ``model.penultimate``); ``w^c``: row c of the final linear layer
    ``fc`` (default ``model.classifier``); no bias. Then S_c = mean(CAM_c) + b_c,
    which is checked on every call (a head that is not GAP + linear raises).

    >>> cam(model, x, "tabby").shape              # (1, 7, 7) on a 224x224 image
    """
    x = _image(x)
    classes = _class_targets(model, target, x.shape[0])
    if classes is None:
        raise TypeError("cam explains class scores: pass class indices or names, not a Neuron or a callable")
    pool, fdot, pmod, fmod = _cam_head(model, pool, fc)
    tapper = _Taps(model, {"F": (pool, "input")})
    with frozen(model), tapper.active() as acts, torch.no_grad():
        logits = model(x.to(_device_of(model)))
        tapper.check()
    feats = acts["F"]
    if feats.dim() != 4 or feats.shape[1] != fmod.in_features:
        raise ValueError(f"the input of {pool!r} has shape {tuple(feats.shape)}, but {fdot} takes "
                         f"{fmod.in_features} features: not a GAP + linear head")
    wc = fmod.weight.detach()[classes.to(feats.device)]  # (N, K)
    maps = torch.einsum("nk,nkhw->nhw", wc, feats)
    bias = fmod.bias.detach()[classes.to(feats.device)] if fmod.bias is not None else torch.zeros_like(maps[:, 0, 0])
    got = logits.gather(1, classes.to(logits.device)[:, None])[:, 0]
    want = maps.mean((1, 2)) + bias
    if not torch.allclose(got, want, rtol=1e-3, atol=1e-3 * float(got.abs().max()) + 1e-4):
        raise ValueError(f"the class scores are not mean(CAM) + bias (got {got.tolist()}, CAM gives {want.tolist()}): "
                         f"something between {pool!r} and {fdot} is not linear; use gradcam instead")
    return maps.to(x.device)


def gradcam(
    model: nn.Module,
    x: torch.Tensor,
    target: Target,
    layer: str,
    *,
    at: str = "output",
    relu: bool = True,
) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017) at ``layer``: ``ReLU(Σ_k α_k A_k)``, ``(N,h,w)`` at the layer's resolution,
    with ``α_k = mean_ij ∂S/∂A_k(i,j)`` (plain gradients).

    ``at="input"`` uses the layer's input (e.g. ``layer="pool", at="input"``: the
    feature maps entering the global average pooling, where Grad-CAM equals CAM
    divided by h·w). ``relu=False`` keeps the negative part. Use ``upsample_map``
    to overlay it on the image.

    >>> gradcam(load_model("alexnet", weights=None), x, 3, "conv5").shape   # (1, 13, 13)
    """
    if at not in _AT:
        raise ValueError(f"at must be one of {', '.join(_AT)}, got {at!r}")
    _, acts, gacts, _ = _run(model, x, target, taps={"A": (layer, at)}, wrt_input=False)
    a, g = acts["A"], gacts["A"]
    if a.dim() != 4:
        raise ValueError(f"Grad-CAM needs a feature map (N,C,h,w) at {layer!r} ({at}), got shape {tuple(a.shape)}")
    if g is None:
        raise RuntimeError(f"the target score does not depend on layer {layer!r} ({at})")
    alpha = g.mean((2, 3), keepdim=True)  # (N, C, 1, 1)
    m = (alpha * a).sum(1)
    return (m.clamp(min=0) if relu else m).to(x.device)


def guided_gradcam(
    model: nn.Module,
    x: torch.Tensor,
    target: Target,
    layer: str,
    *,
    at: str = "output",
    mode: str = "bilinear",
) -> torch.Tensor:
    """Guided Grad-CAM: ``guided_backprop × upsample(gradcam)``, ``(N,3,H,W)`` signed (lesson 07).

    ``mode``: how the Grad-CAM map is resized to the image (``"bilinear"``,
    Selvaraju et al.; captum's ``GuidedGradCam`` uses ``"nearest"``).
    """
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"unknown mode {mode!r}: choose bilinear or nearest")
    gc = gradcam(model, x, target, layer, at=at)
    gb = guided_backprop(model, x, target)
    return gb * upsample_map(gc, tuple(x.shape[-2:]), mode=mode)[:, None]


# ---------------------------------------------------------------- sanity checks and faithfulness


def cascading_randomization(
    model: nn.Module,
    layers: Sequence[str],
    *,
    seed: int = 0,
) -> Iterator[tuple[str, nn.Module]]:
    """Adebayo et al. 2018's model randomization test, cascading from the top.

    ``layers`` from the top (e.g. ``["fc", "head", "block7", ...]``). Yields
    ``(layer, randomized)`` after re-initializing that layer *and all above it*
    in one deep copy of the model (the same copy, further randomized at each
    step: do not keep references across steps). Every parameter of a
    randomized layer is replaced by Gaussian noise with the trained tensor's
    mean and standard deviation (so activations keep their scale); BatchNorm
    running statistics are kept. ``model`` itself is never modified.
    """
    if isinstance(layers, str) or not layers:
        raise ValueError(f"layers must be a non-empty list of layer names from the top, got {layers!r}")
    resolved = [resolve_layer(model, n) for n in layers]  # validate all first
    g = torch.Generator().manual_seed(seed)
    rnd = copy.deepcopy(model)
    for name, (dotted, _) in zip(layers, resolved):
        mod = rnd.get_submodule(dotted)
        with torch.no_grad():
            for p in mod.parameters():
                if p.numel() > 1:
                    mu, sd = float(p.mean()), float(p.std())
                else:
                    mu, sd = float(p.mean()), 0.0
                p.copy_((torch.randn(p.shape, generator=g) * sd + mu).to(p.device, p.dtype))
        yield name, rnd


def _ranks(v: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n of a 1-D tensor, ties given their average rank."""
    order = torch.argsort(v, stable=True)
    sv = v[order]
    _, inverse, counts = torch.unique_consecutive(sv, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    avg = ends - (counts.double() - 1) / 2  # average of positions (1-based) in each tie block
    r = torch.empty_like(v, dtype=torch.float64)
    r[order] = avg[inverse]
    return r


def rank_correlation(a: torch.Tensor, b: torch.Tensor, *, absolute: bool = True) -> float:
    """Spearman rank correlation of two attribution maps of the same shape, in [-1, 1].

    ``absolute=True`` compares |a| with |b| (Adebayo et al.: a map's sign is often arbitrary).
    Ties share their average rank.
    """
    if a.shape != b.shape:
        raise ValueError(f"maps must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    a = a.detach().flatten().double().cpu()
    b = b.detach().flatten().double().cpu()
    if absolute:
        a, b = a.abs(), b.abs()
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / den if den > 0 else 0.0


@dataclass
class FaithfulnessCurves:
    """Deletion and insertion curves of one map: the class probability after removing (deletion)
    or adding back (insertion) the most important ``fractions`` of the pixels. AUCs by the trapezoid rule."""

    fractions: torch.Tensor
    deletion: torch.Tensor
    insertion: torch.Tensor

    @property
    def deletion_auc(self) -> float:
        return float(torch.trapezoid(self.deletion, self.fractions))

    @property
    def insertion_auc(self) -> float:
        return float(torch.trapezoid(self.insertion, self.fractions))


def deletion_insertion(
    model: nn.Module,
    x: torch.Tensor,
    target: int | str,
    attribution: torch.Tensor,
    *,
    steps: int = 20,
    baseline: float | Sequence[float] | torch.Tensor | None = None,
    blur_sigma: float = 5.0,
    batch_size: int = 16,
) -> FaithfulnessCurves:
    """Deletion and insertion curves (Petsiuk et al. 2018) of one attribution map for one image.

    Pixels are ranked by ``attribution`` (``(H,W)``; a coarser ``(h,w)`` map is
    upsampled bilinearly), highest first, ties in index order. For
    ``k = 0..steps``: *deletion* replaces the top ``k/steps`` of the pixels by
    ``baseline`` (default the model's mean colour, as in occlusion); *insertion*
    starts from the image blurred with a Gaussian of ``blur_sigma`` pixels and
    puts the top pixels back sharp. The curves hold the softmax probability of
    ``target``. A faithful map makes deletion fall fast (low AUC) and insertion
    rise fast (high AUC). Lesson 07.

    >>> c = deletion_insertion(model, x, 281, saliency(model, x, 281)[0])
    >>> c.deletion_auc, c.insertion_auc
    """
    x = _image(x)
    if x.shape[0] != 1:
        raise ValueError(f"deletion_insertion explains one image (1,3,H,W), got a batch of {x.shape[0]}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if not (isinstance(blur_sigma, (int, float)) and blur_sigma > 0):
        raise ValueError(f"blur_sigma must be a number > 0 (pixels), got {blur_sigma!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    classes = _class_targets(model, target, 1)
    if classes is None:
        raise TypeError("deletion_insertion takes a class index or name as target")
    h, w = x.shape[-2:]
    if not isinstance(attribution, torch.Tensor):
        raise TypeError(f"attribution must be a tensor map (H,W), got {type(attribution).__name__}")
    a = attribution.detach().float().cpu().squeeze()
    if a.dim() != 2:
        raise ValueError(f"attribution must be one 2-D map (H,W), got shape {tuple(attribution.shape)}")
    if tuple(a.shape) != (h, w):
        a = upsample_map(a, (h, w))
    dev = _device_of(model)
    xd = x.detach().to(dev)
    base = _baseline_tensor(model, xd, baseline).expand_as(xd)
    start = _blur(xd, float(blur_sigma))
    order = torch.argsort(a.flatten(), descending=True, stable=True)
    counts = [round(k * h * w / steps) for k in range(steps + 1)]
    rank = torch.empty(h * w, dtype=torch.long)
    rank[order] = torch.arange(h * w)
    rank = rank.view(1, 1, h, w).to(dev)
    c = int(classes[0])
    imgs = []
    for n in counts:
        m = (rank < n).to(xd.dtype)  # 1 on the top-n pixels
        imgs.append(xd * (1 - m) + base * m)  # deletion
    for n in counts:
        m = (rank < n).to(xd.dtype)
        imgs.append(start * (1 - m) + xd * m)  # insertion
    probs = []
    with frozen(model), torch.no_grad():
        for s in range(0, len(imgs), batch_size):
            probs.append(model(torch.cat(imgs[s:s + batch_size])).softmax(-1)[:, c])
    p = torch.cat(probs).float().cpu()
    fr = torch.tensor(counts, dtype=torch.float32) / (h * w)
    return FaithfulnessCurves(fr, p[:steps + 1], p[steps + 1:])


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of ``(N,3,H,W)`` (kernel 2*ceil(3 sigma)+1, reflect padding)."""
    r = int(math.ceil(3 * sigma))
    c = x.shape[1]
    pad_h, pad_w = min(r, x.shape[-2] - 1), min(r, x.shape[-1] - 1)  # reflect padding needs pad < size

    def kernel(p: int) -> torch.Tensor:
        t = torch.arange(-p, p + 1, dtype=x.dtype, device=x.device)
        k = torch.exp(-t ** 2 / (2 * sigma ** 2))
        return k / k.sum()

    y = F.pad(x, (pad_w, pad_w, 0, 0), mode="reflect")
    y = F.conv2d(y, kernel(pad_w).view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    y = F.pad(y, (0, 0, pad_h, pad_h), mode="reflect")
    return F.conv2d(y, kernel(pad_h).view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
