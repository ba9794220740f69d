"""Test support: tiny CNNs with no downloads, and the model-state check every public helper must pass."""
from __future__ import annotations

from typing import Callable

import pytest
import torch
from torch import nn

from cnnviz_helpers.hooks import ModelSnapshot
from cnnviz_helpers.models import CourseModel

CATEGORIES = [f"class{i}" for i in range(5)]


class TinyNet(nn.Module):
    """conv(3->4, 3x3, pad 1) - ReLU(inplace) - maxpool 2 - conv(4->6, 3x3) - ReLU6 - GAP - linear(6->5)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(4, 6, 3), nn.ReLU6(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def tiny_model(seed: int = 0, *, train_mode: bool = False, with_grads: bool = False) -> CourseModel:
    """A ``CourseModel`` around ``TinyNet`` with seeded weights (mean/std 0.5, 5 classes, aliases)."""
    g = torch.Generator().manual_seed(seed)
    net = TinyNet()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    m = CourseModel(
        "tiny", net, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), input_size=32, resize_size=36,
        categories=CATEGORIES,
        aliases={"conv1": "net.features.0", "relu1": "net.features.1", "pool1": "net.features.2",
                 "conv2": "net.features.3", "relu2": "net.features.4", "pool": "net.pool", "fc": "net.fc"},
        penultimate="net.pool", classifier="net.fc", pretrained=False,
    )
    if train_mode:
        m.train()
    else:
        m.eval()
    if with_grads:  # a user mid-training: some .grad present, one parameter frozen
        for i, p in enumerate(m.parameters()):
            p.grad = torch.full_like(p, 0.25 * (i + 1))
        m.net.features[0].bias.requires_grad_(False)
    return m


def tiny_input(seed: int = 1, size: tuple[int, int] = (32, 40), n: int = 1) -> torch.Tensor:
    """A non-square image batch in [0,1]."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, *size, generator=g)


class Boom(Exception):
    pass


def assert_untouched(model: nn.Module, call: Callable[[nn.Module], object], *, raises: type | None = None) -> None:
    """Run ``call(model)``; the model's hooks, training flags, requires_grad, .grad, inplace flags and
    parameters must be exactly as before, whether the call returns or raises ``raises``."""
    before = ModelSnapshot.take(model, with_params=True)
    if raises is None:
        call(model)
    else:
        with pytest.raises(raises):
            call(model)
    after = ModelSnapshot.take(model, with_params=True)
    diff = before.differences(after)
    assert not diff, f"model state changed: {diff}"


def raising_in(model: nn.Module, alias: str, exc: BaseException):
    """Context: make the module behind ``alias`` raise ``exc`` in forward (to test cleanup on errors)."""
    from cnnviz_helpers.layers import resolve_layer

    _, mod = resolve_layer(model, alias)

    class _Ctx:
        def __enter__(self):
            def bad(*a, **k):
                raise exc

            self.h = mod.register_forward_pre_hook(bad)
            return self

        def __exit__(self, *a):
            self.h.remove()
            return False

    return _Ctx()


def hint(feedback) -> str:
    """An exercise check's hint, after asserting that the check ran and rejected the answer."""
    assert feedback.done and not feedback.ok, feedback
    return feedback.message


def rejected(feedback, *parts: str) -> None:
    """The check said "not yet right", and its hint contains every one of ``parts``."""
    msg = hint(feedback)
    for part in parts:
        assert part in msg, (part, msg)
