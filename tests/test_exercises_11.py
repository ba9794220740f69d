"""Lesson 11's exercise checks: the official answers pass, typical mistakes get their hint, stubs are 'not done'.

No model: random feature maps and images stand in for the lesson's (the checks only read tensors).
"""
import pytest
import torch

from cnnviz_helpers import exercises
from cnnviz_helpers import objectives as obj
from cnnviz_helpers.exercises import ExerciseError, lesson11
from cnnviz_helpers.objectives import Context, gram_matrix
from support import rejected

LAYERS = ["a", "b"]


def feats(seed, shape_a=(1, 4, 6, 5), shape_b=(1, 6, 3, 3)):
    g = torch.Generator().manual_seed(seed)
    return {"a": torch.randn(shape_a, generator=g).relu(), "b": torch.randn(shape_b, generator=g)}


# 11.1: the prediction against the measured content losses

def test_1_prediction(student_mode):
    ratios, content_end = [0.01, 0.1, 1, 1000], torch.tensor([0.1, 0.3, 0.9, 2.5])
    assert lesson11.check_1("rises", ratios=ratios, content_end=content_end).ok
    rejected(lesson11.check_1("falls", ratios=ratios, content_end=content_end), "measured: the content loss rises")
    rejected(lesson11.check_1("up", ratios=ratios, content_end=content_end), "'rises' or 'falls'")
    assert not lesson11.check_1(..., ratios=ratios, content_end=content_end).done


# 11.2: shuffling positions

@pytest.fixture
def maps():
    f = feats(0)["a"]
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(1))
    return f, perm


def test_2_official(student_mode, maps):
    f2, perm = maps
    shuffled = f2.flatten(2)[:, :, perm].reshape(f2.shape)
    gram_change = float((gram_matrix(shuffled) - gram_matrix(f2)).abs().max())
    content_change = float(0.5 * ((shuffled - f2) ** 2).sum())
    assert lesson11.check_2(shuffled, gram_change, content_change, features=f2, perm=perm).ok
    # the mistakes, on top of the right shuffle
    rejected(lesson11.check_2(shuffled, gram_change, 2 * content_change, features=f2, perm=perm), "factor 1/2")
    rejected(lesson11.check_2(shuffled, gram_change, float(((shuffled - f2) ** 2).mean()), features=f2, perm=perm),
          "mean of the squared")
    rejected(lesson11.check_2(shuffled.flatten(2), gram_change, content_change, features=f2, perm=perm),
          "expected (1, 4, 6, 5)")
    assert not lesson11.check_2(..., ..., ..., features=f2, perm=perm).done


def test_2_wrong_shuffles(student_mode, maps):
    f2, perm = maps
    rejected(lesson11.check_2(f2.clone(), 0.0, 0.0, features=f2, perm=perm), "equals the original")
    each = torch.stack([f2[0, c].flatten()[torch.randperm(30, generator=torch.Generator().manual_seed(c))]
                        for c in range(f2.shape[1])])[None].reshape(f2.shape)    # a different shuffle per channel
    rejected(lesson11.check_2(each, 0.0, 1.0, features=f2, perm=perm), "same `perm` to every channel")
    mixed = f2.flatten()[torch.randperm(f2.numel(), generator=torch.Generator().manual_seed(2))].reshape(f2.shape)
    rejected(lesson11.check_2(mixed, 0.0, 1.0, features=f2, perm=perm), "between channels")
    shuffled = f2.flatten(2)[:, :, perm].reshape(f2.shape)
    rejected(lesson11.check_2(shuffled, 0.5, 1.0, features=f2, perm=perm), "cannot depend on their order")


# 11.3: the closest painting

def style_losses(photo_feats, painting_feats):
    """As the lesson does it: the course's obj.style against each painting's Grams (mean-normalized)."""
    x = torch.zeros(1, 3, 8, 8)                                   # only its batch size is read
    ctx = Context(image=x, input=x, activations=photo_feats)
    return {n: float(-obj.style({l: gram_matrix(f) for l, f in pf.items()})(ctx)[0])
            for n, pf in painting_feats.items()}


def test_3(student_mode):
    photo = feats(0)
    paint = {"p": feats(1, (1, 4, 8, 7), (1, 6, 4, 4)), "q": feats(2), "r": feats(3, (1, 4, 5, 5), (1, 6, 2, 3))}
    paint["q"] = {l: 0.9 * f + 0.1 * feats(4)[l] for l, f in photo.items()}   # q: almost the photo
    losses = style_losses(photo, paint)
    closest = min(losses, key=losses.get)
    assert closest == "q"
    assert lesson11.check_3(losses, closest, photo_feats=photo, painting_feats=paint).ok
    farthest = max(losses, key=losses.get)
    rejected(lesson11.check_3(losses, farthest, photo_feats=photo, painting_feats=paint), "*largest* style loss")
    rejected(lesson11.check_3({n: -v for n, v in losses.items()}, closest, photo_feats=photo, painting_feats=paint),
          "negative")
    rejected(lesson11.check_3(losses, "The Starry Night", photo_feats=photo, painting_feats=paint), "not a key")
    rejected(lesson11.check_3({n: 2 * v for n, v in losses.items()}, closest, photo_feats=photo,
                           painting_feats=paint), "paper's formula")
    assert not lesson11.check_3(..., ..., photo_feats=photo, painting_feats=paint).done


# 11.4: the pixel-level Gram

def test_4(student_mode):
    g = torch.Generator().manual_seed(0)
    paintings = {n: torch.rand(1, 3, 20, 24, generator=g) * torch.tensor(w).view(1, 3, 1, 1)
                 for n, w in {"reddish": [1.0, 0.3, 0.4], "blueish": [0.4, 0.3, 0.9], "grey": [0.5, 0.5, 0.5]}.items()}
    pixel_grams = {n: gram_matrix(p)[0] for n, p in paintings.items()}
    bluest = max(pixel_grams, key=lambda n: float(pixel_grams[n][2, 2]))
    assert bluest == "blueish"
    assert lesson11.check_4(pixel_grams, bluest, paintings=paintings).ok
    rejected(lesson11.check_4(pixel_grams, "reddish", paintings=paintings), "RGB order")
    rejected(lesson11.check_4({n: gram_matrix(p) for n, p in paintings.items()}, bluest, paintings=paintings),
          "expected (3, 3)")
    rejected(lesson11.check_4({n: gram_matrix(p)[0] * 480 for n, p in paintings.items()}, bluest,
                           paintings=paintings), "mean (divide by M")
    assert not lesson11.check_4(..., ..., paintings=paintings).done


def test_wrong_answer_raises_in_a_shipped_lesson():
    exercises.student_copy(False)
    with pytest.raises(ExerciseError, match="11.1"):
        lesson11.check_1("falls", ratios=[0.01, 1000], content_end=torch.tensor([0.1, 2.0]))


def test_1_on_untrained_weights_says_it_cannot_test_the_prediction(student_mode, capsys):
    ratios, content_end = [0.01, 1000], torch.tensor([0.2, 0.1])       # untrained: the content loss fell
    assert lesson11.check_1("rises", ratios=ratios, content_end=content_end, trained=False).ok
    assert "cannot test your prediction" in capsys.readouterr().out
    rejected(lesson11.check_1("up", ratios=ratios, content_end=content_end, trained=False), "'rises' or 'falls'")
