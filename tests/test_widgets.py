"""widgets.Explorer: redraws on every control change; controls that compute update on release, say
"computing..." and show a progress bar meanwhile; controls that only redraw stay continuous."""
from __future__ import annotations

import numpy as np
import pytest

from cnnviz_helpers import widgets


def test_cached_controls_stay_continuous_and_computing_ones_update_on_release():
    seen, holder = [], []

    def render(channel, steps):
        if holder:  # the explorer as render sees it while it runs
            ex = holder[0]
            before = ex.progress.layout.visibility  # no bar until render reports a step
            ex.step(1, 2)
            seen.append((channel, steps, ex.status.value, before, ex.progress.layout.visibility))
        return np.full((4, 4), float(channel))

    channel, steps = widgets.channel_slider(7), widgets.int_slider(1, 50, 10, description="steps")
    ex = widgets.Explorer(render, computing=["steps"], channel=channel, steps=steps)
    holder.append(ex)
    assert channel.continuous_update is True and steps.continuous_update is False
    assert ex.redraws == 1 and "redrawn in" in ex.status.value
    channel.value = 3  # a cached redraw: no "computing"
    assert seen[-1][:2] == (3, 10) and "computing" not in seen[-1][2]
    assert "redrawn in" in ex.status.value
    steps.value = 20  # computes: says so and shows the bar while render runs, hides it afterwards
    assert seen[-1][:2] == (3, 20) and seen[-1][2] == "<small>computing...</small>"
    assert seen[-1][3:] == ("hidden", "visible")
    assert ex.progress.layout.visibility == "hidden" and "computed in" in ex.status.value
    assert ex.progress.value == 0.5 and ex.redraws == 3


def test_a_failing_render_hides_the_bar_and_raises():
    calls = []

    def render(steps):
        calls.append(steps)
        if steps == 2:
            raise RuntimeError("boom")
        return np.zeros((2, 2))

    ex = widgets.Explorer(render, computing="steps", steps=widgets.int_slider(1, 5, 1))
    with pytest.raises(RuntimeError, match="boom"):
        ex.controls["steps"].value = 2
    assert ex.progress.layout.visibility == "hidden"


def test_computing_must_name_controls():
    with pytest.raises(ValueError, match=r"computing names \['step'\].*its controls: steps"):
        widgets.Explorer(lambda steps: np.zeros((2, 2)), computing=["step"], steps=widgets.int_slider(1, 5, 1))


def test_figure_panels_are_inches_and_size_is_the_deprecated_old_name():
    import matplotlib.pyplot as plt
    import torch

    from cnnviz_helpers.plotting import channel_grid, image_grid

    imgs = torch.rand(2, 3, 8, 8)
    fig = image_grid(imgs, ncols=2, inches=1.5)
    assert tuple(fig.get_size_inches()) == (3.0, 1.5)
    with pytest.deprecated_call(match="inches="):
        old = image_grid(imgs, ncols=2, size=1.5)
    assert tuple(old.get_size_inches()) == (3.0, 1.5)
    with pytest.deprecated_call(match="inches="):
        channel_grid(torch.rand(1, 4, 5, 5), ncols=2, size=1.0)
    plt.close("all")
