"""Checks for the exercises of lesson 01 (maximally activating patches, ``notebooks/01_max_activating_patches.md``)."""
from __future__ import annotations

import numbers

import numpy as np
import torch

from . import Wrong, exercise

__all__ = ["check_1", "check_2", "check_3", "check_4", "check_5", "check_6", "check_7", "check_8"]


def _ints(answer, n: int, what: str) -> tuple[int, ...]:
    """``answer`` as a tuple of ``n`` ints, or a hint saying what was expected."""
    if not isinstance(answer, (tuple, list)) or len(answer) != n:
        raise Wrong(f"expected {what}, got {answer!r}")
    if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in answer):
        raise Wrong(f"expected {what} as Python ints (use int(...)), got {tuple(type(v).__name__ for v in answer)}")
    return tuple(int(v) for v in answer)


@exercise("01.1", "predict which layer's units have more dogs among their top-9 photos")
def check_1(prediction, *, measured: str, choices=("block2", "head")) -> None:
    """``measured``: the layer of ``choices`` whose units had more dog photos among their top-9 (the lesson's count)."""
    if not isinstance(prediction, str) or prediction not in choices:
        raise Wrong(f"answer one of {', '.join(repr(c) for c in choices)}, got {prediction!r}")
    if prediction != measured:
        if measured == choices[-1]:
            raise Wrong(f"{measured} wins: an early unit sees a few pixels (a colour, an edge) that occur in any "
                        "photo, so its top photos are a random draw of classes; a deep unit sees most of the "
                        "photo and has learned features of what ImageNet is full of, such as dogs")
        raise Wrong(f"{measured} wins on these photos: with few photos the counts are small and noisy")


@exercise("01.2", "(r, j, a) of block3 by the recursion")
def check_2(answer, *, rf, support, unit, size, layer: str = "block3", exact: bool = True) -> None:
    """``rf``: the traced receptive field of ``layer`` (EfficientNet-Lite0's ``block3``, or another model's
    ``early_mid`` layer, named as that model names it); ``support``: (top, left, bottom, right) of the nonzero
    input gradient of its unit ``unit`` = (i, j) on an image of ``size`` = (H, W): no formula involved.
    ``exact``: the gradient fills the whole box (no max-pooling); else it only has to lie inside it."""
    r, j, a = _ints(answer, 3, "the tuple (r, j, a) that recursion(chain_3) returns: three ints")
    true_r, true_j, true_a = rf.size[0], rf.stride[0], rf.start[0]
    lite0 = layer == "block3"                    # the hints that name Lite0's layers
    if j != true_j:
        if j * 2 == true_j:
            raise Wrong("the jump j should double at block3.1, which has stride 2" if lite0 else
                        f"the jump j is half what it should be: a stride-2 layer up to {layer} is missing")
        raise Wrong("j is the product of all the strides up to block3 (stem 2, block2.1 2, block3.1 2)" if lite0 else
                    f"j is the product of all the strides up to {layer}")
    if r != true_r:
        if r > true_r:
            raise Wrong("r is too large: a layer adds (k - 1) times the jump *before* it, j_{l-1}, not after it")
        raise Wrong("r is too small: both block3 convolutions are 5x5, each adds (5 - 1) * j_{l-1}" if lite0 else
                    f"r is too small: every layer up to {layer} adds (k - 1) * j_{{l-1}}; is one missing?")
    if a != true_a:
        if a == -true_a:
            raise Wrong("a has the wrong sign: top padding moves the first row a unit sees above the image")
        raise Wrong("a is off: a_l = a_{l-1} - p_l j_{l-1}, with the *top* padding p "
                    + ("(1 for block3.1, 2 for block3.2), " if lite0 else "of each layer, ")
                    + "multiplied by the jump before the layer")
    (i, jj), (H, W) = unit, size
    box = (max(a + i * j, 0), max(a + jj * j, 0), min(a + i * j + r - 1, H - 1), min(a + jj * j + r - 1, W - 1))
    t, l, b, rr = support
    if exact and box != tuple(support):
        raise Wrong(f"your (r, j, a) predict the box {box} for unit {unit}, but its gradient is nonzero on {support}")
    if not exact and not (box[0] <= t and box[1] <= l and b <= box[2] and rr <= box[3]):
        raise Wrong(f"your (r, j, a) predict the box {box} for unit {unit}, but its gradient is nonzero on "
                    f"{support}, outside it")


