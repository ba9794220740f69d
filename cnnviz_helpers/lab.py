"""Open the course in JupyterLab: ``python -m cnnviz_helpers lab`` (what ``make lab`` runs).

One command for every way of installing the course (the Makefile's venv, conda,
a plain ``pip install -e .``):

1. writes the JupyterLab settings override that opens the ``.md`` lessons as
   notebooks (jupytext) into this environment (``install_settings``), keeping
   any other override already there;
2. writes the student copies of the lessons (``student/``, see ``student``) where
   they do not exist yet: the solutions are stubs there, and an existing copy is the
   student's work, never overwritten (``--solutions`` opens ``notebooks/`` instead);
3. runs ``prepare`` (fetch the course images, decode the photos once); when that
   fails, e.g. offline without ``CNNVIZ_DATA``, it says why in one line and goes on;
4. replaces itself with ``jupyter lab`` serving the lessons folder, with the
   chosen lesson as the start page: the URL JupyterLab prints opens the lesson
   itself, so it also works headless (``--no-browser``) or on a remote machine.
   As root (containers, CI, many cloud notebooks) it adds ``--allow-root``.

Options it does not know are passed on to ``jupyter lab`` (``--no-browser``,
``--port=8890``, ``--ip=127.0.0.1`` ...).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
from pathlib import Path
from typing import Sequence

__all__ = ["SETTINGS", "DEFAULT_LESSON", "settings_file", "install_settings", "find_lesson", "lab_argv", "main"]

# JupyterLab's documented settings override (``<prefix>/share/jupyter/lab/settings/overrides.json``):
# jupytext's "Jupytext Notebook" viewer for Markdown/MyST files, and no news or update checks (offline).
SETTINGS = {
    "@jupyterlab/docmanager-extension:plugin": {
        "defaultViewers": {"markdown": "Jupytext Notebook", "myst": "Jupytext Notebook"},
    },
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
}
DEFAULT_LESSON = "03_activation_maps"
LESSON = re.compile(r"^(\d\d)_[a-z0-9_]+\.md$")


def settings_file(prefix: str | Path | None = None) -> Path:
    """Where JupyterLab of the environment at ``prefix`` (default: this one) reads its overrides."""
    return Path(prefix if prefix is not None else sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"


def _merge(old: dict, new: dict) -> dict:
    out = dict(old)
    for k, v in new.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def install_settings(prefix: str | Path | None = None) -> Path:
    """Write ``SETTINGS`` into the environment's ``overrides.json``, merged with what is there already.

    Idempotent: an override that already holds these settings is not rewritten. An
    existing file that is not a JSON object is an error (it is the user's: never overwritten).
    """
    path = settings_file(prefix)
    old: dict = {}
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8") or "{}")
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON ({e}); fix or remove it, then run this again") from None
        if not isinstance(old, dict):
            raise ValueError(f"{path} holds a JSON {type(old).__name__}, not an object; fix or remove it")
    merged = _merge(old, SETTINGS)
    if merged != old or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(merged, indent=2) + "\n", encoding="utf-8")
    return path


def _default_notebooks() -> Path:
    here = Path.cwd() / "notebooks"
    return here if here.is_dir() else Path(__file__).resolve().parent.parent / "notebooks"


def find_lesson(notebooks: Path, lesson: str) -> Path:
    """The lesson file for ``"03"``, ``"03_activation_maps"`` or ``"03_activation_maps.md"``."""
    lessons = sorted(p.name for p in notebooks.glob("*.md") if LESSON.match(p.name))
    if not lessons:
        raise FileNotFoundError(f"no lessons (NN_name.md) in {notebooks}: run this from the course folder, "
                                f"or pass --notebooks DIR")
    key = lesson.removesuffix(".md")
    hits = [n for n in lessons if n.removesuffix(".md") == key or (key.isdigit() and n[:2] == key.zfill(2))]
    if len(hits) != 1:
        raise ValueError(f"unknown lesson {lesson!r}; valid: " + ", ".join(n.removesuffix(".md") for n in lessons)
                         + " (or just the number, e.g. 03)")
    return notebooks / hits[0]


def lab_argv(lesson_file: Path, extra: Sequence[str] = (), *, root: bool | None = None) -> list[str]:
    """The ``jupyter lab`` command line that serves the lesson's folder and starts on the lesson."""
    root = (hasattr(os, "geteuid") and os.geteuid() == 0) if root is None else root
    folder = lesson_file.resolve().parent
    argv = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={folder}",
            f"--LabApp.default_url=/lab/tree/{lesson_file.name}"]
    if root and "--allow-root" not in extra:
        argv.append("--allow-root")
    return argv + list(extra)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m cnnviz_helpers lab",
        description="Open the course in JupyterLab (other options are passed on to `jupyter lab`).")
    ap.add_argument("lesson", nargs="?", default=DEFAULT_LESSON, help=f"lesson to open (default {DEFAULT_LESSON})")
    ap.add_argument("--notebooks", type=Path, default=None, help="the lessons folder (default ./notebooks)")
    ap.add_argument("--solutions", action="store_true",
                    help="open the lessons with their solutions (notebooks/) instead of the student copies")
    ap.add_argument("--no-prepare", action="store_true", help="skip fetching and decoding the course images")
    ap.add_argument("--setup-only", action="store_true",
                    help="only install the settings that open .md lessons as notebooks, then exit")
    a, extra = ap.parse_known_args(argv)
    try:
        path = install_settings()
    except (OSError, ValueError) as e:
        print(f"error: cannot install the JupyterLab settings: {e}", file=sys.stderr)
        return 1
    if a.setup_only:
        print(f"JupyterLab settings (.md lessons open as notebooks): {path}")
        return 0
    notebooks = (a.notebooks or _default_notebooks()).resolve()
    try:
        find_lesson(notebooks, a.lesson)  # a bad name stops here, before anything is written
        if not a.solutions:  # the student's copies: written once, then theirs (never overwritten)
            from .student import write_student_copies

            folder = notebooks.parent / "student"
            for path, what in write_student_copies(notebooks, folder):
                if what.startswith("written"):
                    print(f"student copy {path}: {what}")
            notebooks = folder
        lesson = find_lesson(notebooks, a.lesson)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not a.no_prepare:
        from .prepare import prepare

        why = io.StringIO()
        if prepare(err=why) != 0:  # one line: why, and that the lab opens all the same
            reason = " ".join(why.getvalue().split()).removeprefix("error: ")
            print(f"cnnviz: {reason} Opening the lab anyway.", file=sys.stderr)
    cmd = lab_argv(lesson, extra)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(cmd[0], cmd)  # JupyterLab takes over this process (signals, exit status)
    return 0  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
