"""The ImageNet labels: the 1000 class names and the lookup of a class by index or name.

Below ``data`` and ``models`` (both use it; it imports neither): the
class-name lookup lives with the labels it looks in. Introduced in lesson 03.

>>> class_index("tabby"), imagenet_categories()[281]      # (281, 'tabby cat')
"""
from __future__ import annotations

import difflib
from functools import lru_cache
from typing import Sequence

from ._checks import check_index

__all__ = ["imagenet_categories", "class_index"]


@lru_cache(maxsize=1)
def _categories() -> tuple[str, ...]:
    from torchvision.models import AlexNet_Weights

    return tuple(AlexNet_Weights.IMAGENET1K_V1.meta["categories"])


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names, in index order (torchvision's weights metadata; offline)."""
    return list(_categories())


def _norm(s: str) -> str:
    return s.strip().lower().replace("_", " ").replace("-", " ")


def class_index(name_or_index: int | str, categories: Sequence[str] | None = None) -> int:
    """ImageNet class index (0..999) from an index or a class name ("tabby", "golden retriever").

    Names are matched case-insensitively, with ``_`` as a space. An unknown name
    raises ``KeyError`` with the closest names; an ambiguous one (ImageNet has
    two "crane" classes) raises ``ValueError`` with their indices.
    """
    if categories is None:
        categories = _categories()
    n = len(categories)
    if isinstance(name_or_index, bool):
        raise TypeError("a class must be an index or a name, not a bool")
    if isinstance(name_or_index, int):
        return check_index(name_or_index, n, "class index")
    if not isinstance(name_or_index, str):
        raise TypeError(f"a class must be an index or a name, got {type(name_or_index).__name__}")
    key = _norm(name_or_index)
    hits = [i for i, c in enumerate(categories) if _norm(c) == key]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise ValueError(f"class name {name_or_index!r} is ambiguous: indices {hits}; pass the index instead")
    close = difflib.get_close_matches(key, [_norm(c) for c in categories], n=5)
    hint = f" Closest: {', '.join(close)}." if close else ""
    raise KeyError(f"unknown ImageNet class {name_or_index!r}.{hint}")
