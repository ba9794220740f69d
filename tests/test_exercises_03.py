"""Lesson 03's exercise checks: the official answers pass, typical mistakes get their hint, stubs are not done."""
import pytest
import torch
import torch.nn.functional as F

from cnnviz_helpers import capture, exercises, load_model
from cnnviz_helpers.exercises import ExerciseError, lesson03
from support import hint

pytestmark = pytest.mark.usefixtures("student_mode")  # checks return Feedback

SIZE = 64      # small input: the maps are 32x32 (stem) ... 2x2 (head)
LAYERS = ["stem"] + [f"block{b}" for b in range(1, 8)] + ["head"]


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture(scope="module")
def image():
    return torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def maps(model, image):
    with capture(model, LAYERS) as rec, torch.no_grad():
        model(image)
        acts = {n: rec[n][0] for n in LAYERS}
        head_act = model.net._swish(model.net._bn1(acts["head"][None]))[0]
    return acts, head_act


def test_1_first_layer_with_stride_16(maps):
    acts, _ = maps
    sizes = {n: acts[n].shape[-1] for n in LAYERS}
    answer = next(n for n in LAYERS if SIZE // sizes[n] == 16)     # as the lesson's solution
    assert answer == "block4"
    assert lesson03.check_1(answer, sizes=sizes, input_size=SIZE).ok
    assert "not the first" in hint(lesson03.check_1("block5", sizes=sizes, input_size=SIZE))
    assert "pixels apart, not 16" in hint(lesson03.check_1("block3", sizes=sizes, input_size=SIZE))
    assert "too deep" in hint(lesson03.check_1("block6", sizes=sizes, input_size=SIZE))
    assert "not one of the recorded layers" in hint(lesson03.check_1("conv4", sizes=sizes, input_size=SIZE))
    assert "string" in hint(lesson03.check_1(4, sizes=sizes, input_size=SIZE))
    assert not lesson03.check_1(..., sizes=sizes, input_size=SIZE).done


def test_2_sparsity_and_signs(maps):
    acts, head_act = maps
    ctx = dict(head_act=head_act, raw_head=acts["head"], block2=acts["block2"])
    a = float((head_act == 0).float().mean())
    b = float((acts["block2"] < 0).float().mean())
    assert lesson03.check_2(a, b, **ctx).ok
    assert "swapped" in hint(lesson03.check_2(b, a, **ctx))
    assert "raw head convolution" in hint(lesson03.check_2(float((acts["head"] == 0).float().mean()), b, **ctx))
    assert "*positive*" in hint(lesson03.check_2(a, float((acts["block2"] > 0).float().mean()), **ctx))
    assert "not a percentage" in hint(lesson03.check_2(100 * a, b, **ctx))
    assert "one number" in hint(lesson03.check_2(head_act == 0, b, **ctx))
    assert not lesson03.check_2(a, ..., **ctx).done


def test_3_prediction():
    assert lesson03.check_3(True, same=True).ok
    assert "trained on randomly mirrored photos" in hint(lesson03.check_3(False, same=True))
    assert "close call" in hint(lesson03.check_3(True, same=False))
    assert "True or False" in hint(lesson03.check_3("yes", same=True))
    assert not lesson03.check_3(..., same=True).done


def test_wrong_answer_raises_outside_student_mode(maps):
    exercises.student_copy(False)
    with pytest.raises(ExerciseError, match="not the first"):
        lesson03.check_1("block5", sizes={n: maps[0][n].shape[-1] for n in LAYERS}, input_size=SIZE)
    with pytest.raises(ExerciseError, match="not done yet"):
        lesson03.check_3(..., same=True)


def test_4_stem_activation_by_hand(model, image, maps):
    acts, _ = maps
    x = image
    W = model.net._conv_stem.weight.detach()
    i = j = SIZE // 2 - 1                                     # the bottom-right unit of the stem's map
    ctx = dict(x=x, W=W, recorded=acts["stem"][5, i, j], channel=5, unit=(i, j))
    def by_hand(image, pad):
        return float((W[5] * F.pad(image, pad)[0, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3]).sum())
    z = (x - 0.5) / 0.5
    assert lesson03.check_4(by_hand(z, (0, 1, 0, 1)), **ctx).ok
    assert "one row and one column too early" in hint(lesson03.check_4(by_hand(z, (1, 1, 1, 1)), **ctx))
    assert "normalized image" in hint(lesson03.check_4(by_hand(x, (0, 1, 0, 1)), **ctx))
    assert "sign" in hint(lesson03.check_4(-by_hand(z, (0, 1, 0, 1)), **ctx))
    assert "one number" in hint(lesson03.check_4(W[5], **ctx))
    assert not lesson03.check_4(..., **ctx).done


def test_1_strides_rounded_where_windows_do_not_fit():
    sizes = {"conv1": 55, "pool1": 27, "conv2": 27, "pool2": 13, "conv5": 13, "pool5": 6}   # AlexNet at 224
    assert lesson03.check_1("pool2", sizes=sizes, input_size=224).ok
    assert "not the first" in hint(lesson03.check_1("conv5", sizes=sizes, input_size=224))
    assert "pixels apart, not 16" in hint(lesson03.check_1("conv2", sizes=sizes, input_size=224))
    assert "too deep" in hint(lesson03.check_1("pool5", sizes=sizes, input_size=224))


def test_3_an_untrained_model_is_not_held_to_a_trained_one(capsys):
    assert lesson03.check_3(False, same=True, trained=False).ok
    assert "behaviour check skipped" in capsys.readouterr().out
    assert "True or False" in hint(lesson03.check_3("yes", same=True, trained=False))


def test_4_a_convolution_with_bias_and_symmetric_padding():
    conv = torch.nn.Conv2d(3, 8, 5, stride=4, padding=2)
    torch.nn.init.uniform_(conv.bias, 0.5, 1.0)
    x = torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(2))
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    z = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        out = conv(z)
    i, j = out.shape[2] - 1, out.shape[3] - 1
    W, b = conv.weight.detach(), float(conv.bias[3])
    ctx = dict(x=x, W=W, recorded=out[0, 3, i, j], channel=3, unit=(i, j), stride=4, pad=(2, 2, 2, 2),
               mean=mean, std=std, bias=b)
    window = F.pad(z, (2, 2, 2, 2))[0, :, 4 * i:4 * i + 5, 4 * j:4 * j + 5]
    right = float((W[3] * window).sum()) + b
    assert lesson03.check_4(right, **ctx).ok
    assert "forgot the bias" in hint(lesson03.check_4(right - b, **ctx))
    raw = float((W[3] * F.pad(x, (2, 2, 2, 2))[0, :, 4 * i:4 * i + 5, 4 * j:4 * j + 5]).sum()) + b
    assert "normalized image" in hint(lesson03.check_4(raw, **ctx))
