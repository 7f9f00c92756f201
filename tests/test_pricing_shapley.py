"""Exact KNN-Shapley against the definition: every subset enumerated in rationals on tiny data (n ≤ 8), plus the
Shapley axioms (efficiency, symmetry, null player) and chunking invariance."""

from __future__ import annotations

from fractions import Fraction
from itertools import combinations
from math import factorial

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pricing.shapley import knn_shapley, knn_utility
from pricing.tariff import PricingError


def _brute_force(xt: np.ndarray, yt: np.ndarray, xv: np.ndarray, yv: np.ndarray, k: int) -> list[Fraction]:
    """Shapley values by definition: Σ_S |S|!(n−|S|−1)!/n! · (U(S ∪ i) − U(S)), in rationals. Distances are the
    plain sum of squared differences; ties go to the lower index."""
    n = len(xt)
    orders = [sorted(range(n), key=lambda i, v=v: (float(((xt[i] - v) ** 2).sum()), i)) for v in xv]
    cache: dict[frozenset[int], Fraction] = {}

    def utility(s: frozenset[int]) -> Fraction:
        if s not in cache:
            total = Fraction(0)
            for order, y in zip(orders, yv, strict=True):
                nearest = [i for i in order if i in s][:k]
                total += Fraction(sum(int(yt[i] == y) for i in nearest), k)
            cache[s] = total / len(xv)
        return cache[s]

    values = []
    for i in range(n):
        others = [j for j in range(n) if j != i]
        phi = Fraction(0)
        for size in range(n):
            weight = Fraction(factorial(size) * factorial(n - size - 1), factorial(n))
            for subset in combinations(others, size):
                s = frozenset(subset)
                phi += weight * (utility(s | {i}) - utility(s))
        values.append(phi)
    return values


@st.composite
def tiny_games(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Integer coordinates in a small box: distances are exact in float64 and ties are frequent."""
    n, m, d = draw(st.integers(1, 8)), draw(st.integers(1, 4)), draw(st.integers(1, 3))
    coords = st.integers(-3, 3)
    xt = draw(hnp.arrays(np.float64, (n, d), elements=coords))
    xv = draw(hnp.arrays(np.float64, (m, d), elements=coords))
    labels = st.integers(0, 2)
    yt = draw(hnp.arrays(np.int64, (n,), elements=labels))
    yv = draw(hnp.arrays(np.int64, (m,), elements=labels))
    return xt, yt, xv, yv, draw(st.integers(1, 10))


@settings(max_examples=150, deadline=None)
@given(game=tiny_games())
def test_matches_the_exact_subset_enumeration(game: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                           int]) -> None:
    xt, yt, xv, yv, k = game
    got = knn_shapley(xt, yt, xv, yv, k)
    want = _brute_force(xt, yt, xv, yv, k)
    assert got.shape == (len(xt),)
    np.testing.assert_allclose(got, [float(w) for w in want], rtol=0, atol=1e-12)


def test_matches_the_enumeration_on_continuous_data_with_n_below_and_above_k() -> None:
    rng = np.random.default_rng(7)
    for n, k in ((8, 3), (5, 8), (8, 1), (1, 4)):
        xt, xv = rng.normal(size=(n, 4)), rng.normal(size=(6, 4))
        yt, yv = rng.integers(0, 2, n), rng.integers(0, 2, 6)
        want = [float(w) for w in _brute_force(xt, yt, xv, yv, k)]
        np.testing.assert_allclose(knn_shapley(xt, yt, xv, yv, k), want, rtol=0, atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 300), m=st.integers(1, 40), k=st.integers(1, 12),
       chunk=st.integers(1, 5000))
def test_efficiency_and_chunking(seed: int, n: int, m: int, k: int, chunk: int) -> None:
    """Values sum to U(all) − U(∅) = U(all), whatever the chunk size."""
    rng = np.random.default_rng(seed)
    xt, xv = rng.normal(size=(n, 3)), rng.normal(size=(m, 3))
    yt, yv = rng.integers(0, 3, n), rng.integers(0, 3, m)
    values = knn_shapley(xt, yt, xv, yv, k, chunk_elements=chunk)
    assert values.sum() == pytest.approx(knn_utility(xt, yt, xv, yv, k), abs=1e-9)
    np.testing.assert_allclose(values, knn_shapley(xt, yt, xv, yv, k), rtol=0, atol=1e-12)
    assert knn_utility(xt, yt, xv, yv, k, subset=[]) == 0


def test_symmetry_and_null_player() -> None:
    rng = np.random.default_rng(3)
    xt = rng.normal(size=(30, 2))
    yt = rng.integers(0, 2, 30)
    xt[10], yt[10] = xt[4], yt[4]  # an exact copy of row 4: interchangeable players
    xv, yv = rng.normal(size=(20, 2)), rng.integers(0, 2, 20)
    values = knn_shapley(xt, yt, xv, yv, 3)
    assert values[10] == pytest.approx(values[4], abs=1e-15)
    # a label no validation point carries never helps: its row is worth ≤ 0, and exactly 0 for K ≥ N
    yt_null = yt.copy()
    yt_null[7] = 9
    assert knn_shapley(xt, yt_null, xv, yv, 3)[7] <= 1e-15
    assert knn_shapley(xt, yt_null, xv, yv, 30)[7] == pytest.approx(0, abs=1e-15)


def test_known_answer_one_dimension() -> None:
    # validation point at 0 with label 1; training rows at 1 (label 1), 2 (label 0), 3 (label 1); K = 1.
    # Utility: the nearest present row's label is right. Shapley by hand: s₃ = 1/3, s₂ = s₃ − 1/2 = −1/6,
    # s₁ = s₂ + 1 = 5/6; sum = U(all) = 1.
    values = knn_shapley([[1.0], [2.0], [3.0]], [1, 0, 1], [[0.0]], [1], 1)
    np.testing.assert_allclose(values, [5 / 6, -1 / 6, 1 / 3], atol=1e-15)


@pytest.mark.parametrize("args", [
    ([[1.0]], [1], [[0.0]], [1], 0),
    ([[1.0]], [1], [[0.0]], [1], True),
    ([[1.0]], [1, 2], [[0.0]], [1], 1),
    ([1.0], [1], [[0.0]], [1], 1),
    ([[1.0]], [1], [[0.0, 1.0]], [1], 1),
    (np.empty((0, 1)), [], [[0.0]], [1], 1),
    ([[np.nan]], [1], [[0.0]], [1], 1),
    ([["a"]], [1], [[0.0]], [1], 1),
])
def test_bad_inputs_are_refused(args: tuple[object, ...]) -> None:
    with pytest.raises(PricingError) as err:
        knn_shapley(*args)  # type: ignore[arg-type]
    assert err.value.code == "invalid_valuation"
    with pytest.raises(PricingError):
        knn_utility([[1.0]], [1], [[0.0]], [1], 1, subset=[5])
