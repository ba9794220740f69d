"""The command line: doctor, prepare and classify (including top-1 accuracy on the 1000 course photos)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from browser import artifacts
from cnnviz_helpers.data import sample_names

SHARED = Path(os.environ.get("CNNVIZ_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def run(*args, env=None, timeout=900):
    return subprocess.run([sys.executable, "-m", "cnnviz_helpers", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def test_doctor_ready_with_complete_cache():
    if not (SHARED / sample_names()[0]).exists():
        pytest.skip(f"the course image mirror is not at {SHARED}")
    r = run("doctor", env={"CNNVIZ_DATA": str(SHARED)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"efficientnet_lite0\s+ready \(embedded", r.stdout)
    assert re.search(r"cache\s+" + re.escape(str(SHARED.resolve())), r.stdout)  # data_dir() is resolved
    assert "1004/1004 present and verified" in r.stdout and "verdict: READY" in r.stdout
    assert re.search(r"alexnet\s+(cached|not cached)", r.stdout)


def test_doctor_not_ready_with_empty_cache(tmp_path):
    r = run("doctor", env={"CNNVIZ_DATA": str(tmp_path)})
    assert r.returncode == 1
    assert "0/1004 present" in r.stdout and "NOT READY" in r.stdout


def test_classify_reports_bad_files_and_goes_on(tmp_path):
    if not (SHARED / sample_names()[281]).exists():
        pytest.skip(f"the course image mirror is not at {SHARED}")
    from test_hostile_inputs import png_declaring

    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"nope")
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_declaring(30000, 30000))  # a decompression bomb: one error line, not a traceback
    good, tabby = SHARED / sample_names()[207], SHARED / sample_names()[281]  # golden retriever, tabby
    r = run("classify", str(tabby), str(junk), str(tmp_path / "missing.png"), str(bomb), str(good), "--top", "3")
    assert r.returncode == 1
    errs = r.stderr.strip().splitlines()
    assert len(errs) == 3 and errs[0].startswith(f"error: {junk}:") and "missing.png" in errs[1], r.stderr
    assert errs[2].startswith(f"error: {bomb}: '{bomb}' declares an image too large to decode safely")
    assert "900000000 pixels" in errs[2] and "Traceback" not in r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{tabby}: ") and "tabby (" in lines[0]  # top-3: Egyptian cat first
    assert lines[1].startswith(f"{good}: golden retriever (")
    assert lines[1].count("(") == 3
    assert run("classify", "x.jpg", "--model", "resnet").returncode == 2  # argparse names the valid choices


def test_classify_accuracy_on_the_1000_course_photos():
    """The embedded model on one photo per ImageNet class: top-1 >= 85% (SOURCES.md measured 882/1000)."""
    paths = [SHARED / n for n in sample_names()]
    if not all(p.exists() for p in paths):
        pytest.skip(f"the course image mirror is not at {SHARED}")
    t = time.perf_counter()
    r = run("classify", *map(str, paths), "--top", "5", "--batch", "32")
    wall = time.perf_counter() - t
    assert r.returncode == 0, r.stderr[-2000:]
    from cnnviz_helpers.models import imagenet_categories

    cats = imagenet_categories()
    preds = {}
    for line in r.stdout.splitlines():
        path, labels = line.split(": ", 1)
        preds[path] = [m.group(1) for m in re.finditer(r"(?:^|, )(.+?) \((?:\d\.\d{3})\)", labels)]
    top1 = sum(preds[str(p)][0] == cats[i] for i, p in enumerate(paths))
    top5 = sum(cats[i] in preds[str(p)] for i, p in enumerate(paths))
    report = f"classify, efficientnet_lite0, 1000 course photos: top-1 {top1}/1000, top-5 {top5}/1000, wall {wall:.1f} s"
    print(report)
    (artifacts("reports") / "classify.txt").write_text(report + "\n")
    assert top1 >= 850, report


def test_prepare_decodes_the_photos_once_and_fails_clearly_offline(tmp_path):
    """``prepare`` writes the decoded photos where PhotoSet reads them (a later set decodes nothing); a
    second run finds them; offline without the photos it exits 1 naming CNNVIZ_DATA; a bad size exits 2."""
    if not all((SHARED / n).exists() for n in sample_names()):
        pytest.skip(f"the course image mirror is not at {SHARED}")
    cache = tmp_path / "runs"
    env = {"CNNVIZ_DATA": str(SHARED), "CNNVIZ_CACHE": str(cache)}
    r = run("prepare", "--size", "32", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^1000 course photos decoded at 32x32 in [\d.]+ s: .*photos", r.stdout, re.M), r.stdout
    check = ("import torch; from cnnviz_helpers.dataset import PhotoSet\n"
             "ref = PhotoSet([281], size=32).decode(0)            # the tabby, decoded from its file\n"
             "def no_decode(self, i): raise AssertionError('decoded again')\n"
             "PhotoSet.decode = no_decode\n"
             "p = PhotoSet(size=32); x = p.images\n"
             "assert x.shape == (1000, 3, 32, 32) and x.dtype == torch.uint8 and torch.equal(x[281], ref)\n"
             "print('ok', p.cache_file)")
    c = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env={**os.environ, **env})
    assert c.returncode == 0 and c.stdout.startswith("ok " + str(cache)), c.stdout + c.stderr
    again = run("prepare", "--size", "32", env=env)
    assert again.returncode == 0 and "1000 course photos already decoded at 32x32" in again.stdout
    offline = run("prepare", env={"CNNVIZ_DATA": str(tmp_path / "empty"), "CNNVIZ_CACHE": str(cache),
                                  "CNNVIZ_DATA_URL": "http://127.0.0.1:9"}, timeout=300)
    assert offline.returncode == 1
    assert "course images could not be fetched" in offline.stderr and "set CNNVIZ_DATA to a folder" in offline.stderr
    bad = run("prepare", "--size", "4", env=env)
    assert bad.returncode == 2 and "--size must be an integer >= 8 (pixels), got 4" in bad.stderr
