"""Streaming top-k (``StreamingTopK``) and its result for one layer (``TopK``), with the receptive-field crops."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .._checks import check_index, check_int
from ..receptive import ReceptiveField
from .photos import PhotoSet, TensorImages, _source

__all__ = ["StreamingTopK", "TopK"]


class StreamingTopK:
    """Per unit, the ``k`` images with the largest activation, kept while the images stream by.

    ``update(act, first_id)`` takes a batch ``act``: ``(B,C,H,W)`` (or ``(B,C)``)
    whose images are numbered ``first_id .. first_id+B-1``. Per image and
    unit it takes the maximum over positions (first one in row-major order
    on ties) and merges those B candidates with the current k best: memory is
    ``O(C*k)`` whatever the number of images. Ties between images go to the
    image seen first. ``values``, ``images``, ``rows``, ``cols``: ``(C,k)``,
    best first (images fewer than k so far: only as many columns as images).

    >>> acc = StreamingTopK(channels=8, k=9)
    >>> for start, batch in enumerate_batches: acc.update(act_of(batch), start)
    """

    def __init__(self, channels: int, k: int) -> None:
        self.channels = check_int(channels, "channels", lo=1, must="a positive integer")
        self.k = check_int(k, "k", lo=1, must="a positive integer")
        self.values = torch.empty(self.channels, 0)
        self.images = torch.empty(self.channels, 0, dtype=torch.long)
        self.flat = torch.empty(self.channels, 0, dtype=torch.long)
        self.map_size: tuple[int, int] | None = None
        self.seen = 0

    def update(self, act: torch.Tensor, first_id: int) -> None:
        if act.dim() == 2:
            act = act[:, :, None, None]
        if act.dim() != 4 or act.shape[1] != self.channels:
            raise ValueError(f"expected activations (B,{self.channels},H,W) or (B,{self.channels}), "
                             f"got {tuple(act.shape)}")
        hw = tuple(act.shape[-2:])
        if self.map_size is None:
            self.map_size = hw
        elif hw != self.map_size:
            raise ValueError(f"activation maps changed size from {self.map_size} to {hw} between batches")
        m, pos = act.detach().flatten(2).max(2)  # (B,C): per image, the max over positions (on act's device)
        self.update_scores(m, pos, first_id)

    def update_scores(self, score: torch.Tensor, pos: torch.Tensor, first_id: int,
                      map_size: tuple[int, int] | None = None) -> None:
        """Merge a batch's ``(B,C)`` scores, already reduced over positions, with the ``k`` best so far;
        ``pos`` ``(B,C)``: the flat position (row-major on ``map_size``) to remember with each score
        (``top_activations(relevance=...)`` ranks by relevance this way)."""
        if score.dim() != 2 or score.shape[1] != self.channels or pos.shape != score.shape:
            raise ValueError(f"expected scores and positions (B,{self.channels}), got {tuple(score.shape)} "
                             f"and {tuple(pos.shape)}")
        if map_size is not None:
            if self.map_size is None:
                self.map_size = tuple(map_size)
            elif tuple(map_size) != self.map_size:
                raise ValueError(f"activation maps changed size from {self.map_size} to {tuple(map_size)} "
                                 f"between batches")
        b = score.shape[0]
        m, pos = score.detach().float().cpu(), pos.cpu()
        ids = torch.arange(first_id, first_id + b).expand(self.channels, b)
        cand_v = torch.cat([self.values, m.T], 1)  # (C, k'+B): the current best first, then this batch
        cand_i = torch.cat([self.images, ids], 1)
        cand_p = torch.cat([self.flat, pos.T], 1)
        order = cand_v.argsort(dim=1, descending=True, stable=True)[:, :self.k]  # stable: earlier images win ties
        self.values = cand_v.gather(1, order)
        self.images = cand_i.gather(1, order)
        self.flat = cand_p.gather(1, order)
        self.seen += b

    @property
    def rows(self) -> torch.Tensor:
        return self.flat // (self.map_size[1] if self.map_size else 1)

    @property
    def cols(self) -> torch.Tensor:
        return self.flat % (self.map_size[1] if self.map_size else 1)


@dataclasses.dataclass(frozen=True)
class TopK:
    """The top-k photos of every unit of one layer, from ``top_activations``.

    ``values`` ``(C,k)``: each photo's maximum activation, best first;
    ``images`` ``(C,k)``: indices into the photo set; ``rows``/``cols`` ``(C,k)``:
    where in the ``map_size`` feature map that maximum sits; ``rf``: the layer's
    receptive field at ``input_size`` (``None`` for a layer whose units see the
    whole image: fc, global pooling).

    With ``top_activations(..., relevance=...)``: ``table`` ``(N,C)`` is every photo's
    score (here its maximum ``m_c(x)``), ``relevance`` the same layer ranked by
    relevance to the class (a ``TopK`` with ``ranking="relevance"``: values are
    ``R_c(x)``, positions the largest ``A*dS/dA``, ``table`` the full ``(N,C)`` of
    ``R``) and ``target`` the class (``"label"`` or an index). Otherwise all ``None``.
    """

    layer: str
    dotted: str
    values: torch.Tensor
    images: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor
    map_size: tuple[int, int]
    input_size: tuple[int, int]
    rf: ReceptiveField | None
    source_key: str
    table: torch.Tensor | None = None
    ranking: str = "activation"
    relevance: "TopK | None" = None
    target: str | int | None = None

    def ranked(self, by: str = "activation") -> "TopK":
        """This layer's top-k ranked ``by`` ``"activation"`` (itself) or ``"relevance"``."""
        if by not in ("activation", "relevance"):
            raise ValueError(f"unknown ranking {by!r}: choose one of activation, relevance")
        if by == self.ranking:
            return self
        if by == "relevance" and self.relevance is not None:
            return self.relevance
        raise ValueError(f"layer {self.layer!r} was ranked without relevance: pass relevance='label' (or a class) "
                         f"and relevance_layers=[{self.layer!r}, ...] to top_activations")

    def rank_correlation(self) -> np.ndarray:
        """``(C,)`` per unit, Spearman's rank correlation over the photos of activation and relevance."""
        from .relevance import spearman

        rel = self.ranked("relevance")
        return spearman(self.table, rel.table)

    @property
    def channels(self) -> int:
        return self.values.shape[0]

    @property
    def k(self) -> int:
        return self.values.shape[1]

    def _check_unit(self, unit: int) -> int:
        return check_index(unit, self.channels, "unit", where=f"layer {self.layer!r} has units")

    def box(self, unit: int, rank: int = 0, *, clip: bool = True) -> tuple[int, int, int, int]:
        """(top, left, bottom, right), inclusive, of the patch behind ``unit``'s ``rank``-th photo
        (clipped to the image unless ``clip=False``; the whole image when ``rf`` is None)."""
        u = self._check_unit(unit)
        check_index(rank, self.k, "rank", where="")
        H, W = self.input_size
        if self.rf is None:
            return 0, 0, H - 1, W - 1
        i, j = int(self.rows[u, rank]), int(self.cols[u, rank])
        return self.rf.clipped_box(i, j, H, W) if clip else self.rf.box(i, j)

    def patches(self, unit: int, photos: PhotoSet | TensorImages | torch.Tensor, *, pad: bool = True,
                fill: float = 0.5) -> list[torch.Tensor]:
        """The ``k`` input patches of ``unit``, best first, each ``(3,h,w)`` float in [0,1].

        ``pad=True``: every patch is the full receptive field (same size), the
        part outside the photo filled with grey ``fill``; ``pad=False``: the
        part inside the photo only. ``photos`` must be the set of the pass.
        """
        u = self._check_unit(unit)
        src = _source(photos)
        if src.key != self.source_key:
            raise ValueError(f"these photos are not the set that layer {self.layer!r} was ranked on "
                             f"(pass the same PhotoSet or tensor as to top_activations)")
        out = []
        for r in range(self.k):  # in numpy: a slider move crops 9 patches, a few small copies each
            t, l, b, rt = self.box(u, r, clip=True)
            crop = src._crop(int(self.images[u, r]), t, l, b, rt)            # (3, h, w) float32
            if pad and self.rf is not None:
                T, L, B, R = self.box(u, r, clip=False)
                full = np.full((3, B - T + 1, R - L + 1), fill, dtype=np.float32)
                full[:, t - T:b - T + 1, l - L:rt - L + 1] = crop
                crop = full
            out.append(torch.from_numpy(np.ascontiguousarray(crop)))
        return out


def _rf_to_dict(rf: ReceptiveField) -> dict:
    return dataclasses.asdict(rf)


def _tuples(v):
    return tuple(_tuples(a) for a in v) if isinstance(v, (list, tuple)) else v


def _rf_from_dict(d: dict | None) -> ReceptiveField | None:
    return None if d is None else ReceptiveField(**{k: _tuples(v) for k, v in d.items()})


def _topk_result(name: str, dotted: str, data: dict, hw: tuple[int, int], key: str) -> TopK:
    common = dict(layer=name, dotted=dotted, map_size=tuple(data["map_size"]), input_size=hw,
                  rf=_rf_from_dict(data["rf"]), source_key=key, target=data.get("target"))
    rel = data.get("relevance")  # results of the old kind (no relevance) have none of these keys
    by_rel = None if rel is None else TopK(values=rel["values"], images=rel["images"], rows=rel["rows"],
                                           cols=rel["cols"], table=rel["table"], ranking="relevance", **common)
    return TopK(values=data["values"], images=data["images"], rows=data["rows"], cols=data["cols"],
                table=data.get("table"), relevance=by_rel, **common)
