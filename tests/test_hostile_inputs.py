"""Hostile inputs (issue 10): decompression bombs, EXIF orientation, integer and out-of-range images, and
property-based tests of the image path (random bytes, PIL modes and sizes, truncated files)."""
from __future__ import annotations

import io
import re
import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cnnviz_helpers import cli
from cnnviz_helpers import objectives as O
from cnnviz_helpers.images import MIN_SIDE, ImageLoadError, load_image, resize, resize_short_side
from support import assert_untouched, tiny_input, tiny_model

# ---------------------------------------------------------------- decompression bombs


def png_declaring(width: int, height: int) -> bytes:
    """A 16x16 PNG whose IHDR says ``width`` x ``height`` (CRC fixed): a bomb without the memory."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 20, 30)).save(buf, "PNG")
    b = bytearray(buf.getvalue())
    assert b[12:16] == b"IHDR"
    b[16:24] = struct.pack(">II", width, height)
    b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])))  # CRC over chunk type + 13 data bytes
    return bytes(b)


def gif_declaring(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("P", (16, 16)).save(buf, "GIF")
    b = bytearray(buf.getvalue())
    b[6:10] = struct.pack("<HH", width, height)  # the logical screen size
    return bytes(b)


def test_crafted_header_really_declares_the_size():
    """The crafted files are what PIL's real guard sees (so the bomb tests test the real limit)."""
    with Image.open(io.BytesIO(png_declaring(3000, 2000))) as im:
        assert im.size == (3000, 2000)
    with Image.open(io.BytesIO(gif_declaring(3000, 2000))) as im:
        assert im.size == (3000, 2000)


@pytest.mark.parametrize("craft,ext", [(png_declaring, "png"), (gif_declaring, "gif")])
def test_decompression_bomb_is_an_image_load_error(tmp_path, craft, ext):
    bomb = tmp_path / f"bomb.{ext}"
    bomb.write_bytes(craft(30000, 30000))  # 900 MP: above 2x PIL's MAX_IMAGE_PIXELS, PIL raises its own error
    with pytest.raises(ImageLoadError, match=rf"'.*bomb\.{ext}' declares an image too large to decode safely "
                                             r"\(Image size \(900000000 pixels\) exceeds limit"):
        load_image(bomb)


def test_image_between_pils_warning_and_error_is_refused_with_its_size(tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(png_declaring(10000, 10000))  # 100 MP: PIL only warns; our own 50 MP limit refuses it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(ImageLoadError, match=r"big\.png' is 10000x10000 = 100\.0 megapixels, above the limit"):
            load_image(big)
    with warnings.catch_warnings():  # and where warnings are errors (python -W error), the same kind of error
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(ImageLoadError, match=r"big\.png' declares an image too large to decode safely"):
            load_image(big)


def test_max_pixels_is_validated():
    with pytest.raises(ValueError, match=r"max_pixels=200000000 is above PIL's decompression-bomb guard"):
        load_image(np.zeros((8, 8), np.uint8), max_pixels=200_000_000)
    with pytest.raises(ValueError, match=r"max_pixels must be an integer >= 64, got 0"):
        load_image(np.zeros((8, 8), np.uint8), max_pixels=0)


def _photo(path, rgb=(200, 30, 30), size=(40, 32)):
    Image.new("RGB", size, rgb).save(path)
    return str(path)


def test_classify_prints_every_result_and_one_line_per_bad_file(tmp_path, monkeypatch):
    """A bomb between good files: the files before it are already printed, the one after it too, no traceback."""
    monkeypatch.setattr("cnnviz_helpers.models.load_model", lambda name: tiny_model())
    a, b, c = (_photo(tmp_path / f"{k}.png", (40 * i, 90, 200 - 40 * i)) for i, k in enumerate("abc"))
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_declaring(30000, 30000))
    log = io.StringIO()  # one stream for both: the order of the lines is what the user sees
    rc = cli.classify([a, b, str(bomb), c], "tiny", top=2, batch=2, out=log, err=log)
    lines = log.getvalue().splitlines()
    assert rc == 1 and len(lines) == 4, lines
    assert lines[0].startswith(f"{a}: class") and lines[1].startswith(f"{b}: class")
    assert lines[2].startswith(f"error: {bomb}: '{bomb}' declares an image too large") and "900000000" in lines[2]
    assert lines[3].startswith(f"{c}: class") and lines[3].count("(") == 2
    assert "Traceback" not in log.getvalue()


