"""Checks of lesson 12 (fooling a network): FGSM vs noise, linearity, a smaller PGD budget, transfer,
Goodfellow's eps * n * mean|w|, attack success from the robust-accuracy matrix, a confident point far
from the toy's data, Szegedy et al.'s penalized objective.

The checks measure the facts themselves: a finite-difference slope for the linear
prediction, fresh forward passes and a numpy softmax for probabilities, numpy argmaxes
for agreement.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..hooks import frozen
from . import Wrong, exercise
from ._answers import number

__all__ = ["check_1", "check_2", "check_3", "check_4", "check_5", "check_6", "check_7", "check_8"]


def _near(a: float, b: float, rtol: float) -> bool:
    return abs(a - b) <= rtol * max(abs(b), 1e-12)


@torch.no_grad()
def _logits(model, x: torch.Tensor) -> np.ndarray:
    with frozen(model):
        return model(x).double().cpu().numpy()


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@exercise("12.1", "predict: at eps = 2/255, does FGSM or random noise cost more accuracy?")
def check_1(prediction, *, eps, fgsm_accuracy, noise_accuracy):
    if prediction not in ("fgsm", "noise"):
        raise Wrong(f"answer 'fgsm' or 'noise', got {prediction!r}")
    fact = "fgsm" if fgsm_accuracy < noise_accuracy else "noise"
    if prediction != fact:
        raise Wrong(f"measured at {eps:g}/255: accuracy {fgsm_accuracy:.2f} under FGSM, {noise_accuracy:.2f} under "
                    "noise of the same size. Every pixel moving in the gradient's sign direction adds up "
                    "(eps * ||grad||_1); random signs mostly cancel")


@exercise("12.2", "the first-order and the actual increase of the loss for a step eps * sign(grad)")
def check_2(predicted, actual, *, model, x, label, eps):
    predicted, actual = number(predicted, "`predicted`"), number(actual, "`actual`")
    with frozen(model), torch.enable_grad():                              # also when called under no_grad
        xg = x.clone().requires_grad_(True)
        g = torch.autograd.grad(F.cross_entropy(model(xg), label), xg)[0]
    s = g.sign()
    with torch.no_grad(), frozen(model):
        J = lambda t, clip=True: float(F.cross_entropy(model((x + t * s).clamp(0, 1) if clip else x + t * s), label))
        h = eps / 10
        slope = (J(h, False) - J(-h, False)) / (2 * h)                     # the gradient along s, numerically
        J0, J_up, J_down = J(0.0), J(eps), J(-eps)
    first_order = eps * slope
    if _near(predicted, first_order / eps, 0.05):
        raise Wrong("`predicted` is ||grad||_1 without the step size: multiply by eps")
    if _near(predicted, eps * float(g.norm()), 0.05):
        raise Wrong("that is eps times the L2 norm of the gradient; grad . eps*sign(grad) = eps * sum |grad| (L1)")
    if _near(predicted, eps * float(g.sum()), 0.05) and not _near(predicted, first_order, 0.05):
        raise Wrong("you summed the signed gradient: grad . sign(grad) is the sum of its *absolute* values")
    if not _near(predicted, first_order, 0.05):
        raise Wrong(f"`predicted` = {predicted:.4g}, but the slope measured by finite differences gives "
                    f"{first_order:.4g}: predicted = eps * sum |dJ/dx|")
    if _near(actual, J_up, 1e-3):
        raise Wrong("`actual` is the loss after the step; the question asks for its increase J(x + delta) - J(x)")
    if _near(actual, J_down - J0, 1e-2):
        raise Wrong("your step went down the gradient (x - eps*sign): FGSM adds eps * sign(grad) to increase the loss")
    if not _near(actual, J_up - J0, 1e-2):
        raise Wrong(f"`actual` = {actual:.4g}, but J(x + eps*sign(grad)) - J(x) = {J_up - J0:.4g} "
                    "(cross-entropy with the true label, the image clipped to [0, 1])")


@exercise("12.3", "PGD with eps = 2/255: the adversarial school bus and its probability of ostrich")
def check_3(x_adv, p, *, model, x, target, eps, trained=True):
    """``trained=False`` (an untrained model): the budget, the image and ``p`` are checked, not the attack's success."""
    if not isinstance(x_adv, torch.Tensor) or tuple(x_adv.shape) != tuple(x.shape):
        shape = tuple(x_adv.shape) if isinstance(x_adv, torch.Tensor) else type(x_adv).__name__
        raise Wrong(f"the adversarial image is {shape}; expected {tuple(x.shape)} like the photo "
                    "(1 image, 3 colours, H, W), in [0, 1]")
    if float(x_adv.min()) < 0 or float(x_adv.max()) > 1:
        raise Wrong("the adversarial image leaves [0, 1]: an image must stay valid (pgd clips for you)")
    linf = float((x_adv - x).abs().max())
    if linf == 0:
        raise Wrong("the adversarial image equals the photo: run pgd on it")
    if linf > eps + 1e-6:
        raise Wrong(f"a pixel moved by {linf * 255:.2f}/255, over the budget of {eps * 255:g}/255"
                    + (" (you kept EPS_TARGETED = 4/255)" if linf <= 4 / 255 + 1e-6 else ""))
    p = number(p, "`p`")
    z = _logits(model, x_adv)[0]
    probs = _softmax(z)
    if not 0 <= p <= 1:
        raise Wrong(f"p = {p:.3g} is not a probability: take the softmax of the logits (not a logit or a log)")
    if abs(p - probs[target]) > 1e-4:
        if abs(p - probs.max()) < 1e-4:
            raise Wrong("that is the probability of the top class; the question asks for the target's (ostrich)")
        raise Wrong(f"p = {p:.4f}, but your image gives ostrich a probability of {probs[target]:.4f}")
    if trained and p <= 0.5:
        raise Wrong(f"p(ostrich) = {p:.3f} only: attack towards target=ostrich with step ALPHA and PGD_STEPS steps")


