"""Class activation maps (lesson 07): CAM, Grad-CAM and guided Grad-CAM."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_choice
from ..hooks import frozen
from .._names import resolve_layer
from .._util import device_of
from ._engine import _Taps, _run
from .gradients import guided_backprop
from .targets import Target, _check_at, _class_targets, _image

__all__ = ["upsample_map", "cam", "gradcam", "guided_gradcam"]

_MODES = ("bilinear", "nearest")


def upsample_map(m: torch.Tensor, size: tuple[int, int], *, mode: str = "bilinear") -> torch.Tensor:
    """Resize maps ``(N,h,w)`` (or ``(h,w)``) to ``size`` = (H, W): bilinear (``align_corners=False``)
    or ``"nearest"``; values are not rescaled."""
    check_choice(mode, _MODES, "mode")
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
        logits = model(x.to(device_of(model)))
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


def class_map(
    model: nn.Module,
    x: torch.Tensor,
    target: int | str | Sequence[int | str] | torch.Tensor,
    *,
    layer: str = "last_conv",
) -> tuple[torch.Tensor, str]:
    """CAM where the model's head allows it, else Grad-CAM at ``layer``, saying so: ``(maps, method)``.

    CAM needs global average pooling followed by a linear classifier (Lite0, GoogLeNet,
    ResNet18); AlexNet and VGG have fully connected layers after the last convolution and
    SqueezeNet a convolutional classifier. On those, one printed sentence says why, and
    Grad-CAM at ``layer`` (default the portable ``last_conv``), the method that generalizes
    CAM, is used. ``method`` is ``"CAM"`` or ``"Grad-CAM at <layer>"``, for figure titles.

    >>> maps, method = class_map(model, x, "tabby")     # (1, h, w), 'CAM' on Lite0
    """
    try:
        _cam_head(model, None, None)
    except ValueError as e:
        name = getattr(model, "name", type(model).__name__)
        reason = str(e).split(";")[1].strip() if ";" in str(e) else str(e)
        print(f"CAM needs a global-average-pooling layer followed by a linear classifier, and {name} has none "
              f"({reason.split('. CAM works')[0]}): using Grad-CAM at {layer!r}, which generalizes CAM to any head.")
        return gradcam(model, x, target, layer), f"Grad-CAM at {layer}"
    return cam(model, x, target), "CAM"


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
    _check_at(at)
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
    check_choice(mode, _MODES, "mode")
    gc = gradcam(model, x, target, layer, at=at)
    gb = guided_backprop(model, x, target)
    return gb * upsample_map(gc, tuple(x.shape[-2:]), mode=mode)[:, None]
