"""Course data: the registry, class names, real downloads over HTTP from a local server, and one error per failure
(offline, HTTP error, read-only cache, full disk, wrong hash)."""
from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from cnnviz_helpers import data
from cnnviz_helpers.data import (CacheFullError, CacheNotWritableError, DownloadError, HashMismatchError, class_index,
                                 fetch, registry)
from browser import free_port, server

SHARED = Path(os.environ.get("CNNVIZ_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def test_registry_lists_the_course_images():
    reg = registry()
    assert len(reg) == 1004
    assert len(data.sample_names()) == 1000
    assert sum(n.startswith("style/") for n in reg) == 4
    e = reg["imagenet-samples/n01440764_tench.JPEG"]
    assert len(e.sha256) == 64 and e.url.startswith("https://") and e.url.endswith("n01440764_tench.JPEG")


def test_sample_i_is_class_i():
    from cnnviz_helpers.models import imagenet_categories

    cats = imagenet_categories()
    names = data.sample_names()
    for i in (0, 1, 281, 511, 999):
        stem = Path(names[i]).stem.split("_", 1)[1]
        assert class_index(stem, cats) == i or cats[i].replace(" ", "_").lower() == stem.lower()


def test_class_index_errors():
    assert class_index("tabby") == 281 and class_index("Golden_Retriever") == 207 and class_index(5) == 5
    with pytest.raises(KeyError, match=r"unknown ImageNet class 'tabbby'\. Closest: tabby"):
        class_index("tabbby")
    with pytest.raises(ValueError, match=r"class name 'crane' is ambiguous: indices \[1, 3\]; pass the index"):
        class_index("crane", ["heron", "crane", "stork", "Crane"])
    with pytest.raises(IndexError, match=r"class index 1000 is out of range: valid indices are 0\.\.999"):
        class_index(1000)
    with pytest.raises(KeyError, match=r"unknown style image 'starry'\. Did you mean 'starry_night'\?"):
        data.style_path("starry")
    with pytest.raises(KeyError, match=r"'cat\.jpg' is not in the course registry \(1004 files\)"):
        fetch("cat.jpg")


NAMES = ["imagenet-samples/n02123045_tabby.JPEG", "imagenet-samples/n02099601_golden_retriever.JPEG",
         "style/tubingen.jpg"]


@pytest.fixture()
def http_mirror(tmp_path):
    """Serve a copy of three course files on 127.0.0.1 (a copy, so a test can tamper with it)."""
    if not all((SHARED / n).exists() for n in NAMES):
        pytest.skip(f"the course image mirror is not at {SHARED} (set CNNVIZ_DATA)")
    root = tmp_path / "mirror"
    for n in NAMES:
        (root / n).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SHARED / n, root / n)
    port = free_port()
    cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(root)]
    with server(cmd, f"http://127.0.0.1:{port}/{NAMES[0]}"):
        yield root, f"http://127.0.0.1:{port}"


def test_download_into_empty_cache_verifies_hashes(http_mirror, tmp_path):
    root, url = http_mirror
    cache = tmp_path / "cache"
    reg = registry()
    for n in NAMES:
        p = fetch(n, cache=cache, base_url=url)
        assert p == cache / n
        assert hashlib.sha256(p.read_bytes()).hexdigest() == reg[n].sha256
    # a second fetch uses the cache: the server can be gone
    before = {n: (cache / n).stat().st_mtime_ns for n in NAMES}
    shutil.rmtree(root)
    for n in NAMES:
        fetch(n, cache=cache, base_url=url)
    assert before == {n: (cache / n).stat().st_mtime_ns for n in NAMES}


def test_tampered_download_is_rejected_and_not_kept(http_mirror, tmp_path):
    root, url = http_mirror
    (root / NAMES[0]).write_bytes((root / NAMES[0]).read_bytes()[:-10] + b"tampered!!")
    cache = tmp_path / "cache"
    with pytest.raises(HashMismatchError, match=r"does not match the registry's sha256 .*nothing kept"):
        fetch(NAMES[0], cache=cache, base_url=url)
    folder = cache / "imagenet-samples"
    assert not (folder / Path(NAMES[0]).name).exists()
    assert not folder.exists() or not any(folder.iterdir()), list(folder.iterdir())


def test_corrupted_cached_file_is_replaced(http_mirror, tmp_path):
    root, url = http_mirror
    cache = tmp_path / "cache"
    bad = cache / NAMES[1]
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"half a file")
    p = fetch(NAMES[1], cache=cache, base_url=url)
    assert hashlib.sha256(p.read_bytes()).hexdigest() == registry()[NAMES[1]].sha256


def test_offline_error_says_what_to_do(tmp_path):
    with pytest.raises(DownloadError, match=r"cannot download 'style/tubingen\.jpg' from http://127\.0\.0\.1:9/"
                                            r"style/tubingen\.jpg .*Offline\? Point CNNVIZ_DATA") as e:
        fetch("style/tubingen.jpg", cache=tmp_path, base_url="http://127.0.0.1:9")
    assert isinstance(e.value, ConnectionError) and "corrupt" not in str(e.value)


# ---------------------------------------------------------------- each fetch failure has its own error and advice

TUBINGEN = "style/tubingen.jpg"


