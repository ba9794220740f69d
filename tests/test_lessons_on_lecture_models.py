"""Every lesson runs on the lecture models too (issue 11): all thirteen, in quick mode, on untrained
AlexNet and untrained VGG16 (``CNNVIZ_MODEL=<name> CNNVIZ_WEIGHTS=untrained``). Their weights are
never available here, so this tests the code paths: the portable stage names, CAM's fallback, the
formula checks (which run on every model) and the behaviour checks (skipped, saying so). nbval runs
the lessons on EfficientNet-Lite0 (notebooks/conftest.py). An unknown model name stops every lesson
at its first code cell with the valid names."""
from __future__ import annotations

from pathlib import Path

import jupytext
import pytest

from cnnviz_helpers import MODEL_NAMES

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
LESSONS = sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.md"))
CI_MODELS = ("alexnet", "vgg16")


def _execute(nb, tmp_path, **kw):
    from nbclient import NotebookClient

    NotebookClient(nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}},
                   **kw).execute()
    return nb


def _printed(cell) -> str:
    return "".join("".join(o.get("text", "")) for o in cell.get("outputs", []) if o.get("output_type") == "stream")


@pytest.mark.notebook
@pytest.mark.parametrize("model", CI_MODELS)
@pytest.mark.parametrize("lesson", LESSONS)
def test_the_lesson_runs_on_an_untrained_lecture_model(lesson, model, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNVIZ_MODEL", model)
    monkeypatch.setenv("CNNVIZ_WEIGHTS", "untrained")
    monkeypatch.setenv("CNNVIZ_QUICK", "1")  # the kernel inherits the environment
    nb = _execute(jupytext.read(NOTEBOOKS / lesson), tmp_path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    first = next(c for c in code if "course_model" in c.source)
    assert f"{model}, untrained" in _printed(first), f"{lesson}: its model cell did not load {model}"
    assert "MODEL = " in first.source, f"{lesson}: the first code cell has no MODEL = ... line"


@pytest.mark.notebook
@pytest.mark.parametrize("lesson", LESSONS)
def test_an_unknown_model_stops_the_lesson_at_its_first_code_cell(lesson, tmp_path, monkeypatch):
    from nbclient.exceptions import CellExecutionError

    monkeypatch.setenv("CNNVIZ_MODEL", "vgg61")
    nb = jupytext.read(NOTEBOOKS / lesson)
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    first = next(i for i in code if "course_model" in nb.cells[i].source)
    nb.cells = nb.cells[:first + 1]  # only up to the model cell: it must be the one that fails
    with pytest.raises(CellExecutionError) as e:
        _execute(nb, tmp_path)
    msg = str(e.value)
    assert "CNNVIZ_MODEL=vgg61" in msg and all(n in msg for n in MODEL_NAMES), msg[-800:]
    assert code.index(first) == 0, f"{lesson}: the model is chosen in code cell {code.index(first)}, not the first"
