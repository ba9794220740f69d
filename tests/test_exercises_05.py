"""Lesson 05's exercise checks: the official answers pass, typical mistakes get their hint, stubs are "not done"."""
import pytest
import torch
from scipy.stats import pearsonr

from cnnviz_helpers import exercises, load_model
from cnnviz_helpers.attribution import Neuron, gradient, rank_correlation, saliency_map
from cnnviz_helpers.exercises import lesson05
from support import hint

pytestmark = pytest.mark.usefixtures("student_mode")  # checks return Feedback

SIZE = 96


@pytest.fixture(scope="module")
def setup():
    model = load_model()
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.interpolate(torch.rand(1, 3, 12, 12, generator=g), size=(SIZE, SIZE), mode="bilinear",
                                        align_corners=False)                       # a smooth 96x96 image
    top2 = model(x)[0].topk(2).indices.tolist()
    return model, x, top2


def test_1_rank_correlation(setup):
    model, x, (k1, k2) = setup
    w1, w2 = gradient(model, x, k1), gradient(model, x, k2)
    s1, s2 = saliency_map(w1)[0], saliency_map(w2)[0]
    check = lambda a: lesson05.check_1(a, s1=s1, s2=s2, w1=w1, w2=w2)
    assert check(rank_correlation(s1, s2)).ok
    assert "compared a map with itself" in hint(check(rank_correlation(s1, s1)))
    assert "Pearson" in hint(check(float(pearsonr(s1.flatten().numpy(), s2.flatten().numpy()).statistic)))
    assert "signed gradients" in hint(check(rank_correlation(w1, w2, absolute=False)))
    assert "correlations lie in [-1, 1]" in hint(check(1.7))
    assert "one number" in hint(check(s1))
    assert not check(...).done


def test_2_nonzero_box(setup):
    model, x, _ = setup
    unit = (10, 12)
    check = lambda a: lesson05.check_2(a, model=model, layer="block2", unit=unit, size=(SIZE, SIZE))
    g2 = gradient(model, x, Neuron("block2", 5, unit))[0].abs().amax(0)
    r_, c_ = torch.nonzero(g2 > 0, as_tuple=True)
    top, left, bottom, right = int(r_.min()), int(c_.min()), int(r_.max()), int(c_.max())
    assert check((top, left, bottom, right)).ok
    assert "rows and columns swapped" in hint(check((left, top, right, bottom)))
    assert "off by one" in hint(check((top, left, bottom + 1, right + 1)))
    assert "(top, left, height, width)" in hint(check((top, left, bottom - top + 1, right - left + 1)))
    assert "too small" in hint(check((top + 2, left + 2, bottom - 2, right - 2)))
    assert "four numbers" in hint(check((top, left)))
    assert not check(...).done


def test_3_saliency_by_hand(setup):
    model, x, (k1, _) = setup
    w = gradient(model, x, k1)
    check = lambda a: lesson05.check_3(a, w=w)
    assert check(w[0].abs().amax(0)).ok
    assert "kept the colour axis" in hint(check(w[0].abs()))
    assert "negative values" in hint(check(w[0].amax(0)))
    assert "sum over R, G, B" in hint(check(w[0].abs().sum(0)))
    assert "max, then abs" in hint(check(w[0].amax(0).abs()))
    assert f"expected ({SIZE}, {SIZE})" in hint(check(w[0].abs().amax(1)))
    assert "should be a tensor" in hint(check(w[0].abs().amax(0).numpy()))
    assert not check(...).done


def test_4_prediction():
    check = lambda p, small, big: lesson05.check_4(p, r_small=small, r_big=big)
    assert check("further", 0.5, 0.4).ok and check("Closer", 0.4, 0.5).ok
    assert "smoothed away" in hint(check("closer", 0.5, 0.4))
    assert "kept the plain gradient's ranking" in hint(check("further", 0.4, 0.5))
    assert 'answer with the string "closer" or "further"' in hint(check(0.3, 0.5, 0.4))
    assert not check(..., 0.5, 0.4).done


def test_wrong_answer_raises_outside_student_mode():
    exercises.student_copy(False)
    with pytest.raises(exercises.ExerciseError, match="not yet right"):
        lesson05.check_4("closer", r_small=0.5, r_big=0.4)
    with pytest.raises(exercises.ExerciseError, match="not done yet"):
        lesson05.check_4(..., r_small=0.5, r_big=0.4)
