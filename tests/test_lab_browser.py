"""Real-browser test of the course in JupyterLab: open a lesson (the jupytext .md opened as a notebook),
run all cells, move a slider of its live widget and check that the figure was redrawn.

Screenshots are saved in test-artifacts/lab/<lesson>-before.png and -after.png.
"""
from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

import pytest

from browser import ROOT, artifacts, chromium_page, free_port, server, venv_bin

pytestmark = pytest.mark.browser

# One lesson of each kind: activations, attribution, optimization, dataset-wide.
LESSONS = ["03_activation_maps", "05_saliency", "08_class_visualization", "01_max_activating_patches"]
RUN_TIMEOUT_MS = 600_000


def test_lab_opens_markdown_as_notebooks():
    """The lab extra installs a settings override so `.md` files open as notebooks."""
    override = Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    assert override.exists(), f"{override} is missing: run `make lab` or `make test` to install it"
    viewers = json.loads(override.read_text())["@jupyterlab/docmanager-extension:plugin"]["defaultViewers"]
    assert viewers["markdown"] == "Jupytext Notebook"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    require = pytest.importorskip("playwright")  # noqa: F841
    from browser import require_chromium

    require_chromium()
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ, CNNVIZ_QUICK="1", JUPYTER_CONFIG_DIR=str(tmp_path_factory.mktemp("jupyter-config")))
    cmd = [venv_bin("jupyter"), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={ROOT / 'notebooks'}",
           "--LabApp.expose_app_in_browser=True", "--ServerApp.open_browser=False"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
        cmd.append("--allow-root")
    log = artifacts("lab") / "jupyterlab.log"
    with server(cmd, f"http://127.0.0.1:{port}/api/status?token={token}", env=env, log=log) as proc:
        yield {"base": f"http://127.0.0.1:{port}", "token": token, "pid": proc.pid}
    assert proc.poll() is not None, "JupyterLab was not stopped"


def _widget_image(page):
    return page.locator(".jp-OutputArea-output img.widget-image, .jp-OutputArea-output .widget-image img").first


@pytest.mark.parametrize("lesson", LESSONS)
def test_run_lesson_and_move_slider(lab, lesson, tmp_path):
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
        page.locator(".widget-slider").first.scroll_into_view_if_needed(timeout=30_000)
        page.wait_for_timeout(500)
        before = img.screenshot()
        page.screenshot(path=str(shots / f"{lesson}-before.png"))
        # move the first slider of the live widget with the keyboard, as a person would
        handle = page.locator(".widget-slider .noUi-handle").first
        handle.scroll_into_view_if_needed()
        handle.click()
        for _ in range(3):
            handle.press("ArrowRight")
        page.wait_for_timeout(1500)
        after = img.screenshot()
        page.screenshot(path=str(shots / f"{lesson}-after.png"))
        (shots / f"{lesson}-widget-before.png").write_bytes(before)
        (shots / f"{lesson}-widget-after.png").write_bytes(after)
        assert before != after, f"{lesson}: the figure did not change when the slider moved"
        assert not errors, f"{lesson}: page errors: {errors}"
