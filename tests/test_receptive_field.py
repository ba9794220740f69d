"""``layers.receptive_field`` against a brute-force gradient check, on every layer.

The check: on a *copy* of the model whose every path from input to output is
positive (convolution and linear weights positive, biases zero, batch norm made
an identity, max-pooling replaced by average pooling of the same geometry,
ReLU6 replaced by an unbounded ReLU, input all ones so that every ReLU is
active), the gradient of one output unit with respect to the input is nonzero
exactly on the input pixels that unit depends on. That support must be the
rectangle ``receptive_field(...).clipped_box(i, j, H, W)`` computed on the
*original* model. Units checked per layer: the top-left one, the centre one and
the bottom-right one (so the start offset, the stride and the size are all
tested, with padding and clipping at both ends), on non-square inputs.

The gradient of each unit comes from ``torch.autograd.grad`` on a batch of
identical inputs, one sample per unit, so one backward pass checks the three.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from cnnviz_helpers import load_model
from cnnviz_helpers.layers import receptive_field
from support import tiny_model


def positive_copy(model: nn.Module) -> nn.Module:
    """A float32 copy where every input-output path has a positive weight (see the module docstring)."""
    m = copy.deepcopy(model).float().eval()
    for mod in list(m.modules()):
        for cname, child in list(mod.named_children()):
            if isinstance(child, nn.MaxPool2d):
                setattr(mod, cname, nn.AvgPool2d(child.kernel_size, child.stride, child.padding,
                                                  ceil_mode=child.ceil_mode))
            elif isinstance(child, nn.ReLU6):
                setattr(mod, cname, nn.ReLU())  # the same object stays shared where it was shared
            elif isinstance(child, nn.ReLU):
                child.inplace = False
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.Conv2d):
                # 1/(channels per group): every spatial offset of the kernel contributes about 1, so
                # magnitudes grow like k*k per layer (no float32 overflow or underflow in these nets)
                mod.weight.fill_(1.0 / mod.weight.shape[1])
                if mod.bias is not None:
                    mod.bias.zero_()
            elif isinstance(mod, nn.Linear):
                mod.weight.fill_(1.0 / mod.in_features)
                if mod.bias is not None:
                    mod.bias.zero_()
            elif isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.zero_()
                mod.running_var.fill_(1.0)
                mod.weight.fill_(1.0)
                mod.bias.zero_()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def first_outputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every named module's output at its first call (as ``receptive_field`` sees it)."""
    outs: dict[str, torch.Tensor] = {}
    handles = []
    try:
        for n, mod in model.named_modules():
            if not n:
                continue

            def hook(mod, inp, out, n=n):
                if n not in outs and isinstance(out, torch.Tensor):
                    outs[n] = out

            handles.append(mod.register_forward_hook(hook))
        model(x)
    finally:
        for h in handles:
            h.remove()
    return outs


def gradient_support_boxes(out: torch.Tensor, x: torch.Tensor, units: list[tuple[int, int]]):
    """For each unit, the bounding box of the nonzero gradient and whether the support fills it."""
    target = sum(out[b, 0, i, j] for b, (i, j) in enumerate(units))
    (g,) = torch.autograd.grad(target, x, retain_graph=True)
    boxes = []
    for b in range(len(units)):
        support = g[b].abs().sum(0) > 0  # (H, W)
        rows = support.any(1).nonzero().flatten()
        cols = support.any(0).nonzero().flatten()
        if len(rows) == 0:
            boxes.append((None, False))
            continue
        t, btm, l, r = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
        full = bool(support[t:btm + 1, l:r + 1].all())
        boxes.append(((t, l, btm, r), full))
    return boxes