def test_classify_prints_loaded_results_before_an_unexpected_error(tmp_path, monkeypatch):
    """Not an image error (a bug, Ctrl-C): it propagates, but the files loaded before it are printed first."""
    import cnnviz_helpers.images as images

    monkeypatch.setattr("cnnviz_helpers.models.load_model", lambda name: tiny_model())
    real = images.load_image
    paths = [_photo(tmp_path / f"{k}.png") for k in "abc"]

    def load(p):
        if p == paths[2]:
            raise KeyboardInterrupt
        return real(p)

    monkeypatch.setattr(images, "load_image", load)
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        cli.classify(paths, "tiny", top=1, batch=16, out=out, err=out)
    assert [ln.split(":")[0] for ln in out.getvalue().splitlines()] == paths[:2]


def test_classify_validates_its_numbers_before_loading_a_model(monkeypatch):
    def no_model(name):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr("cnnviz_helpers.models.load_model", no_model)
    with pytest.raises(SystemExit, match=r"--batch must be at least 1, got 0"):
        cli.classify(["x.png"], batch=0)
    with pytest.raises(SystemExit, match=r"--top must be at least 1, got 0"):
        cli.classify(["x.png"], top=0)


# ---------------------------------------------------------------- EXIF orientation

def _upright() -> np.ndarray:
    """A 24x40 (H x W) picture with no symmetry: each pixel its own colour."""
    i, j = np.mgrid[0:24, 0:40]
    return np.stack([i * 10, j * 6, (i * 40 + j) % 256], -1).astype(np.uint8)


# how a camera stores the upright picture U for each EXIF orientation (numpy, independent of PIL's table)
STORED = {
    1: lambda u: u,
    2: lambda u: u[:, ::-1],                      # mirrored
    3: lambda u: np.rot90(u, 2),                  # upside down
    4: lambda u: u[::-1],                         # mirrored vertically
    5: lambda u: u.transpose(1, 0, 2),            # transposed
    6: lambda u: np.rot90(u, 1),                  # stored 90 deg counter-clockwise: display rotates clockwise
    7: lambda u: np.rot90(u, 2).transpose(1, 0, 2),  # transverse
    8: lambda u: np.rot90(u, -1),                 # stored 90 deg clockwise
}


def _with_orientation(path, arr: np.ndarray, orientation: int, fmt: str = "PNG"):
    exif = Image.Exif()
    exif[0x0112] = orientation
    extra = {"quality": 95} if fmt == "JPEG" else {}
    Image.fromarray(np.ascontiguousarray(arr)).save(path, fmt, exif=exif.tobytes(), **extra)
    return path


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_to_files(tmp_path, orientation):
    u = _upright()
    path = _with_orientation(tmp_path / f"o{orientation}.png", STORED[orientation](u), orientation)
    x = load_image(path)
    expect = torch.from_numpy(u.astype(np.float32) / 255).permute(2, 0, 1)[None]
    assert x.shape == (1, 3, 24, 40) and torch.equal(x, expect)
    with Image.open(path) as im:  # a PIL image opened from the file: the same
        assert torch.equal(load_image(im), expect)


def test_exif_orientation_of_a_sideways_phone_jpeg_reaches_the_model(tmp_path):
    u = np.zeros((48, 64, 3), np.uint8)
    u[:16] = (255, 0, 0)  # red sky on top of the upright photo
    path = _with_orientation(tmp_path / "phone.jpg", STORED[6](u), 6, "JPEG")
    with Image.open(path) as im:
        assert im.size == (48, 64)  # stored sideways: 48 wide, 64 tall
    x = load_image(path)
    assert x.shape == (1, 3, 48, 64) and float(x[0, 0, :12].mean()) > 0.9 and float(x[0, 0, 20:].mean()) < 0.1
    m = tiny_model()
    ref = m.preprocess(u)
    got = m.preprocess(path)
    sideways = m.preprocess(np.ascontiguousarray(STORED[6](u)))  # what the model saw before the fix
    assert float((got - ref).abs().mean()) < 0.01 < 0.1 < float((sideways - ref).abs().mean())  # JPEG noise only
    with Image.open(path) as im:
        rotated = im.rotate(90, expand=True)  # derived by the user: taken as it is, not oriented twice
    assert load_image(rotated).shape == (1, 3, 48, 64)


