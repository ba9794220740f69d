"""Checks for the exercises of lesson 03 (activation maps, ``notebooks/03_activation_maps.md``)."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from . import Wrong, exercise
from ._answers import number

__all__ = ["check_1", "check_2", "check_3", "check_4"]


def _fraction(answer, name: str) -> float:
    """``answer`` as a float in [0, 1], or a hint."""
    value = number(answer, name)
    if value > 1 and value <= 100:
        raise Wrong(f"{name} = {value:.3g} is above 1: give a fraction in [0, 1], not a percentage or a count")
    if not 0 <= value <= 1:
        raise Wrong(f"{name} = {value:.3g} is not a fraction: it must lie in [0, 1]; "
                    "did you divide a count by the number of values?")
    return value


@exercise("03.1", "the first layer whose units are 16 pixels apart")
def check_1(answer, *, sizes: dict, input_size: int) -> None:
    """``sizes``: layer name -> side of its activation map, in network order.

    A layer's stride is the power of two nearest to ``input_size / side``: exact where the windows fit
    (EfficientNet, VGG), rounded where a layer drops its last rows (AlexNet: 224/13 for stride 16)."""
    if not isinstance(answer, str):
        raise Wrong(f"give the layer's name as a string such as 'block2', got {type(answer).__name__}")
    if answer not in sizes:
        raise Wrong(f"{answer!r} is not one of the recorded layers: {', '.join(sizes)}")
    stride = {n: 2 ** round(math.log2(input_size / s)) for n, s in sizes.items()}   # pixels between neighbouring units
    first = next(n for n in sizes if stride[n] >= 16)
    if stride[answer] < 16:
        raise Wrong(f"{answer}'s map is {sizes[answer]}x{sizes[answer]}: its units are "
                    f"{input_size}/{sizes[answer]} ~ {stride[answer]:.0f} pixels apart, not 16")
    if stride[answer] > 16:
        raise Wrong(f"{answer}'s units are {stride[answer]:.0f} pixels apart: too deep; "
                    "go back to the last stride-2 stage before it")
    if answer != first:
        raise Wrong(f"{answer} has stride 16, but it is not the first: a stride-1 stage keeps the stride "
                    "of the stage before it, so look at the layers before it")


@exercise("03.2", "the fraction of zeros after ReLU6 in the head and of negative values in block2")
def check_2(zeros, negatives, *, head_act, raw_head, block2) -> None:
    """``head_act``: the last feature map after its activation (Lite0: the head after BN and ReLU6);
    ``raw_head``: before it (``acts['last_conv']``; the same tensor on a model whose last_conv is a ReLU);
    ``block2``: the ``early`` stage's outputs (Lite0's block2)."""
    a, b = _fraction(zeros, "answer_2a"), _fraction(negatives, "answer_2b")
    head, raw, b2 = (np.asarray(t.detach().cpu()) for t in (head_act, raw_head, block2))
    true_a, true_b = float(np.count_nonzero(head == 0)) / head.size, float(np.count_nonzero(b2 < 0)) / b2.size
    tol = 1.0 / min(head.size, b2.size)
    if abs(a - true_b) < tol and abs(b - true_a) < tol:
        raise Wrong("your two answers are swapped: answer_2a is about the head, answer_2b about block2")
    if abs(a - float(np.count_nonzero(raw == 0)) / raw.size) < tol and abs(a - true_a) >= tol:
        raise Wrong("answer_2a counts zeros of the raw head convolution (acts['last_conv']), which is almost never "
                    "exactly 0; count them in head_act, the maps after BN and ReLU6")
    if abs(a - float(np.count_nonzero(head > 0)) / head.size) < tol and abs(a - true_a) >= tol:
        raise Wrong("answer_2a is the fraction of *positive* values: ReLU6 outputs are 0 or positive, "
                    "the question asks for the exact zeros")
    if abs(a - true_a) >= tol:
        raise Wrong("answer_2a is not the fraction of exactly-zero values in head_act: "
                    "(head_act == 0) averaged over all channels and positions")
    if abs(b - float(np.count_nonzero(b2 > 0)) / b2.size) < tol and abs(b - true_b) >= tol:
        raise Wrong("answer_2b is the fraction of *positive* values of block2; the question asks for negative ones")
    if abs(b - float(np.count_nonzero(b2 <= 0)) / b2.size) < tol and abs(b - true_b) >= tol:
        raise Wrong("answer_2b counts values <= 0: strictly negative ones only (< 0)")
    if abs(b - true_b) >= tol:
        raise Wrong("answer_2b is not the fraction of negative values in acts['early'] "
                    "(all channels and positions)")


@exercise("03.3", "predict whether the mirrored photo keeps its top-1 class")
def check_3(prediction, *, same: bool, trained: bool = True) -> None:
    """``same``: measured by the lesson, True if the mirrored photo's top-1 class equals the photo's;
    ``trained``: whether the model has trained weights (an untrained model's top-1 is arbitrary, so a
    prediction about a trained network is not checked against it: a behaviour check, skipped saying so)."""
    if not isinstance(prediction, bool):
        raise Wrong(f"answer True or False (a bool), got {prediction!r}")
    if not trained:
        print("behaviour check skipped: this model is untrained, its top-1 class is arbitrary; the question "
              "is about a trained network (on EfficientNet-Lite0 the top-1 survives the mirror)")
        return
    if prediction != bool(same):
        if same:
            raise Wrong("the top-1 class survived the mirror: ImageNet models are trained on randomly "
                        "mirrored photos, so a mirrored cat is still a cat to them, even though the "
                        "activation maps themselves change")
        raise Wrong("the top-1 class changed: the model was trained on mirrored photos too, but this "
                    "photo is a close call between similar classes, and mirroring tips the balance")


@exercise("03.4", "a stem activation at the bottom-right unit, by hand")
def check_4(answer, *, x, W, recorded, channel: int, unit: tuple[int, int], stride: int = 2,
            pad: tuple[int, int, int, int] = (0, 1, 0, 1), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
            bias: float = 0.0) -> None:
    """``x``: (1, 3, H, W) image in [0, 1]; ``W``: (K, 3, k, k) first-conv weights; ``recorded``: what the hook saw;
    ``stride``, ``pad`` (left, right, top, bottom), ``mean``/``std``, ``bias``: the first convolution's
    (the defaults are Lite0's stem: stride 2, TensorFlow's 'same' padding, mean = std = 0.5, no bias)."""
    value, want = number(answer, "answer_4"), float(recorded)
    tol = 1e-4 * max(1.0, abs(want))
    if abs(value - want) < tol:
        return
    i, j = unit
    w = W[channel].detach().cpu()
    x = x.detach().cpu()
    k = w.shape[-1]
    pad = tuple(int(p) for p in pad)

    def by_hand(image, pad):                          # (left, right, top, bottom) padding
        patch = F.pad(image, pad)[0, :, stride * i:stride * i + k, stride * j:stride * j + k]
        return float((w * patch).sum()) + bias if patch.shape == w.shape else float("nan")

    z = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    symmetric = (max(pad),) * 4
    if pad != symmetric and abs(value - by_hand(z, symmetric)) < tol:
        raise Wrong("your window starts one row and one column too early: TensorFlow's 'same' padding with "
                    "stride 2 on an even size pads one row at the bottom and one column at the right, none on top")
    if abs(value - by_hand(x, pad)) < tol:
        raise Wrong("you used the image x in [0, 1]: the first convolution sees the normalized image "
                    "z = (x - mean) / std (on Lite0 (x - 0.5) / 0.5)")
    if bias != 0 and abs(value - (want - bias)) < tol:
        raise Wrong("you forgot the bias: this convolution adds b to w . z")
    if abs(value + want) < tol:
        raise Wrong("the sign is flipped")
    raise Wrong(f"{value:.4f} is not what the stem computes at channel {channel}, unit {unit}: "
                "the sum over colour and the 3x3 window starting at row 2i, column 2j of the padded z")
