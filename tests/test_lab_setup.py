"""`python -m cnnviz_helpers lab` without starting a server: its settings, lesson names and command line."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from cnnviz_helpers.lab import SETTINGS, find_lesson, install_settings, lab_argv, main, settings_file

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def test_settings_are_written_into_the_environment_and_merged_with_the_users(tmp_path):
    path = settings_file(tmp_path)
    assert path == tmp_path / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    path.parent.mkdir(parents=True)
    mine = {"@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"},
            "@jupyterlab/docmanager-extension:plugin": {"autosave": False, "defaultViewers": {"csv": "Table"}}}
    path.write_text(json.dumps(mine))
    install_settings(tmp_path)
    got = json.loads(path.read_text())
    assert got["@jupyterlab/apputils-extension:themes"] == {"theme": "JupyterLab Dark"}  # kept
    doc = got["@jupyterlab/docmanager-extension:plugin"]
    assert doc["autosave"] is False and doc["defaultViewers"]["csv"] == "Table"  # kept
    assert doc["defaultViewers"]["markdown"] == "Jupytext Notebook" == doc["defaultViewers"]["myst"]
    before = path.stat().st_mtime_ns
    install_settings(tmp_path)  # nothing to change: not rewritten
    assert path.stat().st_mtime_ns == before


def test_settings_in_an_empty_environment_are_exactly_ours(tmp_path):
    install_settings(tmp_path)
    assert json.loads(settings_file(tmp_path).read_text()) == SETTINGS


@pytest.mark.parametrize("text", ["[1, 2]", "{not json"])
def test_a_broken_user_override_is_reported_not_overwritten(tmp_path, text):
    path = settings_file(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(ValueError, match="overrides.json"):
        install_settings(tmp_path)
    assert path.read_text() == text


@pytest.mark.parametrize("name", ["03", "3", "03_activation_maps", "03_activation_maps.md"])
def test_lessons_by_number_or_name(name):
    assert find_lesson(NOTEBOOKS, name) == NOTEBOOKS / "03_activation_maps.md"


@pytest.mark.parametrize("name", ["99", "activation_maps", "03_activation", ""])
def test_unknown_lessons_name_the_valid_ones(name):
    with pytest.raises(ValueError, match=r"unknown lesson .*valid: 01_max_activating_patches, 02_filters"):
        find_lesson(NOTEBOOKS, name)


def test_a_folder_without_lessons_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no lessons"):
        find_lesson(tmp_path, "03")


def test_the_command_line_serves_the_lessons_folder_and_starts_on_the_lesson():
    lesson = NOTEBOOKS / "05_saliency.md"
    argv = lab_argv(lesson, ["--no-browser"], root=False)
    assert argv[:3] == [sys.executable, "-m", "jupyterlab"]
    assert f"--ServerApp.root_dir={NOTEBOOKS}" in argv and "--LabApp.default_url=/lab/tree/05_saliency.md" in argv
    assert "--allow-root" not in argv and argv[-1] == "--no-browser"
    assert lab_argv(lesson, root=True).count("--allow-root") == 1
    assert lab_argv(lesson, ["--allow-root"], root=True).count("--allow-root") == 1


def test_setup_only_installs_and_exits(capsys):
    assert main(["--setup-only"]) == 0
    assert str(settings_file()) in capsys.readouterr().out
