"""Dataset-wide passes: run a set of photos through a model once and keep what a lesson needs.

- ``PhotoSet(classes, size=224)``: the course photos (one per ImageNet class),
  decoded once into ``(N,3,S,S)`` uint8 (resize the short side, centre crop,
  exactly as ``CourseModel.preprocess``, then rounded to 8 bits). The first
  pass decodes in background threads *while* the model runs; the decoded
  tensor is kept in memory and on disk, so later passes skip JPEG decoding.
- ``StreamingTopK``: per unit (channel), the ``k`` images with the largest
  activation (maximum over positions) with the position of that maximum,
  updated batch by batch: O(k) memory per unit, whatever the number of photos.
- ``top_activations(model, layers, photos, k=9)``: one pass for several layers;
  each ``TopK`` maps a position to its receptive field and crops the patches.
- ``activations(model, layers, photos, reduce=None)``: a layer's outputs for
  every photo (embeddings, dissection masks).
- ``runs_dir()``: where results are cached: ``$CNNVIZ_CACHE`` or
  ``~/.cache/cnnviz-runs``, created on first write, separate from the course
  images (``config.data_dir()`` may be read-only). A result is keyed by the
  model's name *and a hash of its weights*, the layer, the photo set (the files'
  sha256 and the size) and the settings, so a second run is served from disk and
  a changed model or image set is never served stale results.

Introduced in lesson 01 (maximally activating patches); used by lesson 13.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import numbers
import os
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from .hooks import capture, relu_rule
from .layers import ReceptiveField, receptive_field, resolve_layers

__all__ = [
    "CACHE_ENV",
    "CacheWarning",
    "runs_dir",
    "model_fingerprint",
    "PhotoSet",
    "TensorImages",
    "StreamingTopK",
    "TopK",
    "top_activations",
    "activations",
    "REDUCTIONS",
]

CACHE_ENV = "CNNVIZ_CACHE"
REDUCTIONS = (None, "max", "mean")
_FORMAT = 1  # bump when what is stored changes
_MAX_BYTES = 4 << 30  # refuse to build an activations tensor larger than this (4 GiB)


class CacheWarning(UserWarning):
    """The results cache could not be read or written; results are recomputed, nothing else changes."""


def runs_dir() -> Path:
    """The cache of dataset passes: ``$CNNVIZ_CACHE`` or the OS user cache (``~/.cache/cnnviz-runs``).

    Not created here: it is created on the first write.
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser().resolve()
    import pooch

    return Path(pooch.os_cache("cnnviz-runs"))


