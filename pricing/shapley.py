"""Exact data Shapley values for a K-nearest-neighbour classifier (Jia et al., VLDB 2019, "Efficient
Task-Specific Data Valuation for Nearest Neighbor Algorithms", Theorem 1).

**The game.** Players are the ``N`` training rows. For one validation point ``(v, y)`` training rows are ranked by
distance to ``v`` (squared Euclidean, computed as ``‖t‖² − 2⟨v, t⟩`` in float64; ties go to the lower training
index), and a subset ``S`` is worth ``U_v(S) = (1/K) · #{the min(K, |S|) nearest rows of S whose label is y}``
(the probability the unweighted K-NN vote assigns to the right label). ``U_v(∅) = 0``. The utility of a
validation split is the mean of ``U_v`` over its points, and so are the values.

**The recursion.** With ``α₁ … α_N`` the rows nearest first and ``mᵢ = 1[y_{αᵢ} = y]``:
``s(α_N) = m_N · min(K, N) / (N·K)`` and ``s(αᵢ) = s(αᵢ₊₁) + (mᵢ − mᵢ₊₁)/K · min(K, i)/i``. (The paper states the
first term as ``m_N / N``, which assumes ``N ≥ K``; the ``min`` makes it exact for every ``N``.) Per validation
point this costs one sort, ``O(N log N)``; the recursion is a reversed cumulative sum, vectorized over a chunk of
validation points, and values are scattered back with one ``bincount`` per chunk. Chunks hold at most
``chunk_elements`` (validation × training) cells, so memory stays bounded (about 48 bytes per cell).

The values are the Shapley values of this game up to float rounding (about ``N·2⁻⁵³`` per point): they sum to
``U(all) − U(∅)`` (efficiency) and interchangeable rows get equal values (symmetry: e.g. copies of a row with the
same label, not separated in the ranking by another equidistant row). ``tests/test_pricing_shapley.py`` checks them
against an exact enumeration of all subsets in rationals.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pricing.tariff import PricingError

__all__ = ["DEFAULT_CHUNK_ELEMENTS", "knn_shapley", "knn_utility"]

DEFAULT_CHUNK_ELEMENTS = 2**21
"""Validation × training cells per chunk (~100 MB of working arrays)."""


def _inputs(x_train: ArrayLike, y_train: ArrayLike, x_val: ArrayLike, y_val: ArrayLike,
            k: int) -> tuple[NDArray[np.float64], NDArray[Any], NDArray[np.float64], NDArray[Any]]:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise PricingError("k must be a positive integer", "invalid_valuation")
    try:
        xt = np.asarray(x_train, dtype=np.float64)
        xv = np.asarray(x_val, dtype=np.float64)
    except (TypeError, ValueError):
        raise PricingError("features must be numeric", "invalid_valuation") from None
    yt, yv = np.asarray(y_train), np.asarray(y_val)
    if xt.ndim != 2 or xv.ndim != 2 or xt.shape[1] != xv.shape[1]:
        raise PricingError("features are 2-D arrays with the same number of columns", "invalid_valuation")
    if yt.shape != (xt.shape[0],) or yv.shape != (xv.shape[0],):
        raise PricingError("labels are 1-D arrays with one label per row", "invalid_valuation")
    if xt.shape[0] == 0 or xv.shape[0] == 0:
        raise PricingError("training and validation sets must not be empty", "invalid_valuation")
    if not (np.isfinite(xt).all() and np.isfinite(xv).all()):
        raise PricingError("features must be finite", "invalid_valuation")
    return xt, yt, xv, yv


def _ranked(xt: NDArray[np.float64], train_sq: NDArray[np.float64], xv: NDArray[np.float64]) -> NDArray[np.intp]:
    """Training indices per validation row, nearest first; a stable sort breaks ties by the lower index."""
    keys = train_sq[None, :] - 2.0 * (xv @ xt.T)
    return np.argsort(keys, axis=1, kind="stable")


def _rows_per_chunk(n_train: int, chunk_elements: int) -> int:
    if isinstance(chunk_elements, bool) or not isinstance(chunk_elements, int) or chunk_elements < 1:
        raise PricingError("chunk_elements must be a positive integer", "invalid_valuation")
    return max(1, chunk_elements // n_train)


def knn_shapley(x_train: ArrayLike, y_train: ArrayLike, x_val: ArrayLike, y_val: ArrayLike, k: int, *,
                chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> NDArray[np.float64]:
    """The exact Shapley value of every training row (shape ``(N,)``) for the K-NN utility above, averaged over
    the validation points; they sum to :func:`knn_utility` of the whole training set."""
    xt, yt, xv, yv = _inputs(x_train, y_train, x_val, y_val, k)
    n = xt.shape[0]
    step = _rows_per_chunk(n, chunk_elements)
    train_sq = np.einsum("ij,ij->i", xt, xt)
    ranks = np.arange(1, n, dtype=np.float64)  # i = 1 … N−1
    coef = np.minimum(k, ranks) / (k * ranks)
    last = min(k, n) / (n * k)
    total = np.zeros(n, dtype=np.float64)
    for start in range(0, xv.shape[0], step):
        order = _ranked(xt, train_sq, xv[start:start + step])
        match = (yt[order] == yv[start:start + step, None]).astype(np.float64)
        values = np.empty_like(match)
        values[:, -1] = match[:, -1] * last
        if n > 1:
            diff = (match[:, :-1] - match[:, 1:]) * coef
            values[:, :-1] = values[:, -1:] + np.cumsum(diff[:, ::-1], axis=1)[:, ::-1]
        total += np.bincount(order.ravel(), weights=values.ravel(), minlength=n)
    result: NDArray[np.float64] = total / xv.shape[0]
    return result


def knn_utility(x_train: ArrayLike, y_train: ArrayLike, x_val: ArrayLike, y_val: ArrayLike, k: int, *,
                subset: ArrayLike | None = None, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> float:
    """``U(S)``: the mean over validation points of the share of the ``min(K, |S|)`` nearest rows of ``S`` (all
    training rows when ``subset`` is None; else the given training indices) that carry the right label; 0 for
    the empty set. Ranking and ties exactly as in :func:`knn_shapley`."""
    xt, yt, xv, yv = _inputs(x_train, y_train, x_val, y_val, k)
    if subset is not None:
        idx = np.unique(np.asarray(subset, dtype=np.intp))
        if idx.size and (idx[0] < 0 or idx[-1] >= xt.shape[0]):
            raise PricingError("subset indices must name training rows", "invalid_valuation")
        if idx.size == 0:
            return 0.0
        xt, yt = xt[idx], yt[idx]  # ascending indices keep the lower-index tie-break
    n = xt.shape[0]
    step = _rows_per_chunk(n, chunk_elements)
    train_sq = np.einsum("ij,ij->i", xt, xt)
    hits = 0
    for start in range(0, xv.shape[0], step):
        nearest = _ranked(xt, train_sq, xv[start:start + step])[:, :k]
        hits += int((yt[nearest] == yv[start:start + step, None]).sum())
    return hits / (k * int(xv.shape[0]))
