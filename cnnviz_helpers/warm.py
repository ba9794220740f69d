"""Run lessons top to bottom outside JupyterLab: ``python -m cnnviz_helpers prepare --lessons [NN ...]``
warms every runs cache before a class (issue 13 §3), one progress bar per lesson; the course
benchmark (``benchmarks/course.py``) times lessons with the same runner.

A lesson runs in a fresh kernel of this environment (nbclient), in its own folder, in the mode
the environment says (full mode unless ``CNNVIZ_QUICK=1``). Its expensive cells store their
results in the runs cache (``runs.cached``, the dataset passes), so the next run of the lesson,
live in class, loads them.
"""
from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import Sequence

__all__ = ["execute_lesson", "lesson_paths", "warm_lessons"]


def execute_lesson(path: Path, *, quick: bool | None = None, progress: bool = False, extra: Sequence[str] = ()):
    """Execute the lesson ``path`` (jupytext ``.md``) cell by cell in a fresh kernel; return the notebook.

    ``quick``: force quick (True) or full (False) mode; None keeps the environment's. ``extra``: code
    cells appended at the end (the benchmark reads the kernel's peak memory that way). A failing cell
    raises nbclient's ``CellExecutionError`` (its message has the traceback).
    """
    import jupytext
    import nbformat
    from nbclient import NotebookClient
    from tqdm.auto import tqdm

    nb = jupytext.read(path)
    for src in extra:
        nb.cells.append(nbformat.v4.new_code_cell(src))
    before = os.environ.get("CNNVIZ_QUICK")
    if quick is not None:
        os.environ["CNNVIZ_QUICK"] = "1" if quick else "0"  # the kernel inherits the environment
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    bar = tqdm(total=len(code), desc=Path(path).stem, unit="cell", disable=not progress)
    try:
        client = NotebookClient(nb, timeout=3600, kernel_name="python3",
                                resources={"metadata": {"path": str(Path(path).parent)}})
        with client.setup_kernel():
            for i, cell in code:
                client.execute_cell(cell, i)
                bar.update(1)
    finally:
        bar.close()
        if quick is not None:
            if before is None:
                os.environ.pop("CNNVIZ_QUICK", None)
            else:
                os.environ["CNNVIZ_QUICK"] = before
    return nb


def lesson_paths(lessons: Sequence[str], notebooks: Path | None = None) -> list[Path]:
    """The lesson files named (``"04"``, ``"04_occlusion"``; empty: all of them), in course order.
    ``ValueError`` naming the valid lessons for an unknown one."""
    from .lab import LESSON, _default_notebooks, find_lesson

    folder = (notebooks or _default_notebooks()).resolve()
    if lessons:
        return [find_lesson(folder, n) for n in lessons]
    found = sorted(p for p in folder.glob("*.md") if LESSON.match(p.name))
    if not found:
        raise FileNotFoundError(f"no lessons (NN_name.md) in {folder}: run this from the course folder, "
                                "or pass --notebooks DIR")
    return found


def warm_lessons(lessons: Sequence[str], *, notebooks: Path | None = None, out=None, err=None) -> int:
    """Run each lesson named in ``lessons`` (``"04"``, ``"04_occlusion"``; empty: all) once, to fill the
    runs cache. 0 when all ran; 1 when one failed (its error in one line; the others still run);
    2 for an unknown lesson name (before anything runs)."""
    from nbclient.exceptions import CellExecutionError

    from .dataset import cache_enabled, runs_dir

    out, err = out or sys.stdout, err or sys.stderr
    try:
        paths = lesson_paths(lessons, notebooks)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=err)
        return 2
    if not cache_enabled():
        print("error: CNNVIZ_CACHE=0 turns the runs cache off: there is nothing to warm", file=err)
        return 2
    mode = "quick" if os.environ.get("CNNVIZ_QUICK", "").strip().lower() in {"1", "true", "yes", "on"} else "full"
    print(f"warming the runs cache ({runs_dir()}) for {len(paths)} lesson(s) in {mode} mode", file=out)
    failed = 0
    for path in paths:
        t = time.perf_counter()
        try:
            execute_lesson(path, progress=True)
        except CellExecutionError as e:
            failed += 1
            text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))   # the traceback's colours
            last = [ln for ln in text.strip().splitlines() if ln.strip()][-1:]
            print(f"{path.stem}: FAILED after {time.perf_counter() - t:.0f} s: {' '.join(last)[:300]}", file=err)
            continue
        print(f"{path.stem}: ready in {time.perf_counter() - t:.0f} s", file=out, flush=True)
    return 1 if failed else 0
