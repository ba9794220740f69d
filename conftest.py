"""Collect the lesson notebooks (jupytext MyST ``.md``) for nbval.

nbval only collects ``.ipynb``; the course keeps notebooks as text without
outputs. ``JupytextNotebook`` reads a ``notebooks/NN_*.md`` lesson (or ``atlas_*.md`` page) through
jupytext and hands the notebook to nbval's own collector, which runs every
code cell in a fresh kernel of this environment. Stored outputs do not exist,
so nbval compares none (``--nbval-lax``): each lesson checks itself with
``assert`` cells.
"""
from __future__ import annotations

import re
from unittest import mock

import pytest

NOTEBOOK = re.compile(r"^(\d\d|atlas)_[a-z0-9_]+\.md$")   # the lessons and the unit atlas pages


def pytest_collect_file(file_path, parent):
    if file_path.parent.name == "notebooks" and NOTEBOOK.match(file_path.name):
        import jupytext
        import nbval.plugin as nbp

        class JupytextNotebook(nbp.IPyNbFile):
            def collect(self):
                nb = jupytext.read(self.path)
                with mock.patch.object(nbp.nbformat, "read", lambda *a, **k: nb):
                    yield from super().collect()

        return JupytextNotebook.from_parent(parent, path=file_path)
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        if str(item.path).endswith(".md") and item.path.parent.name == "notebooks":
            item.add_marker(pytest.mark.notebook)
