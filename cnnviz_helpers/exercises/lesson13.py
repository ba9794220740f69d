"""Checks of lesson 13 (representations): neighbours in two spaces, k-NN agreement, one IoU, PCA's 90 %,
the dissection's self-check on the logits.

Independent references: scikit-learn's brute-force nearest neighbours, bilinear
upsampling written as two interpolation matrices in numpy, and numpy's SVD.
"""
from __future__ import annotations

import numpy as np
import torch

from . import Wrong, exercise
from ._answers import number

__all__ = ["check_1", "check_2", "check_3", "check_4", "check_5", "bilinear_matrix"]

SPACES = ("embedding, cosine", "pixels, L2")


def _np(t) -> np.ndarray:
    return t.detach().cpu().double().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, dtype=np.float64)


@exercise("13.1", "predict: is the nearest neighbour more often of the same group in embedding or pixel space?")
def check_1(prediction, *, agreement):
    if prediction not in ("embedding", "pixels"):
        raise Wrong(f"answer 'embedding' or 'pixels', got {prediction!r}")
    e, p = agreement["embedding, cosine"], agreement["pixels, L2"]
    fact = "embedding" if e > p else "pixels"
    if prediction != fact:
        raise Wrong(f"measured: {e:.0%} of the nearest neighbours are of the same group in the embedding, {p:.0%} in "
                    "pixels. The embedding is what the classifier reads the class from; pixel distance compares "
                    "colour layouts")


