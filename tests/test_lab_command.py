"""The README's course command, run as written: `make lab` (and conda users' `python -m cnnviz_helpers lab`).

`make lab` opens the student copies (student/, written from notebooks/ on first use).

Each test works on a fresh-clone layout of this working tree (its files copied into a temporary folder,
`.venv` a link to this checkout's installed venv) as a fresh user (an empty HOME: no Jupyter settings,
workspaces or caches of earlier runs), starts the command headless on a free port, reads the URL the
command prints, opens it in Debian's chromium, and stops the server through its API afterwards: the
command must then exit 0 with no kernel left running. As root (CI), this also proves `--allow-root`.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from browser import ROOT, artifacts, chromium_page, free_port

pytestmark = pytest.mark.browser

LESSON = "03_activation_maps"
URL = re.compile(r"(http://127\.0\.0\.1:\d+)/lab/tree/(\S+?)\?token=([0-9a-f]+)")
START_TIMEOUT = 240  # prepare (decoding 1000 photos into an empty cache) and the server start


def _course_copy(tmp_path: Path) -> Path:
    """This working tree as a fresh clone would lay it out (tracked and unignored files), venv linked."""
    venv = ROOT / ".venv"
    if not (venv / ".cnnviz-installed").exists():
        pytest.skip(f"no installed venv at {venv}: these tests run under `make test`")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    dst = tmp_path / "clone"
    for f in filter(None, files):
        if (ROOT / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)
    (dst / ".venv").symlink_to(venv)
    stale = subprocess.run(["make", "-q", ".venv/.cnnviz-installed"], cwd=dst, capture_output=True)
    if stale.returncode != 0:  # make would reinstall the venv from the copy: never do that in a test
        pytest.fail("the venv is older than pyproject.toml: run `make install` (or `make test`) first")
    return dst


def _fresh_user(tmp_path: Path, **env: str | None) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    out = {k: v for k, v in os.environ.items()
           if not k.startswith(("JUPYTER", "XDG_", "CNNVIZ_CACHE", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"))}
    out.update(HOME=str(home), PYTHONUNBUFFERED="1")
    for k, v in env.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


@contextmanager
def _started(cmd: list[str], cwd: Path, env: dict, log: Path):
    """Run ``cmd`` in its own process group until it prints the lab's URL; yield (proc, url parts, output)."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    found = threading.Event()

    def read():
        with open(log, "w") as f:
            for line in proc.stdout:
                lines.append(line)
                f.write(line)
                f.flush()
                if URL.search(line):
                    found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.time() + START_TIMEOUT
        while not found.wait(0.5):
            if proc.poll() is not None:
                reader.join(5)
                pytest.fail(f"`{' '.join(cmd)}` exited with {proc.returncode} before printing the lab's URL:\n"
                            + "".join(lines)[-4000:])
            if time.time() > deadline:
                pytest.fail(f"`{' '.join(cmd)}` printed no lab URL within {START_TIMEOUT} s:\n" + "".join(lines)[-4000:])
        m = next(URL.search(x) for x in lines if URL.search(x))
        lab = {"base": m.group(1), "path": m.group(2), "token": m.group(3), "url": m.group(0)}
        while True:  # the URL is printed a moment before the server accepts connections
            try:
                urllib.request.urlopen(f"{lab['base']}/api/status?token={lab['token']}", timeout=5).read()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail(f"the lab printed {lab['url']} but does not answer there:\n" + "".join(lines)[-4000:])
                time.sleep(0.3)
        yield proc, lab, lines
    finally:
        if proc.poll() is None:  # the test failed before the clean stop: do not leave a server behind
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        reader.join(5)


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmd:
                found.append(f"{p.name}: {cmd[:200]}")
    return found


def _stop_cleanly(proc: subprocess.Popen, lab: dict, home: Path) -> None:
    req = urllib.request.Request(f"{lab['base']}/api/shutdown", method="POST", data=b"",
                                 headers={"Authorization": f"token {lab['token']}"})
    urllib.request.urlopen(req, timeout=30).read()
    assert proc.wait(60) == 0, f"the lab command exited with {proc.returncode} after a clean shutdown"
    deadline = time.time() + 20
    while (left := _processes_mentioning(str(home))) and time.time() < deadline:
        time.sleep(0.5)
    assert not left, f"processes of the lab still running after it stopped: {left}"


def _kernel_idle(page, timeout=180_000):
    page.wait_for_function(
        "() => { const w = window.jupyterapp.shell.currentWidget;"
        " return w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel"
        " && w.sessionContext.session.kernel.status === 'idle'; }", timeout=timeout)


def _open_as_notebook(page, lab: dict, shot: Path) -> None:
    """Open the printed URL as a person would; the lesson must show as a notebook, not as a text file."""
    page.goto(lab["url"], wait_until="domcontentloaded")
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell", timeout=60_000)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
    page.screenshot(path=str(shot))
    info = page.evaluate("() => { const w = window.jupyterapp.shell.currentWidget;"
                         " return {path: w.context.path, notebook: !!(w.content && w.content.widgets),"
                         " editors: document.querySelectorAll('.jp-FileEditor').length}; }")
    assert info["path"] == f"{LESSON}.md" and info["notebook"], f"the lesson is not open as a notebook: {info}"
    assert info["editors"] == 0, "a text editor is open instead of (or beside) the notebook"


