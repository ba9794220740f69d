"""The Borowski et al. (2021) task as a quiz (``cnnviz_helpers.quiz``, issue 15): which query activates the
unit more? Trials are built by the paper's rule, scored per condition next to the paper's figures, and a
simple automatic observer (similarity in a lower layer) is checked by hand on a tiny model."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnviz_helpers.quiz import BOROWSKI_2021, Quiz, Trial, make_trials, observer_accuracy


def _data(n=100, units=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    acts = torch.rand(n, units, generator=g)
    photos = (torch.rand(n, 3, 16, 16, generator=g) * 255).to(torch.uint8)
    refs = {u: torch.rand(9, 3, 8, 8, generator=g) for u in range(units)}
    return acts, photos, refs


def test_trials_follow_the_papers_rule():
    acts, photos, refs = _data()
    trials = make_trials(acts, photos, {"natural": refs, "synthetic": refs}, layer="late", k=9)
    assert len(trials) == 6 and {(t.condition, t.unit) for t in trials} == {(c, u) for c in ("natural", "synthetic")
                                                                          for u in range(3)}
    for t in trials:
        order = acts[:, t.unit].argsort(descending=True).tolist()
        rank = [order.index(int((photos.float() / 255 - q).abs().flatten(1).sum(1).argmin())) for q in t.queries]
        hi, lo = (rank[t.answer], rank[1 - t.answer])
        assert 9 <= hi < 19 and lo >= 90, (hi, lo)                    # just below the top 9; among the lowest 10 %
        assert t.activations[t.answer] > t.activations[1 - t.answer]
        assert t.references.shape == (9, 3, 8, 8) and t.queries.dtype == torch.float32 and t.k == 9
    one = make_trials(acts, photos, {"natural": refs}, layer="late", k=1)
    assert {t.k for t in one} == {1}
    answers = [t.answer for s in range(5) for t in make_trials(acts, photos, {"natural": refs}, layer="l",
                                                                generator=torch.Generator().manual_seed(s))]
    assert 0 < sum(answers) < len(answers)   # the right query is sometimes A, sometimes B


def test_bad_trials_are_refused():
    acts, photos, refs = _data()
    with pytest.raises(ValueError, match="unknown condition 'dreamed'"):
        make_trials(acts, photos, {"dreamed": refs}, layer="l")
    with pytest.raises(IndexError, match="units 0..2"):
        make_trials(acts, photos, {"natural": {5: refs[0]}}, layer="l")
    with pytest.raises(ValueError, match="fewer than k=9"):
        make_trials(acts, photos, {"natural": {0: refs[0][:3]}}, layer="l")
    with pytest.raises(ValueError, match="too few"):
        make_trials(acts[:20], photos[:20], {"natural": refs}, layer="l")


def _trial(cond, k, answer):
    return Trial("l", 0, cond, torch.zeros(k, 3, 4, 4), torch.zeros(2, 3, 4, 4), answer, (1.0, 0.0)[::1 - 2 * answer])


def test_the_quiz_keeps_score_per_condition_beside_the_paper():
    quiz = Quiz([_trial("natural", 9, 0), _trial("natural", 9, 1), _trial("synthetic", 9, 1), _trial("synthetic", 1, 0)])
    assert quiz.answer(0) is True and quiz.answer(0) is False and quiz.answer(1) is True and quiz.answer(0) is True
    assert quiz.done and quiz.accuracy("natural", 9) == 0.5 and quiz.accuracy("synthetic", 9) == 1.0
    text = quiz.summary()
    assert "natural, 9 references: 1/2 = 50 %; Borowski et al.: 92±2 %" in text
    assert "synthetic, 1 reference: 1/1 = 100 %; Borowski et al.: 65±5 %" in text
    with pytest.raises(RuntimeError, match="over"):
        quiz.answer(0)
    with pytest.raises(ValueError, match="choose one of"):
        Quiz([_trial("natural", 9, 0)]).answer(2)
    assert BOROWSKI_2021[("natural", 9)] == (92, 2)


def test_the_buttons_answer():
    import ipywidgets

    quiz = Quiz([_trial("natural", 9, 1), _trial("natural", 9, 1)])
    quiz._box = ipywidgets.VBox()
    quiz._draw()
    buttons = [w for w in quiz._box.children[-2].children for w in w.children if isinstance(w, ipywidgets.Button)]
    assert [b.description for b in buttons] == ["A activates more", "B activates more"]
    buttons[1].click()
    assert quiz.position == 1 and quiz.accuracy("natural", 9) == 1.0
    assert "right" in quiz._box.children[0].value


class Colour(nn.Module):
    """A unit per colour channel: the layer 'c' is the image itself (a 1x1 identity convolution)."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 3, 1, bias=False)
        with torch.no_grad():
            self.c.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(self.c(x).mean((2, 3)))


def test_the_observer_picks_the_query_most_like_the_references():
    red = torch.zeros(3, 8, 8)
    red[0] = 1
    green = torch.zeros(3, 8, 8)
    green[1] = 1
    mixed = torch.zeros(3, 8, 8)
    mixed[0], mixed[2] = 0.6, 0.8
    refs = torch.stack([red, 0.9 * red + 0.1 * mixed])
    right = Trial("c", 0, "natural", refs, torch.stack([green, red]), 1, (0.0, 1.0))
    wrong = Trial("c", 0, "natural", refs, torch.stack([mixed, red]), 0, (1.0, 0.5))   # the unlike one "won"
    model = Colour().eval()
    assert observer_accuracy(model, [right], "c") == 1.0
    assert observer_accuracy(model, [right, wrong], "c") == 0.5
    assert observer_accuracy(model, [right, wrong], "c", pool="max") == 0.5


def test_the_max_observer_finds_a_patch_that_the_mean_misses():
    red = torch.zeros(3, 8, 8)
    red[0] = 1
    spot = torch.zeros(3, 8, 8)                                          # green photo with a red corner
    spot[1] = 1
    spot[:, :2, :2] = 0
    spot[0, :2, :2] = 1
    tint = torch.zeros(3, 8, 8)                                          # one even colour, closer on average
    tint[0], tint[1] = 0.3, 0.7
    t = Trial("c", 0, "natural", red[None], torch.stack([tint, spot]), 1, (0.0, 1.0))
    model = Colour().eval()
    # by hand: mean pooling: spot (1/16 red, 15/16 green) has cosine 0.066 to red, tint 0.39: tint wins (wrong);
    # max pooling: spot's red corner has cosine 1, tint 0.39 everywhere: spot wins (right)
    assert observer_accuracy(model, [t], "c", pool="mean") == 0.0
    assert observer_accuracy(model, [t], "c", pool="max") == 1.0
    with pytest.raises(ValueError, match=r"pool"):
        observer_accuracy(model, [t], "c", pool="median")
