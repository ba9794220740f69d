"""Lesson 09's exercise checks: the official answers pass, typical mistakes get their hint, stubs are "not done"."""
import math

import numpy as np
import pytest
import torch

from cnnviz_helpers import exercises, load_model
from cnnviz_helpers.exercises import ExerciseError, lesson09
from cnnviz_helpers.objectives import features
from support import hint

pytestmark = pytest.mark.usefixtures("student_mode")  # checks return Feedback

LAYERS = ["stem", "block1", "block2", "block3", "pool", "fc"]


@pytest.fixture(scope="module")
def setup():
    model = load_model()
    g = torch.Generator().manual_seed(0)
    smooth = lambda n: torch.nn.functional.interpolate(torch.rand(n, 3, 8, 8, generator=g), size=(64, 64),
                                                       mode="bilinear", align_corners=False)
    x0, recon, starts = smooth(1), smooth(2), smooth(2)         # stand-ins for photo, reconstructions, starts
    return model, x0, recon, starts


def test_1_prediction():
    ssim = np.array([0.9, 0.7, 0.4, 0.2, 0.06, 0.05])
    check = lambda p: lesson09.check_1(p, layers=LAYERS, mean_ssim=ssim)
    assert check("stem").ok
    assert "the measured winner is 'stem'" in hint(check("pool"))
    assert "depth buys invariance" in hint(check("block2"))
    assert "did you mean 'block1'" in hint(check("blok1"))
    assert "as a string" in hint(check(0))
    assert not check(...).done


def test_2_psnr(setup):
    _, x0, recon, _ = setup
    check = lambda a: lesson09.check_2(a, reconstruction=recon[0], original=x0[0], other_start=recon[1])
    a, b = recon[0].numpy().astype(np.float64), x0[0].numpy().astype(np.float64)
    mse = np.mean((a - b) ** 2)
    official = 10 * np.log10(1.0 / mse)
    assert check(official).ok and check(torch.tensor(official)).ok
    assert "255 as the peak" in hint(check(10 * np.log10(255**2 / mse)))
    assert "20·log10(1/MSE)" in hint(check(20 * np.log10(1 / mse)))
    assert "wrong sign" in hint(check(10 * np.log10(mse)))
    assert "natural logarithm" in hint(check(10 * np.log(1 / mse)))
    other = 10 * np.log10(1 / np.mean((recon[1].numpy().astype(np.float64) - b) ** 2))
    assert "from *noise*" in hint(check(other))
    assert "should be one number, got shape (3,)" in hint(check(10 * np.log10(1 / np.mean((a - b) ** 2, axis=(1, 2)))))
    assert not check(...).done


def test_3_feature_error_at_block3(setup):
    model, x0, recon, starts = setup
    target, pool_target = features(model, x0, "block3")["block3"], features(model, x0, "pool")["pool"]
    check = lambda a: lesson09.check_3(a, model=model, images=recon, layer="block3", target=target, starts=starts,
                                       pool_target=pool_target)
    err = lambda x, layer, t: (((features(model, x, layer)[layer] - t) ** 2).flatten(1).sum(1) / (t**2).sum())
    official = err(recon, "block3", target)
    assert check(official).ok and check(official.numpy()).ok
    assert "errors at 'pool'" in hint(check(err(recon, "pool", pool_target)))
    assert "not normalized" in hint(check(official * (target**2).sum()))
    assert "without the squares" in hint(check(official.sqrt()))
    assert "*starting* images" in hint(check(err(starts, "block3", target)))
    assert "expected shape (2,)" in hint(check(official.mean()))
    assert "expected a tensor" in hint(check(float(official[0])))
    assert not check(...).done


def test_4_rms_between(setup):
    _, x0, recon, _ = setup
    check = lambda a: lesson09.check_4(a, images=recon, original=x0[0])
    official = float(((recon[0] - recon[1]) ** 2).mean().sqrt())
    assert check(official).ok
    assert "take its square root" in hint(check(official**2))
    assert "Euclidean norm" in hint(check(float((recon[0] - recon[1]).norm())))
    assert "mean absolute difference" in hint(check(float((recon[0] - recon[1]).abs().mean())))
    assert "against the photo" in hint(check(float(((recon[0] - x0[0]) ** 2).mean().sqrt())))
    assert "one number" in hint(check("0.1"))
    assert not check(...).done and math.isfinite(official)


