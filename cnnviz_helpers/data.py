"""The course images: a registry of (path, sha256, pinned URL), fetched into a local cache.

``data/registry.txt`` lists 1000 ImageNet sample photos (one per class, the
i-th file sorted by name is class i) and four style-transfer images. Files are
fetched on first use with pooch (download to a temporary file, verify the
sha256, then move into place: a corrupted download never stays in the cache)
into ``config.data_dir()`` (``$CNNVIZ_DATA`` or the OS cache dir). Files that
are already there and match their hash are used as they are, and the cache
folder is never written to then (it may be read-only, as in CI).

Introduced in lesson 03; the whole set is used by lessons 01 and 13.
"""
from __future__ import annotations

import difflib
import errno
import hashlib
import os
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import torch

from .config import DATA_URL_ENV, data_dir
from .labels import class_index

__all__ = [
    "REGISTRY_PATH",
    "STYLE_IMAGES",
    "Entry",
    "registry",
    "fetch",
    "fetch_all",
    "sample_names",
    "sample_path",
    "sample_paths",
    "class_index",
    "style_path",
    "ImageNetSamples",
    "cache_status",
    "HashMismatchError",
    "DownloadError",
    "CacheNotWritableError",
    "CacheFullError",
]

REGISTRY_PATH = Path(__file__).resolve().parent.parent / "data" / "registry.txt"
STYLE_IMAGES = ("starry_night", "the_scream", "shipwreck", "tubingen")


class HashMismatchError(ValueError):
    """A downloaded file's sha256 differs from the registry's: a corrupt download or a changed mirror."""


class DownloadError(ConnectionError):
    """The server could not be reached (offline?) or refused the file (HTTP error)."""


class CacheNotWritableError(PermissionError):
    """The cache folder cannot be created or written to (read-only, or owned by someone else)."""


class CacheFullError(OSError):
    """The disk of the cache folder is full (ENOSPC)."""


@dataclass(frozen=True)
class Entry:
    name: str  # relative path, e.g. imagenet-samples/n01440764_tench.JPEG
    sha256: str
    url: str


@lru_cache(maxsize=4)
def _load_registry(path: str) -> dict[str, Entry]:
    out: dict[str, Entry] = {}
    with open(path, encoding="utf-8") as fh:
        for ln, line in enumerate(fh, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) != 3 or not parts[1].startswith("sha256:"):
                raise ValueError(f"{path}:{ln}: expected 'path sha256:HASH URL', got {line!r}")
            out[parts[0]] = Entry(parts[0], parts[1].split(":", 1)[1].lower(), parts[2])
    return out


def registry(path: str | Path | None = None) -> dict[str, Entry]:
    """The registry as ``{relative path: Entry}`` (default: the project's ``data/registry.txt``)."""
    if path is None and not REGISTRY_PATH.exists():  # pragma: no cover - broken checkout
        raise FileNotFoundError(f"the course registry is missing: {REGISTRY_PATH}")
    return _load_registry(str(path or REGISTRY_PATH))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_VERIFIED: dict[tuple[str, int, int], str] = {}