@exercise("12.4", "the fraction of the fooling images that Lite2 classifies as their class")
def check_4(fraction, *, other, maker, images, classes):
    fraction = number(fraction, "the fraction")
    want = np.asarray(classes)
    f_other = float(np.mean(_logits(other, images).argmax(1) == want))
    f_maker = float(np.mean(_logits(maker, images).argmax(1) == want))
    if fraction > 1 and _near(fraction, 100 * f_other, 1e-6):
        raise Wrong("that is a percentage: give a fraction in [0, 1]")
    if fraction > 1 and _near(fraction, len(want) * f_other, 1e-6):
        raise Wrong(f"that is a count: divide by the number of images ({len(want)})")
    if abs(fraction - f_other) > 1e-6:
        if abs(fraction - f_maker) < 1e-6:
            raise Wrong("that is the model the images were made for (`model`, Lite0): ask the other network")
        raise Wrong("not the share of images whose Lite2 top-1 class is the class they were made for")


@exercise("12.5", "the change of a linear score w.x under delta = eps * sign(w), from w alone")
def check_5(change, *, w, eps):
    change = number(change, "`change_5`")
    w = np.asarray(w.detach().cpu().double() if isinstance(w, torch.Tensor) else w, dtype=np.float64).ravel()
    fact = float(eps * np.abs(w).sum())                          # eps * n * mean|w|
    if _near(change, fact, 1e-6):
        return
    if _near(change, float(np.abs(w).sum()), 1e-6):
        raise Wrong("that is ||w||_1: each input moves by eps, so multiply by eps")
    if _near(change, float(eps * np.abs(w).mean()), 1e-6):
        raise Wrong("that is eps * mean|w|, one input's share: the n inputs add up, eps * n * mean|w|")
    if _near(change, float(eps * w.sum()), 1e-6):
        raise Wrong("sign(w) makes every term w_i * eps * sign(w_i) = eps * |w_i| positive: sum |w|, not w")
    if _near(change, 255 * fact, 1e-6):
        raise Wrong("eps is on the [0, 1] scale (1/255 is one grey level), not in grey levels")
    raise Wrong(f"the change is w . (eps * sign(w)); yours ({change:.4g}) is not it")


@exercise("12.6", "PGD's attack success at 4/255 from the robust-accuracy matrix")
def check_6(success, *, clean, correct):
    success = number(success, "`success_6`")
    clean = np.asarray(clean, dtype=bool)
    correct = np.asarray(correct, dtype=bool)
    n_clean = max(int(clean.sum()), 1)
    fact = float((clean & ~correct).sum()) / n_clean
    if abs(success - fact) <= 1e-9:
        return
    if success > 1 and abs(success - 100 * fact) <= 1e-6:
        raise Wrong("that is a percentage: give a fraction in [0, 1]")
    if abs(success - float(correct.mean())) <= 1e-9 and abs(fact - float(correct.mean())) > 1e-9:
        raise Wrong("that is the robust accuracy (images still right); the success is the share of the "
                    "correctly classified images that the attack flipped")
    if abs(success - float(1 - correct.mean())) <= 1e-9 and abs(fact - float(1 - correct.mean())) > 1e-9:
        raise Wrong("that counts the images the model got wrong before any attack as successes: divide the "
                    "flipped ones by the images it got right (`clean`)")
    if abs(success - float((clean & ~correct).mean())) <= 1e-9:
        raise Wrong("right numerator, wrong denominator: divide by the number of images classified correctly "
                    "before the attack, not by all images")
    raise Wrong(f"success = flipped / correct before the attack; yours ({success:.4g}) is not it")