def test_make_lab_opens_the_lesson_as_a_notebook_and_stops_cleanly(tmp_path):
    """`make lab` as the README writes it (headless via LAB_ARGS): prepare, the URL, lesson 03 as a
    notebook whose first code cell runs on the embedded model, a clean stop."""
    pytest.importorskip("playwright")
    clone = _course_copy(tmp_path)
    env = _fresh_user(tmp_path)
    port = free_port()
    cmd = ["make", "lab", f"LAB_ARGS=--no-browser --ip=127.0.0.1 --port={port} --LabApp.expose_app_in_browser=True"]
    shots = artifacts("lab-command")
    with _started(cmd, clone, env, shots / "make-lab.log") as (proc, lab, out):
        text = "".join(out)
        assert lab["path"] == f"{LESSON}.md", f"the printed URL does not open lesson 03: {lab['url']}"
        assert f"Serving notebooks from local directory: {clone / 'student'}" in text, text[-3000:]
        copy = (clone / "student" / f"{LESSON}.md").read_text()
        assert "exercises.student_copy()" in copy, "the lab did not open the student copy of the lesson"
        if os.environ.get("CNNVIZ_DATA"):  # the course images are available: prepare decoded them
            assert re.search(r"1000 course photos (already )?decoded at 224x224", text), text[-3000:]
        with chromium_page(tmp_path) as page:
            _open_as_notebook(page, lab, shots / "make-lab.png")
            _kernel_idle(page)
            outputs = page.evaluate(
                "async () => { const w = window.jupyterapp.shell.currentWidget, nb = w.content;"
                " const i = nb.widgets.findIndex(c => c.model.type === 'code'); nb.activeCellIndex = i;"
                " await window.jupyterapp.commands.execute('notebook:run-cell');"
                " return i; }")
            first = outputs
            page.wait_for_function(
                f"() => {{ const c = window.jupyterapp.shell.currentWidget.content.widgets[{first}].model;"
                " return c.executionCount !== null && window.jupyterapp.shell.currentWidget"
                ".sessionContext.session.kernel.status === 'idle'; }", timeout=300_000, polling=500)
            cell = page.evaluate(
                f"() => window.jupyterapp.shell.currentWidget.content.widgets[{first}].model.outputs.toJSON()")
            page.screenshot(path=str(shots / "make-lab-first-cell.png"))
        assert not [o for o in cell if o.get("output_type") == "error"], f"the first code cell raised: {cell}"
        printed = "".join("".join(o.get("text", "")) for o in cell if o.get("output_type") == "stream")
        assert re.search(r"efficientnet_lite0 on (cpu|cuda|mps)", printed), f"first cell printed: {printed!r}"
        assert not page.external_requests, f"the lab asked for outside addresses: {page.external_requests}"
        _stop_cleanly(proc, lab, Path(env["HOME"]))
    assert (clone / "notebooks" / f"{LESSON}.md").read_bytes() == (ROOT / "notebooks" / f"{LESSON}.md").read_bytes()


def test_make_lab_offline_without_images_explains_in_one_line_and_opens(tmp_path):
    """No CNNVIZ_DATA, an empty cache and no network (the mirror URL points at a closed local port):
    one line says why, then the lab opens all the same."""
    clone = _course_copy(tmp_path)
    env = _fresh_user(tmp_path, CNNVIZ_DATA=None, CNNVIZ_DATA_URL=f"http://127.0.0.1:{free_port()}/")
    port = free_port()
    cmd = ["make", "lab", f"LAB_ARGS=--no-browser --ip=127.0.0.1 --port={port}"]
    with _started(cmd, clone, env, artifacts("lab-command") / "make-lab-offline.log") as (proc, lab, out):
        ours = [x for x in out if x.startswith(("cnnviz:", "error:"))]
        assert len(ours) == 1, f"expected one line of explanation, got: {ours}"
        assert "course images could not be fetched" in ours[0] and "CNNVIZ_DATA" in ours[0]
        assert ours[0].rstrip().endswith("Opening the lab anyway."), ours[0]
        page = urllib.request.urlopen(lab["url"], timeout=30)
        assert page.status == 200 and b"JupyterLab" in page.read()
        _stop_cleanly(proc, lab, Path(env["HOME"]))


def test_conda_users_command_installs_the_settings_and_opens_the_lesson(tmp_path):
    """The README's conda lines end in `python -m cnnviz_helpers lab`: in an environment without the
    settings override (as `conda env create` leaves it), that command installs it, and the lesson opens
    as a notebook, not as a text file."""
    pytest.importorskip("playwright")
    from cnnviz_helpers.lab import SETTINGS, settings_file

    clone = _course_copy(tmp_path)
    env = _fresh_user(tmp_path)
    override = settings_file(ROOT / ".venv")
    saved = override.read_bytes() if override.exists() else None
    override.unlink(missing_ok=True)
    port = free_port()
    python = str(ROOT / ".venv" / "bin" / "python")
    cmd = [python, "-m", "cnnviz_helpers", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--LabApp.expose_app_in_browser=True"]
    try:
        with _started(cmd, clone, env, artifacts("lab-command") / "conda-lab.log") as (proc, lab, _):
            installed = json.loads(override.read_text())
            for key, value in SETTINGS.items():
                assert installed[key] == value
            with chromium_page(tmp_path) as page:
                _open_as_notebook(page, lab, artifacts("lab-command") / "conda-lab.png")
                _kernel_idle(page)  # stopping while a kernel is still starting can hang jupyter_server
            _stop_cleanly(proc, lab, Path(env["HOME"]))
    finally:
        if not override.exists():
            if saved is None:
                subprocess.run([python, "-m", "cnnviz_helpers", "lab", "--setup-only"], check=True)
            else:
                override.write_bytes(saved)


def test_lab_command_refuses_an_unknown_lesson(tmp_path):
    r = subprocess.run([sys.executable, "-m", "cnnviz_helpers", "lab", "99", "--notebooks", str(ROOT / "notebooks")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "unknown lesson '99'" in r.stderr and "03_activation_maps" in r.stderr
