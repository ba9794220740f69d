"""Images: every PIL mode to RGB in [0,1], arrays, clear errors for missing, broken, tiny and huge images."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from cnnviz_helpers.images import (ImageLoadError, center_crop, check_image, load_image, resize, resize_short_side,
                                   to_numpy)


def _save(img: Image.Image, path, fmt=None):
    img.save(path, format=fmt)
    return path


@pytest.mark.parametrize("mode,fmt,expect", [
    ("RGB", "PNG", (200, 100, 50)),
    ("L", "PNG", (120, 120, 120)),
    ("LA", "PNG", None),
    ("RGBA", "PNG", None),
    ("P", "PNG", (204, 102, 51)),  # PIL's web palette quantizes 200,100,50
    ("I;16", "PNG", None),
    ("CMYK", "JPEG", None),
])
def test_modes_to_rgb(tmp_path, mode, fmt, expect):
    base = Image.new("RGB", (40, 32), (200, 100, 50))
    if mode == "L":
        img = Image.new("L", (40, 32), 120)
    elif mode == "P":
        img = base.convert("P")
    elif mode == "I;16":
        img = Image.fromarray(np.full((32, 40), 65535 // 2, dtype=np.uint16))
    elif mode == "LA":
        img = Image.new("LA", (40, 32), (0, 0))  # fully transparent black: composited on white
    elif mode == "RGBA":
        img = Image.new("RGBA", (40, 32), (0, 0, 255, 255))
    else:
        img = base.convert(mode)
    path = _save(img, tmp_path / f"x.{fmt.lower()}", fmt)
    x = load_image(path)
    assert x.shape == (1, 3, 32, 40) and x.dtype == torch.float32
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    px = (x[0, :, 5, 5] * 255).round().tolist()
    if expect is not None:
        assert px == pytest.approx(list(expect), abs=1)
    elif mode == "LA":
        assert px == [255, 255, 255]
    elif mode == "RGBA":
        assert px == [0, 0, 255]
    elif mode == "I;16":
        assert px == pytest.approx([127, 127, 127], abs=1)
    elif mode == "CMYK":
        assert px == pytest.approx([200, 100, 50], abs=12)  # JPEG + CMYK round trip


def test_pil_to_tensor_is_every_8_bit_value_over_255():
    """The conversion is exactly v / 255 in float32 for each of the 256 values, in (1,3,H,W) order."""
    from cnnviz_helpers.images import pil_to_tensor

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=(17, 23, 3), dtype=np.uint8)
    a[0, :3] = [[0, 0, 0], [255, 255, 255], [1, 128, 254]]
    x = pil_to_tensor(Image.fromarray(a))
    assert x.shape == (1, 3, 17, 23) and x.dtype == torch.float32
    ref = torch.from_numpy(a.astype(np.float64) / 255).permute(2, 0, 1)[None].float()  # float64, then rounded
    assert torch.equal(x, ref)
    every = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16))        # mode L: grey to RGB
    g = pil_to_tensor(every)
    assert torch.equal(g[0, 0], g[0, 2]) and torch.equal(g[0, 0].flatten(), torch.arange(256) / torch.tensor(255.0))


def test_arrays_and_tensors():
    a = np.zeros((16, 24, 3), dtype=np.uint8)
    a[..., 0] = 255
    x = load_image(a)
    assert x.shape == (1, 3, 16, 24) and float(x[0, 0].min()) == 1.0 and float(x[0, 1].max()) == 0.0
    assert load_image(np.full((16, 16), 0.25, dtype=np.float32))[0, 2, 0, 0] == pytest.approx(0.25)
    with pytest.raises(ValueError, match=r"must lie in \[0,1\], got values in \[2, 2\]"):
        load_image(np.full((16, 16), 2.0))
    t = torch.rand(3, 20, 30)
    assert torch.equal(load_image(t)[0], t)
    with pytest.raises(TypeError, match="cannot load an image from int"):
        load_image(5)


def test_missing_truncated_and_non_image_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"image file not found: '.*nope\.jpg'"):
        load_image(tmp_path / "nope.jpg")
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"this is not an image at all")
    with pytest.raises(ImageLoadError, match=r"junk\.jpg' is not an image file PIL can read"):
        load_image(junk)
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageLoadError, match=r"cut\.jpg' could not be decoded \(truncated or corrupt\?\)"):
        load_image(cut)
    with pytest.raises(ImageLoadError, match="is a folder, not an image file"):
        load_image(tmp_path)


def test_too_small_and_too_large(tmp_path):
    small = _save(Image.new("RGB", (7, 30)), tmp_path / "small.png")
    with pytest.raises(ImageLoadError, match=r"small\.png' is 7x30 pixels: smaller than the minimum 8x8"):
        load_image(small)
    big = Image.new("L", (8000, 6300))  # 50.4 MP
    with pytest.raises(ImageLoadError, match=r"8000x6300 = 50\.4 megapixels, above the limit of 50 MP: refusing"):
        load_image(big)
    path = _save(big, tmp_path / "big.png")
    with pytest.raises(ImageLoadError, match=r"big\.png' is 8000x6300"):
        load_image(path)
    assert load_image(path, max_pixels=60_000_000).shape == (1, 3, 6300, 8000)


def test_resize_and_crop_keep_the_convention():
    x = torch.rand(1, 3, 30, 50)
    y = resize_short_side(x, 60)
    assert y.shape == (1, 3, 60, 100)
    assert center_crop(y, 60).shape == (1, 3, 60, 60)
    assert resize(x, (10, 12)).shape == (1, 3, 10, 12)
    with pytest.raises(ValueError, match=r"cannot crop 40x40 from a 30x50 image"):
        center_crop(x, 40)
    z = torch.zeros(1, 3, 4, 6)
    z[..., :, 3:] = 1  # a step: the crop must take the centre
    assert center_crop(torch.arange(25.).view(1, 1, 5, 5).expand(1, 3, 5, 5), 3)[0, 0, 0].tolist() == [6, 7, 8]
    assert to_numpy(x).shape == (30, 50, 3)


def test_check_image_errors():
    with pytest.raises(ValueError, match=r"must have shape \(N,3,H,W\) or \(3,H,W\), got \(1, 1, 16, 16\)"):
        check_image(torch.rand(1, 1, 16, 16))
    with pytest.raises(TypeError, match="got dtype torch.uint8"):
        check_image(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))
