"""Lesson 07's exercise checks: the official answers pass, typical wrong answers get their specific hint,
the stub is "not done", and outside a student copy a wrong answer is an error."""
import pytest
import torch

from cnnviz_helpers import exercises, load_model
from cnnviz_helpers.attribution import FaithfulnessCurves, gradcam
from cnnviz_helpers.exercises import ExerciseError
from cnnviz_helpers.exercises import lesson07 as L
from cnnviz_helpers.hooks import capture
from support import rejected


@pytest.fixture(scope="module")
def model():
    return load_model()


def smooth_image(seed: int, h: int = 96, w: int = 96) -> torch.Tensor:
    """A smooth random image (1, 3, h, w) in [0, 1]: coarse noise, upsampled."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, h // 8, w // 8, generator=g)
    return torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)


# --- 07.1 Grad-CAM by hand -------------------------------------------------------------------

@pytest.fixture(scope="module")
def block6(model):
    x = smooth_image(0)
    c = int(model(x).argmax())
    with capture(model, ["block6"], gradients=True) as rec:       # as the lesson's solution
        xg = x.clone().requires_grad_(True)
        torch.autograd.grad(model(xg)[0, c], xg)
        A, dA = rec["block6"][0].detach(), rec.gradients["block6"][0]
    return x, c, A, dA


def test_1(model, block6, student_mode):
    x, c, A, dA = block6
    ctx = dict(model=model, x=x, target=c, layer="block6")
    alpha = dA.mean((1, 2))
    assert L.check_1((alpha[:, None, None] * A).sum(0).clamp(min=0), **ctx).ok
    assert L.check_1((alpha[:, None, None] * A).sum(0).clamp(min=0).numpy(), **ctx).ok     # numpy is fine
    rejected(L.check_1(alpha[:, None, None] * A, **ctx), "kept the channel axis")
    rejected(L.check_1(alpha, **ctx), "weights α_k")
    rejected(L.check_1((dA.sum((1, 2))[:, None, None] * A).sum(0).clamp(min=0), **ctx), "*mean*")
    rejected(L.check_1((dA * A).sum(0).clamp(min=0), **ctx), "its own gradient")
    rejected(L.check_1((dA.mean(0, keepdim=True) * A).sum(0).clamp(min=0), **ctx), "over the channels")
    ref = gradcam(model, x, c, "block6")[0]
    rejected(L.check_1(ref / ref.max(), **ctx), "normalized")
    rejected(L.check_1(ref[None], **ctx), "batch axis")
    rejected(L.check_1(3.0, **ctx), "must be a tensor")
    unclamped = (alpha[:, None, None] * A).sum(0)
    if float(unclamped.min()) < 0:
        rejected(L.check_1(unclamped, **ctx), "ReLU")
    assert not L.check_1(..., **ctx).done


# --- 07.2 the prediction of the sanity check ---------------------------------------------------

MEASURED = {"CAM": -0.62, "Grad-CAM (block6)": 0.12, "Guided Grad-CAM": 0.31, "guided backprop": 0.97}


def test_2(student_mode):
    assert L.check_2("guided backprop", measured=MEASURED).ok
    assert L.check_2("Guided Backprop", measured=MEASURED).ok
    rejected(L.check_2("CAM", measured=MEASURED), "classifier's weights", "0.97")
    rejected(L.check_2("Grad-CAM", measured=MEASURED), "gradients that flow through the classifier")
    rejected(L.check_2("Guided Grad-CAM", measured=MEASURED), "inherits")
    rejected(L.check_2("gbp", measured=MEASURED), "one of the names")
    rejected(L.check_2(3, measured=MEASURED), "one of the names")
    assert not L.check_2(..., measured=MEASURED).done


# --- 07.3 the dog's share on the right half ------------------------------------------------------

def test_3(student_mode):
    g = torch.Generator().manual_seed(0)
    dog = torch.rand(7, 14, generator=g) * torch.linspace(0.1, 1, 14)     # mostly on the right
    cat = torch.rand(7, 14, generator=g) * torch.linspace(1, 0.1, 14)
    left = float(dog[:, :7].sum() / dog.sum())
    ctx = dict(dog_map=dog, cat_map=cat, dog_left_share=left)
    answer = float(dog[:, dog.shape[1] // 2:].sum() / dog.sum())          # as the lesson's solution
    assert L.check_3(answer, **ctx).ok
    assert L.check_3(torch.tensor(answer), **ctx).ok
    rejected(L.check_3(left, **ctx), "left half")
    rejected(L.check_3(100 * answer, **ctx), "percentage")
    rejected(L.check_3(float(cat[:, 7:].sum() / cat.sum()), **ctx), "*cat's* map")
    rejected(L.check_3(float(dog[:, 8:].sum() / dog.sum()), **ctx), "off by one")
    rejected(L.check_3(dog[:, 7:], **ctx), "one number")
    assert not L.check_3(..., **ctx).done


# --- 07.4 the probability lost without the right half -------------------------------------------

def test_4(model, student_mode):
    collage = torch.cat([smooth_image(1, 64, 64), smooth_image(2, 64, 64)], dim=3)     # (1, 3, 64, 128)
    k = int(model(collage).argmax())
    ctx = dict(model=model, collage=collage, target=k)
    hidden = collage.clone()
    hidden[..., collage.shape[-1] // 2:] = 0.5                            # as the lesson's solution
    with torch.no_grad():
        p = model(torch.cat([collage, hidden])).softmax(-1)[:, k]
    assert L.check_4(float(1 - p[1] / p[0]), **ctx).ok
    rejected(L.check_4(float(p[1]), **ctx), "*left*")
    rejected(L.check_4(float(p[1] / p[0]), **ctx), "*kept*")
    rejected(L.check_4(float(p[0] - p[1]), **ctx), "absolute drop")
    black = collage.clone()
    black[..., 64:] = 0.0
    left = collage.clone()
    left[..., :64] = 0.5
    with torch.no_grad():
        pb, pl = (float(model(im).softmax(-1)[0, k]) for im in (black, left))
    rejected(L.check_4(1 - pb / float(p[0]), **ctx), "black")
    rejected(L.check_4(1 - pl / float(p[0]), **ctx), "left half")
    assert not L.check_4(..., **ctx).done


# --- 07.5 the trapezoid rule -----------------------------------------------------------------

def test_5(student_mode):
    f = torch.linspace(0, 1, 5)
    cur = FaithfulnessCurves(f, torch.tensor([0.9, 0.5, 0.3, 0.2, 0.1]), torch.tensor([0.1, 0.4, 0.6, 0.8, 0.85]))
    d, fr = cur.deletion.numpy(), cur.fractions.numpy()
    answer = float(sum((fr[i + 1] - fr[i]) * (d[i] + d[i + 1]) / 2 for i in range(len(fr) - 1)))
    assert L.check_5(answer, curve=cur).ok
    assert abs(answer - cur.deletion_auc) < 1e-6
    rejected(L.check_5(float(sum(0.25 * d[:-1])), curve=cur), "left-rectangle")
    rejected(L.check_5(float(d.mean()), curve=cur), "plain mean")
    rejected(L.check_5(cur.insertion_auc, curve=cur), "insertion")
    rejected(L.check_5(answer / d[0], curve=cur), "normalized")
    rejected(L.check_5("0.4", curve=cur), "one number")
    assert not L.check_5(..., curve=cur).done


def test_wrong_answer_is_an_error_outside_a_student_copy():
    assert not exercises.is_student_copy()
    with pytest.raises(ExerciseError, match="07.2"):
        L.check_2("CAM", measured=MEASURED)
    with pytest.raises(ExerciseError, match="not done"):
        L.check_5(..., curve=FaithfulnessCurves(torch.linspace(0, 1, 3), torch.ones(3), torch.ones(3)))


# --- 07.6 the Gini index by hand -----------------------------------------------------------------

def test_6(student_mode):
    from cnnviz_helpers.attribution.metrics import gini

    g = torch.Generator().manual_seed(3)
    a = torch.rand(7, 9, generator=g) ** 3                        # (7, 9) non-negative, a few large entries
    right = float(gini(a[None])[0])
    c, n = a.flatten().double().sort().values, a.numel()
    k = torch.arange(1, n + 1, dtype=torch.float64)
    assert abs(float(1 - 2 * ((c / c.sum()) * (n - k + 0.5) / n).sum()) - right) < 1e-6
    assert L.check_6(right, attribution=a).ok
    d = c.flip(0)
    rejected(L.check_6(float(1 - 2 * ((d / d.sum()) * (n - k + 0.5) / n).sum()), attribution=a), "descending")
    rejected(L.check_6(float(1 - 2 * ((c / c.sum()) * (n - k) / n).sum()), attribution=a), "1/2")
    rejected(L.check_6(1 - right, attribution=a), "complement")
    rejected(L.check_6(1.5, attribution=a), "[0, 1)")
    rejected(L.check_6("0.3", attribution=a), "one number")
    assert not L.check_6(..., attribution=a).done
    signed = a - 0.2                                               # signed: |a| first
    s = signed.flatten().double().sort().values
    rejected(L.check_6(float(1 - 2 * ((s / s.sum()) * (n - k + 0.5) / n).sum()), attribution=signed), "|a|")
    assert L.check_6(float(gini(signed[None])[0]), attribution=signed).ok