@exercise("01.3", "the best photo of block4 unit 42 and the pixel at its receptive field's centre")
def check_3(answer, *, model, photos, maxima, categories, unit=42, layer="block4") -> None:
    """``maxima``: (N, C) every photo's maximum for every unit (a full pass, not the streaming top-9);
    ``photos``: has ``.image(p)`` and ``.classes``. The check reruns the model on the best photo.
    Ties are right answers: photos whose maximum equals the best (a unit that never fires, common in an
    untrained network, ties every photo at 0), and positions of a map where its maximum is reached twice."""
    from .. import capture, receptive_field     # the public API the lesson uses

    if not (isinstance(answer, tuple) and len(answer) == 2):
        raise Wrong("answer_3 should be a pair (class name, (row, column))")
    name, centre = answer
    order = maxima[:, unit].argsort(descending=True)
    top = float(maxima[order[0], unit])
    tied = [int(p) for p in order if float(maxima[p, unit]) >= top - 1e-5 * max(1.0, abs(top))]   # the best photos
    if not isinstance(name, str):
        raise Wrong(f"give the class *name* as a string (categories[...]), got {type(name).__name__}")
    names = [categories[photos.classes[p]] for p in tied]
    if name not in names:
        best = tied[0]
        if name == categories[best]:
            raise Wrong("you looked the photo's index up in categories: photos.classes[p] is its class index")
        if len(order) > 1 and name == categories[photos.classes[int(order[1])]]:
            raise Wrong("that is the class of the unit's *second* best photo: rank 0 is the best")
        raise Wrong(f"the photo with the largest activation of {layer} unit {unit} is not of class {name!r}")
    best = tied[names.index(name)]
    row, col = _ints(centre, 2, "the centre as (row, column) pixel coordinates: two ints")
    with capture(model, [layer]) as rec, torch.no_grad():
        model(photos.image(best).to(next(model.parameters()).device))
    a = rec[layer][0, unit]                                                       # (h, w)
    rf = receptive_field(model, layer)
    half = ((rf.size[0] - 1) // 2, (rf.size[1] - 1) // 2)
    peak = float(a.max())
    centres = [(rf.start[0] + int(i) * rf.stride[0] + half[0], rf.start[1] + int(j) * rf.stride[1] + half[1])
               for i, j in (a >= peak - 1e-5 * max(1.0, abs(peak))).nonzero().tolist()]  # every position of the max
    if (row, col) in centres:
        return
    i, j = divmod(int(a.argmax()), a.shape[1])
    want = (rf.start[0] + i * rf.stride[0] + half[0], rf.start[1] + j * rf.stride[1] + half[1])
    if (row, col) == (i, j):
        raise Wrong(f"({i}, {j}) is the position on the {a.shape[0]}x{a.shape[1]} map: convert it to input "
                    "pixels with the receptive field, start + position * stride + (size - 1) / 2")
    if (row, col) == (want[1], want[0]):
        raise Wrong("row and column are swapped: give (row, column)")
    if (row, col) == (want[0] - half[0], want[1] - half[1]):
        raise Wrong("that is the top-left corner of the receptive field: add (size - 1) / 2 for its centre")
    if (row, col) == (want[0] - rf.start[0], want[1] - rf.start[1]):
        raise Wrong(f"you left out the start a = {rf.start[0]}: the first receptive field begins above and left "
                    "of the photo (padding)")
    raise Wrong(f"({row}, {col}) is not the centre of the receptive field of the unit's maximum")


def _distinct(images: np.ndarray, groups: np.ndarray) -> float:
    """Mean over units of the number of distinct groups among each unit's top photos ``images`` (C, k)."""
    return float(np.mean([np.unique(groups[row]).size for row in images]))


@exercise("01.4", "the mean number of distinct coarse groups among a unit's top-9, per layer")
def check_4(answer, *, images: dict, classes) -> None:
    """``images``: layer -> (C, k) photo indices of every unit's top-k; ``classes``: class index of every photo."""
    if not isinstance(answer, dict):
        raise Wrong(f"answer_4 should be a dict {{layer name: mean number of groups}}, got {type(answer).__name__}")
    if set(answer) != set(images):
        raise Wrong(f"answer_4 should have one entry per layer of LAYERS: {', '.join(images)}; "
                    f"got {', '.join(map(str, answer))}")
    classes = np.asarray(classes)
    for name, idx in images.items():
        idx = np.asarray(idx)
        value = answer[name]
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise Wrong(f"answer_4[{name!r}] should be a number (a float), got {type(value).__name__}")
        true = _distinct(idx, classes // 100)
        if abs(value - true) < 1e-6:
            continue
        if abs(value - _distinct(idx, classes)) < 1e-6:
            raise Wrong("you counted distinct *classes* (always the same here: one photo per class); "
                        "count distinct groups, class index // 100")
        if abs(value - _distinct(idx, np.arange(len(classes)) // 100)) < 1e-6:
            raise Wrong("you grouped the photo indices: a photo's group is its *class* index // 100, "
                        "photos.classes[p] // 100")
        if not 1 <= value <= idx.shape[1]:
            raise Wrong(f"answer_4[{name!r}] = {value:.3g}: a number of distinct groups among {idx.shape[1]} "
                        f"photos lies between 1 and {idx.shape[1]}")
        if float(value).is_integer():
            raise Wrong(f"answer_4[{name!r}] is a whole number: give the mean over the units, not one unit's count "
                        "nor a rounded value")
        raise Wrong(f"answer_4[{name!r}] is not the mean over {name}'s units of the number of distinct groups")


def _purity(images: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(U,) share of each row of ``images`` (U, k) whose photos' group is the row's most common one."""
    return np.array([np.unique(groups[row], return_counts=True)[1].max() / images.shape[1] for row in images])


@exercise("01.5", "the purity of every top-9: the share of its most common coarse group")
def check_5(answer, *, images, classes, ranges: dict) -> None:
    """``images``: (U, k) photo indices of each unit's or direction's top-k; ``classes``: class index of every
    photo; ``ranges``: group name -> list of inclusive (first, last) class-index ranges covering 0..999."""
    group = np.full(1 + max(hi for rs in ranges.values() for _, hi in rs), -1)
    for g, rs in enumerate(ranges.values()):
        for lo, hi in rs:
            group[lo:hi + 1] = g
    images, classes = np.asarray(images), np.asarray(classes)
    if isinstance(answer, (numbers.Real, np.floating)) or (torch.is_tensor(answer) and answer.ndim == 0):
        raise Wrong("answer_5 should hold one purity per row of the table (a (U,) tensor), not one number: "
                    "do not average over the rows")
    try:
        got = np.asarray(answer.detach().cpu() if torch.is_tensor(answer) else answer, dtype=np.float64)
    except (TypeError, ValueError):
        raise Wrong(f"answer_5 should be a (U,) tensor of numbers, got {type(answer).__name__}") from None
    if got.shape != (len(images),):
        raise Wrong(f"answer_5 should have shape ({len(images)},), one purity per row of the table; "
                    f"got {tuple(got.shape)}")
    true = _purity(images, group[classes])
    if np.allclose(got, true, atol=1e-6):
        return
    if np.allclose(got, true * images.shape[1], atol=1e-6):
        raise Wrong(f"those are counts of photos: divide by the {images.shape[1]} photos of a row for a share")
    if np.allclose(got, _purity(images, group[np.arange(len(classes)) % len(group)]), atol=1e-6):
        raise Wrong("you grouped the photo indices: a photo's group is that of its *class*, photo_group[p]")
    if np.allclose(got, _purity(images, classes // 100), atol=1e-6):
        raise Wrong("that is the grouping of exercise 4 (class index // 100): use photo_group, the groups of "
                    "GROUP_RANGES")
    if np.allclose(got, 1 / images.shape[1], atol=1e-6) or np.allclose(got, 1.0, atol=1e-6):
        raise Wrong("every row has the same purity: did you count distinct classes or photos instead of the "
                    "photos of the most common *group*?")
    raise Wrong("answer_5 is not, row by row, the share of the row's photos in its most common coarse group")


def _array(answer, what: str) -> np.ndarray:
    try:
        return np.asarray(answer.detach().cpu().double() if torch.is_tensor(answer) else answer, dtype=np.float64)
    except (TypeError, ValueError):
        raise Wrong(f"{what} should be a tensor of numbers, got {type(answer).__name__}") from None


@exercise("01.6", "Zeiler & Fergus's own projection: the deconvnet rule, one unit at its maximum")
def check_6(answer, *, model, x, layer, unit, position) -> None:
    """``x``: (1,3,H,W) the photo; ``position``: (row, column) of the unit's maximum in ``layer``'s map."""
    from ..attribution import Channel, Neuron, gradient

    got = _array(answer, "proj_6")
    if got.shape not in (tuple(x.shape), tuple(x.shape[1:])):
        raise Wrong(f"proj_6 should have the photo's shape {tuple(x.shape)} (a projection onto its pixels); "
                    f"got {tuple(got.shape)}")
    got = got.reshape(tuple(x.shape))
    ref = lambda target, rule: gradient(model, x, target, rule=rule).detach().cpu().double().numpy()
    want = ref(Neuron(layer, unit, tuple(position)), "deconvnet")
    close = lambda a, b: np.allclose(a, b, rtol=1e-3, atol=1e-5 * max(float(np.abs(b).max()), 1e-12))
    if close(got, want):
        return
    if close(got, ref(Neuron(layer, unit, tuple(position)), "guided")):
        raise Wrong("that is guided backpropagation (the figure's rule): Zeiler & Fergus's deconvnet passes "
                    "positive gradients through every ReLU whatever the forward pass did, rule='deconvnet'")
    if close(got, ref(Neuron(layer, unit, tuple(position)), "gradient")):
        raise Wrong("that is the plain gradient: the deconvnet rule keeps only the positive part of the signal "
                    "at every ReLU on the way back, rule='deconvnet' (attribution.deconvnet)")
    if close(got, ref(Channel(layer, unit), "deconvnet")):
        raise Wrong("that projects the whole map of the unit (its mean); Zeiler & Fergus project the one "
                    f"position of the maximum: Neuron({layer!r}, {unit}, {tuple(position)})")
    if close(got, -want):
        raise Wrong("your projection has the opposite sign: send back the unit's activation, not its negative")
    raise Wrong(f"proj_6 is not the deconvnet projection of {layer} unit {unit} at {tuple(position)} onto the photo")


@exercise("01.7", "the concept score z_c of every unit: contrast of the concept's photos with the rest")
def check_7(answer, *, m, inside) -> None:
    """``m``: (N, C) each photo's maximum of each unit; ``inside``: (N,) bool, the concept's photos."""
    m = _array(m, "m")
    inside = np.asarray(inside.cpu() if torch.is_tensor(inside) else inside, dtype=bool)
    if torch.is_tensor(answer) and answer.ndim == 0 or isinstance(answer, (numbers.Real, np.floating)):
        raise Wrong("z_7 should hold one score per unit (a (C,) tensor), not one number")
    got = _array(answer, "z_7")
    if got.shape != (m.shape[1],):
        raise Wrong(f"z_7 should have shape ({m.shape[1]},), one score per unit (columns of m); got {got.shape}")
    mi, mo, ma = m[inside].mean(0), m[~inside].mean(0), m.mean(0)
    sd = lambda ddof: np.maximum(m.std(0, ddof=ddof), 1e-6)
    close = lambda v: np.allclose(got, v, rtol=1e-4, atol=1e-5)
    if close((mi - mo) / sd(0)) or close((mi - mo) / sd(1)):
        return
    if close(mi) or close(mi / sd(0)) or close(mi / sd(1)):
        raise Wrong("that is the mean on the concept's photos alone: a unit strong on every photo wins it; "
                    "subtract the mean on the other photos")
    if close(mi - mo):
        raise Wrong("right contrast, not yet comparable across units: divide by each unit's standard deviation "
                    "over all photos")
    if close((mi - ma) / sd(0)) or close((mi - ma) / sd(1)):
        raise Wrong("you subtracted the mean over *all* photos; the score contrasts with the rest, m[~inside]")
    if close((mo - mi) / sd(0)) or close((mo - mi) / sd(1)):
        raise Wrong("the sign is reversed: the concept's photos minus the rest")
    if close((mi - mo) / max(m.std(), 1e-6)) or close((mi - mo) / max(m.std(ddof=1), 1e-6)):
        raise Wrong("that divides by the standard deviation of the whole table; use each unit's own, m.std(0)")
    raise Wrong("z_7 is not (mean of m on the concept's photos - mean on the rest) / std of m over all photos, "
                "per unit")


@exercise("01.8", "Spearman's rank correlation of one unit's activation and relevance, with numpy ranks")
def check_8(answer, *, m, r) -> None:
    """``m``, ``r``: (N,) one unit's activation score and relevance on every photo. The reference is
    ``scipy.stats.spearmanr`` (tied values get the mean of their ranks)."""
    from scipy.stats import pearsonr, spearmanr

    from ._answers import number

    m, r = _array(m, "m").reshape(-1), _array(r, "r").reshape(-1)
    got = number(answer, "rho_8")
    want = float(spearmanr(m, r).statistic) if m.std() > 0 and r.std() > 0 else float("nan")
    if not np.isfinite(want):
        if np.isnan(got):
            return
        raise Wrong("this unit's m or r is the same on every photo: it has no ranking, and its rank correlation "
                    "is undefined (NaN, as scipy.stats.spearmanr gives)")
    close = lambda v: bool(np.isfinite(v)) and abs(got - float(v)) < 1e-6
    if close(want):
        return
    if not -1 - 1e-9 <= got <= 1 + 1e-9:
        raise Wrong(f"a correlation lies in [-1, 1], got {got:.4g}: divide the covariance of the ranks by the "
                    "product of their standard deviations")
    pearson = lambda a, b: float(pearsonr(a, b).statistic)
    if close(pearson(m, r)):
        raise Wrong("that is Pearson's correlation of the values themselves; Spearman's is Pearson's of their "
                    "*ranks* (so one huge value cannot dominate it)")
    if close(pearson(np.argsort(m, kind="stable"), np.argsort(r, kind="stable"))):
        raise Wrong("np.argsort gives the order of the photos (which photo is smallest), not each photo's rank: "
                    "the ranks are the argsort of the argsort")
    if close(-want):
        raise Wrong("the sign is reversed: rank both scores the same way (both ascending, or both descending)")
    ordinal = lambda a: np.argsort(np.argsort(a, kind="stable"), kind="stable")
    if close(pearson(ordinal(m), ordinal(r))):
        raise Wrong("right, except for ties: photos with equal scores should share the mean of their ranks, "
                    "as scipy.stats.rankdata does")
    raise Wrong(f"rho_8 = {got:.4f} is not Spearman's rank correlation of m and r (the Pearson correlation of "
                "their ranks)")