def test_http_error_names_the_status_not_offline(tmp_path):
    """A mirror that answers but lacks the file: HTTP 404, not "Offline?"."""
    root = tmp_path / "mirror"
    root.mkdir()
    (root / "ok.txt").write_text("ok")
    port = free_port()
    cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(root)]
    with server(cmd, f"http://127.0.0.1:{port}/ok.txt"):
        with pytest.raises(DownloadError, match=rf"cannot download 'style/tubingen\.jpg': http://127\.0\.0\.1:{port}/"
                                                r"style/tubingen\.jpg answered HTTP 404 .*check CNNVIZ_DATA_URL") as e:
            fetch(TUBINGEN, cache=tmp_path / "cache", base_url=f"http://127.0.0.1:{port}")
    assert "Offline" not in str(e.value)


@contextmanager
def _read_only(folder: Path, monkeypatch):
    """``folder`` not writable: by chmod, or (as root, whom chmod does not stop) by failing the write there."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    real = tempfile.NamedTemporaryFile

    def refuse(*a, dir=None, **k):
        if dir is not None and Path(dir).resolve().is_relative_to(folder.resolve()):
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))
        return real(*a, dir=dir, **k)

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)
    yield


@pytest.mark.parametrize("stale", [False, True])
def test_read_only_cache_is_not_called_offline(tmp_path, monkeypatch, stale):
    folder = tmp_path / "cache" / "style"
    folder.mkdir(parents=True)
    if stale:
        (folder / "tubingen.jpg").write_bytes(b"an old, wrong copy")
    expect = (rf"cannot write 'style/tubingen\.jpg' into the cache folder {re.escape(str(folder))}: "
              r"it is not writable" + (r" \(the cached copy there has a wrong hash" if stale else "")
              + r".*Set CNNVIZ_DATA to a writable folder")
    with _read_only(folder, monkeypatch):
        with pytest.raises(CacheNotWritableError, match=expect) as e:
            fetch(TUBINGEN, cache=tmp_path / "cache", base_url="http://127.0.0.1:9")
    assert isinstance(e.value, PermissionError) and "Offline" not in str(e.value)


def _downloader(monkeypatch, action):
    """Replace pooch's HTTP download (the rest of pooch, temporary file and hash check, runs for real)."""
    import pooch.downloaders

    monkeypatch.setattr(pooch.downloaders.HTTPDownloader, "__call__",
                        lambda self, url, output_file, pooch_, check_only=False: action(output_file))


def test_full_disk_names_the_folder_and_the_free_space(tmp_path, monkeypatch):
    def full(out):
        Path(out).write_bytes(b"half of the fi")
        raise OSError(errno.ENOSPC, "No space left on device")

    _downloader(monkeypatch, full)
    folder = tmp_path / "cache" / "style"
    with pytest.raises(CacheFullError, match=rf"cannot download 'style/tubingen\.jpg' into {re.escape(str(folder))}: "
                                             r"the disk is full \(\d+\.\d MB free\).*set CNNVIZ_DATA") as e:
        fetch(TUBINGEN, cache=tmp_path / "cache", base_url="http://127.0.0.1:9")
    assert e.value.errno == errno.ENOSPC and "Offline" not in str(e.value)
    assert list(folder.iterdir()) == []  # the partial download is not kept


def test_read_only_file_system_is_a_cache_error(tmp_path, monkeypatch):
    def erofs(out):
        raise OSError(errno.EROFS, "Read-only file system")

    _downloader(monkeypatch, erofs)
    with pytest.raises(CacheNotWritableError, match=r"it is not writable \(OSError: \[Errno 30\] Read-only file"):
        fetch(TUBINGEN, cache=tmp_path / "cache", base_url="http://127.0.0.1:9")


def test_wrong_hash_says_corrupt_or_changed_not_offline(tmp_path, monkeypatch):
    _downloader(monkeypatch, lambda out: Path(out).write_bytes(b"<html>a captive portal page</html>"))
    folder = tmp_path / "cache" / "style"
    with pytest.raises(HashMismatchError, match=r"does not match the registry's sha256 .*nothing kept in .*"
                                                r"The file is corrupt or the mirror changed it \(this is not an "
                                                r"offline problem\)") as e:
        fetch(TUBINGEN, cache=tmp_path / "cache", base_url="http://127.0.0.1:9")
    assert "Offline?" not in str(e.value) and list(folder.iterdir()) == []


def test_unforeseen_errors_are_not_guessed_at(tmp_path, monkeypatch):
    def eio(out):
        raise OSError(errno.EIO, "Input/output error")

    _downloader(monkeypatch, eio)
    with pytest.raises(OSError, match=r"Input/output error") as e:
        fetch(TUBINGEN, cache=tmp_path / "cache", base_url="http://127.0.0.1:9")
    assert type(e.value) is OSError


def test_existing_cache_is_read_without_writing(tmp_path, monkeypatch):
    """A complete cache is used in place; nothing is written there (CI's mirror is shared)."""
    if not (SHARED / NAMES[2]).exists():
        pytest.skip(f"the course image mirror is not at {SHARED}")
    monkeypatch.setenv("CNNVIZ_DATA", str(SHARED))
    before = sorted(os.listdir(SHARED / "style"))
    assert data.style_path("tubingen") == (SHARED / "style" / "tubingen.jpg").resolve()
    assert sorted(os.listdir(SHARED / "style")) == before