def model_fingerprint(model: nn.Module) -> str:
    """A sha1 of the model's class, name, parameters and buffers (names, shapes, dtypes and values).

    Two untrained ``load_model(name, weights=None)`` calls give two fingerprints:
    their random weights differ, and so do their results.
    """
    h = hashlib.sha1()
    h.update(type(model).__name__.encode())
    h.update(str(getattr(model, "name", "")).encode())
    for n, t in list(model.named_parameters()) + list(model.named_buffers()):
        t = t.detach()
        h.update(f"{n}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _digest(*parts: object) -> str:
    return hashlib.sha1(repr(parts).encode()).hexdigest()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


# ---------------------------------------------------------------- on-disk cache

def _cache_load(path: Path, key: str) -> dict | None:
    if not path.exists():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: recompute and overwrite
        warnings.warn(f"ignoring unreadable cache file {str(path)!r} ({type(e).__name__}: {e}); recomputing",
                      CacheWarning, stacklevel=3)
        return None
    if not isinstance(data, dict) or data.get("key") != key:
        warnings.warn(f"ignoring cache file {str(path)!r}: it was written for other settings; recomputing",
                      CacheWarning, stacklevel=3)
        return None
    return data


def _cache_save(path: Path, data: dict) -> None:
    """Atomic write (temporary file, then rename); a cache that cannot be written only warns."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                torch.save(data, fh)
            os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache is not secret
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as e:
        warnings.warn(
            f"cannot write the results cache {str(path.parent)!r} ({e}); results are not kept for the next run. "
            f"Set {CACHE_ENV} to a writable folder, or pass cache=False.", CacheWarning, stacklevel=3)


# ---------------------------------------------------------------- image sets

def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[0,1] float -> uint8, rounded. In numpy: one pass, no intra-op thread pool (these small
    element-wise ops run in the decoding threads, where torch's pool only adds contention)."""
    a = x.detach().cpu().numpy()
    return torch.from_numpy(np.clip(a * 255.0 + 0.5, 0, 255).astype(np.uint8))


class PhotoSet(torch.utils.data.Dataset):
    """The course photos of ``classes`` (default: all 1000, one per ImageNet class), at ``size``.

    Each photo: short side resized to ``resize`` (default ``round(size*256/224)``)
    then centre-cropped to ``size`` x ``size`` (as ``CourseModel.preprocess``),
    stored as 8-bit ``(3,S,S)`` (within 0.5/255 of the float crop).
    ``photos[i]`` is ``(image (3,S,S) float in [0,1], class index)``;
    ``photos.images`` decodes every photo (or reads the decoded cache) and
    returns ``(N,3,S,S)`` uint8; ``photos.labels`` is ``(N,)`` class indices.

    >>> photos = PhotoSet(range(0, 1000, 10))          # 100 photos, classes 0, 10, ...
    >>> x, c = photos[3]; x.shape, c                    # (torch.Size([3, 224, 224]), 30)
    """

    def __init__(self, classes: Sequence[int | str] | None = None, *, size: int = 224,
                 resize: int | None = None) -> None:
        from .data import class_index, fetch_all, registry, sample_names

        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 8:
            raise ValueError(f"size must be an integer >= 8 (pixels), got {size!r}")
        resize = round(size * 256 / 224) if resize is None else resize
        if isinstance(resize, bool) or not isinstance(resize, numbers.Integral) or resize < size:
            raise ValueError(f"resize must be an integer >= size ({size}), got {resize!r}")
        idx = list(range(1000)) if classes is None else [class_index(c) for c in classes]
        if not idx:
            raise ValueError("classes is empty: pass None (all 1000 photos) or at least one class")
        if len(set(idx)) != len(idx):
            dup = sorted({i for i in idx if idx.count(i) > 1})
            raise ValueError(f"classes lists the same class twice: {dup}")
        names = [sample_names()[i] for i in idx]
        reg = registry()
        self.classes = idx
        self.names = names
        self.size = int(size)
        self.resize = int(resize)
        self.key = _digest("photos", [reg[n].sha256 for n in names], self.size, self.resize, _FORMAT)
        self.paths = fetch_all(names, progress=False)
        self._images: torch.Tensor | None = None
        self._tried_disk = False

    # -- the Dataset protocol (float images, as ImageNetSamples)
    def __len__(self) -> int:
        return len(self.classes)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.image(i)[0], self.classes[i]

    @property
    def labels(self) -> torch.Tensor:
        """``(N,)`` int64: the ImageNet class of each photo."""
        return torch.tensor(self.classes, dtype=torch.long)

    def __repr__(self) -> str:
        state = "decoded" if self._images is not None else "not decoded yet"
        return f"PhotoSet({len(self)} photos, {self.size}x{self.size}, {state})"

    def decode(self, i: int) -> torch.Tensor:
        """Decode photo ``i`` from its JPEG file: ``(3,S,S)`` uint8."""
        from .images import center_crop, load_image, resize_short_side

        return _to_uint8(center_crop(resize_short_side(load_image(self.paths[i]), self.resize), self.size)[0])

    def image(self, i: int) -> torch.Tensor:
        """Photo ``i`` as ``(1,3,S,S)`` float in [0,1] (from the decoded tensor, in memory or in the
        cache, when there is one; else decoded from its file)."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"photo index {i} is out of range: this set has {len(self)} photos (0..{len(self) - 1})")
        if self._images is None and not self._tried_disk:
            self._tried_disk = True
            self._load_decoded(True)
        u8 = self._images[i] if self._images is not None else self.decode(i)
        return u8[None].float() / 255

    @property
    def decoded(self) -> bool:
        return self._images is not None

    def _crop(self, i: int, t: int, l: int, b: int, r: int) -> np.ndarray:
        """Rows t..b, columns l..r (inclusive) of photo i: (3, h, w) float32 in [0,1], cropped before converting."""
        if self._images is None and not self._tried_disk:
            self._tried_disk = True
            self._load_decoded(True)
        u8 = self._images[i] if self._images is not None else self.decode(i)
        return u8.numpy()[:, t:b + 1, l:r + 1].astype(np.float32) / 255

    def _cache_path(self) -> Path:
        return runs_dir() / "photos" / f"{len(self)}x{self.size}-{self.key[:20]}.pt"

    def _load_decoded(self, cache: bool) -> bool:
        if self._images is None and cache:
            data = _cache_load(self._cache_path(), self.key)
            if data is not None and tuple(data["images"].shape) == (len(self), 3, self.size, self.size):
                self._images = data["images"]
        return self._images is not None

    @property
    def images(self) -> torch.Tensor:
        """Every photo, ``(N,3,S,S)`` uint8 (decoded now, or read from the decoded cache)."""
        return self.decode_all()

    @property
    def cache_file(self) -> Path:
        """Where the decoded photos of this set are cached (``runs_dir()/photos/...``), written on first decode."""
        return self._cache_path()

    def decode_all(self, *, workers: int | None = None, cache: bool = True, progress: bool = False) -> torch.Tensor:
        """Decode every photo now (or read them from the decoded cache): ``(N,3,S,S)`` uint8. Nothing else
        runs meanwhile: ``workers`` (default: one per core, at most 8) threads decode.

        Later passes over the set (any model with this input size, any layer, any
        session with ``cache``) then skip JPEG decoding: ``python -m cnnviz_helpers
        prepare`` runs this for the 1000 course photos, and ``make lab`` runs that.
        """
        if workers is not None:
            _check_int("workers", workers, 0)
        else:  # no consumer to overlap: every core decodes
            workers = min(8, os.cpu_count() or 1)
        if not self._load_decoded(cache):
            for _ in self.batches(64, workers=workers, cache=cache, progress=progress):
                pass
        return self._images

    def batches(self, batch_size: int, *, workers: int | None = None, cache: bool = True,
                progress: bool = False) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(start, (B,3,S,S) uint8)`` in order. Not decoded yet: decode in ``workers`` threads,
        ahead of the consumer (JPEG decoding overlaps whatever the caller does with each batch; ``workers=0``:
        in the caller's thread; default: as many threads as cores torch leaves free, often 0), keep the
        result in memory and, with ``cache``, on disk."""
        n = len(self)
        if self._load_decoded(cache):
            for s in range(0, n, batch_size):
                yield s, self._images[s:s + batch_size]
            return
        workers = _default_workers() if workers is None else workers
        out = torch.empty((n, 3, self.size, self.size), dtype=torch.uint8)
        bar = _bar(n, "decoding photos", progress)
        if workers == 0:  # in the caller's thread: no overlap (for comparison and debugging)
            try:
                for s in range(0, n, batch_size):
                    e = min(n, s + batch_size)
                    for i in range(s, e):
                        out[i] = self.decode(i)
                    bar.update(e - s)
                    yield s, out[s:e]
            finally:
                bar.close()
            self._finish_decoding(out, cache)
            return
        ex = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cnnviz-decode")
        try:
            ahead = 2 * batch_size + workers  # bounded look-ahead: memory stays O(batch)
            futures = {i: ex.submit(self.decode, i) for i in range(min(n, ahead))}
            for s in range(0, n, batch_size):
                e = min(n, s + batch_size)
                for i in range(s, e):
                    out[i] = futures.pop(i).result()
                    nxt = i + ahead
                    if nxt < n:
                        futures[nxt] = ex.submit(self.decode, nxt)
                bar.update(e - s)
                yield s, out[s:e]
        finally:
            ex.shutdown(wait=True, cancel_futures=True)
            bar.close()
        self._finish_decoding(out, cache)

    def _finish_decoding(self, out: torch.Tensor, cache: bool) -> None:
        self._images = out
        if cache:
            _cache_save(self._cache_path(), {"key": self.key, "images": out})


class TensorImages:
    """Images already in memory, ``(N,3,H,W)`` float in [0,1], as a source for the dataset passes.

    Used for generated images (lesson 13's texture probes) and in tests. The
    cache key is a hash of the pixels.
    """

    def __init__(self, images: torch.Tensor) -> None:
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a torch.Tensor (N,3,H,W) in [0,1], got {type(images).__name__}")
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[0] == 0:
            raise ValueError(f"images must have shape (N,3,H,W) with N >= 1, got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise TypeError(f"images must be float in [0,1], got dtype {images.dtype} (divide uint8 by 255)")
        lo, hi = float(images.min()), float(images.max())
        if lo < 0 or hi > 1:
            raise ValueError(f"images must lie in [0,1], got values in [{lo:.3g}, {hi:.3g}]")
        self.tensor = images.detach()
        self.size = tuple(images.shape[-2:])
        c = self.tensor.cpu().contiguous()
        self.key = _digest("tensor", tuple(c.shape), str(c.dtype), hashlib.sha1(c.numpy().tobytes()).hexdigest())

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def image(self, i: int) -> torch.Tensor:
        return self.tensor[i:i + 1]

    def _crop(self, i: int, t: int, l: int, b: int, r: int) -> np.ndarray:
        return self.tensor[i, :, t:b + 1, l:r + 1].float().cpu().numpy()

    def batches(self, batch_size: int, **_: object) -> Iterator[tuple[int, torch.Tensor]]:
        for s in range(0, len(self), batch_size):
            yield s, self.tensor[s:s + batch_size]


def _default_workers() -> int:
    """Decoding threads beside the forward pass: only cores torch leaves free. Measured on
    2 cores with torch on both: 2 decoding threads made the pass 1.5x slower than decoding
    in the caller's thread (0), the threads and torch's preempting each other."""
    return max(0, min(4, (os.cpu_count() or 1) - torch.get_num_threads()))


def _bar(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, leave=False)


def _source(photos: object) -> PhotoSet | TensorImages:
    if isinstance(photos, (PhotoSet, TensorImages)):
        return photos
    if isinstance(photos, torch.Tensor):
        return TensorImages(photos)
    raise TypeError(
        f"photos must be a PhotoSet, a TensorImages or a (N,3,H,W) float tensor in [0,1], got {type(photos).__name__}"
    )


def _input_hw(src: PhotoSet | TensorImages) -> tuple[int, int]:
    return (src.size, src.size) if isinstance(src, PhotoSet) else src.size


# ---------------------------------------------------------------- streaming top-k

class StreamingTopK:
    """Per unit, the ``k`` images with the largest activation, kept while the images stream by.

    ``update(act, first_id)`` takes a batch ``act``: ``(B,C,H,W)`` (or ``(B,C)``)
    whose images are numbered ``first_id .. first_id+B-1``. Per image and
    unit it takes the maximum over positions (first one in row-major order
    on ties) and merges those B candidates with the current k best: memory is
    ``O(C*k)`` whatever the number of images. Ties between images go to the
    image seen first. ``values``, ``images``, ``rows``, ``cols``: ``(C,k)``,
    best first (images fewer than k so far: only as many columns as images).

    >>> acc = StreamingTopK(channels=8, k=9)
    >>> for start, batch in enumerate_batches: acc.update(act_of(batch), start)
    """

    def __init__(self, channels: int, k: int) -> None:
        for what, v in (("channels", channels), ("k", k)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"{what} must be a positive integer, got {v!r}")
        self.channels, self.k = int(channels), int(k)
        self.values = torch.empty(self.channels, 0)
        self.images = torch.empty(self.channels, 0, dtype=torch.long)
        self.flat = torch.empty(self.channels, 0, dtype=torch.long)
        self.map_size: tuple[int, int] | None = None
        self.seen = 0

    def update(self, act: torch.Tensor, first_id: int) -> None:
        if act.dim() == 2:
            act = act[:, :, None, None]
        if act.dim() != 4 or act.shape[1] != self.channels:
            raise ValueError(f"expected activations (B,{self.channels},H,W) or (B,{self.channels}), "
                             f"got {tuple(act.shape)}")
        hw = tuple(act.shape[-2:])
        if self.map_size is None:
            self.map_size = hw
        elif hw != self.map_size:
            raise ValueError(f"activation maps changed size from {self.map_size} to {hw} between batches")
        b = act.shape[0]
        m, pos = act.detach().flatten(2).max(2)  # (B,C): per image, the max over positions (on act's device)
        m, pos = m.float().cpu(), pos.cpu()
        ids = torch.arange(first_id, first_id + b).expand(self.channels, b)
        cand_v = torch.cat([self.values, m.T], 1)  # (C, k'+B): the current best first, then this batch
        cand_i = torch.cat([self.images, ids], 1)
        cand_p = torch.cat([self.flat, pos.T], 1)
        order = cand_v.argsort(dim=1, descending=True, stable=True)[:, :self.k]  # stable: earlier images win ties
        self.values = cand_v.gather(1, order)
        self.images = cand_i.gather(1, order)
        self.flat = cand_p.gather(1, order)
        self.seen += b

    @property
    def rows(self) -> torch.Tensor:
        return self.flat // (self.map_size[1] if self.map_size else 1)

    @property
    def cols(self) -> torch.Tensor:
        return self.flat % (self.map_size[1] if self.map_size else 1)


@dataclasses.dataclass(frozen=True)
class TopK:
    """The top-k photos of every unit of one layer, from ``top_activations``.

    ``values`` ``(C,k)``: each photo's maximum activation, best first;
    ``images`` ``(C,k)``: indices into the photo set; ``rows``/``cols`` ``(C,k)``:
    where in the ``map_size`` feature map that maximum sits; ``rf``: the layer's
    receptive field at ``input_size`` (``None`` for a layer whose units see the
    whole image: fc, global pooling).
    """

    layer: str
    dotted: str
    values: torch.Tensor
    images: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor
    map_size: tuple[int, int]
    input_size: tuple[int, int]
    rf: ReceptiveField | None
    source_key: str

    @property
    def channels(self) -> int:
        return self.values.shape[0]

    @property
    def k(self) -> int:
        return self.values.shape[1]

    def _check_unit(self, unit: int) -> int:
        if isinstance(unit, bool) or not isinstance(unit, numbers.Integral) or not 0 <= unit < self.channels:
            raise IndexError(f"unit {unit!r} is out of range: layer {self.layer!r} has units 0..{self.channels - 1}")
        return int(unit)

    def box(self, unit: int, rank: int = 0, *, clip: bool = True) -> tuple[int, int, int, int]:
        """(top, left, bottom, right), inclusive, of the patch behind ``unit``'s ``rank``-th photo
        (clipped to the image unless ``clip=False``; the whole image when ``rf`` is None)."""
        u = self._check_unit(unit)
        if not 0 <= rank < self.k:
            raise IndexError(f"rank {rank} is out of range: 0..{self.k - 1}")
        H, W = self.input_size
        if self.rf is None:
            return 0, 0, H - 1, W - 1
        i, j = int(self.rows[u, rank]), int(self.cols[u, rank])
        return self.rf.clipped_box(i, j, H, W) if clip else self.rf.box(i, j)

    def patches(self, unit: int, photos: PhotoSet | TensorImages | torch.Tensor, *, pad: bool = True,
                fill: float = 0.5) -> list[torch.Tensor]:
        """The ``k`` input patches of ``unit``, best first, each ``(3,h,w)`` float in [0,1].

        ``pad=True``: every patch is the full receptive field (same size), the
        part outside the photo filled with grey ``fill``; ``pad=False``: the
        part inside the photo only. ``photos`` must be the set of the pass.
        """
        u = self._check_unit(unit)
        src = _source(photos)
        if src.key != self.source_key:
            raise ValueError(f"these photos are not the set that layer {self.layer!r} was ranked on "
                             f"(pass the same PhotoSet or tensor as to top_activations)")
        out = []
        for r in range(self.k):  # in numpy: a slider move crops 9 patches, a few small copies each
            t, l, b, rt = self.box(u, r, clip=True)
            crop = src._crop(int(self.images[u, r]), t, l, b, rt)            # (3, h, w) float32
            if pad and self.rf is not None:
                T, L, B, R = self.box(u, r, clip=False)
                full = np.full((3, B - T + 1, R - L + 1), fill, dtype=np.float32)
                full[:, t - T:b - T + 1, l - L:rt - L + 1] = crop
                crop = full
            out.append(torch.from_numpy(np.ascontiguousarray(crop)))
        return out


# ---------------------------------------------------------------- the passes

def _check_int(name: str, v: object, lo: int, hi: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo or (hi is not None and v > hi):
        rng = f"in {lo}..{hi}" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be an integer {rng}, got {v!r}")
    return int(v)


def _device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _probe_shapes(model: nn.Module, names: list[str], hw: tuple[int, int]) -> dict[str, tuple[int, ...]]:
    """Output shape (without batch) of each layer, from one forward pass on a blank image."""
    with capture(model, names, detach=True) as rec, torch.no_grad():
        model(torch.zeros(1, 3, *hw, device=_device(model)))
        rec.check_called()
        return {n: tuple(rec[n].shape[1:]) for n in names}


def _check_batch(batch_size: int | None) -> int | None:
    return None if batch_size is None else _check_int("batch_size", batch_size, 1)


def _stream(model: nn.Module, names: list[str], src: PhotoSet | TensorImages, batch_size: int | None,
            workers: int | None, progress: bool, consume: Callable[[int, dict[str, torch.Tensor]], None],
            cache: bool, desc: str) -> None:
    """One forward pass over ``src`` with every layer of ``names`` captured; ``consume(start, acts)``
    per batch.

    Hooks and model state are owned by ``capture`` and ``relu_rule`` (removed and
    restored in their ``finally``). ``relu_rule(model, "gradient")`` switches
    in-place ReLU modules off for the pass: otherwise a recorded conv output
    would be rectified in place by the next module before ``consume`` sees it.
    Any other in-place change of a recorded output (``out += identity``,
    ``F.relu(x, inplace=True)``) is detected by its version counter and refused.
    """
    dev = _device(model)
    resolved = resolve_layers(model, names)
    if batch_size is None:  # measured only when there is a pass to run (a cached call runs none)
        from .attribution import best_batch_size

        batch_size = best_batch_size(model, _input_hw(src))
    versions: dict[str, int] = {}
    handles = []
    bar = _bar(len(src), desc, progress)
    try:
        with relu_rule(model, "gradient"), capture(model, names, detach=True) as rec, torch.no_grad():
            for n, (_, mod) in resolved.items():
                def note_version(m, inp, out, n=n):
                    t = out if isinstance(out, torch.Tensor) else out[0]
                    versions.setdefault(n, t._version)

                handles.append(mod.register_forward_hook(note_version))
            for start, xb in src.batches(batch_size, workers=workers, cache=cache):
                x = xb.to(dev)
                x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
                x = x.contiguous(memory_format=torch.channels_last)  # CPU convolutions: several times faster
                rec.activations.clear()  # capture keeps a layer's first output: one forward per batch
                versions.clear()
                model(x)
                rec.check_called()
                for n in names:
                    if rec[n]._version != versions[n]:
                        raise RuntimeError(
                            f"the output of layer {n!r} ({rec.dotted[n]}) is modified in place later in the model's "
                            f"forward() (e.g. `out += identity` or F.relu(x, inplace=True)): what a hook records "
                            f"there is not the layer's output. Use the next layer (see list_layers(model)).")
                consume(start, {n: rec[n] for n in names})
                bar.update(xb.shape[0])
    finally:
        for h in handles:
            h.remove()
        bar.close()


def top_activations(
    model: nn.Module,
    layers: str | Sequence[str],
    photos: PhotoSet | TensorImages | torch.Tensor | None = None,
    *,
    k: int = 9,
    batch_size: int | None = None,
    workers: int | None = None,
    cache: bool = True,
    progress: bool = True,
) -> dict[str, TopK]:
    """For every unit of each layer, the ``k`` photos that activate it most, in one pass.

    ``layers``: names or aliases (``"block2"``, ``"conv5"``); ``photos``: a
    ``PhotoSet`` (default: all 1000 course photos at the model's input size), a
    ``TensorImages`` or an ``(N,3,H,W)`` float tensor in [0,1]. A unit's score
    on a photo is its maximum over positions (one patch per photo, as in the
    lecture's figures); ranking is streamed (``StreamingTopK``). Returns
    ``{layer: TopK}``; ``TopK.patches(unit, photos)`` crops the receptive fields.
    With ``cache``, results (with their receptive fields) are read from /
    written to ``runs_dir()``: a cached call runs no forward pass at all.
    ``batch_size``: photos per forward pass; ``None`` measures the fastest
    (``attribution.best_batch_size``, once per model and size) when a pass runs.

    >>> top = top_activations(model, ["block2", "block5"], PhotoSet(range(0, 1000, 10)))
    >>> top["block5"].values.shape        # (112, 9): 112 units, 9 photos each
    """
    resolved = resolve_layers(model, layers)  # KeyError with the closest names, before any work
    names = list(resolved)
    src = _source(photos) if photos is not None else PhotoSet(size=getattr(model, "input_size", 224))
    k = _check_int("k", k, 1, len(src))
    batch_size = _check_batch(batch_size)
    if workers is not None:
        _check_int("workers", workers, 0)
    hw = _input_hw(src)
    fp = model_fingerprint(model) if cache else ""
    keys = {n: _digest("topk", fp, resolved[n][0], src.key, k, _FORMAT) for n in names}
    paths = {n: runs_dir() / "topk" / f"{_safe(str(getattr(model, 'name', 'model')))}-{_safe(resolved[n][0])}-"
             f"{keys[n][:20]}.pt" for n in names}
    out: dict[str, TopK] = {}
    todo = []
    for n in names:
        data = _cache_load(paths[n], keys[n]) if cache else None
        if data is None:
            todo.append(n)
        else:
            out[n] = _topk_result(n, resolved[n][0], data, hw, src.key)
    if todo:
        shapes = _probe_shapes(model, todo, hw)
        rfs: dict[str, dict | None] = {}
        for n in todo:
            s = shapes[n]
            if len(s) not in (1, 3):
                raise ValueError(f"layer {n!r} outputs shape {s} per image; expected (C,H,W) or (C,)")
            spatial = len(s) == 3 and s[1] * s[2] > 1
            rfs[n] = _rf_to_dict(receptive_field(model, n, hw)) if spatial else None  # errors before the pass
        acc = {n: StreamingTopK(shapes[n][0], k) for n in todo}

        def consume(start: int, acts: dict[str, torch.Tensor]) -> None:
            for n in todo:
                acc[n].update(acts[n], start)

        _stream(model, todo, src, batch_size, workers, progress, consume, cache,
                f"top-{k} of {len(todo)} layer(s)")
        for n in todo:
            a = acc[n]
            data = {"key": keys[n], "values": a.values, "images": a.images, "rows": a.rows, "cols": a.cols,
                    "map_size": list(a.map_size), "rf": rfs[n]}
            if cache:
                _cache_save(paths[n], data)
            out[n] = _topk_result(n, resolved[n][0], data, hw, src.key)
    return {n: out[n] for n in names}


def _rf_to_dict(rf: ReceptiveField) -> dict:
    return dataclasses.asdict(rf)


def _tuples(v):
    return tuple(_tuples(a) for a in v) if isinstance(v, (list, tuple)) else v


def _rf_from_dict(d: dict | None) -> ReceptiveField | None:
    return None if d is None else ReceptiveField(**{k: _tuples(v) for k, v in d.items()})


def _topk_result(name: str, dotted: str, data: dict, hw: tuple[int, int], key: str) -> TopK:
    return TopK(layer=name, dotted=dotted, values=data["values"], images=data["images"], rows=data["rows"],
                cols=data["cols"], map_size=tuple(data["map_size"]), input_size=hw, rf=_rf_from_dict(data["rf"]),
                source_key=key)


def activations(
    model: nn.Module,
    layers: str | Sequence[str],
    photos: PhotoSet | TensorImages | torch.Tensor | None = None,
    *,
    reduce: str | None = None,
    dtype: torch.dtype = torch.float32,
    batch_size: int | None = None,
    workers: int | None = None,
    cache: bool = True,
    progress: bool = True,
) -> dict[str, torch.Tensor]:
    """The outputs of each layer for every photo, in one pass: ``{layer: (N, C, H, W) or (N, C)}`` on the CPU.

    ``reduce``: ``None`` (keep the maps), ``"max"`` or ``"mean"`` over positions
    (``(N, C)``: e.g. ``"mean"`` of the last conv block is the pooled embedding).
    ``dtype``: storage type (``torch.float16`` halves memory). Refuses, before
    the pass, a result larger than 4 GiB. Photos, cache and ``batch_size`` as in
    ``top_activations``.

    >>> emb = activations(model, "pool", photos)["pool"].flatten(1)   # (N, 1280)
    """
    resolved = resolve_layers(model, layers)
    names = list(resolved)
    if reduce not in REDUCTIONS:
        raise ValueError(f"unknown reduce {reduce!r}: choose one of None, 'max', 'mean'")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype (torch.float32, torch.float16), got {dtype!r}")
    src = _source(photos) if photos is not None else PhotoSet(size=getattr(model, "input_size", 224))
    batch_size = _check_batch(batch_size)
    if workers is not None:
        _check_int("workers", workers, 0)
    n_img = len(src)
    fp = model_fingerprint(model) if cache else ""
    keys = {n: _digest("acts", fp, resolved[n][0], src.key, reduce, str(dtype), _FORMAT) for n in names}
    paths = {n: runs_dir() / "acts" / f"{_safe(str(getattr(model, 'name', 'model')))}-{_safe(resolved[n][0])}-"
             f"{reduce or 'maps'}-{keys[n][:20]}.pt" for n in names}
    out: dict[str, torch.Tensor] = {}
    todo = []
    for n in names:
        data = _cache_load(paths[n], keys[n]) if cache else None
        if data is not None and data["acts"].shape[0] == n_img and data["acts"].dtype == dtype:
            out[n] = data["acts"]
        else:
            todo.append(n)
    if todo:
        shapes = _probe_shapes(model, todo, _input_hw(src))
        out_shapes = {n: (shapes[n][0],) if (reduce is not None and len(shapes[n]) == 3) else shapes[n] for n in todo}
        total = sum(n_img * int(np.prod(s)) for s in out_shapes.values()) * torch.finfo(dtype).bits // 8
        if total > _MAX_BYTES:
            big = ", ".join(f"{n} {out_shapes[n]}" for n in todo)
            raise ValueError(f"the activations of {n_img} photos would take {total / 2**30:.1f} GiB ({big} per photo), "
                             f"above the 4 GiB limit: use reduce='max'/'mean', dtype=torch.float16 or fewer photos")
    if todo:
        store = {n: torch.empty((n_img, *out_shapes[n]), dtype=dtype) for n in todo}

        def consume(start: int, acts: dict[str, torch.Tensor]) -> None:
            for n in todo:
                a = acts[n]
                if reduce is not None and a.dim() == 4:
                    a = a.amax((2, 3)) if reduce == "max" else a.mean((2, 3))
                store[n][start:start + a.shape[0]] = a.to("cpu", dtype)

        _stream(model, todo, src, batch_size, workers, progress, consume, cache,
                f"activations of {len(todo)} layer(s)")
        for n in todo:
            if cache:
                _cache_save(paths[n], {"key": keys[n], "acts": store[n]})
            out[n] = store[n]
    return {n: out[n] for n in names}
