"""``prepare --lessons`` (``warm.warm_lessons``, issue 13 §3): it runs lessons once so that their
expensive cells are in the runs cache, and the next run of the lesson loads them, saying so."""
from __future__ import annotations

import subprocess
import sys

import pytest

from cnnviz_helpers.warm import execute_lesson, warm_lessons

HEADER = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
    format_version: 0.13
kernelspec:
  display_name: Python 3 (ipykernel)
  language: python
  name: python3
---

# {title}

```{{code-cell}} ipython3
{code}
```
"""

CELL = """from cnnviz_helpers.runs import cached
calls = []
value = cached("tiny table", lambda: calls.append(1) or [1, 2, 3], steps=3)
print("value", value, "computed" if calls else "loaded")"""


def _printed(nb) -> str:
    return "".join("".join(o.get("text", "")) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                   if o.get("output_type") == "stream")


@pytest.fixture()
def lessons(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNVIZ_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "notebooks"
    folder.mkdir()
    (folder / "01_tiny.md").write_text(HEADER.format(title="Tiny", code=CELL))
    (folder / "02_broken.md").write_text(HEADER.format(title="Broken", code="raise RuntimeError('bad cell')"))
    return folder


@pytest.mark.notebook
def test_warming_fills_the_cache_and_the_next_run_loads_it(lessons, capsys):
    assert warm_lessons(["01"], notebooks=lessons) == 0
    out = capsys.readouterr().out
    assert "01_tiny: ready in" in out and "quick mode" in out   # the tests run in quick mode
    nb = execute_lesson(lessons / "01_tiny.md")
    printed = _printed(nb)
    assert "tiny table: from the runs cache (computed" in printed and "value [1, 2, 3] loaded" in printed


@pytest.mark.notebook
def test_a_failing_lesson_is_one_line_and_the_others_still_run(lessons, capsys):
    assert warm_lessons([], notebooks=lessons) == 1
    cap = capsys.readouterr()
    assert "01_tiny: ready in" in cap.out
    (line,) = [ln for ln in cap.err.splitlines() if "02_broken: FAILED" in ln]  # (progress bars are on stderr too)
    assert "FAILED" in line and "bad cell" in line


def test_unknown_lessons_and_a_disabled_cache_stop_before_any_work(lessons, capsys, monkeypatch):
    assert warm_lessons(["07"], notebooks=lessons) == 2
    assert "unknown lesson '07'" in capsys.readouterr().err
    monkeypatch.setenv("CNNVIZ_CACHE", "0")
    assert warm_lessons(["01"], notebooks=lessons) == 2
    assert "CNNVIZ_CACHE=0" in capsys.readouterr().err


def test_prepare_lessons_names_the_valid_lessons_before_fetching(lessons):
    r = subprocess.run([sys.executable, "-m", "cnnviz_helpers", "prepare", "--lessons", "99",
                        "--notebooks", str(lessons)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "unknown lesson '99'" in r.stderr and "01_tiny" in r.stderr
    assert "course images" not in r.stdout + r.stderr
