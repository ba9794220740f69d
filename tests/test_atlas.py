"""cnnviz_helpers.dissect (lesson 13's dissection, shared with the unit atlas) against plain definitions.

No model: random maps and masks, checked with boolean masks built one image at a time.
"""
import re

import pytest
import torch
import torch.nn.functional as F

from cnnviz_helpers.dissect import accumulate, dissect_logits, iou, iou_table, thresholds, unit_masks


def test_iou_hand_example():
    M = torch.zeros(2, 4, 4, dtype=torch.bool); L = torch.zeros(2, 4, 4, dtype=torch.bool)
    M[0, :2, :2] = True; L[0, :2, :3] = True; M[1, 3, :] = True
    assert iou(M, L) == 4 / 10                                           # not the mean of per-image IoUs


def test_thresholds_are_the_nth_largest_over_all_pools():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    T = thresholds([a, b], n_top=7, chunk=2)                             # chunks of units give the same values
    for k in range(3):
        vals = torch.cat([a[:, k].flatten(), b[:, k].flatten()]).sort(descending=True).values
        assert T[k] == vals[6]
    assert torch.equal(thresholds([a, b]), thresholds([a, b], n_top=1))   # 0.5 % of 112 values -> 1
    with pytest.raises(ValueError):
        thresholds([a], n_top=81)


def test_accumulate_and_table_match_the_definition():
    g = torch.Generator().manual_seed(1)
    A = torch.randn(6, 4, 3, 3, generator=g)
    L = torch.rand(6, 2, 8, 8, generator=g) > 0.6
    T = thresholds([A], n_top=10)
    per = accumulate(A, L, T, bs=4)
    total = accumulate(A, L, T, per_image=False, bs=4)
    for x, y in zip(per, total):
        assert torch.allclose(x.sum(0), y)
    table = iou_table([per])
    assert torch.allclose(table, iou_table([total]))
    for k in range(4):
        up = F.interpolate(A[:, k:k + 1], size=(8, 8), mode="bilinear", align_corners=False)[:, 0]
        M = up > T[k]
        assert torch.equal(unit_masks(A, T, 8)[:, k].view(6, 8, 8), M)
        for c in range(2):
            assert abs(iou(M, L[:, c]) - float(table[k, c])) < 1e-6


def test_dissect_logits_finds_the_known_detectors():
    g = torch.Generator().manual_seed(2)
    classes = [5, 10, 20, 30, 40]
    logits = torch.randn(5, 1000, generator=g)
    for j, c in enumerate(classes[:3]):
        logits[j, c] += 8                                                # units 0-2: their own photo is on top
    logits[0, classes[3]] += 8                                           # unit 3 peaks on photo 0
    logits[1, classes[4]] += 8                                           # unit 4 peaks on photo 1
    r = dissect_logits(logits, classes)
    assert r["own"].tolist() == [True, True, True, False, False] and abs(r["fraction"] - 3 / 5) < 1e-6
    assert r["best"].tolist() == [0, 1, 2, 0, 1]
    assert torch.equal(r["IoU"], F.one_hot(r["best"], 5).float())        # all-or-nothing masks: IoU 1 or 0
    with pytest.raises(ValueError):
        dissect_logits(logits, [5, 5, 10, 20, 30])


def test_colour_names_and_lab_against_the_cie_values():
    from cnnviz_helpers.dissect import COLOUR_NAMES, PROTOTYPES, colour_masks, srgb_to_lab

    m = colour_masks(PROTOTYPES.view(11, 3, 1, 1))                       # (11, 11, 1, 1)
    assert m.squeeze().int().argmax(1).tolist() == list(range(len(COLOUR_NAMES)))
    assert bool((m.sum(1) == 1).all())                                   # one name per pixel
    # CIE L*a*b* (D65) of sRGB white, black, red and blue (published values)
    cie = {(1.0, 1.0, 1.0): (100.0, 0.0, 0.0), (0.0, 0.0, 0.0): (0.0, 0.0, 0.0),
           (1.0, 0.0, 0.0): (53.24, 80.09, 67.20), (0.0, 0.0, 1.0): (32.30, 79.19, -107.86)}
    for rgb, lab in cie.items():
        assert torch.allclose(srgb_to_lab(torch.tensor(rgb)), torch.tensor(lab), atol=0.05), rgb
    with pytest.raises(ValueError, match=r"expects \(N, 3, H, W\)"):
        colour_masks(torch.zeros(3, 4, 4))


