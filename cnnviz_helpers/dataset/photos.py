"""Image sets for the dataset passes: the course photos decoded once (``PhotoSet``) and images in memory
(``TensorImages``)."""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from .._checks import check_int
from .._util import to_uint8
from .cache import _FORMAT, _cache_load, _cache_save, _digest, runs_dir

__all__ = ["PhotoSet", "TensorImages"]


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[0,1] float tensor -> uint8 tensor, rounded (``_util.to_uint8``, in numpy: these small element-wise
    ops run in the decoding threads, where torch's intra-op pool only adds contention)."""
    return torch.from_numpy(to_uint8(x.detach().cpu().numpy()))


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
        from ..data import class_index, fetch_all, registry, sample_names

        size = check_int(size, "size", lo=8, must="an integer >= 8 (pixels)")
        resize = round(size * 256 / 224) if resize is None else resize
        resize = check_int(resize, "resize", lo=size, must=f"an integer >= size ({size})")
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
        from ..images import load_cropped

        return _to_uint8(load_cropped(self.paths[i], self.resize, self.size)[0])

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

    def thumbnails(self, size: int, *, chunk: int = 100) -> torch.Tensor:
        """Every photo resized to ``size`` x ``size`` (bilinear, antialiased), ``(N,3,size,size)`` float in [0,1].

        ``chunk`` photos at a time: no float copy of all full-size photos is made (1000 at 224 px would be 600 MB).
        """
        return _thumbnails(lambda s, e: self.images[s:e].float() / 255, len(self), size, chunk)

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
            check_int(workers, "workers", lo=0)
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

    def thumbnails(self, size: int, *, chunk: int = 100) -> torch.Tensor:
        """The images resized to ``size`` x ``size``, as ``PhotoSet.thumbnails``."""
        return _thumbnails(lambda s, e: self.tensor[s:e].float().cpu(), len(self), size, chunk)

    def batches(self, batch_size: int, **_: object) -> Iterator[tuple[int, torch.Tensor]]:
        for s in range(0, len(self), batch_size):
            yield s, self.tensor[s:s + batch_size]


def _thumbnails(get, n: int, size: int, chunk: int) -> torch.Tensor:
    import torch.nn.functional as F

    size, chunk = check_int(size, "size", lo=1), check_int(chunk, "chunk", lo=1)
    return torch.cat([F.interpolate(get(s, min(n, s + chunk)), size=(size, size), mode="bilinear", antialias=True)
                      .clamp(0, 1) for s in range(0, n, chunk)])


def _default_workers() -> int:
    """Decoding threads beside the forward pass: only the cores torch leaves free (more threads
    preempt torch's and slow the pass down: benchmarks/NOTES.md)."""
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
