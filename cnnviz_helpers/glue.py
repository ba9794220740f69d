"""Numbers in a lesson's prose, inserted from the cell that computed them (myst-nb's ``glue``).

A lesson computes a number in a code cell and glues it::

    glue("r_top12", r)                       # returns r, so: r = glue("r_top12", rank_correlation(a, b))

and its Markdown says ``{glue:text}`r_top12:.2f` `` instead of typing the figure: the
website (myst-nb) then always states what the page ran, in quick or full mode. Nothing
is displayed in the notebook itself. Without myst-nb (installed with the ``book`` extra,
which ``make`` installs) glueing does nothing: only the website reads it.
"""
from __future__ import annotations

import re
from typing import TypeVar

__all__ = ["glue"]

T = TypeVar("T")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def glue(name: str, value: T) -> T:
    """Record ``value`` under ``name`` for the page's ``{glue:text}`name` `` roles; return ``value``.

    Numpy and torch scalars are recorded as Python numbers, so that a format spec
    (``{glue:text}`name:.2f` ``) applies to them; strings as their text, without quotes.
    """
    if not isinstance(name, str) or not NAME.match(name):
        raise ValueError(f"glue name must be an identifier (letters, digits, _), got {name!r}")
    try:
        from myst_nb import glue as _glue
    except ImportError:  # pragma: no cover - without the book extra there is no website to feed
        return value
    plain = value.item() if getattr(value, "ndim", None) == 0 and hasattr(value, "item") else value
    if isinstance(plain, str):
        plain = _Text(plain)
    _glue(name, plain, display=False)  # numpy/torch scalars as Python numbers: "0.5", not "np.float64(0.5)"
    return value


class _Text(str):
    """A string whose text form has no quotes: the prose says school bus, not 'school bus'."""

    def __repr__(self) -> str:
        return str.__str__(self)