# ---------------------------------------------------------------- integer and out-of-range images

def test_read_image_uint8_tensor_is_the_same_image_as_the_file(tmp_path):
    from torchvision.io import read_image

    path = tmp_path / "u.png"
    Image.fromarray(_upright()).save(path)
    t = read_image(str(path))
    assert t.dtype == torch.uint8 and t.shape == (3, 24, 40)
    assert torch.equal(load_image(t), load_image(path))
    m = tiny_model()
    assert torch.equal(m.preprocess(t), m.preprocess(path))
    assert float(m.preprocess(t).mean()) < 0.9  # not the white image of a 0..255 float clamped to 1


def test_integer_tensors_and_arrays_have_their_natural_scale_or_are_refused():
    v = torch.arange(256, dtype=torch.uint8).view(1, 16, 16).expand(3, 16, 16)
    assert torch.equal(load_image(v)[0, 0].flatten(), torch.arange(256) / torch.tensor(255.0))
    w = torch.tensor([0, 65535], dtype=torch.uint16).repeat(3, 8, 4)
    assert load_image(w)[0, 0, 0, :2].tolist() == [0.0, 1.0]
    for dt in (torch.int16, torch.int32, torch.int64, torch.bool):
        with pytest.raises(TypeError, match=rf"tensor image must be a float tensor in \[0,1\], got dtype "
                                            rf"{dt}: convert it with x.float\(\) / 255"):
            load_image(torch.zeros(3, 16, 16, dtype=dt))
    assert load_image(np.full((8, 8), 65535, np.uint16)).min() == 1.0
    for dt in (np.int32, np.int64, bool):
        with pytest.raises(TypeError, match=r"unsupported image array dtype .*a\.astype\(np\.float32\) / a_white"):
            load_image(np.zeros((8, 8, 3), dt))


@pytest.mark.parametrize("values,found", [
    (lambda: torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0)) * 255,
     r"\[0(\.\d+)?, 25\d\]"),                                                           # 0..255 floats
    (lambda: (torch.rand(3, 16, 16) - 0.45) / 0.225, r"\[-[12](\.\d+)?, 2(\.\d+)?\]"),     # normalized photo
    (lambda: torch.full((3, 16, 16), 1 + 1e-3), r"\[1, 1\]"),                               # beyond tolerance
])
def test_float_images_outside_0_1_are_refused_everywhere(values, found):
    x = values()
    hint = r"undo a normalization with model\.denormalize\(x\); divide 0\.\.255 values by 255"
    m = tiny_model()
    for name, call in [("tensor image", lambda: load_image(x)), ("tensor image", lambda: m.preprocess(x)),
                       ("features' x", lambda: O.features(m, x, ["conv1"])),
                       ("predict's x", lambda: m.predict(x)), ("resize's x", lambda: resize(x, 8)),
                       ("resize_short_side's x", lambda: resize_short_side(x, 8))]:
        with pytest.raises(ValueError, match=rf"{name} must hold pixel values in \[0,1\], got values in {found}\. "
                                             rf"Course models normalize inside: {hint}"):
            call()
    a = x.permute(1, 2, 0).numpy()
    with pytest.raises(ValueError, match=r"a float image array must lie in \[0,1\], got values in"):
        load_image(a)


