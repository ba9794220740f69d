"""The runs cache of the lessons' expensive cells (``runs.cached``, issue 13 §3): the same name, model,
helpers and parameters load; a changed parameter, model or helpers' code recomputes; a corrupt file
is recomputed with a warning; ``CNNVIZ_CACHE=0`` turns it off."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cnnviz_helpers import runs
from cnnviz_helpers.dataset import CacheWarning


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNVIZ_CACHE", str(tmp_path))
    return tmp_path


class Counter:
    def __init__(self, value):
        self.calls, self.value = 0, value

    def __call__(self):
        self.calls += 1
        return self.value


def _model(seed):
    torch.manual_seed(seed)
    return nn.Linear(3, 2)


def test_the_same_cell_loads_and_says_so(capsys):
    value = {"curve": torch.arange(5.0), "table": np.eye(3), "names": ["a", "b"], "n": 3, "pair": (1.5, None)}
    f = Counter(value)
    a = runs.cached("07 table", f, model=_model(0), steps=10)
    assert capsys.readouterr().out == ""
    b = runs.cached("07 table", f, model=_model(0), steps=10)
    assert f.calls == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("07 table: from the runs cache (computed ") and "ago" in out[0]
    assert torch.equal(b["curve"], value["curve"]) and isinstance(b["table"], np.ndarray)
    assert np.array_equal(b["table"], value["table"]) and b["names"] == ["a", "b"] and b["pair"] == (1.5, None)
    assert a is value  # the first call returns what compute returned


def test_a_changed_parameter_model_or_helpers_recompute(monkeypatch):
    f = Counter(torch.ones(2))
    runs.cached("cell", f, model=_model(0), steps=10)
    runs.cached("cell", f, model=_model(0), steps=11)
    assert f.calls == 2
    runs.cached("cell", f, model=_model(1), steps=10)   # other weights
    assert f.calls == 3
    runs.cached("other cell", f, model=_model(0), steps=10)
    assert f.calls == 4
    real = runs.helpers_fingerprint
    monkeypatch.setattr(runs, "helpers_fingerprint", lambda: "changed helpers")
    runs.cached("cell", f, model=_model(0), steps=10)
    assert f.calls == 5
    monkeypatch.setattr(runs, "helpers_fingerprint", real)
    runs.cached("cell", f, model=_model(0), steps=10)
    assert f.calls == 5


def test_a_corrupt_cache_file_is_recomputed_with_a_warning(cache_dir):
    f = Counter([1, 2, 3])
    runs.cached("cell", f, steps=1)
    (path,) = (cache_dir / "cells").glob("*.pt")
    path.write_bytes(b"not a torch file")
    with pytest.warns(CacheWarning, match="unreadable cache file"):
        assert runs.cached("cell", f, steps=1) == [1, 2, 3]
    assert f.calls == 2
    assert runs.cached("cell", f, steps=1) == [1, 2, 3] and f.calls == 2   # rewritten


def test_cnnviz_cache_0_turns_it_off(monkeypatch, cache_dir):
    monkeypatch.setenv("CNNVIZ_CACHE", "0")
    f = Counter(7)
    assert runs.cached("cell", f) == 7 and runs.cached("cell", f) == 7
    assert f.calls == 2
    assert not any(cache_dir.rglob("*.pt"))
    assert not runs.cache_enabled()


def test_what_it_cannot_store_is_refused_with_the_path_to_it():
    with pytest.raises(TypeError, match=r"cell\['fig'\] is a object"):
        runs.cached("cell", lambda: {"fig": object()})
    with pytest.raises(ValueError, match="name"):
        runs.cached("", lambda: 1)
    with pytest.raises(TypeError, match="function of no arguments"):
        runs.cached("cell", 3)