def test_wrong_answer_raises_outside_student_mode(setup):
    exercises.student_copy(False)
    with pytest.raises(ExerciseError, match="the measured winner"):
        lesson09.check_1("fc", layers=LAYERS, mean_ssim=np.linspace(1, 0, len(LAYERS)))
    with pytest.raises(ExerciseError, match="not done yet"):
        lesson09.check_4(..., images=setup[2], original=setup[1][0])


def test_1_accepts_a_portable_stage_name():
    model = load_model()
    ssim = np.array([0.9, 0.7, 0.4, 0.2, 0.06, 0.05])
    check = lambda p: lesson09.check_1(p, layers=LAYERS, mean_ssim=ssim, model=model)
    assert check("first_conv").ok                       # Lite0's first_conv is its stem
    assert "the measured winner is 'stem'" in hint(check("embedding"))   # embedding is pool
    assert "not one of the inverted layers" in hint(check("late"))       # block6: not inverted here


def test_3_names_the_penultimate_layer_it_was_given(setup):
    model, x0, recon, starts = setup
    target, pool_target = features(model, x0, "block3")["block3"], features(model, x0, "embedding")["embedding"]
    err = lambda x, layer, t: (((features(model, x, layer)[layer] - t) ** 2).flatten(1).sum(1) / (t**2).sum())
    check = lambda a: lesson09.check_3(a, model=model, images=recon, layer="block3", target=target, starts=starts,
                                       pool_target=pool_target, pool_layer="embedding")
    assert check(err(recon, "block3", target)).ok
    assert "errors at 'embedding'" in hint(check(err(recon, "embedding", pool_target)))


def test_5_top5_overlap():
    original = torch.arange(20.0).flip(0)[None]              # top-5: classes 0, 1, 2, 3, 4; smallest: 15 .. 19
    recon = torch.zeros(1, 20)
    recon[0, [0, 2, 1, 7, 8]] = torch.tensor([9.0, 8.0, 7.0, 6.0, 5.0])      # shares 0, 1, 2; same rank only at 1st
    recon[0, [15, 16, 10, 11, 12]] = -torch.arange(5.0, 0.0, -1.0)           # smallest: shares 15, 16 with original
    check = lambda a: lesson09.check_5(a, original=original, reconstruction=recon)
    assert check(3).ok and check(np.int64(3)).ok
    assert "same class; count the classes" in hint(check(1))
    assert "the 5 *smallest* logits" in hint(check(2))
    assert "looks like a fraction" in hint(check(0.6))
    assert "one integer from 0 to 5" in hint(check("3"))
    assert "between 0 and 5" in hint(check(7))
    assert "the intersection of the two top-5 sets" in hint(check(4))
    assert not check(...).done


def test_6_accentuation_distance(setup):
    model, x0, recon, starts = setup
    w = torch.tensor([0.8, 0.5, 0.3, 0.1]).view(4, 1, 1, 1)      # stand-ins for the accentuated batch (4 λ's):
    images = (1 - w) * x0 + w * torch.cat([recon, starts])      # the photo, changed less and less
    target = features(model, x0, "block3")["block3"]
    check = lambda a, index=2: lesson09.check_6(a, model=model, images=images, index=index, layer="block3",
                                                target=target, photo=x0)
    f = features(model, images, "block3")["block3"].double()
    t = target.double()
    sq = ((f - t) ** 2).flatten(1).sum(1)                        # the direct formula (the check expands it)
    official = float(sq[2] / (t**2).sum())
    assert check(official).ok and check(torch.tensor(official)).ok and check(np.float32(official)).ok
    assert check(float(sq[0] / (t**2).sum()), index=0).ok
    assert "not normalized" in hint(check(float(sq[2])))
    assert "without the squares" in hint(check(official ** 0.5))
    assert "own ||φ(x)||²" in hint(check(float(sq[2] / (f[2] ** 2).sum())))
    assert "not by their count" in hint(check(float(sq[2] / t.numel())))
    assert "distance in pixels" in hint(check(float(((images[2] - x0[0]) ** 2).sum() / (x0 ** 2).sum())))
    assert "batch entry 3" in hint(check(float(sq[3] / (t**2).sum())))
    assert ">= 0" in hint(check(-official))
    assert "should be one number" in hint(check((sq / (t**2).sum()).numpy()))
    assert "is not ||φ(x) - φ0||²" in hint(check(official * 1.5))
    assert not check(...).done
