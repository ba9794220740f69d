"""Lesson 13's exercise checks: the official answers pass, typical mistakes get their hint, stubs are 'not done'.

No model: clustered random embeddings, random unit maps and masks stand in for the lesson's.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.decomposition import PCA

from cnnviz_helpers import exercises
from cnnviz_helpers.exercises import ExerciseError, lesson13
from support import rejected


def test_1_prediction(student_mode):
    agreement = {"embedding, cosine": 0.8, "embedding, L2": 0.7, "pixels, L2": 0.3}
    assert lesson13.check_1("embedding", agreement=agreement).ok
    rejected(lesson13.check_1("pixels", agreement=agreement), "measured: 80%")
    rejected(lesson13.check_1("cosine", agreement=agreement), "'embedding' or 'pixels'")
    assert not lesson13.check_1(..., agreement=agreement).done


@pytest.fixture(scope="module")
def spaces():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(60) % 4                                        # 4 groups of 15
    centres = torch.randn(4, 16, generator=g) * 2
    emb = (centres[labels] + torch.randn(60, 16, generator=g)).relu()   # clustered, like an embedding
    pixels = torch.rand(60, 12, generator=g) + 0.2 * labels[:, None]     # weakly clustered
    neighbours = {}
    for space, d in [("embedding, cosine", 1 - F.normalize(emb, dim=1) @ F.normalize(emb, dim=1).T),
                     ("pixels, L2", torch.cdist(pixels, pixels))]:
        d.fill_diagonal_(float("inf"))                                   # as the lesson: not its own neighbour
        neighbours[space] = d.argsort(1)[:, :8]
    return emb, pixels, labels, neighbours


def test_2_knn(student_mode, spaces):
    emb, pixels, labels, neighbours = spaces
    share = lambda cols: {s: float((labels[nb[:, cols]] == labels[:, None]).float().mean()) for s, nb in neighbours.items()}
    ctx = dict(emb=emb, pixels=pixels, labels=labels)
    assert lesson13.check_2(share(slice(0, 5)), **ctx).ok
    rejected(lesson13.check_2(share(slice(0, 1)), **ctx), "first neighbour only")
    rejected(lesson13.check_2(share(slice(0, 8)), **ctx), "all 8 neighbours")
    rejected(lesson13.check_2({s: 100 * v for s, v in share(slice(0, 5)).items()}, **ctx), "not a percentage")
    with_self = {s: float((labels[torch.cat([torch.arange(60)[:, None], nb[:, :4]], 1)] == labels[:, None])
                          .float().mean()) for s, nb in neighbours.items()}
    rejected(lesson13.check_2(with_self, **ctx), "its own neighbour")
    rejected(lesson13.check_2({"embedding": 0.5}, **ctx), "keys")
    assert not lesson13.check_2(..., **ctx).done


@pytest.fixture(scope="module")
def unit():
    g = torch.Generator().manual_seed(1)
    acts = torch.randn(6, 3, 4, 5, generator=g).to(torch.float16)        # (N, C, h, w), like the lesson's fp16 maps
    masks = F.interpolate(torch.rand(6, 1, 4, 4, generator=g), size=(16, 16), mode="bilinear")[:, 0] > 0.6
    T = acts[:, 1].float().flatten().quantile(0.7)
    return acts, masks, 1, T


def test_3_iou(student_mode, unit):
    acts, masks, k, T = unit
    inter = union = 0
    per_image, inter_near, union_near, size_m = [], 0, 0, 0
    for i in range(len(acts)):                                            # as the lesson's solution
        M = F.interpolate(acts[i:i + 1, k:k + 1].float(), size=(16, 16), mode="bilinear", align_corners=False)[0, 0] > T
        Mn = F.interpolate(acts[i:i + 1, k:k + 1].float(), size=(16, 16), mode="nearest")[0, 0] > T
        L = masks[i]
        inter += int((M & L).sum()); union += int((M | L).sum()); size_m += int(M.sum()) + int(L.sum())
        per_image.append(int((M & L).sum()) / max(1, int((M | L).sum())))
        inter_near += int((Mn & L).sum()); union_near += int((Mn | L).sum())
    ctx = dict(acts=acts, k=k, T=T, masks=masks)
    assert lesson13.check_3(inter / union, **ctx).ok
    rejected(lesson13.check_3(float(np.mean(per_image)), **ctx), "averaged per-image IoUs")
    rejected(lesson13.check_3(inter / size_m, **ctx), "counts the overlap twice")
    rejected(lesson13.check_3(inter_near / union_near, **ctx), "nearest-neighbour")
    rejected(lesson13.check_3(inter, **ctx), "in [0, 1]")
    assert not lesson13.check_3(..., **ctx).done


def test_bilinear_matrix_is_torch_bilinear():
    a = torch.rand(2, 1, 3, 7, dtype=torch.float64)
    up = F.interpolate(a, size=(10, 9), mode="bilinear", align_corners=False)
    Ry, Rx = lesson13.bilinear_matrix(3, 10), lesson13.bilinear_matrix(7, 9)
    assert np.allclose(np.einsum("yi,nij,xj->nyx", Ry, a[:, 0].numpy(), Rx), up[:, 0].numpy())


def test_4_pca(student_mode):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 20)) * np.linspace(3, 0.2, 20) + 5.0          # decaying variances, far from 0
    ratios = PCA(svd_solver="full").fit(X).explained_variance_ratio_
    n90 = int(np.searchsorted(np.cumsum(ratios), 0.9) + 1)
    assert lesson13.check_4(n90, X=X).ok
    rejected(lesson13.check_4(n90 - 1, X=X), "off by one")
    raw = np.linalg.svd(X, compute_uv=False) ** 2
    uncentred = int(np.searchsorted(np.cumsum(raw) / raw.sum(), 0.9) + 1)
    assert uncentred != n90
    rejected(lesson13.check_4(uncentred, X=X), "did not centre")
    rejected(lesson13.check_4(float(np.cumsum(ratios)[n90 - 1]), X=X), "an int")
    assert not lesson13.check_4(..., X=X).done


def test_wrong_answer_raises_in_a_shipped_lesson():
    exercises.student_copy(False)
    with pytest.raises(ExerciseError, match="13.1"):
        lesson13.check_1("pixels", agreement={"embedding, cosine": 0.8, "pixels, L2": 0.3})


def test_5_self_check(student_mode):
    g = torch.Generator().manual_seed(1)
    classes = [3, 17, 42, 99, 500, 998]
    logits = torch.randn(6, 1000, generator=g)
    for j, c in enumerate(classes[:4]):
        logits[j, c] += 6                                                # units 0-3 peak on their own photo
    logits[5, classes[4]] += 9                                           # unit 4 peaks on photo 5
    logits[4, 7] += 20                                                   # photo 4's top-1 is another class
    z = logits[:, classes]
    right = float((z.argmax(0) == torch.arange(6)).float().mean())
    per_photo = float((z.argmax(1) == torch.arange(6)).float().mean())
    assert right != per_photo
    assert lesson13.check_5(right, logits=logits, classes=classes).ok
    rejected(lesson13.check_5(per_photo, logits=logits, classes=classes), "for each photo")
    rejected(lesson13.check_5(100 * right, logits=logits, classes=classes), "percentage")
    rejected(lesson13.check_5(right + 0.2, logits=logits, classes=classes), "argmax over photos")
    assert not lesson13.check_5(..., logits=logits, classes=classes).done
