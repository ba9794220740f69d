"""Run-time settings: quick mode, and the allocator tuning (an explicit call, never an import side effect)."""
from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from cnnviz_helpers import config


def test_pick_follows_quick_mode(monkeypatch):
    monkeypatch.setenv(config.QUICK_ENV, "yes")
    assert config.quick_mode() and config.pick(full=200, quick=10) == 10
    monkeypatch.setenv(config.QUICK_ENV, "0")
    assert not config.quick_mode() and config.pick(full=200, quick=10) == 200


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_tune_allocator_on_glibc_and_its_off_switch(monkeypatch):
    monkeypatch.delenv(config.MALLOC_ENV, raising=False)
    assert config.tune_allocator() is True  # mallopt accepted both thresholds
    monkeypatch.setenv(config.MALLOC_ENV, "0")
    assert config.tune_allocator() is False


def test_importing_the_package_does_not_tune_the_allocator():
    """Retuning malloc is process-wide: the lessons and benchmarks ask for it; ``import cnnviz_helpers`` must not."""
    code = ("import sys\n"
            "calls = []\n"
            "sys.setprofile(lambda f, e, a: calls.append(f.f_code.co_filename)\n"
            "               if e == 'call' and f.f_code.co_name == 'tune_allocator' else None)\n"
            "import cnnviz_helpers\n"
            "sys.setprofile(None)\n"
            "assert not calls, f'tune_allocator ran at import: {calls}'\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0, r.stderr


def test_every_lesson_and_benchmark_tunes_the_allocator_once():
    root = Path(__file__).resolve().parents[1]
    files = sorted(root.glob("notebooks/[0-9]*.md")) + sorted(root.glob("notebooks/atlas_*.md")) + sorted(root.glob("benchmarks/*.py"))
    assert files
    for f in files:
        assert f.read_text().count("tune_allocator()") == 1, f"{f.name} should call tune_allocator() once, first"
