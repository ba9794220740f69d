"""Lesson 04's exercise checks: the official answers pass, typical mistakes get their hint, stubs are "not done"."""
import numpy as np
import pytest
import torch

from cnnviz_helpers import exercises, load_model
from cnnviz_helpers.attribution import occlusion
from cnnviz_helpers.exercises import lesson04
from support import hint

pytestmark = pytest.mark.usefixtures("student_mode")  # checks return Feedback

WINDOW, STRIDE = 32, 16


@pytest.fixture(scope="module")
def setup():
    model = load_model()
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.interpolate(torch.rand(1, 3, 12, 12, generator=g), size=(96, 96), mode="bilinear",
                                        align_corners=False)                        # a smooth 96x96 image
    occ = occlusion(model, x, window=WINDOW, stride=STRIDE, method="full", batch_size=16, progress=False)
    c = int(occ.base.argmax())
    grey = torch.tensor(model.mean).view(1, 3, 1, 1)
    return model, x, occ, c, grey


def test_1_count_images(setup):
    model, x, *_ = setup
    small = torch.nn.functional.interpolate(x, size=(64, 96), mode="bilinear", align_corners=False)
    check = lambda a: lesson04.check_1(a, model=model, image=small, window=16, stride=12)
    official = (int(np.ceil((64 - 16) / 12)) + 1) * (int(np.ceil((96 - 16) / 12)) + 1) + 1
    assert check(official).ok and official == 41
    assert "the clean image goes through the model too" in hint(check(official - 1))
    assert "rounded (H-k)/s down" in hint(check(((64 - 16) // 12 + 1) * ((96 - 16) // 12 + 1) + 1))
    assert "H/s counts" in hint(check(int(np.ceil(64 / 12)) * int(np.ceil(96 / 12)) + 1))
    assert "should be an integer" in hint(check(41.0))
    assert not check(...).done


def test_2_class_that_gains(setup):
    model, x, occ, c, grey = setup
    check = lambda a: lesson04.check_2(a, model=model, x=x, occ=occ, c=c, window=WINDOW, grey=grey)
    d = occ.drop_map(c)
    wi, wj = np.unravel_index(int(d.argmax()), tuple(d.shape))
    official = int((occ.probs[wi, wj] - occ.base).argmax())
    assert check(official).ok
    assert "the top class itself" in hint(check(c))
    assert "should be an integer" in hint(check(model.label(official)))
    assert "not a class index" in hint(check(1000))
    assert not check(...).done


def test_3_prediction(setup):
    check = lambda p, g, b: lesson04.check_3(p, drop_grey=g, drop_black=b)
    assert check("black", 0.5, 0.7).ok and check("Grey", 0.5, 0.3).ok and check("gray", 0.5, 0.3).ok
    assert "strong input of its own" in hint(check("grey", 0.5, 0.7))
    assert "hides the evidence better" in hint(check("black", 0.5, 0.3))
    assert 'answer with the string "black" or "grey"' in hint(check(0, 0.5, 0.7))
    assert not check(..., 0.5, 0.7).done


def test_4_black_drop(setup):
    model, x, occ, c, _ = setup
    drop_grey = float(occ.drop_map(c).max())
    check = lambda a: lesson04.check_4(a, model=model, x=x, c=c, window=WINDOW, stride=STRIDE, drop_grey=drop_grey)
    occ_black = occlusion(model, x, window=WINDOW, stride=STRIDE, baseline=0.0, progress=False)
    official = float(occ_black.drop_map(c).max())
    assert abs(official - drop_grey) > 1e-3                      # the mistakes below are distinguishable
    assert check(official).ok
    assert "the grey patch's largest drop" in hint(check(drop_grey))
    assert "wrong sign" in hint(check(-official))
    assert "lowest probability" in hint(check(float(occ_black.prob_map(c).min())))
    assert "take the max" in hint(check(occ_black.drop_map(c)))
    assert "no difference of two probabilities" in hint(check(1.5))
    assert not check(...).done


def test_wrong_answer_raises_outside_student_mode(setup):
    exercises.student_copy(False)
    with pytest.raises(exercises.ExerciseError, match="not yet right"):
        lesson04.check_3("grey", drop_grey=0.5, drop_black=0.7)
    with pytest.raises(exercises.ExerciseError, match="not done yet"):
        lesson04.check_3(..., drop_grey=0.5, drop_black=0.7)