def test_texture_probes_are_seeded_and_masks_are_the_textured_region():
    from cnnviz_helpers.dissect import TEXTURES, texture_probe, texture_probes

    imgs, masks, concept = texture_probes(2, seed=3, size=64)
    assert imgs.shape == (2 * len(TEXTURES), 3, 64, 64) and masks.shape == (16, 64, 64)
    assert concept.tolist() == [c for c in range(len(TEXTURES)) for _ in range(2)]
    again = texture_probes(2, seed=3, size=64)
    assert torch.equal(imgs, again[0]) and torch.equal(masks, again[1])
    assert 0 <= float(imgs.min()) and float(imgs.max()) <= 1
    for im, m in zip(imgs, masks):                                       # the texture has two colours inside the mask
        inside = im[:, m].T.unique(dim=0)
        assert len(inside) == 2 and 0.02 < float(m.float().mean()) < 0.9
    with pytest.raises(ValueError, match=r"unknown texture 'zigzag'"):
        texture_probe("zigzag", torch.Generator())
    with pytest.raises(ValueError, match=r"at least 1"):
        texture_probes(0)


def test_dissect_one_layer_matches_the_definition():
    from cnnviz_helpers.dissect import dissect

    g = torch.Generator().manual_seed(4)
    A_ph, A_tx = torch.randn(5, 3, 4, 4, generator=g), torch.randn(4, 3, 4, 4, generator=g)
    L_col = torch.rand(5, 11, 8, 8, generator=g) > 0.7
    L_tex = torch.rand(4, 8, 8, 8, generator=g) > 0.8
    r = dissect(A_ph, A_tx, L_col, L_tex)
    assert r["IoU"].shape == (3, 19)
    T = thresholds([A_ph, A_tx])
    assert torch.equal(r["T"], T)
    for k in range(3):
        M_ph = F.interpolate(A_ph[:, k:k + 1], size=(8, 8), mode="bilinear", align_corners=False)[:, 0] > T[k]
        M_tx = F.interpolate(A_tx[:, k:k + 1], size=(8, 8), mode="bilinear", align_corners=False)[:, 0] > T[k]
        for c in range(11):
            assert abs(iou(M_ph, L_col[:, c]) - float(r["IoU"][k, c])) < 1e-6
        for c in range(8):
            assert abs(iou(M_tx, L_tex[:, c]) - float(r["IoU"][k, 11 + c])) < 1e-6
    assert torch.equal(r["detector"], r["best_iou"] > 0.04)
    with pytest.raises(ValueError, match=r"3 and 2 channels"):
        dissect(A_ph, A_tx[:, :2], L_col, L_tex)


def test_thresholds_over_pools_of_different_map_sizes():
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(3, 2, 4, 5, generator=g), torch.randn(2, 2, 7, 7, generator=g)
    T = thresholds([a, b], n_top=4)
    for k in range(2):
        vals = torch.cat([a[:, k].flatten(), b[:, k].flatten()]).sort(descending=True).values
        assert T[k] == vals[3]
    with pytest.raises(ValueError, match=r"\[2, 3\] channels"):
        thresholds([a, torch.randn(1, 3, 2, 2)])


def test_atlas_cards_and_page_on_the_tiny_cnn():
    """Every unit gets a card with its own anchor; its patches are the top_activations crops; its label is
    dissect's best concept; the page holds one element per anchor and escapes the layer's name."""
    from cnnviz_helpers import atlas
    from cnnviz_helpers.dataset import TensorImages, top_activations
    from support import tiny_input, tiny_model

    m, x = tiny_model(), tiny_input(n=4)
    src = TensorImages(x)
    cards = atlas.unit_cards(m, "conv2", src, k=2, fv_size=16, fv_steps=3, tile=8, res=8, per_texture=1,
                             batch_size=2, cache=False, progress=False)
    top = top_activations(m, "conv2", src, k=2, cache=False, progress=False)["conv2"]
    labels = atlas.dissection(m, "conv2", src, res=8, per_texture=1, batch_size=2, cache=False, progress=False)
    assert [c.unit for c in cards] == list(range(top.channels))
    for c in cards:
        assert c.patches.shape == (2, 3, 8, 8) and c.visualization.shape == (3, 16, 16)
        assert abs(c.top_value - float(top.values[c.unit, 0])) < 1e-5 * max(1.0, abs(c.top_value))   # batch sizes differ
        assert c.iou == float(labels["best_iou"][c.unit]) and c.detector == (c.iou > 0.04)
    page = atlas.atlas_html(cards)
    ids = re.findall(r'<div class="card" id="([^"]+)"', page)
    assert ids == [f"conv2-unit-{u}" for u in range(len(cards))]
    assert page.count("data:image/jpeg;base64,") == 2 * len(cards)
    assert atlas.anchor("net.features.10", 3) == "net-features-10-unit-3"
    with pytest.raises(KeyError):
        atlas.unit_cards(m, "conv9", src, fv_size=16, fv_steps=1, cache=False, progress=False)
    with pytest.raises(ValueError, match=r"fv_steps must be a positive integer, got 0"):
        atlas.unit_cards(m, "conv2", src, fv_size=16, fv_steps=0, cache=False, progress=False)
