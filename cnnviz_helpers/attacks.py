"""Adversarial examples (lesson 12): ``fgsm`` and ``pgd`` are the optimization loop with the sign step
and an L-inf projection (``linf_ball``); ``robust_accuracy`` runs one of them over a set of images for
a list of radii and returns the robust-accuracy curve."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ._checks import check_choice, check_int, check_number
from ._loop import Step, _callbacks, optimize
from .objectives import Objective, log_prob
from .params import from_image

__all__ = ["linf_ball", "fgsm", "pgd", "penalized_attack", "robust_accuracy", "RobustAccuracy"]

ATTACKS = ("fgsm", "pgd")


def _eps(eps, what: str = "eps") -> float:
    return check_number(eps, what, above=0, hi=1, must="in (0, 1] on the [0,1] pixel scale (e.g. 2/255)")


def linf_ball(center: torch.Tensor, eps: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """Projection onto ``{x : |x - center|_∞ <= eps} ∩ [0,1]``: ``clamp(x, center-eps, center+eps)`` then [0,1].

    ``center``: ``(N,3,H,W)`` in [0,1] (the clean images); ``eps`` on the [0,1] scale (4/255 = four grey levels).
    """
    eps = _eps(eps)
    c = center.detach().clone()
    lo, hi = (c - eps).clamp(0, 1), (c + eps).clamp(0, 1)

    def project(x: torch.Tensor) -> torch.Tensor:
        return torch.max(torch.min(x, hi.to(x.device)), lo.to(x.device))

    project.__name__ = f"linf_ball(eps={eps:.4g})"
    return project


def _attack_objective(label, target) -> Objective:
    if (label is None) == (target is None):
        raise ValueError("give exactly one of label= (untargeted: move away from the true class) or "
                         "target= (targeted: move towards this class)")
    return -log_prob(label) if target is None else log_prob(target)


def fgsm(
    model: nn.Module,
    x: torch.Tensor,
    *,
    eps: float,
    label: int | Sequence[int] | None = None,
    target: int | Sequence[int] | None = None,
) -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al. 2015; lesson 12): one step of size ``eps``.

    Untargeted (``label``): ``x' = clip(x + eps·sign(∇x CE(f(x), label)))``;
    targeted (``target``): ``x' = clip(x - eps·sign(∇x CE(f(x), target)))``.
    ``x``: ``(N,3,H,W)`` in [0,1]; ``label``/``target``: one class or one per
    image. Returns ``x'``, same shape, ``|x' - x|_∞ <= eps``, in [0,1].

    >>> x_adv = fgsm(model, x, eps=2/255, label=model.predict(x)[0][0][0])
    """
    eps = _eps(eps)
    objective = _attack_objective(label, target)
    param = from_image(x)
    res = optimize(model, objective, param, steps=1, lr=eps, optimizer="sign", project=linf_ball(param.image(), eps),
                   progress=False)
    if res.interrupted:  # half an attack is not an attack: let Ctrl-C through
        raise KeyboardInterrupt
    return res.image


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    *,
    eps: float,
    steps: int = 10,
    alpha: float | None = None,
    label: int | Sequence[int] | None = None,
    target: int | Sequence[int] | None = None,
    random_start: bool = False,
    until: float | None = None,
    generator: torch.Generator | None = None,
    callback: Callable[[Step], Any] | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Projected gradient descent (Madry et al. 2018; lesson 12): ``steps`` sign steps of size ``alpha``,
    each followed by projection onto the L∞ ball of radius ``eps`` around ``x`` (and [0,1]).

    ``alpha`` defaults to ``2.5·eps/steps``. ``random_start``: begin at a
    uniform random point of the ball (drawn from ``generator``). ``until``
    (targeted only): stop as soon as every image gives ``target`` a
    probability >= ``until`` (the returned image is the one that did).
    Returns the adversarial images ``(N,3,H,W)`` in [0,1]. Ctrl-C is re-raised (no partial attack).
    """
    eps = _eps(eps)
    objective = _attack_objective(label, target)
    steps = check_int(steps, "steps", lo=1, must="a positive integer")
    alpha = 2.5 * eps / steps if alpha is None else _eps(alpha, "alpha")
    if until is not None:
        if target is None:
            raise ValueError("until= is a target probability: use it with target=, not label=")
        if not 0 < until < 1:
            raise ValueError(f"until must be a probability in (0, 1), got {until!r}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    param = from_image(x)
    ball = linf_ball(param.image(), eps)
    if random_start:
        with torch.no_grad():
            noise = (torch.rand(param.x.shape, generator=g) * 2 - 1) * eps
            param.x.copy_(ball(param.x + noise.to(param.x.device)))
    cbs = _callbacks(callback)
    if until is not None:
        import math

        log_until = math.log(until)
        cbs.append(lambda step: bool((step.score >= log_until).all()))
    res = optimize(model, objective, param, steps=steps, lr=alpha, optimizer="sign", project=ball,
                   callback=cbs or None, generator=g, progress=progress, desc="pgd")
    if res.interrupted:  # unlike optimize, an attack does not return a half-finished image on Ctrl-C
        raise KeyboardInterrupt
    return res.image


def penalized_attack(
    model: nn.Module,
    x: torch.Tensor,
    target: int | Sequence[int],
    *,
    c: float = 0.05,
    steps: int = 50,
    lr: float = 1 / 255,
) -> torch.Tensor:
    """Szegedy et al. (2014)'s penalized form (lesson 12): ``min_r c·||r||_2 + CE(f(x + r), target)``,
    ``x + r`` kept in [0,1], with Adam (step ``lr`` on the [0,1] scale) instead of their box-constrained L-BFGS.

    No budget: ``c`` trades the size of the change against the success (large ``c``: small ``r``, the
    target may not be reached; ``c = 0``: an unpenalized targeted attack). ``x``: ``(N,3,H,W)`` in [0,1];
    ``target``: one class or one per image; each image is penalized by its own ``||r||_2`` (per image,
    so a batch gives the same images as one call per image). Returns ``x + r``, same shape, in [0,1].

    >>> x_adv = penalized_attack(model, x, target=9, c=0.05, steps=50)
    """
    from ._checks import check_image
    from .hooks import frozen

    x = check_image(x, "penalized_attack's x")
    c = check_number(c, "c", lo=0, must="a number >= 0 (the weight of ||r||_2)")
    steps = check_int(steps, "steps", lo=1, must="a positive integer")
    lr = check_number(lr, "lr", above=0, must="a positive step size")
    device = next(model.parameters()).device
    x0 = x.detach().to(device)
    t = torch.as_tensor(target, dtype=torch.long, device=device).flatten()
    if t.numel() == 1:
        t = t.expand(x0.shape[0])
    if t.numel() != x0.shape[0]:
        raise ValueError(f"penalized_attack got {x0.shape[0]} images and {t.numel()} targets: give one target "
                         "or one per image")
    r = torch.zeros_like(x0, requires_grad=True)
    opt = torch.optim.Adam([r], lr=lr)
    with frozen(model), torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            xr = x0 + r
            loss = c * r.flatten(1).norm(dim=1).sum() + nn.functional.cross_entropy(model(xr), t, reduction="sum")
            loss.backward()
            opt.step()
            with torch.no_grad():          # the box constraint: x + r in [0, 1]
                r.copy_((x0 + r).clamp(0, 1) - x0)
    return (x0 + r.detach()).clamp(0, 1)


@dataclass(frozen=True)
class RobustAccuracy:
    """The outcome of ``robust_accuracy``: ``correct[k, n]`` is True when image n is still classified as
    its label after the attack at radius ``eps[k]``; ``clean[n]`` before any attack."""

    eps: tuple[float, ...]
    attack: str
    steps: int
    clean: torch.Tensor    # (N,) bool
    correct: torch.Tensor  # (len(eps), N) bool

    @property
    def clean_accuracy(self) -> float:
        return float(self.clean.float().mean())

    @property
    def accuracy(self) -> list[float]:
        """Robust accuracy per radius: the fraction of images still classified correctly."""
        return [float(c.float().mean()) for c in self.correct]

    @property
    def success(self) -> list[float]:
        """Attack success per radius: the fraction of correctly classified images the attack flipped."""
        n = max(int(self.clean.sum()), 1)
        return [float((self.clean & ~c).sum()) / n for c in self.correct]


def robust_accuracy(
    model: nn.Module,
    images: torch.Tensor,
    labels: Sequence[int] | torch.Tensor,
    *,
    eps: Sequence[float],
    attack: str = "pgd",
    steps: int = 10,
    batch_size: int = 32,
    progress: bool = True,
) -> RobustAccuracy:
    """The robust-accuracy curve in one call: for each radius in ``eps``, attack every image (untargeted,
    away from its label) and record whether the model still gets it right.

    ``images``: ``(N,3,H,W)`` in [0,1]; ``labels``: N class indices. ``attack``: ``"fgsm"`` (one step)
    or ``"pgd"`` (``steps`` sign steps of 2.5·eps/steps, no random start). Images go through the
    attack ``batch_size`` at a time, one progress bar over all radii. An image the model gets wrong
    before any attack counts as wrong at every radius (robust accuracy <= clean accuracy).
    PGD's last iterate is scored, as in RobustBench's standard evaluation.

    >>> r = robust_accuracy(model, X, Y, eps=[1/255, 2/255, 4/255])
    >>> r.accuracy                                  # one fraction per radius
    """
    from tqdm.auto import tqdm

    from ._checks import check_image
    from .hooks import frozen

    check_choice(attack, ATTACKS, "attack")
    images = check_image(images, "robust_accuracy's images")
    labels = torch.as_tensor(labels, dtype=torch.long).flatten()
    if labels.numel() != images.shape[0]:
        raise ValueError(f"robust_accuracy got {images.shape[0]} images and {labels.numel()} labels: give one "
                         "label per image")
    if not isinstance(eps, (list, tuple)) or not eps:
        raise ValueError(f"eps must be a non-empty list of radii, e.g. [1/255, 2/255, 4/255], got {eps!r}")
    radii = tuple(_eps(e, f"eps[{i}]") for i, e in enumerate(eps))
    steps = check_int(steps, "steps", lo=1, must="a positive integer")
    batch_size = check_int(batch_size, "batch_size", lo=1, must="a positive integer")
    device = next(model.parameters()).device

    def predict(x: torch.Tensor) -> torch.Tensor:
        with frozen(model), torch.inference_mode():
            return model(x.to(device)).argmax(-1).cpu()

    chunks = [slice(i, i + batch_size) for i in range(0, images.shape[0], batch_size)]
    clean = torch.cat([predict(images[c]) for c in chunks]) == labels
    correct = torch.zeros(len(radii), images.shape[0], dtype=torch.bool)
    bar = tqdm(total=len(radii) * len(chunks), desc=f"{attack} over {len(radii)} radii", disable=not progress)
    try:
        for k, e in enumerate(radii):
            for c in chunks:
                x, y = images[c], labels[c].tolist()
                xa = fgsm(model, x, eps=e, label=y) if attack == "fgsm" else pgd(model, x, eps=e, steps=steps, label=y)
                correct[k, c] = clean[c] & (predict(xa) == labels[c])
                bar.update(1)
    finally:
        bar.close()
    return RobustAccuracy(radii, attack, 1 if attack == "fgsm" else steps, clean, correct)
