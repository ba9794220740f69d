"""The one optimization loop of lessons 08-12, the attacks built on it, and GIF export.

``optimize(model, objective, param, transforms=, steps=, lr=, project=, callback=, generator=)``
ascends ``objective`` (a score per image, see ``objectives``) by changing the
leaves of ``param`` (see ``params``): at each step

    x  = param()                      # (N,3,H,W) in [0,1]
    xt = transforms(x, generator)     # random jitter/scale/rotate (optional)
    score = objective(activations of the declared layers, logits, x)   # (N,)
    grad = autograd.grad(score.sum(), param leaves)   # model's .grad never touched
    optimizer step uphill; param.constrain_(); project(x) (attacks)

Only the layers the objective declares are hooked (names checked before step
1); when the objective needs no logits, the forward pass stops right after the
last declared layer. The model is in eval mode with frozen parameters for the
run and is left exactly as found (hooks, flags, ``.grad``), also on error and
on Ctrl-C, which ends the run early and returns the current image.

    >>> from cnnviz_helpers import objectives as obj, params, transforms as T
    >>> res = optimize(model, obj.class_logit("ostrich") - 1e-2 * obj.l2(),
    ...                params.pixels(224, device=model.device), transforms=T.jitter(8), steps=200, lr=0.05)
    >>> res.image.shape, res.scores[-1]          # (1,3,224,224) in [0,1]; last score per image

Attacks (lesson 12) are the same loop with ``optimizer="sign"`` and an L∞
projection: ``fgsm`` (one step) and ``pgd`` (several). ``FrameRecorder`` +
``save_gif`` export a run as an animated GIF.

Introduced in lesson 08; used by lessons 09-12.
"""
from __future__ import annotations

import contextlib
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ._names import resolve_layers
from ._util import device_of
from .hooks import capture, frozen
from .objectives import Context, Objective, log_prob
from .params import Param, PixelParam, from_image

__all__ = [
    "OPTIMIZERS",
    "Step",
    "Result",
    "optimize",
    "NormalizedAscent",
    "SignDescent",
    "linf_ball",
    "fgsm",
    "pgd",
    "FrameRecorder",
    "save_gif",
]

OPTIMIZERS = ("adam", "sgd", "normalized", "sign")


@dataclass
class Step:
    """What a callback receives after each forward pass (before the update of that step).

    ``step``: 0-based index; ``steps``: planned total; ``image``: the image that
    was scored, ``(N,3,H,W)`` in [0,1], detached copy; ``score``: ``(N,)`` its scores.
    """

    step: int
    steps: int
    image: torch.Tensor
    score: torch.Tensor


@dataclass
class Result:
    """The outcome of ``optimize``.

    ``image``: final image ``(N,3,H,W)`` in [0,1], detached (after the last update,
    or the image just scored if a callback stopped the run); ``scores``:
    ``(steps_done, N)`` score of each image at each step (before that step's
    update); ``steps``: steps done; ``interrupted``: Ctrl-C ended the run;
    ``stopped``: a callback ended it; ``param``: the parameterization (its
    leaves hold the final state, e.g. to continue).
    """

    image: torch.Tensor
    scores: torch.Tensor
    steps: int
    interrupted: bool
    stopped: bool
    param: Param = field(repr=False)

    @property
    def history(self) -> list[float]:
        """Total score (summed over the batch) per step, as floats."""
        return self.scores.sum(1).tolist()


class NormalizedAscent(torch.optim.Optimizer):
    """``p <- p - lr * grad / mean|grad|`` per image (DeepDream's normalized step; lesson 10).

    Every step moves each image by the same average amount, whatever the
    gradient's scale at that layer (the loop stores minus the ascent gradient
    in ``.grad``, so descending it ascends the score).
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float) -> None:
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                dims = tuple(range(1, g.dim()))
                scale = g.abs().mean(dim=dims, keepdim=True).clamp_min(1e-12) if dims else g.abs().clamp_min(1e-12)
                p.add_(g / scale, alpha=-group["lr"])


class SignDescent(torch.optim.Optimizer):
    """``p <- p - lr * sign(grad)``: the fast gradient sign step (Goodfellow et al.; lesson 12)."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float) -> None:
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(torch.sign(p.grad), alpha=-group["lr"])


