"""Student copies of the lessons: ``python -m cnnviz_helpers student [DIR]`` (``make student``).

Each lesson has one source, ``notebooks/NN_name.md``, with its solutions in. A solution
is a code cell tagged ``solution`` that begins with ``#`` comment lines restating the
task. The student copy (default folder ``student/``, git-ignored) is the same lesson
with every solution cell replaced by a stub: the task's comment lines, then
``name = ...  # your code`` for every name the solution binds (a ``def`` keeps its
signature). A cell after the first code cell switches the exercise checks to student
mode (``exercises.student_copy()``): an unsolved or wrong answer prints its hint and
"Run all" goes on. Copies that exist are the student's work and are kept unless
``force`` is given.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Sequence

__all__ = ["SOLUTION_TAG", "stub_of", "student_notebook", "write_student_copies", "main"]

SOLUTION_TAG = "solution"
LESSON = re.compile(r"^\d\d_[a-z0-9_]+\.md$")
STUDENT_CELL = (
    "# Your copy of the lesson (written by `python -m cnnviz_helpers student`): the exercises' cells\n"
    "# hold `...` where your code goes; their checks print a hint instead of stopping \"Run all\".\n"
    "from cnnviz_helpers import exercises\n"
    "exercises.student_copy()"
)


def _bound_names(tree: ast.Module) -> list[str]:
    names: list[str] = []
    for node in tree.body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        for t in targets:
            for n in _target_names(t):
                if n not in names:
                    names.append(n)
    return names


def _target_names(t: ast.expr) -> list[str]:
    """Names an assignment target binds: ``a``, ``a, (b, *c)``; not ``x[i]`` or ``x.attr`` (they change x)."""
    if isinstance(t, ast.Name):
        return [t.id]
    if isinstance(t, ast.Starred):
        return _target_names(t.value)
    if isinstance(t, (ast.Tuple, ast.List)):
        return [n for e in t.elts for n in _target_names(e)]
    return []


def stub_of(source: str, where: str = "a solution cell") -> str:
    """The student's version of a solution cell: its leading comments, then the names it binds as ``...``."""
    lines = source.strip("\n").splitlines()
    task = []
    for line in lines:
        if not line.startswith("#"):
            break
        task.append(line)
    if not task:
        raise ValueError(f"{where} does not restate its task in leading '#' comment lines")
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise ValueError(f"{where} is not valid Python: {e}") from None
    body = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            sig = ast.unparse(node.args)
            body.append(f"def {node.name}({sig}):\n    ...  # your code")
    names = _bound_names(tree)
    body += [f"{n} = ...  # your code" for n in names]
    if not body:
        raise ValueError(f"{where} binds no name: the check after it has nothing to inspect")
    return "\n".join(task + body)


def student_notebook(nb, where: str = "lesson"):
    """A copy of the jupytext notebook ``nb`` with solution cells stubbed and student mode switched on."""
    import copy

    import nbformat

    out = copy.deepcopy(nb)
    cells, first_code, n_solutions = [], None, 0
    for i, cell in enumerate(out.cells):
        tags = list(cell.metadata.get("tags", []))
        if cell.cell_type == "code" and SOLUTION_TAG in tags:
            cell.source = stub_of(cell.source, f"{where}, cell {i}")
            tags = [t for t in tags if t not in (SOLUTION_TAG, "hide-input", "hide-cell")]
            if tags:
                cell.metadata["tags"] = tags
            else:
                cell.metadata.pop("tags", None)
            n_solutions += 1
        cells.append(cell)
        if cell.cell_type == "code" and first_code is None:
            first_code = len(cells)
            cells.append(nbformat.v4.new_code_cell(STUDENT_CELL))
    if first_code is None:
        raise ValueError(f"{where} has no code cell")
    out.cells = cells
    return out, n_solutions


def write_student_copies(source: Path, dest: Path, *, force: bool = False,
                         lessons: Sequence[str] | None = None) -> list[tuple[Path, str]]:
    """Write the student copy of every lesson of ``source`` into ``dest``; returns (path, what was done)."""
    import jupytext

    files = sorted(p for p in Path(source).glob("*.md") if LESSON.match(p.name))
    if lessons:
        want = {n.removesuffix(".md") for n in lessons}
        unknown = want - {p.stem for p in files} - {p.name[:2] for p in files}
        if unknown:
            raise ValueError(f"unknown lessons {sorted(unknown)}; valid: {', '.join(p.stem for p in files)}")
        files = [p for p in files if p.stem in want or p.name[:2] in want]
    if not files:
        raise FileNotFoundError(f"no lessons (NN_name.md) in {source}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    done = []
    for p in files:
        target = dest / p.name
        if target.exists() and not force:
            done.append((target, "kept (your work; --force rewrites it)"))
            continue
        nb, n = student_notebook(jupytext.read(p), p.name)
        jupytext.write(nb, target, fmt="md:myst")
        done.append((target, f"written ({n} exercises to do)"))
    return done


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m cnnviz_helpers student",
                                 description="Write the student copies of the lessons (solutions replaced by stubs).")
    ap.add_argument("dir", nargs="?", default="student", type=Path, help="where to write them (default student/)")
    ap.add_argument("--notebooks", type=Path, default=Path("notebooks"), help="the lessons (default notebooks/)")
    ap.add_argument("--force", action="store_true", help="rewrite copies that exist (your answers are lost)")
    ap.add_argument("--lessons", nargs="*", default=None, help="only these lessons (numbers or names)")
    a = ap.parse_args(argv)
    try:
        done = write_student_copies(a.notebooks, a.dir, force=a.force, lessons=a.lessons)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path, what in done:
        print(f"{path}: {what}")
    return 0
