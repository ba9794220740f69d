"""Real-browser test of the course in JupyterLab: open a lesson (the jupytext .md opened as a notebook),
run all cells, move a slider of its live widget and check that the figure was redrawn.

Screenshots are saved in test-artifacts/lab/<lesson>-before.png and -after.png.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
from pathlib import Path

import pytest

from browser import ROOT, artifacts, chromium_page, free_port, server, venv_bin

pytestmark = pytest.mark.browser

# One lesson of each kind: activations, attribution, optimization, dataset-wide.
# lesson -> (toggle button to click first or None, label of the slider to move, key to press)
LESSONS = {
    "03_activation_maps": (None, "channel", "ArrowRight"),
    "05_saliency": ("neuron", "channel", "ArrowRight"),
    "08_class_visualization": (None, "steps", "ArrowRight"),  # the lesson leaves it at the fewest steps
    "01_max_activating_patches": (None, "unit", "ArrowRight"),
}
RUN_TIMEOUT_MS = 600_000


def test_lab_opens_markdown_as_notebooks():
    """The lab extra installs a settings override so `.md` files open as notebooks."""
    override = Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    assert override.exists(), f"{override} is missing: run `make lab` or `make test` to install it"
    viewers = json.loads(override.read_text())["@jupyterlab/docmanager-extension:plugin"]["defaultViewers"]
    assert viewers["markdown"] == "Jupytext Notebook"


@pytest.fixture()
def lab(tmp_path):
    """A fresh JupyterLab per lesson: its own workspace, a temporary copy of the lessons (autosave never
    touches the checkout), stopped by its pid (with its kernels) afterwards."""
    pytest.importorskip("playwright")
    from browser import require_chromium

    require_chromium()
    port, token = free_port(), secrets.token_hex(16)
    root = tmp_path / "course"
    shutil.copytree(ROOT / "notebooks", root, ignore=shutil.ignore_patterns("_vendor", "_build", ".ipynb_checkpoints"))
    env = dict(os.environ, CNNVIZ_QUICK="1", JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"))
    cmd = [venv_bin("jupyter"), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
           "--LabApp.expose_app_in_browser=True", "--ServerApp.open_browser=False"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
        cmd.append("--allow-root")
    log = artifacts("lab") / "jupyterlab.log"
    with server(cmd, f"http://127.0.0.1:{port}/api/status?token={token}", env=env, log=log) as proc:
        yield {"base": f"http://127.0.0.1:{port}", "token": token, "pid": proc.pid}
    assert proc.poll() is not None, "JupyterLab was not stopped"


def _widget_image(page):
    return page.locator(".jp-OutputArea-output img.widget-image, .jp-OutputArea-output .widget-image img").first


@pytest.mark.parametrize("lesson", list(LESSONS))
def test_run_lesson_and_move_slider(lab, lesson, tmp_path):
    toggle, slider_label, key = LESSONS[lesson]
    path = ROOT / "notebooks" / f"{lesson}.md"
    assert path.exists(), f"lesson {lesson} does not exist"
    shots = artifacts("lab")
    with chromium_page(tmp_path) as page:
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{lab['base']}/lab/tree/{lesson}.md?token={lab['token']}", wait_until="domcontentloaded")
        page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell", timeout=60_000)
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)  # opened as a notebook, not a text editor
        page.wait_for_function(
            "() => { const w = window.jupyterapp.shell.currentWidget;"
            " return w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel"
            " && w.sessionContext.session.kernel.status === 'idle'; }", timeout=120_000)
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        # all cells done: no prompt shows [*] and the kernel is idle again
        page.wait_for_function(
            "() => { const w = window.jupyterapp.shell.currentWidget;"
            " const busy = [...document.querySelectorAll('.jp-InputArea-prompt')].some(p => p.textContent.includes('*'));"
            " return !busy && w.sessionContext.session.kernel.status === 'idle'; }",
            timeout=RUN_TIMEOUT_MS, polling=1000)
        errs = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
                            " .ansi-red-fg, .jp-RenderedText[data-mime-type='application/vnd.jupyter.error']")
        assert errs.count() == 0, f"{lesson}: a cell raised: {errs.first.inner_text()[:2000]}"
        img = _widget_image(page)
        slider = page.locator(".widget-slider", has=page.locator("label", has_text=slider_label)).first
        slider.scroll_into_view_if_needed(timeout=30_000)
        if toggle is not None:
            page.locator(".widget-toggle-button", has_text=toggle).first.click()
            page.wait_for_timeout(3000)
        page.wait_for_timeout(500)
        before = img.screenshot()
        page.screenshot(path=str(shots / f"{lesson}-before.png"))
        # move the slider with the keyboard, as a person would
        handle = slider.locator(".noUi-handle")
        handle.click()
        for _ in range(3):
            handle.press(key)
        page.wait_for_timeout(3000)
        after = img.screenshot()
        page.screenshot(path=str(shots / f"{lesson}-after.png"))
        (shots / f"{lesson}-widget-before.png").write_bytes(before)
        (shots / f"{lesson}-widget-after.png").write_bytes(after)
        assert before != after, f"{lesson}: the figure did not change when the slider moved"
        assert not errors, f"{lesson}: page errors: {errors}"
