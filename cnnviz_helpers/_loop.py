"""The optimization loop of ``optimize`` (private): validation, scoring through ``capture``, the loop itself."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ._checks import check_choice, check_int, check_number
from ._names import resolve_layers
from ._util import device_of
from .hooks import capture, frozen
from .objectives import Context, Objective
from .optimizers import OPTIMIZERS, _make_optimizer
from .params import Param, PixelParam

__all__ = ["Step", "Result", "optimize"]


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
    regularize: Sequence[Any] = (),
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
    - ``regularize``: Yosinski et al.'s steps (``regularizers.decay``, ``blur_every``,
      ``clip_norm``, ``clip_contribution``, ``clip_gradient``), in order, around each update
      (pixel parameterizations only).
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
    regs = _regularizers(regularize, param)
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
                _ascend(run, param, leaves, opt, score_of, transforms, generator, project, cbs, regs)
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
            project, cbs: list[Callable[[Step], Any]], regs: Sequence[Any] = ()) -> None:
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
        observe = getattr(param, "observe_image_grad", None)  # MaCo's transparency: |d score / d image|
        grads = torch.autograd.grad(score.sum(), leaves + [x] if observe is not None else leaves)
        if observe is not None:
            observe(grads[-1])
            grads = grads[:-1]
        if regs:  # pixels: one leaf, its ascent gradient
            grads = [_apply_gradient_steps(regs, grads[0], t)]
        for p, g in zip(leaves, grads):
            p.grad = -g             # descending -g ascends the score
        opt.step()
        if regs:
            with torch.no_grad():
                for r in regs:
                    param.x.copy_(r.on_image(param.x, grads[0], t))
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
    check_int(steps, "steps", lo=1, must="a positive integer")
    check_number(lr, "lr", above=0, must="a positive number")
    if isinstance(optimizer, str):
        check_choice(optimizer, OPTIMIZERS, "optimizer", hint=", or pass a function params -> torch.optim.Optimizer")
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


def _regularizers(regularize, param: Param) -> list:
    from .regularizers import Regularizer

    regs = list(regularize) if isinstance(regularize, (list, tuple)) else [regularize]
    bad = [r for r in regs if not isinstance(r, Regularizer)]
    if bad:
        raise TypeError(f"regularize takes steps from cnnviz_helpers.regularizers (decay, blur_every, clip_norm, "
                        f"clip_contribution, clip_gradient), got {bad[0]!r}")
    if regs and not isinstance(param, PixelParam):
        raise TypeError(f"regularize works on pixels: param must be params.pixels/from_image, got {param!r}")
    return regs


def _apply_gradient_steps(regs, g: torch.Tensor, t: int) -> torch.Tensor:
    for r in regs:
        g = r.on_gradient(g, t)
    return g


def _project(param: PixelParam, project: Callable[[torch.Tensor], torch.Tensor]) -> None:
    with torch.no_grad():
        y = project(param.x)
        if not isinstance(y, torch.Tensor) or y.shape != param.x.shape:
            raise ValueError(f"project must return a tensor of shape {tuple(param.x.shape)}, got "
                             f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}")
        param.x.copy_(y)


def _short(s: str, n: int = 40) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."
