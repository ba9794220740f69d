"""Browser-test support: Debian's chromium driven by playwright, and servers stopped by their pid."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("CNNVIZ_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def require_chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium); "
                    f"it is not installed on this machine")
    return CHROMIUM


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(cmd: list[str], url: str, *, env: dict | None = None, cwd: Path | None = None, timeout: float = 90,
           log: Path | None = None):
    """Start ``cmd`` in its own process group, wait until ``url`` answers, stop it by pid on exit."""
    out = open(log, "wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[0]} exited with {proc.returncode} before answering at {url}"
                                   + (f"; log: {log}" if log else ""))
            try:
                urllib.request.urlopen(url, timeout=2).read(64)
                break
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError(f"{cmd[0]} did not answer at {url} within {timeout:.0f} s")
                time.sleep(0.5)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if log:
            out.close()


@contextmanager
def chromium_page(tmp_path: Path, viewport=(1400, 1000)):
    """A fresh chromium (new user-data dir) and one page; every request outside 127.0.0.1 is blocked and recorded."""
    from playwright.sync_api import sync_playwright

    exe = require_chromium()
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=exe, headless=True, args=FLAGS,
            viewport={"width": viewport[0], "height": viewport[1]},
        )
        try:
            page = ctx.new_page()
            page.external_requests = []  # type: ignore[attr-defined]

            def route(r):
                if r.request.url.startswith(("http://127.0.0.1", "data:", "blob:", "ws://127.0.0.1")):
                    r.continue_()
                else:
                    page.external_requests.append(r.request.url)
                    r.abort()

            ctx.route("**/*", route)
            yield page
        finally:
            ctx.close()


def artifacts(sub: str) -> Path:
    p = ARTIFACTS / sub
    p.mkdir(parents=True, exist_ok=True)
    return p


def venv_bin(name: str) -> str:
    import sys

    cand = Path(sys.executable).parent / name
    return str(cand) if cand.exists() else (shutil.which(name) or name)