def _verified_hash(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _VERIFIED:
        _VERIFIED[key] = _sha256(path)
    return _VERIFIED[key]


def _url(entry: Entry, base_url: str | None) -> str:
    base = base_url if base_url is not None else os.environ.get(DATA_URL_ENV)
    return entry.url if not base else base.rstrip("/") + "/" + entry.name


def fetch(
    name: str,
    *,
    cache: str | Path | None = None,
    base_url: str | None = None,
    progress: bool = False,
    reg: dict[str, Entry] | None = None,
) -> Path:
    """Local path of registry file ``name``, downloading and verifying it if needed.

    A cached file with the right hash is returned untouched. A missing file is
    downloaded (from its pinned URL, or ``base_url``/``$CNNVIZ_DATA_URL`` + name);
    a download whose hash does not match raises ``HashMismatchError`` and
    leaves nothing in the cache. A cached file with a wrong hash is replaced.

    Each failure has its own error and advice: ``DownloadError`` (a
    ``ConnectionError``: offline, or an HTTP error from the mirror),
    ``CacheNotWritableError`` (a ``PermissionError``: read-only cache folder),
    ``CacheFullError`` (an ``OSError`` with ``errno.ENOSPC``: the disk is full),
    ``HashMismatchError`` (corrupt download or changed mirror).
    """
    reg = reg if reg is not None else registry()
    if name not in reg:
        close = difflib.get_close_matches(name, list(reg), n=3)
        hint = f" Closest: {', '.join(close)}." if close else ""
        raise KeyError(f"{name!r} is not in the course registry ({len(reg)} files).{hint}")
    entry = reg[name]
    root = Path(cache) if cache is not None else data_dir()
    path = root / name
    if path.exists() and _verified_hash(path) == entry.sha256:
        return path
    import pooch

    url = _url(entry, base_url)
    try:
        got = pooch.retrieve(
            url, known_hash=f"sha256:{entry.sha256}", fname=Path(name).name,
            path=path.parent, progressbar=progress,
        )
    except Exception as e:
        why = _fetch_error(e, entry, url, path)
        if why is None:  # unforeseen: as it is, not guessed at
            raise
        raise why from (None if isinstance(why, DownloadError) else e)  # requests' traceback adds nothing
    return Path(got)


_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def _fetch_error(e: Exception, entry: Entry, url: str, path: Path) -> Exception | None:
    """The error that says what went wrong in ``fetch`` and what to do; None if ``e`` is unforeseen."""
    import requests

    name, folder = entry.name, path.parent
    if isinstance(e, requests.HTTPError) and e.response is not None:
        return DownloadError(
            f"cannot download {name!r}: {url} answered HTTP {e.response.status_code} {e.response.reason}. "
            f"The mirror lacks the file or moved: check CNNVIZ_DATA_URL, or point CNNVIZ_DATA at a folder "
            f"that already holds the course images."
        )
    if isinstance(e, requests.RequestException):  # before OSError: requests' errors are IOErrors
        return DownloadError(
            f"cannot download {name!r} from {url} into {folder} ({type(e).__name__}: {e}). Offline? "
            f"Point CNNVIZ_DATA at a folder that already holds the course images, or set CNNVIZ_DATA_URL to a mirror."
        )
    if isinstance(e, ValueError) and "hash" in str(e).lower():
        return HashMismatchError(
            f"download of {name!r} from {url} does not match the registry's sha256 {entry.sha256[:12]}...: "
            f"refused, nothing kept in {folder}. The file is corrupt or the mirror changed it (this is not "
            f"an offline problem): try again, or use another mirror (CNNVIZ_DATA_URL)."
        )
    if isinstance(e, PermissionError) or (isinstance(e, OSError) and e.errno in _NOT_WRITABLE):
        stale = " (the cached copy there has a wrong hash and must be replaced)" if path.exists() else ""
        return CacheNotWritableError(
            f"cannot write {name!r} into the cache folder {folder}: it is not writable{stale} "
            f"({type(e).__name__}: {e}). Set CNNVIZ_DATA to a writable folder (the course images go there), "
            f"or to a folder that already holds them."
        )
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return CacheFullError(
            errno.ENOSPC,
            f"cannot download {name!r} into {folder}: the disk is full ({_free(folder)} free). Free some space, "
            f"or set CNNVIZ_DATA to a folder on a disk with room (the 1004 course images take about 110 MB)."
        )
    return None


def _free(folder: Path) -> str:
    p = folder
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return f"{shutil.disk_usage(p).free / 1e6:.1f} MB"
    except OSError:  # pragma: no cover - unreadable mount
        return "unknown"


def fetch_all(names: Sequence[str], *, cache: str | Path | None = None, base_url: str | None = None,
              progress: bool = True) -> list[Path]:
    """Fetch several registry files (a progress bar over the files that need downloading)."""
    reg = registry()
    for n in names:  # validate all before any download
        if n not in reg:
            fetch(n, reg=reg)  # raises the KeyError with suggestions
    root = Path(cache) if cache is not None else data_dir()
    todo = [n for n in names if not (root / n).exists() or _verified_hash(root / n) != reg[n].sha256]
    if todo:
        from tqdm.auto import tqdm

        for n in tqdm(todo, desc=f"downloading {len(todo)} course images", disable=not progress):
            fetch(n, cache=root, base_url=base_url, reg=reg)
    return [root / n for n in names]


@lru_cache(maxsize=1)
def sample_names() -> tuple[str, ...]:
    """The 1000 ImageNet sample files, sorted: index i is ImageNet class i."""
    names = sorted(n for n in registry() if n.startswith("imagenet-samples/"))
    if len(names) != 1000:  # pragma: no cover - broken registry
        raise RuntimeError(f"expected 1000 ImageNet samples in the registry, found {len(names)}")
    return tuple(names)


def sample_path(cls: int | str, **kw) -> Path:
    """Path of the course photo of ImageNet class ``cls`` (index or name), fetched if needed."""
    return fetch(sample_names()[class_index(cls)], **kw)


def sample_paths(classes: Sequence[int | str] | None = None, **kw) -> list[Path]:
    """Paths of the course photos of ``classes`` (default: all 1000, in class order)."""
    idx = range(1000) if classes is None else [class_index(c) for c in classes]
    return fetch_all([sample_names()[i] for i in idx], **kw)


def style_path(name: str, **kw) -> Path:
    """Path of a style-transfer image: one of starry_night, the_scream, shipwreck, tubingen."""
    if name not in STYLE_IMAGES:
        close = difflib.get_close_matches(name, STYLE_IMAGES, n=2)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"unknown style image {name!r}.{hint} Choose one of {', '.join(STYLE_IMAGES)}")
    hit = [n for n in registry() if n.startswith(f"style/{name}.")]
    return fetch(hit[0], **kw)


class ImageNetSamples(torch.utils.data.Dataset):
    """The course's ImageNet photos as ``(image (3,S,S) in [0,1], class index)`` pairs.

    ``classes``: which classes (default all 1000, one photo each); ``size``:
    crop side, after resizing the short side to ``resize`` (default
    ``round(size * 256 / 224)``). Files are fetched on construction.
    """

    def __init__(self, classes: Sequence[int | str] | None = None, *, size: int = 224, resize: int | None = None,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.indices = list(range(1000)) if classes is None else [class_index(c) for c in classes]
        self.paths = fetch_all([sample_names()[i] for i in self.indices])
        self.size = size
        self.resize = resize if resize is not None else round(size * 256 / 224)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from .images import load_cropped

        x = load_cropped(self.paths[i], self.resize, self.size)[0]
        if self.transform is not None:
            x = self.transform(x)
        return x, self.indices[i]


def cache_status(cache: str | Path | None = None) -> dict:
    """Where the cache is and how complete: ``{'path', 'total', 'present', 'bad'}`` (hashes checked)."""
    root = Path(cache) if cache is not None else data_dir()
    reg = registry()
    present = bad = 0
    for name, e in reg.items():
        p = root / name
        if p.exists():
            if _verified_hash(p) == e.sha256:
                present += 1
            else:
                bad += 1
    return {"path": str(root), "total": len(reg), "present": present, "bad": bad}