def units_to_check(module: nn.Module, h: int, w: int) -> list[tuple[int, int]]:
    """Top-left, centre and bottom-right units; for a zero-padding layer, those of the unpadded part
    (a padding unit is a constant: it depends on no pixel, see ``test_padding_units_depend_on_nothing``)."""
    left = right = top = bottom = 0
    if isinstance(module, (nn.ZeroPad2d, nn.ConstantPad2d)):
        left, right, top, bottom = module.padding
    return [(top, left), ((top + h - 1 - bottom) // 2, (left + w - 1 - right) // 2), (h - 1 - bottom, w - 1 - right)]


def check_every_layer(model: nn.Module, size: tuple[int, int], only: list[str] | None = None):
    """Compare predicted and brute-force boxes on every layer (or ``only``); return the layers checked."""
    H, W = size
    pos = positive_copy(model)
    modules = dict(pos.named_modules())
    x = torch.ones(3, 3, H, W, requires_grad=True)  # one sample per unit checked
    outs = first_outputs(pos, x)
    checked, whole, problems = [], [], []
    for name, out in outs.items():
        if only is not None and name not in only:
            continue
        spatial = out.dim() == 4 and out.shape[-2:] != (1, 1)
        if not spatial:
            # after global pooling / fc: a unit sees the whole image, and the helper must say so
            with pytest.raises(ValueError, match="see the whole input"):
                receptive_field(model, name, size)
            whole.append(name)
            continue
        rf = receptive_field(model, name, size)
        h, w = out.shape[-2:]
        units = units_to_check(modules[name], h, w)
        for (i, j), (got, full) in zip(units, gradient_support_boxes(out, x, units)):
            want = rf.clipped_box(i, j, H, W)
            if got != want or not full:
                problems.append(f"{name} unit ({i},{j}): predicted {want} from {rf}, gradient support {got}"
                                f"{'' if full else ' (not a full rectangle)'}")
        checked.append(name)
    assert not problems, "receptive field disagrees with the gradient:\n" + "\n".join(problems)
    return checked, whole


def test_brute_force_check_detects_a_wrong_box():
    """The check itself can fail: the tiny CNN's conv2 box shifted by one pixel is caught."""
    m = tiny_model()
    pos = positive_copy(m)
    x = torch.ones(1, 3, 32, 40, requires_grad=True)
    out = first_outputs(pos, x)["net.features.3"]
    rf = receptive_field(m, "conv2", (32, 40))
    (got, full), = gradient_support_boxes(out, x, [(5, 7)])
    # by hand: conv 3x3 pad 1 (r 3, j 1, start -1), pool 2 (r 4, j 2, start -1), conv 3x3 (r 8, j 2, start -1)
    assert (rf.size, rf.stride, rf.start) == ((8, 8), (2, 2), (-1, -1))
    assert got == (-1 + 2 * 5, -1 + 2 * 7, -1 + 2 * 5 + 7, -1 + 2 * 7 + 7) == rf.box(5, 7) and full
    assert got != (rf.box(5, 7)[0] + 1, *rf.box(5, 7)[1:])


def test_tiny_cnn_every_layer():
    checked, whole = check_every_layer(tiny_model(), (32, 40))
    assert checked == ["normalize", "net.features.0", "net.features.1", "net.features.2", "net.features.3",
                       "net.features.4", "net.features"]
    assert whole == ["net.pool", "net.fc", "net"]


def test_padding_units_depend_on_nothing():
    """A zero-padding layer's border units are constants: their gradient is zero everywhere, while
    ``receptive_field`` describes the grid they would sit on (why ``units_to_check`` skips them)."""
    model = load_model("efficientnet_lite0", weights=None, device="cpu")
    pos = positive_copy(model)
    x = torch.ones(1, 3, 64, 80, requires_grad=True)
    out = first_outputs(pos, x)["net._conv_stem.static_padding"]  # ZeroPad2d((0, 1, 0, 1))
    assert tuple(out.shape[-2:]) == (65, 81)
    (got, _), = gradient_support_boxes(out, x, [(64, 80)])  # the added bottom-right corner
    assert got is None


def test_efficientnet_lite0_every_layer():
    """Every named module of the embedded model (about 180), on a 64x80 input (the deep layers' boxes
    cover the whole image there: ``test_efficientnet_lite0_deep_layers_unclipped`` checks their far edges)."""
    model = load_model("efficientnet_lite0", weights=None, device="cpu")
    checked, whole = check_every_layer(model, (64, 80))
    assert len(checked) > 100, checked
    for name in ("net._conv_stem", "net._blocks.0._depthwise_conv", "net._blocks.15", "net._conv_head", "net._bn1"):
        assert name in checked
    assert {"net._avg_pooling", "net._fc"} <= set(whole)


def test_efficientnet_lite0_deep_layers_unclipped():
    """Deep units whose box fits the image on one side: the far edges of block5..head are tested too."""
    model = load_model("efficientnet_lite0", weights=None, device="cpu")
    deep = ["net._blocks.10", "net._conv_head"]  # block5 (size 339) and head (size 851)
    # head: size 851, start -394 -> unit (0,0) ends at row/col 456, inside a 480x512 image
    checked, _ = check_every_layer(model, (480, 512), only=deep)
    assert checked == deep


@pytest.mark.parametrize("size", [(224, 224), (223, 255)])
def test_alexnet_every_layer(size):
    """AlexNet (weights=None): every conv/relu/pool layer.

    At 224x224 the adaptive pooling to 6x6 is the identity and is checked too.
    At 223x255 the feature map is 6x7 and the adaptive pooling to 6x6 has
    overlapping windows of varying size: no single box describes it, and the
    helper must refuse rather than guess. (223x255: every strided layer uses
    all the rows and columns it is given; see the test below for a size
    where one does not.)
    """
    model = load_model("alexnet", weights=None, device="cpu")
    feats = [f"net.features.{i}" for i in range(13)]
    if size == (224, 224):
        checked, whole = check_every_layer(model, size)
        assert [c for c in checked if c not in ("normalize", "net.features")] == feats + ["net.avgpool"]
        assert "net.classifier.1" in whole
    else:
        checked, _ = check_every_layer(model, size, only=feats)
        assert checked == feats
        with pytest.raises(ValueError, match="cannot compute the receptive field"):
            receptive_field(model, "net.avgpool", size)


def test_alexnet_rows_dropped_by_a_strided_layer():
    """At 227x251, AlexNet's pool1 (3x3, stride 2) reads conv1 rows 0..54 of 56 only, so input rows 225-226
    and cols 249-250 reach no unit after it: the boxes are clipped to the extent that reaches the layer."""
    model = load_model("alexnet", weights=None, device="cpu")
    check_every_layer(model, (227, 251), only=["net.features.3"])


def test_an_unknown_op_is_refused_not_guessed():
    """torch.roll keeps the map's size but moves its pixels: not an elementwise op. The tracer knows its
    ops by name (receptive._RULES) and refuses what follows an op it does not know, naming it."""

    class Rolled(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.after = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 1)

        def forward(self, x):
            return self.after(torch.roll(self.conv(x), 5, dims=-1)).mean((2, 3))

    m = Rolled()
    assert receptive_field(m, "conv", (32, 40)).size == (3, 3)
    with pytest.raises(ValueError, match=r"cannot compute the receptive field of 'after' \(after\).*\(roll\)"):
        receptive_field(m, "after", (32, 40))