def _make_optimizer(optimizer, leaves: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    if callable(optimizer) and not isinstance(optimizer, str):
        opt = optimizer(leaves)
        if not isinstance(opt, torch.optim.Optimizer):
            raise TypeError(f"optimizer(params) must return a torch.optim.Optimizer, got {type(opt).__name__}")
        return opt
    return {
        "adam": lambda: torch.optim.Adam(leaves, lr=lr),
        "sgd": lambda: torch.optim.SGD(leaves, lr=lr),
        "normalized": lambda: NormalizedAscent(leaves, lr=lr),
        "sign": lambda: SignDescent(leaves, lr=lr),
    }[optimizer]()


def _callbacks(callback) -> list[Callable[[Step], Any]]:
    if callback is None:
        return []
    cbs = list(callback) if isinstance(callback, (list, tuple)) else [callback]
    for c in cbs:
        if not callable(c):
            raise TypeError(f"callback must be a callable f(step) or a list of them, got {type(c).__name__} {c!r}")
    return cbs


def optimize(
    model: nn.Module,
    objective: Objective,
    param: Param | None = None,
    *,
    transforms: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    steps: int = 128,
    lr: float = 0.05,
    optimizer: str | Callable[[list[torch.Tensor]], torch.optim.Optimizer] = "adam",
    project: Callable[[torch.Tensor], torch.Tensor] | None = None,
    callback: Callable[[Step], Any] | Sequence[Callable[[Step], Any]] | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
    desc: str | None = None,
) -> Result:
    """Maximize ``objective`` over the image rendered by ``param``; returns a ``Result``.

    - ``param``: a parameterization (``params.pixels``, ``params.fft``,
      ``params.from_image``) on the model's device; default grey pixels of the
      model's ``input_size``.
    - ``transforms``: ``t(x, generator) -> x`` applied before each forward pass.
    - ``steps``, ``lr``: number of steps and step size; ``optimizer``: ``"adam"``
      (default), ``"sgd"``, ``"normalized"`` (step ``lr·g/mean|g|``),
      ``"sign"`` (step ``lr·sign(g)``), or ``f(leaves) -> torch.optim.Optimizer``.
    - ``project``: ``f(x) -> x`` applied to the pixels after every step (only for
      pixel parameterizations), e.g. ``linf_ball(x0, eps)`` for attacks.
    - ``callback``: ``f(Step)`` or a list of them, called after each forward pass
      (live display, ``FrameRecorder``); returning ``True`` stops the run and
      keeps the image just scored.
    - ``generator``: the ``torch.Generator`` that transforms draw from
      (default: a new one seeded with 0, so runs are reproducible).
    - ``progress``: a tqdm progress bar.

    Raises before any work on a bad argument or an unknown layer name.
    """
    param, cbs, generator = _checked(model, objective, param, steps=steps, lr=lr, optimizer=optimizer,
                                     transforms=transforms, project=project, callback=callback, generator=generator)
    names = list(objective.layers)
    if names:
        resolve_layers(model, names)   # KeyError with close names, before any hook
    leaves = param.parameters()
    opt = _make_optimizer(optimizer, leaves, float(lr))
    from tqdm.auto import tqdm

    bar = tqdm(total=steps, desc=desc if desc is not None else _short(repr(objective)), disable=not progress,
               leave=True)
    run = _Run(steps, bar)
    try:
        with _scorer(model, objective, names) as score_of:
            try:
                _ascend(run, param, leaves, opt, score_of, transforms, generator, project, cbs)
            except KeyboardInterrupt:
                run.interrupted = True
                param.constrain_()            # a step may have been cut between update and clamp
                if project is not None:
                    _project(param, project)
    finally:
        for p in leaves:
            p.grad = None
        bar.close()
    n = param.shape[0]
    hist = torch.stack(run.scores).cpu() if run.scores else torch.empty(0, n)
    return Result(image=param.image(), scores=hist, steps=run.done, interrupted=run.interrupted,
                  stopped=run.stopped, param=param)


@dataclass
class _Run:
    """The state of one run of ``optimize``: what the loop has done so far."""

    steps: int
    bar: Any
    scores: list[torch.Tensor] = field(default_factory=list)
    done: int = 0
    interrupted: bool = False
    stopped: bool = False


def _ascend(run: _Run, param: Param, leaves: list[torch.Tensor], opt: torch.optim.Optimizer,
            score_of: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor], transforms, generator,
            project, cbs: list[Callable[[Step], Any]]) -> None:
    """The optimization loop itself: render, transform, score, step uphill, constrain."""
    for t in range(run.steps):
        x = param()
        xt = transforms(x, generator) if transforms is not None else x
        score = score_of(x, xt, t)
        s = score.detach()
        run.scores.append(s)
        if cbs and any([bool(cb(Step(t, run.steps, x.detach().clone(), s.clone()))) for cb in cbs]):
            run.stopped, run.done = True, t + 1
            return
        grads = torch.autograd.grad(score.sum(), leaves)
        for p, g in zip(leaves, grads):
            p.grad = -g             # descending -g ascends the score
        opt.step()
        param.constrain_()
        if project is not None:
            _project(param, project)
        run.done = t + 1
        run.bar.update(1)
        if t % 10 == 0 or t == run.steps - 1:
            run.bar.set_postfix(score=f"{float(s.mean()):.4g}", refresh=False)


