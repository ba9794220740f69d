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
projection: ``fgsm`` (one step) and ``pgd`` (several); ``robust_accuracy`` runs one over many
images and radii (the robust-accuracy curve). ``FrameRecorder`` +
``save_gif`` export a run as an animated GIF.

Introduced in lesson 08; used by lessons 09-12.

The pieces: ``_loop`` (the loop), ``optimizers`` (the normalized and sign steps),
``attacks`` (``fgsm``, ``pgd``, ``linf_ball``, ``robust_accuracy``) and ``gif`` (``FrameRecorder``,
``save_gif``); every name is importable from here, as the lessons do.
"""
from __future__ import annotations

from ._loop import Result, Step, optimize
from .attacks import RobustAccuracy, fgsm, linf_ball, pgd, robust_accuracy
from .gif import FrameRecorder, save_gif
from .optimizers import OPTIMIZERS, NormalizedAscent, SignDescent

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
    "robust_accuracy",
    "RobustAccuracy",
    "FrameRecorder",
    "save_gif",
]
