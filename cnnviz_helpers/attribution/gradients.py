"""Gradients with respect to the input pixels (lessons 05, 06): saliency, SmoothGrad, guided
backprop and deconvnet (the same backward pass with the ReLU rule changed)."""
from __future__ import annotations

import torch
from torch import nn

from .._checks import check_int, check_number
from ..hooks import frozen, relu_rule
from .._util import device_of
from ._engine import _Taps, _check_rule, _run
from .targets import Neuron, Target, _class_targets, _image, _select

__all__ = ["gradient", "saliency", "saliency_map", "input_x_gradient", "smoothgrad", "guided_backprop", "deconvnet",
           "integrated_gradients"]


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
    samples = check_int(samples, "samples", lo=1)
    stdev = check_number(stdev, "stdev", lo=0, must="a number >= 0 (pixel units)")
    batch_size = check_int(batch_size, "batch_size", lo=1)
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
        xg = xb.detach().to(device_of(model)).requires_grad_(True)
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


def integrated_gradients(
    model: nn.Module,
    x: torch.Tensor,
    target: Target,
    *,
    baseline: torch.Tensor | float = 0.0,
    steps: int = 32,
    batch_size: int = 16,
) -> torch.Tensor:
    """Integrated gradients (Sundararajan et al. 2017): ``(x - x0) ⊙ ∫_0^1 ∇S(x0 + α(x - x0)) dα``,
    ``(N,3,H,W)`` signed, the integral by ``steps``-point Gauss-Legendre quadrature (as captum's default).

    ``baseline`` ``x0``: a number (0.0: the black image) or an image like ``x``. Its defining axiom,
    completeness, ``Σ IG = S(x) - S(x0)``, holds up to the quadrature error
    (``metrics.completeness_gap`` measures it). Class targets only.
    """
    import numpy as np

    steps = check_int(steps, "steps", lo=1)
    batch_size = check_int(batch_size, "batch_size", lo=1)
    x = _image(x)
    n = x.shape[0]
    classes = _class_targets(model, target, n)
    if classes is None:
        raise TypeError("integrated_gradients explains class scores: pass class indices or names")
    x0 = torch.full_like(x, float(baseline)) if not isinstance(baseline, torch.Tensor) else baseline.to(x)
    if x0.shape != x.shape:
        raise ValueError(f"baseline has shape {tuple(x0.shape)}, the images {tuple(x.shape)}: give one per image")
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    alphas = torch.tensor((nodes + 1) / 2, dtype=x.dtype, device=x.device)
    w = torch.tensor(weights / 2, dtype=x.dtype, device=x.device)
    path = (x0[:, None] + alphas.view(1, -1, 1, 1, 1) * (x - x0)[:, None]).flatten(0, 1)  # (N*steps,3,H,W)
    rep = classes.repeat_interleave(steps)
    grads = torch.cat([_run_unchecked(model, path[s:s + batch_size], rep[s:s + batch_size], "gradient")
                       for s in range(0, n * steps, batch_size)])
    avg = (grads.view(n, steps, *x.shape[1:]) * w.view(1, -1, 1, 1, 1)).sum(1)
    return (x - x0).detach() * avg