@contextlib.contextmanager
def _scorer(model: nn.Module, objective: Objective, names: list[str]):
    """``score_of(x, xt, t)``: the objective's score of the image ``x`` seen as ``xt``, for the block.

    Only the layers the objective declares are captured; when it needs no logits
    the forward pass stops after the deepest of them. The model is frozen and
    its in-place modules switched off for the block (``hooks.capture``).
    """
    def score(x, xt, logits, acts):
        s = objective(Context(image=x, input=xt, logits=logits, activations=acts))
        if not s.requires_grad:
            raise RuntimeError(f"objective {objective!r} does not depend on the image: nothing to optimize")
        return s

    if not names:
        with frozen(model):
            yield lambda x, xt, t: score(x, xt, model(xt), {})
        return
    with capture(model, names, stop=not objective.needs_logits) as rec:
        def score_of(x, xt, t):
            logits = rec.run(xt)
            if t == 0:
                rec.check_unmodified()
            return score(x, xt, logits, {n: rec.activations[n] for n in names})

        yield score_of


def _checked(model, objective, param, *, steps, lr, optimizer, transforms, project, callback, generator):
    """Validate every argument of ``optimize`` before any hook or step: ``(param, callbacks, generator)``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(objective, Objective):
        raise TypeError(f"objective must be an Objective (see cnnviz_helpers.objectives), got "
                        f"{type(objective).__name__} {objective!r}")
    device = device_of(model)
    if param is None:
        from .params import pixels

        param = pixels(getattr(model, "input_size", 224), device=device)
    if not isinstance(param, Param):
        raise TypeError(f"param must be a parameterization from cnnviz_helpers.params (pixels, fft, from_image), "
                        f"got {type(param).__name__}")
    if param.device != device:
        raise ValueError(f"param lives on {param.device} but the model on {device}: create it with "
                         f"device=model.device")
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not lr > 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if isinstance(optimizer, str):
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}: choose one of {', '.join(OPTIMIZERS)}, "
                             f"or pass a function params -> torch.optim.Optimizer")
    elif not callable(optimizer):
        raise TypeError(f"optimizer must be a name ({', '.join(OPTIMIZERS)}) or a callable, got {optimizer!r}")
    if transforms is not None and not callable(transforms):
        raise TypeError(f"transforms must be a callable t(x, generator) (see cnnviz_helpers.transforms), "
                        f"got {type(transforms).__name__}")
    if project is not None:
        if not callable(project):
            raise TypeError(f"project must be a callable f(x) -> x, got {type(project).__name__}")
        if not isinstance(param, PixelParam):
            raise TypeError(f"project works on pixels: param must be params.pixels/from_image, got {param!r}")
    cbs = _callbacks(callback)
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    elif not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    return param, cbs, generator


def _project(param: PixelParam, project: Callable[[torch.Tensor], torch.Tensor]) -> None:
    with torch.no_grad():
        y = project(param.x)
        if not isinstance(y, torch.Tensor) or y.shape != param.x.shape:
            raise ValueError(f"project must return a tensor of shape {tuple(param.x.shape)}, got "
                             f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}")
        param.x.copy_(y)


def _short(s: str, n: int = 40) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."


# ---------------------------------------------------------------- attacks (lesson 12)

def _eps(eps, what: str = "eps") -> float:
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0 < eps <= 1:
        raise ValueError(f"{what} must be in (0, 1] on the [0,1] pixel scale (e.g. 2/255), got {eps!r}")
    return float(eps)


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
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
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


# ---------------------------------------------------------------- GIF export

class FrameRecorder:
    """A callback that keeps every ``every``-th scored image as an ``(H,W,3)`` uint8 frame.

    ``index``: which image of the batch; ``size``: longer side of the frames
    (``None``: as is). Use with ``optimize(..., callback=rec)`` then
    ``save_gif(rec.frames, "run.gif")``.
    """

    def __init__(self, every: int = 1, *, index: int = 0, size: int | None = None) -> None:
        if isinstance(every, bool) or not isinstance(every, numbers.Integral) or every < 1:
            raise ValueError(f"every must be a positive integer, got {every!r}")
        self.every, self.index, self.size = int(every), int(index), size
        self.frames: list[np.ndarray] = []

    def __call__(self, step: Step) -> None:
        if step.step % self.every == 0 or step.step == step.steps - 1:
            if not 0 <= self.index < step.image.shape[0]:
                raise IndexError(f"FrameRecorder index {self.index} is out of range for a batch of "
                                 f"{step.image.shape[0]}")
            self.frames.append(_to_uint8(step.image[self.index], self.size))


def _to_uint8(img: torch.Tensor | np.ndarray, size: int | None = None) -> np.ndarray:
    from PIL import Image

    a = img.detach().float().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    a = np.squeeze(a)
    if a.ndim == 3 and a.shape[0] == 3 and a.shape[-1] != 3:
        a = a.transpose(1, 2, 0)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"a frame must be an image (3,H,W) or (H,W,3), got shape {a.shape}")
    if a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)
    if size is not None and max(a.shape[:2]) != size:
        s = size / max(a.shape[:2])
        a = np.asarray(Image.fromarray(a).resize((max(1, round(a.shape[1] * s)), max(1, round(a.shape[0] * s))),
                                                 Image.BILINEAR))
    return a


def save_gif(frames: Sequence[np.ndarray | torch.Tensor], path: str | os.PathLike, *, duration_ms: int = 80,
             loop: int = 0) -> Path:
    """Write frames (``(H,W,3)`` uint8 or images in [0,1]) as an animated GIF with PIL; returns the path.

    ``duration_ms`` per frame; ``loop=0`` repeats forever. All frames must have one size.
    """
    from PIL import Image

    if len(frames) == 0:
        raise ValueError("save_gif needs at least one frame (did the FrameRecorder run?)")
    arrs = [_to_uint8(f) for f in frames]
    shapes = {a.shape for a in arrs}
    if len(shapes) != 1:
        raise ValueError(f"all frames must have the same size, got {sorted(shapes)}")
    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise ValueError(f"save_gif writes GIF files: the path must end in .gif, got {str(path)!r}")
    imgs = [Image.fromarray(a) for a in arrs]
    imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=int(duration_ms), loop=int(loop),
                 optimize=False)
    return path
