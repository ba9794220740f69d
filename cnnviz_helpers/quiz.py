"""The student as the subject (lessons 01 and 08): the psychophysics task of Borowski et al. (ICLR 2021),
"Exemplary natural images explain CNN activations better than state-of-the-art feature visualization".

Each *trial* shows reference images of one unit (its top-activating photos, lesson 01, or its
feature visualizations, lesson 08) and two query photos; the student says which query activates
the unit more. The paper's participants: 82±4 % correct with 9 synthetic references, 92±2 % with 9
natural ones (65±5 % and 73±4 % with a single reference). ``Quiz`` is the ipywidgets version,
with the score kept per condition; ``observer_accuracy`` is a simple automatic observer (the
query more similar to the references in a lower layer wins), which shows the task is solvable.

    >>> trials = make_trials(acts, photos, {"natural": natural_refs, "synthetic": synthetic_refs},
    ...                      layer="late", k=9)
    >>> Quiz(trials)                                   # in a notebook: answer with the buttons
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch
from torch import nn

from ._checks import check_choice, check_int

__all__ = ["BOROWSKI_2021", "CONDITIONS", "Trial", "make_trials", "observer_accuracy", "Quiz"]

CONDITIONS = ("natural", "synthetic")

#: Borowski et al. 2021, Fig. 3 (mean ± s.e.m. of the participants' proportion correct, in %).
BOROWSKI_2021 = {("synthetic", 9): (82, 4), ("natural", 9): (92, 2), ("synthetic", 1): (65, 5), ("natural", 1): (73, 4)}


@dataclass(frozen=True)
class Trial:
    """One question: ``references`` ``(k,3,h,w)`` of ``unit`` (``condition``: natural or synthetic) and two
    ``queries`` ``(2,3,H,W)``; ``answer`` is the index (0 or 1) of the query with the larger activation."""

    layer: str
    unit: int
    condition: str
    references: torch.Tensor
    queries: torch.Tensor
    answer: int
    activations: tuple[float, float]

    @property
    def k(self) -> int:
        return int(self.references.shape[0])


def _float(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255 if images.dtype == torch.uint8 else images.float()


def make_trials(acts: torch.Tensor, photos: torch.Tensor, references: Mapping[str, Mapping[int, torch.Tensor]], *,
                layer: str, k: int = 9, skip: int | None = None, generator: torch.Generator | None = None
                ) -> list[Trial]:
    """One trial per unit and condition, in a random order.

    ``acts``: ``(N, C)`` each photo's activation of each unit (e.g. the maximum over positions, as
    lesson 01 ranks them); ``photos``: the ``(N,3,H,W)`` photos (uint8 or [0,1]); ``references``:
    condition -> {unit: ``(>=k,3,h,w)`` images}, the first ``k`` shown. The queries follow the paper:
    a strongly activating photo (ranked just below the ``skip`` top photos, default ``k``, which the
    natural references may show) and a weakly activating one (among the 10 % lowest), drawn from
    ``generator``, in random order.
    """
    k = check_int(k, "k", lo=1)
    skip = k if skip is None else check_int(skip, "skip", lo=0)
    if acts.dim() != 2 or acts.shape[0] != photos.shape[0]:
        raise ValueError(f"acts must be (N, C) for N = {photos.shape[0]} photos, got {tuple(acts.shape)}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    n = acts.shape[0]
    low = max(1, n // 10)
    if n < skip + 10 + low:
        raise ValueError(f"{n} photos are too few: the queries need at least {skip + 10 + low}")
    trials = []
    for condition, by_unit in references.items():
        check_choice(condition, CONDITIONS, "condition")
        for unit, refs in by_unit.items():
            if not 0 <= int(unit) < acts.shape[1]:
                raise IndexError(f"unit {unit} is out of range: the layer has units 0..{acts.shape[1] - 1}")
            if refs.shape[0] < k:
                raise ValueError(f"{condition} references of unit {unit}: {refs.shape[0]} images, fewer than k={k}")
            order = acts[:, unit].argsort(descending=True)
            hi = int(order[skip + int(torch.randint(0, 10, (1,), generator=g))])
            lo = int(order[n - 1 - int(torch.randint(0, low, (1,), generator=g))])
            pair = [hi, lo] if bool(torch.rand(1, generator=g) < 0.5) else [lo, hi]
            a = (float(acts[pair[0], unit]), float(acts[pair[1], unit]))
            trials.append(Trial(layer, int(unit), condition, _float(refs[:k]), _float(photos[pair]),
                                int(a[1] > a[0]), a))
    perm = torch.randperm(len(trials), generator=g).tolist()
    return [trials[i] for i in perm]


POOLS = ("mean", "max")


def observer_accuracy(model: nn.Module, trials: Sequence[Trial], layer: str, *, pool: str = "mean") -> float:
    """The fraction of trials an automatic observer gets right: it picks the query most like the references
    in ``layer``: the cosine similarity of the query's features to the mean of the references' features
    (each averaged over positions), with the query's features averaged over positions (``pool="mean"``)
    or taken at its best-matching position (``pool="max"``: does the photo contain a patch like the
    references? A unit ranked by its maximum fires on a part of the photo)."""
    from .hooks import capture

    pool = check_choice(pool, POOLS, "pool")
    if not trials:
        raise ValueError("observer_accuracy needs at least one trial")
    right = 0
    dev = next(model.parameters()).device
    with capture(model, [layer], stop=True) as rec, torch.no_grad():
        for t in trials:
            refs = nn.functional.interpolate(t.references, size=tuple(t.queries.shape[-2:]), mode="bilinear", align_corners=False)
            rec.run(torch.cat([refs, t.queries]).to(dev))
            f = rec.activations[layer]
            if f.dim() != 4:                                             # (N, C): no positions to pool over
                f = f.flatten(1)[:, :, None, None]
            centre = f[: t.k].mean((0, 2, 3))                            # (C,)
            q = f[t.k:] if pool == "max" else f[t.k:].mean((2, 3), keepdim=True)
            sim = nn.functional.cosine_similarity(q, centre[None, :, None, None], dim=1).flatten(1).amax(1)   # (2,)
            right += int(int(sim.argmax()) == t.answer)
    return right / len(trials)


@dataclass
class _Score:
    right: int = 0
    total: int = 0


@dataclass
class Quiz:
    """The task as ipywidgets: the references, two queries, two buttons; the score per condition and the
    paper's figure beside it. ``answer(i)`` is what a button does (also for scripted use and tests)."""

    trials: Sequence[Trial]
    scores: dict = field(default_factory=dict)
    position: int = 0

    def __post_init__(self) -> None:
        if not self.trials:
            raise ValueError("a quiz needs at least one trial")
        self.trials = list(self.trials)
        self._box = None

    @property
    def done(self) -> bool:
        return self.position >= len(self.trials)

    def answer(self, choice: int) -> bool:
        """Record ``choice`` (0 or 1) for the current trial; True when it was right. Moves to the next."""
        check_choice(choice, (0, 1), "choice")
        if self.done:
            raise RuntimeError(f"the quiz is over: all {len(self.trials)} trials are answered")
        t = self.trials[self.position]
        s = self.scores.setdefault((t.condition, t.k), _Score())
        right = choice == t.answer
        s.right += int(right)
        s.total += 1
        self.position += 1
        self._draw(feedback=f"{'right' if right else 'wrong'}: query {'AB'[t.answer]} activates unit {t.unit} "
                            f"more ({max(t.activations):.2f} vs {min(t.activations):.2f})")
        return right

    def accuracy(self, condition: str, k: int) -> float | None:
        s = self.scores.get((condition, k))
        return s.right / s.total if s and s.total else None

    def summary(self) -> str:
        """One line per condition answered: the student's proportion correct and the paper's."""
        lines = []
        for (cond, k), s in sorted(self.scores.items()):
            paper = BOROWSKI_2021.get((cond, k))
            ref = f"; Borowski et al.: {paper[0]}±{paper[1]} %" if paper else ""
            lines.append(f"{cond}, {k} reference{'s' if k > 1 else ''}: {s.right}/{s.total} "
                         f"= {100 * s.right / s.total:.0f} %{ref}")
        return "\n".join(lines) if lines else "no answers yet"

    # -- display (ipywidgets)
    def _draw(self, feedback: str = "") -> None:
        if self._box is None:
            return
        from .widgets import _w, to_png

        w = _w()
        parts = []
        if feedback:
            parts.append(w.HTML(f"<b>{feedback}</b>"))
        if self.done:
            parts.append(w.HTML("<pre>" + self.summary() + "</pre>"))
        else:
            t = self.trials[self.position]
            refs = [w.Image(value=to_png(r, size=72), format="png") for r in t.references]
            parts.append(w.HTML(f"trial {self.position + 1}/{len(self.trials)}: {t.condition} references of "
                                f"{t.layer} unit {t.unit}"))
            parts.append(w.HBox(refs, layout=w.Layout(flex_flow="row wrap")))
            buttons = []
            for i in (0, 1):
                b = w.Button(description=f"{'AB'[i]} activates more")
                b.on_click(lambda _b, i=i: self.answer(i))
                buttons.append(w.VBox([w.Image(value=to_png(t.queries[i], size=160), format="png"), b]))
            parts.append(w.HBox(buttons))
            parts.append(w.HTML("<pre>" + self.summary() + "</pre>"))
        self._box.children = parts

    def _ipython_display_(self) -> None:
        from IPython.display import display

        from .widgets import _w

        self._box = _w().VBox()
        self._draw()
        display(self._box)