def test_tolerance_nan_and_integer_inputs_at_the_helpers():
    m = tiny_model()
    x = tiny_input()
    almost = (x * (1 + 1e-7)).clamp(max=1 + 5e-7)  # rounding slack of a resize: accepted as it is
    assert torch.equal(load_image(almost), almost)
    nan = x.clone()
    nan[0, 1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match=r"features' x contains NaN or infinite values"):
        O.features(m, nan, ["conv1"])
    with pytest.raises(ValueError, match=r"a float image array must lie in \[0,1\], got values in \[nan, nan\]"):
        load_image(nan[0].permute(1, 2, 0).numpy())
    with pytest.raises(TypeError, match=r"features' x must be a float tensor in \[0,1\], got dtype torch\.uint8"):
        O.features(m, (x * 255).to(torch.uint8), ["conv1"])


def test_resize_keeps_the_shape_kind_and_checks_its_size():
    x = tiny_input(size=(20, 30))[0]
    assert resize(x, (10, 12)).shape == (3, 10, 12) and resize_short_side(x, 10).shape == (3, 10, 15)
    assert resize(x[None], 6).shape == (1, 3, 6, 6)
    for bad in (0, (4, 0), (4, 5, 6), 2.5, True, "8"):
        with pytest.raises(ValueError, match=r"resize's size must be (an int or an \(h, w\) pair of ints|>= 1)"):
            resize(x, bad)
    with pytest.raises(ValueError, match=r"resize_short_side's size must be an integer side >= 1, got 0"):
        resize_short_side(x, 0)


def test_refused_image_leaves_the_model_untouched():
    m = tiny_model(with_grads=True)
    bad = tiny_input() * 255
    assert_untouched(m, lambda mm: O.features(mm, bad, ["conv1"]), raises=ValueError)
    assert_untouched(m, lambda mm: mm.predict(bad), raises=ValueError)


# ---------------------------------------------------------------- property-based: the image path

PROPS = settings(max_examples=60, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
MAGIC = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*", b"RIFF",
         b"P6\n", b"\x00\x00\x01\x00"]
MODES = ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "I", "I;16", "F", "HSV", "LAB"]
FORMATS = ["PNG", "JPEG", "BMP", "TIFF", "GIF", "WEBP", "PPM", "ICO"]


def _as_mode(rgb: np.ndarray, mode: str) -> Image.Image:
    img = Image.fromarray(rgb)
    if mode == "I;16":
        return Image.fromarray((rgb[..., 0].astype(np.uint16) * 257))
    if mode == "PA":
        return img.convert("RGBA").convert("PA")
    return img.convert(mode)


def _savable() -> list[tuple[str, str]]:
    rgb = np.zeros((8, 8, 3), np.uint8)
    pairs = []
    for mode in MODES:
        for fmt in FORMATS:
            try:
                _as_mode(rgb, mode).save(io.BytesIO(), fmt)
            except (OSError, ValueError, KeyError, TypeError):
                continue
            pairs.append((mode, fmt))
    return pairs


SAVABLE = _savable()


def _in_convention(x: torch.Tensor, shape=None) -> None:
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and x.dim() == 4 and x.shape[:2] == (1, 3)
    assert min(x.shape[-2:]) >= MIN_SIDE and (shape is None or tuple(x.shape[-2:]) == shape)
    assert bool(torch.isfinite(x).all()) and 0 <= float(x.min()) and float(x.max()) <= 1


def _load_or_named_error(path) -> torch.Tensor | None:
    try:
        x = load_image(path)
    except ImageLoadError as e:
        assert str(path) in str(e), str(e)
        return None
    _in_convention(x)
    return x


