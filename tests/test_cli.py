"""The command line: doctor and classify (including top-1 accuracy on the 1000 course photos)."""
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
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"nope")
    good = SHARED / sample_names()[207]  # golden retriever
    r = run("classify", str(junk), str(tmp_path / "missing.png"), str(good), "--top", "3")
    assert r.returncode == 1
    errs = r.stderr.strip().splitlines()
    assert len(errs) == 2 and errs[0].startswith(f"error: {junk}:") and "missing.png" in errs[1]
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{good}: golden retriever (")
    assert lines[0].count("(") == 3
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