def _mlp_probs(toy, x: np.ndarray) -> np.ndarray:
    """The toy MLP's softmax by hand (numpy): its Linear layers, a ReLU between each two."""
    lin = [m for m in toy.modules() if isinstance(m, torch.nn.Linear)]
    if not lin or any(not isinstance(m, (torch.nn.Linear, torch.nn.ReLU, torch.nn.Sequential)) for m in toy.modules()):
        with torch.no_grad():                                    # not a plain Linear/ReLU stack: ask the model
            return toy(torch.as_tensor(x, dtype=torch.float32)).double().softmax(-1).numpy()
    h = x
    for i, m in enumerate(lin):
        h = h @ m.weight.detach().double().numpy().T + m.bias.detach().double().numpy()
        if i < len(lin) - 1:
            h = np.maximum(h, 0)
    return _softmax(h)


@exercise("12.7", "a point the toy MLP puts in the target class with p >= 0.99, far from every training point")
def check_7(point, *, toy, data, target, min_distance=10.0, min_p=0.99):
    if isinstance(point, torch.Tensor):
        point = point.detach().cpu().double().numpy()
    try:
        x = np.asarray(point, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise Wrong(f"the point should be 2 numbers (a tensor of shape (2,)), got {type(point).__name__}") from None
    if x.size != 2 or not np.all(np.isfinite(x)):
        raise Wrong(f"the point should be 2 finite numbers (a tensor of shape (2,)), got {x.size} values"
                    + (": take one row of a batch" if x.size > 2 and x.size % 2 == 0 else ""))
    pts = np.asarray(data.detach().cpu().double() if isinstance(data, torch.Tensor) else data, dtype=np.float64)
    dist = float(np.sqrt(((pts - x[None]) ** 2).sum(1)).min())
    probs = _mlp_probs(toy, x[None])[0]
    if dist < min_distance:
        hint = (f" ({np.linalg.norm(x):.1f} from the origin, but the data are spread around it)"
                if np.linalg.norm(x) >= min_distance else "")
        raise Wrong(f"your point is {dist:.2f} from the nearest training point{hint}; it must be at least "
                    f"{min_distance:g} away: start the ascent far out (the plane goes to 20)")
    if probs[target] < min_p:
        best = int(probs.argmax())
        if best != target and probs[best] >= min_p:
            raise Wrong(f"the MLP is sure of class {best} there (p = {probs[best]:.3f}), not of class {target}: "
                        f"ascend log p_{target}, or start in the direction of class {target}'s data")
        raise Wrong(f"p(class {target}) = {probs[target]:.3f} at your point, below {min_p:g}: ascend log p_{target} "
                    "for more steps (or from farther out in its wedge)")


@exercise("12.8", "Szegedy et al.'s objective c ||r||_2 + loss(f(x + r), t) at the penalized attack's answer")
def check_8(objective, *, model, x, x_adv, target, c, label=None):
    objective = number(objective, "`objective_8`")
    r = (x_adv - x).detach().double().flatten()
    l2, linf = float(r.norm()), float(r.abs().max())
    z = _logits(model, x_adv.reshape(x.shape))[0]
    lse = float(np.log(np.exp(z - z.max()).sum()) + z.max())
    ce = lse - float(z[target])                                         # cross-entropy with the target, numpy
    fact = c * l2 + ce
    close = lambda v: abs(objective - v) <= 1e-3 * max(abs(v), 1.0)
    if close(fact):
        return
    if close(c * l2 ** 2 + ce):
        raise Wrong("you squared the norm: Szegedy et al.'s penalty is c * ||r||_2, the Euclidean length itself")
    if close(c * linf + ce):
        raise Wrong("that is the largest pixel change (L-inf); the penalty uses ||r||_2 = sqrt(sum r^2)")
    if c != 1 and close(l2 + ce):
        raise Wrong(f"the penalty is weighted: multiply ||r||_2 by c = {c:g}")
    if c * l2 > 1e-3 and close(ce):
        raise Wrong("that is the loss alone: add the penalty c * ||r||_2")
    if label is not None and close(c * l2 + lse - float(z[int(label)])):
        raise Wrong("that loss is for the photo's true class; the attack minimizes the loss of the target t")
    if close(c * l2 + float(_softmax(z)[target])) or close(c * l2 - float(_softmax(z)[target])):
        raise Wrong("the loss is the cross-entropy -log p_t, not the probability p_t")
    raise Wrong(f"objective = c * ||r||_2 + cross-entropy(f(x + r), t) with r = x_adv - x; yours ({objective:.4g}) "
                "is not it")