def knn_agreement(Z: np.ndarray, labels: np.ndarray, metric: str, cols: slice) -> float:
    """Share of neighbours (columns ``cols`` of sklearn's brute-force ranking, column 0 = itself) in the same group."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=min(len(Z), 9), metric=metric, algorithm="brute").fit(Z)
    ind = nn.kneighbors(Z, return_distance=False)
    return float((labels[ind[:, cols]] == labels[:, None]).mean())


@exercise("13.2", "the share of the 5 nearest neighbours in the same coarse group, per space")
def check_2(answer, *, emb, pixels, labels):
    if not isinstance(answer, dict) or set(answer) != set(SPACES):
        raise Wrong(f"the answer should be a dict with the keys {list(SPACES)}, one fraction each")
    y = np.asarray(labels)
    for space, Z, metric in [(SPACES[0], _np(emb), "cosine"), (SPACES[1], _np(pixels), "euclidean")]:
        v = number(answer[space], f"answer[{space!r}]")
        if v > 1:
            raise Wrong(f"answer[{space!r}] = {v:g} is over 1: give a fraction in [0, 1], not a percentage")
        ref = knn_agreement(Z, y, metric, slice(1, 6))
        if abs(v - ref) < 0.01:                                          # ties may order differently
            continue
        if abs(v - knn_agreement(Z, y, metric, slice(0, 5))) < 0.01:
            raise Wrong(f"answer[{space!r}]: you counted each photo as its own neighbour (distance 0)")
        if abs(v - knn_agreement(Z, y, metric, slice(1, 2))) < 0.01:
            raise Wrong(f"answer[{space!r}] is the first neighbour only: average over the first 5 columns")
        if abs(v - knn_agreement(Z, y, metric, slice(1, 9))) < 0.01:
            raise Wrong(f"answer[{space!r}] uses all 8 neighbours of `neighbours`: take the first 5 columns")
        raise Wrong(f"answer[{space!r}] = {v:.3f}, but {ref:.3f} of the 5 nearest neighbours share the photo's "
                    "group: compare labels[neighbours[space][:, :5]] with labels[:, None]")


def bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix of 1-d bilinear upsampling with half-pixel centres (align_corners=False)."""
    R = np.zeros((n_out, n_in))
    for i in range(n_out):
        src = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = min(int(np.floor(src)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        w = src - i0
        R[i, i0] += 1 - w
        R[i, i1] += w
    return R


def _iou_variants(A: np.ndarray, L: np.ndarray, T: float) -> dict:
    """IoU of the unit maps A (N, h, w) with masks L (N, S, S): right, and the usual slips."""
    S = L.shape[-1]
    Ry, Rx = bilinear_matrix(A.shape[1], S), bilinear_matrix(A.shape[2], S)
    M = np.einsum("yi,nij,xj->nyx", Ry, A, Rx) > T
    near = A[:, (np.arange(S) * A.shape[1]) // S][:, :, (np.arange(S) * A.shape[2]) // S] > T
    inter, union = (M & L).sum((1, 2)), (M | L).sum((1, 2))
    seen = union > 0
    return dict(right=inter.sum() / union.sum(),
                mean_of_images=float(np.mean(inter[seen] / union[seen])),
                nearest=(near & L).sum() / (near | L).sum(),
                union_not_subtracted=inter.sum() / (M.sum() + L.sum()))


@exercise("13.3", "the IoU of one block6 unit with the colour green, from the definition")
def check_3(answer, *, acts, k, T, masks):
    v = number(answer, "the IoU")
    if not 0 <= v <= 1:
        raise Wrong(f"an IoU is in [0, 1], got {v:g}")
    ious = _iou_variants(_np(acts[:, k]), _np(masks) > 0.5, float(T))
    if abs(v - ious["right"]) < 2e-3:
        return
    hints = dict(mean_of_images="you averaged per-image IoUs: sum the intersections and the unions over all photos "
                 "first, then divide",
                 nearest="your upsampling is nearest-neighbour: the lesson's masks use bilinear "
                 "(F.interpolate(..., mode='bilinear', align_corners=False))",
                 union_not_subtracted="your union counts the overlap twice: |M | L| = |M| + |L| - |M & L|")
    for slip, hint in hints.items():
        if abs(v - ious[slip]) < 2e-3:
            raise Wrong(hint)
    raise Wrong(f"IoU {v:.4f}, but the definition gives {ious['right']:.4f}: upsample unit k's map to the mask's "
                "size, threshold it at T (strictly above), then sum |M & L| and |M | L| over the photos")


@exercise("13.4", "the smallest number of principal components that explain 90% of the variance")
def check_4(answer, *, X):
    if isinstance(answer, (float, np.floating)) and float(answer).is_integer():
        answer = int(answer)
    if isinstance(answer, bool) or not isinstance(answer, (int, np.integer)):
        raise Wrong(f"the answer is a number of components, an int; got {type(answer).__name__} {answer!r}")
    if answer < 1:
        raise Wrong(f"{answer} components explain nothing: the answer is at least 1")
    Xn = _np(X)
    s = np.linalg.svd(Xn - Xn.mean(0), compute_uv=False)                   # singular values of the centred data
    share = np.cumsum(s**2) / (s**2).sum()
    want = int(np.argmax(share >= 0.9) + 1)
    if answer == want:
        return
    if answer == want - 1:
        raise Wrong(f"off by one: {answer} components explain only {share[answer - 1]:.1%}; count the component "
                    "that crosses 90% (searchsorted gives its index, the count is index + 1)")
    raw = np.linalg.svd(Xn, compute_uv=False)
    if answer == int(np.argmax(np.cumsum(raw**2) / (raw**2).sum() >= 0.9) + 1):
        raise Wrong("you did not centre the embeddings: PCA's variance is around the mean (subtract X.mean(0))")
    raise Wrong(f"{answer} components explain {share[min(answer, len(share)) - 1]:.1%} of the variance, "
                f"and the smallest count reaching 90% is a different one")


@exercise("13.5", "the share of logit units whose top photo is the photo of their own class")
def check_5(answer, *, logits, classes):
    v = number(answer, "the fraction")
    if v > 1:
        raise Wrong(f"{v:g} is over 1: give a fraction in [0, 1], not a percentage")
    z = _np(logits)[:, np.asarray(classes)]                              # (N, K): unit j is the class of photo j
    j = np.arange(z.shape[1])
    want = float(np.mean(z.argmax(0) == j))
    if abs(v - want) < 1e-6:
        return
    if abs(v - float(np.mean(z.argmax(1) == j))) < 1e-6:
        raise Wrong("you asked, for each photo, which logit is largest (the classifier's accuracy among these "
                    "classes): the self-check asks, for each logit, which photo makes it largest (argmax over dim 0)")
    if abs(v - float(np.mean(_np(logits).argmax(1) == np.asarray(classes)))) < 1e-6:
        raise Wrong("that is the photos' top-1 accuracy over all 1000 classes: take each unit's column "
                    "logits[:, classes[j]] and find the photo where it is largest")
    raise Wrong(f"{v:.4f}, but {want:.4f} of the units peak on their own class's photo: for unit j (class "
                "classes[j]) compare the argmax over photos of logits[:, classes[j]] with j")
