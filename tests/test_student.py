"""Student copies and the exercise-check framework (cnnviz_helpers.student, cnnviz_helpers.exercises)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

from cnnviz_helpers import exercises
from cnnviz_helpers.exercises import ExerciseError, Wrong, exercise
from cnnviz_helpers.student import STUDENT_CELL, stub_of, student_notebook, write_student_copies

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.fixture()
def student_mode():
    exercises.student_copy(True)
    yield
    exercises.student_copy(False)


@exercise("99.1", "the sum of the two numbers")
def check_sum(answer, a, b):
    if not isinstance(answer, (int, float)):
        raise Wrong(f"expected a number, got {type(answer).__name__}")
    if answer == a - b:
        raise Wrong("that is the difference: add, don't subtract")
    if answer != a + b:
        raise Wrong(f"{answer} is not the sum")


def test_a_right_answer_passes_in_both_modes(capsys, student_mode):
    assert check_sum(5, a=2, b=3).ok
    exercises.student_copy(False)
    fb = check_sum(5, a=2, b=3)
    assert fb.ok and fb.done and "Exercise 99.1: correct." in capsys.readouterr().out


def test_wrong_answers_print_their_hint_in_a_student_copy(capsys, student_mode):
    fb = check_sum(-1, a=2, b=3)
    assert not fb.ok and fb.done and "add, don't subtract" in fb.message
    assert "not yet right. that is the difference" in capsys.readouterr().out
    assert "expected a number, got str" in check_sum("5", a=2, b=3).message


def test_the_stub_is_not_done(student_mode):
    for stub in (..., (..., 1), [1, ...], {"x": ...}):
        fb = check_sum(stub, a=2, b=3)
        assert not fb.done and not fb.ok and "the sum of the two numbers" in fb.message


def test_in_a_shipped_lesson_a_wrong_or_missing_answer_is_an_error():
    with pytest.raises(ExerciseError, match="add, don't subtract"):
        check_sum(-1, a=2, b=3)
    with pytest.raises(ExerciseError, match="not done yet"):
        check_sum(..., a=2, b=3)


def test_an_exercise_id_is_defined_once():
    with pytest.raises(ValueError, match="defined twice"):
        @exercise("99.1", "another")
        def other(answer):
            pass


def test_the_stub_keeps_the_task_and_blanks_every_bound_name():
    src = ("# Task 2: the box (top, left, bottom, right) of the nonzero gradient.\n"
           "# Use receptive_field.\n"
           "g = grad.abs().amax(0)\n"
           "rows, cols = torch.nonzero(g > 0, as_tuple=True)\n"
           "def area(box, *, inclusive=True):\n"
           "    return 1\n"
           "answer_2 = (int(rows.min()), int(cols.min()))\n"
           "grad[..., 0] = 0.5\n"
           "model.flag = True\n")
    assert stub_of(src) == (
        "# Task 2: the box (top, left, bottom, right) of the nonzero gradient.\n"
        "# Use receptive_field.\n"
        "def area(box, *, inclusive=True):\n    ...  # your code\n"
        "g = ...  # your code\nrows = ...  # your code\ncols = ...  # your code\nanswer_2 = ...  # your code")


@pytest.mark.parametrize("src, msg", [("answer = 1\n", "does not restate its task"),
                                      ("# Task\nprint(1)\n", "binds no name"),
                                      ("# Task\nanswer = (\n", "not valid Python")])
def test_a_solution_cell_that_cannot_be_stubbed_is_refused(src, msg):
    with pytest.raises(ValueError, match=msg):
        stub_of(src, "lesson 99, cell 3")


def _lesson(*cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    return nb


def test_student_notebook_stubs_solutions_and_switches_student_mode_on():
    sol = nbformat.v4.new_code_cell("# Task 1: the answer.\nanswer_1 = 42", metadata={"tags": ["solution", "hide-cell"]})
    nb = _lesson(nbformat.v4.new_markdown_cell("# Title"), nbformat.v4.new_code_cell("import torch"),
                 nbformat.v4.new_markdown_cell("**1.** Task"), sol, nbformat.v4.new_code_cell("check_1(answer_1)"))
    out, n = student_notebook(nb, "toy")
    assert n == 1
    assert [c.source for c in out.cells] == ["# Title", "import torch", STUDENT_CELL, "**1.** Task",
                                             "# Task 1: the answer.\nanswer_1 = ...  # your code", "check_1(answer_1)"]
    assert "tags" not in out.cells[4].metadata
    assert nb.cells[3].source.endswith("= 42")  # the source notebook is untouched


def test_student_copies_are_written_once_and_then_kept(tmp_path):
    (tmp_path / "src").mkdir()
    sol = nbformat.v4.new_code_cell("# Task 1: the answer.\nanswer_1 = 42", metadata={"tags": ["solution"]})
    jupytext.write(_lesson(nbformat.v4.new_code_cell("x = 1"), sol), tmp_path / "src" / "05_toy.md", fmt="md:myst")
    (tmp_path / "src" / "index.md").write_text("# not a lesson\n")
    done = write_student_copies(tmp_path / "src", tmp_path / "student")
    assert [(p.name, w) for p, w in done] == [("05_toy.md", "written (1 exercises to do)")]
    copy = tmp_path / "student" / "05_toy.md"
    assert "answer_1 = ...  # your code" in copy.read_text() and "= 42" not in copy.read_text()
    copy.write_text(copy.read_text().replace("answer_1 = ...", "answer_1 = 41"))  # the student's work
    assert write_student_copies(tmp_path / "src", tmp_path / "student")[0][1].startswith("kept")
    assert "answer_1 = 41" in copy.read_text()
    write_student_copies(tmp_path / "src", tmp_path / "student", force=True)
    assert "answer_1 = ...  # your code" in copy.read_text()
    with pytest.raises(ValueError, match="unknown lessons.*valid: 05_toy"):
        write_student_copies(tmp_path / "src", tmp_path / "student", lessons=["07"])


def test_student_command_writes_all_thirteen_lessons_without_solutions(tmp_path):
    r = subprocess.run([sys.executable, "-m", "cnnviz_helpers", "student", str(tmp_path / "s"), "--notebooks",
                        str(NOTEBOOKS)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    copies = sorted((tmp_path / "s").glob("*.md"))
    originals = sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.md"))
    assert [p.name for p in copies] == [p.name for p in originals] and len(copies) == 13
    for orig, copy in zip(originals, copies):
        nb, stu = jupytext.read(orig), jupytext.read(copy)
        solutions = [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
        assert not [c for c in stu.cells if "solution" in c.metadata.get("tags", [])]
        assert sum("# your code" in c.source for c in stu.cells) >= len(solutions)
        assert STUDENT_CELL in [c.source for c in stu.cells]


def test_only_solutions_are_hidden_on_the_website_and_every_solution_is():
    """book.yml labels every collapsed cell "Show solution": only solution cells may be collapsed."""
    for lesson in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.md")):
        for i, cell in enumerate(jupytext.read(lesson).cells):
            tags = set(cell.metadata.get("tags", []))
            hidden = tags & {"hide-cell", "hide-input", "hide-output"}
            if "solution" in tags:
                assert "hide-cell" in tags, f"{lesson.name} cell {i}: a solution must be tagged hide-cell too"
            else:
                assert not hidden, f"{lesson.name} cell {i}: {sorted(hidden)} on a cell that is not a solution"


@pytest.mark.notebook
@pytest.mark.parametrize("lesson", sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.md")))
def test_the_student_copy_runs_top_to_bottom(lesson, tmp_path):
    """A student who runs all cells of an untouched copy sees "not done yet" per exercise and no error."""
    import os

    from nbclient import NotebookClient

    src = NOTEBOOKS / lesson
    nb, n = student_notebook(jupytext.read(src), lesson)
    env_quick = os.environ.get("CNNVIZ_QUICK")
    os.environ["CNNVIZ_QUICK"] = "1"  # the kernel inherits it: quick mode, as under nbval
    try:
        NotebookClient(nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}},
                       allow_errors=False).execute()
    finally:
        if env_quick is None:
            os.environ.pop("CNNVIZ_QUICK")
        else:
            os.environ["CNNVIZ_QUICK"] = env_quick
    printed = "".join("".join(o.get("text", "")) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                      if o.get("output_type") == "stream")
    assert printed.count("not done yet") == n, f"{lesson}: {n} exercises, {printed.count('not done yet')} 'not done yet'"
