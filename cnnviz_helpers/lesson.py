"""What a lesson's first cell needs: the course model it runs on, and whether its behaviour checks run.

Every lesson runs on EfficientNet-Lite0 (embedded, offline) unless the environment asks
for another course model::

    CNNVIZ_MODEL=vgg16 make lab                        # every lesson on VGG16 (weights cached once)
    CNNVIZ_MODEL=alexnet CNNVIZ_WEIGHTS=untrained ...  # the untrained architecture: code paths only

A lesson's checks are of two kinds. *Formula checks* (a lecture formula against an
independent computation, a code path) run on every model. *Behaviour checks* (what a
trained network does: "occluding the dog's face drops p(dog) most") run only where
``trained(model)`` says so; each such cell says which kind it is.

Used by the first code cell of every lesson.
"""
from __future__ import annotations

import os

import torch

from ._checks import check_choice
from .models import EMBEDDED_MODELS, CourseModel, WeightsUnavailableError, _check_name, load_model, weights_file

__all__ = ["MODEL_ENV", "WEIGHTS_ENV", "WEIGHTS_CHOICES", "DEFAULT_MODEL", "course_model", "trained"]

MODEL_ENV = "CNNVIZ_MODEL"
WEIGHTS_ENV = "CNNVIZ_WEIGHTS"
WEIGHTS_CHOICES = ("pretrained", "untrained")
DEFAULT_MODEL = "efficientnet_lite0"


def course_model(name: str | None = None, *, device: str | torch.device | None = None) -> CourseModel:
    """The model a lesson runs on: ``name``, else ``$CNNVIZ_MODEL``, else EfficientNet-Lite0.

    An unknown name raises ``ValueError`` with the valid names (the lesson stops at its
    first cell). ``CNNVIZ_WEIGHTS=untrained`` builds the untrained architecture (how CI
    runs the lessons on the lecture models). A lecture model whose weights are not in
    torch's cache is downloaded once; where that fails (offline) one line says how to
    get the file and the lesson goes on with EfficientNet-Lite0.

    >>> model = course_model()          # efficientnet_lite0 unless CNNVIZ_MODEL says otherwise
    """
    env = os.environ.get(MODEL_ENV, "").strip()
    if name is None:
        name = env or DEFAULT_MODEL
    where = f"{MODEL_ENV}={name}" if env and name == env else f"model {name!r}"
    try:
        _check_name(name)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    weights = os.environ.get(WEIGHTS_ENV, "").strip().lower() or "pretrained"
    check_choice(weights, WEIGHTS_CHOICES, WEIGHTS_ENV)
    if weights == "untrained":
        model = load_model(name, weights=None, device=device)
        print(f"{name}, untrained ({WEIGHTS_ENV}=untrained): the code paths run, the behaviour checks are skipped")
    else:
        model = _pretrained_or_default(name, device)
    if model.name != DEFAULT_MODEL:
        print(f"The prose of the lessons describes {DEFAULT_MODEL}'s figures; every figure and number below is "
              f"computed on {model.name}.")
    return model


def _pretrained_or_default(name: str, device: str | torch.device | None) -> CourseModel:
    try:
        return load_model(name, device=device)
    except WeightsUnavailableError as e:
        if name in EMBEDDED_MODELS:
            raise
        _, path = weights_file(name)
        print(f"cnnviz: the weights of {name} ({path.name}) are not in {path.parent} and could not be downloaded "
              f"({type(e.__cause__).__name__ if e.__cause__ else 'offline'}); get them once, online, with "
              f"`python -m cnnviz_helpers weights {name}`. Going on with {DEFAULT_MODEL}.")
        return load_model(DEFAULT_MODEL, device=device)


def trained(model: CourseModel, only: str | None = None) -> bool:
    """Whether a cell's behaviour checks run: ``model`` has trained weights (and, with ``only``, is that model).

    Prints one line saying why when they do not, so a skipped check is never silent.

    >>> if trained(model):              # behaviour check: a trained network's prediction
    ...     assert model.predict(x)[0][0][1] == "tabby"
    """
    if only is not None:
        _check_name(only)
    name = getattr(model, "name", type(model).__name__)
    if not getattr(model, "pretrained", False):
        print(f"behaviour check skipped: {name} is untrained (the formula checks still ran)")
        return False
    if only is not None and name != only:
        print(f"behaviour check skipped: it states a fact of {only}, and this is {name}")
        return False
    return True
