"""Lesson 06's exercise checks: the official answers pass, typical mistakes get their hint, stubs are "not done"."""
import pytest
import torch
from torch import nn

from cnnviz_helpers import exercises, load_model
from cnnviz_helpers.exercises import lesson06
from support import hint

pytestmark = pytest.mark.usefixtures("student_mode")  # checks return Feedback

W1 = [[2, -1, 0], [1, 1, -4], [-1, 2, 0]]
W2, X = [4, -1, 2], [0.5, 1.0, 0.25]
F6, R6 = [-1, 3, 7, 2], [2, -1, 5, 4]


def test_1_two_layer_by_hand():
    check = lambda a: lesson06.check_1(a, W1=W1, w2=W2, x=X)
    official = {"gradient": [-3, 3, 4], "deconvnet": [6, 0, 0], "guided": [-2, 4, 0]}
    assert check(official).ok
    assert "is the deconvnet map" in hint(check({**official, "gradient": [6, 0, 0]}))
    assert "not its transpose" in hint(check({**official, "guided": (torch.tensor(W1).float() @ torch.tensor([0., 0, 2])).tolist()}))
    assert "wrong sign" in hint(check({**official, "guided": [2, -4, 0]}))
    assert "signal just below the ReLU" in hint(check({**official, "deconvnet": [4, 0, 2]}))
    assert "give a dict" in hint(check([[-3, 3, 4], [6, 0, 0], [-2, 4, 0]]))
    assert "has 2 numbers, expected 3" in hint(check({**official, "guided": [-2, 4]}))
    assert not check(...).done and not check({**official, "guided": ...}).done


def test_2_relu6_by_hand():
    check = lambda a: lesson06.check_2(a, f=F6, R=R6)
    official = {"gradient": [0, -1, 0, 4], "deconvnet": [2, 0, 5, 4], "guided": [0, 0, 0, 4]}
    assert check(official).ok
    assert "ReLU6 is flat above 6" in hint(check({**official, "gradient": [0, -1, 5, 4]}))
    assert "ReLU6 is flat above 6" in hint(check({**official, "guided": [0, 0, 5, 4]}))
    assert "your deconvnet answer is the guided map" in hint(check({**official, "deconvnet": [0, 0, 0, 4]}))
    assert not check(...).done


@pytest.fixture(scope="module")
def model():
    return load_model()


def test_3_relu6_calls(model):
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    check = lambda a: lesson06.check_3(a, model=model, x=x)
    blocks = model.net._blocks
    official = 2 + sum(2 if b._block_args.expand_ratio != 1 else 1 for b in blocks)
    assert check(official).ok
    assert "stem and the head" in hint(check(official - 2))
    n_modules = sum(isinstance(m, nn.ReLU6) for m in model.modules())
    assert "number of ReLU6 modules" in hint(check(n_modules))
    assert "without expansion" in hint(check(2 * len(blocks) + 2))
    assert "should be an integer" in hint(check(float(official)))
    assert not check(...).done


def test_4_prediction():
    check = lambda p, rg, rs: lesson06.check_4(p, r_guided=rg, r_gradient=rs)
    assert check("gradient", 0.9, 0.6).ok and check(" Guided", 0.5, 0.6).ok
    assert "mostly the image's own edges" in hint(check("guided", 0.9, 0.6))
    assert "Here guided backprop changed more" in hint(check("gradient", 0.5, 0.6))
    assert 'answer with the string "guided" or "gradient"' in hint(check(1, 0.9, 0.6))
    assert not check(..., 0.9, 0.6).done


def test_wrong_answer_raises_outside_student_mode():
    exercises.student_copy(False)
    with pytest.raises(exercises.ExerciseError, match="not yet right"):
        lesson06.check_2({"gradient": [0, -1, 5, 4], "deconvnet": [2, 0, 5, 4], "guided": [0, 0, 0, 4]}, f=F6, R=R6)
    with pytest.raises(exercises.ExerciseError, match="not done yet"):
        lesson06.check_2(..., f=F6, R=R6)


class _PoolNet(nn.Module):
    """A tiny CNN with a max-pool: its deconvnet map depends on the photo through the switches."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(8, 5))

    def forward(self, x):
        return self.net(x)


def test_5_which_rule_ignores_the_photo(model):
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(1, 3, 64, 64, generator=g) for _ in range(2)]
    pool_model = _PoolNet().eval()
    check = lambda a: lesson06.check_5(a, flat_model=model, pool_model=pool_model, images=images,
                                       flat_target=3, pool_target=1)
    official = {"no max-pool": "deconvnet", "max-pool": "none"}
    assert check(official).ok and check({"no max-pool": " Deconvnet", "max-pool": "NONE"}).ok
    assert "which rule ignores f" in hint(check({**official, "no max-pool": "guided"}))
    assert "which rule ignores f" in hint(check({**official, "no max-pool": "gradient"}))
    assert "crossed by a fixed linear map" in hint(check({**official, "no max-pool": "none"}))
    assert "switches" in hint(check({**official, "max-pool": "deconvnet"}))
    assert "on any model" in hint(check({**official, "max-pool": "guided"}))
    assert "give a dict" in hint(check("deconvnet"))
    assert 'should be "gradient", "deconvnet", "guided" or "none"' in hint(check({**official, "max-pool": 0}))
    assert not check(...).done