def test_the_property_tests_cover_many_modes_and_formats():
    assert len(SAVABLE) >= 30 and {m for m, _ in SAVABLE} >= {"1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "F"}


@PROPS
@given(prefix=st.sampled_from(MAGIC), body=st.binary(max_size=600))
def test_random_bytes_give_an_image_or_a_named_error(tmp_path, prefix, body):
    path = tmp_path / "hostile.bin"
    path.write_bytes(prefix + body)
    _load_or_named_error(path)


@PROPS
@given(w=st.integers(1, 2**31 - 1), h=st.integers(1, 2**31 - 1), cut=st.integers(0, 60))
def test_any_declared_size_gives_an_image_or_a_named_error(tmp_path, w, h, cut):
    """PNG headers declaring any size (bombs, tiny, huge sides), whole or cut short after the header."""
    data = png_declaring(w, h)
    path = tmp_path / "declared.png"
    path.write_bytes(data[: len(data) - cut])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        _load_or_named_error(path)


@PROPS
@given(pair=st.sampled_from(SAVABLE), w=st.integers(1, 40), h=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_every_mode_format_and_size_loads_in_the_convention(tmp_path, pair, w, h, seed):
    mode, fmt = pair
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    path = tmp_path / f"img.{fmt.lower()}"
    img = _as_mode(rgb, mode)
    try:
        img.save(path, fmt)
    except (OSError, ValueError):  # e.g. ICO and WEBP refuse some sizes
        return
    with Image.open(path) as im:
        size = im.size  # ICO may store another size than it was given
    for src, (sw, sh), what in [(path, size, repr(str(path))), (img, (w, h), "PIL image")]:
        if min(sw, sh) < MIN_SIDE:
            with pytest.raises(ImageLoadError, match=rf"{what} is {sw}x{sh} pixels: smaller than the minimum 8x8"):
                load_image(src)
        else:
            _in_convention(load_image(src), (sh, sw))


@PROPS
@given(pair=st.sampled_from(SAVABLE), cut=st.floats(0, 1, exclude_max=True), flip=st.integers(0, 2**31))
def test_truncated_and_corrupted_files_give_an_image_or_a_named_error(tmp_path, pair, cut, flip):
    mode, fmt = pair
    buf = io.BytesIO()
    try:
        _as_mode(np.random.default_rng(flip).integers(0, 256, (24, 20, 3), dtype=np.uint8), mode).save(buf, fmt)
    except (OSError, ValueError):
        return
    data = bytearray(buf.getvalue())
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(bytes(data[: int(len(data) * cut)]))
    _load_or_named_error(path)
    data[flip % len(data)] ^= 1 + flip % 255  # one corrupted byte
    path.write_bytes(bytes(data))
    _load_or_named_error(path)


DESIGNED = "|".join([
    r"^tensor image must have shape \(N,3,H,W\) or \(3,H,W\), got \(",
    r"^an image array must be \(H,W\) or \(H,W,C\) with C in 1\.\.4, got shape \(",
    r"^tensor image must be a float tensor in \[0,1\], got dtype torch\.\w+: convert it with",
    r"^unsupported image array dtype \w+: use uint8",
    r"^tensor image must hold pixel values in \[0,1\], got values in \[",
    r"^a float image array must lie in \[0,1\], got values in \[",
    r"^tensor image contains NaN or infinite values",
    r"^(tensor image|image array) is \d+x\d+( pixels)?: smaller than the minimum 8x8",
    r"^tensor image is empty: shape \(",
])
ARRAY_DTYPES = [np.uint8, np.uint16, np.int16, np.int32, np.float16, np.float32, np.float64, bool]


@PROPS
@given(dtype=st.sampled_from(ARRAY_DTYPES), shape=st.lists(st.integers(0, 12), min_size=1, max_size=4),
       scale=st.sampled_from([1.0, 255.0, -1.0, float("nan")]), seed=st.integers(0, 2**16))
def test_random_arrays_and_tensors_give_an_image_or_a_clear_error(dtype, shape, scale, seed):
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.floating):
        a = (rng.random(shape) * scale).astype(dtype)
    elif dtype is bool:
        a = rng.integers(0, 2, shape).astype(bool)
    else:  # black and white, so the scale is checked exactly
        a = (rng.integers(0, 2, shape) * np.iinfo(dtype).max).astype(dtype)
    for src in (a, torch.from_numpy(np.ascontiguousarray(a))):
        try:
            x = load_image(src)
        except (TypeError, ValueError) as e:  # one of the designed messages, not numpy's or torch's
            assert re.search(DESIGNED, str(e)), str(e)
            continue
        _in_convention(x) if x.shape[0] == 1 else _in_convention(x[:1])
        if np.issubdtype(dtype, np.unsignedinteger):  # natural scale: white is the dtype's maximum
            assert set(torch.unique(x).tolist()) <= {0.0, 1.0}
