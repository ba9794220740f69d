"""Run-time settings: quick mode, and the allocator tuning done at import."""
from __future__ import annotations

import platform

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
