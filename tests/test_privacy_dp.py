"""Differential privacy: exact budget units, and releases attacked with the statistics an auditor would use.

Every statistical test has a failure probability computed from the math (Chernoff / DKW bounds, union over the
events it checks), at most ~1e-6, because OpenDP's noise comes from the OS CSPRNG and cannot be seeded. Each test
family also runs its statistic on a deliberately broken mechanism (half the noise, no contribution bound, numpy
float noise, a low threshold, no public domain) and asserts that the statistic catches it: a test that cannot fail
proves nothing.

Many cells of one release are used as independent repetitions of one neighbouring pair: cell i of D holds c units
and cell i of D' holds c units plus one more. OpenDP's vector Laplace adds i.i.d. noise per cell (checked by the
goodness-of-fit test), so each cell's output is one draw from the pair's output distributions.
"""

from __future__ import annotations

import ast
import math
from dataclasses import replace
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import opendp.prelude as dp
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privacy.budget import (
    MAX_EPSILON_UNITS,
    BudgetError,
    EpsilonUnits,
    delta_value,
    epsilon_value,
    format_delta,
    format_epsilon,
    parse_delta,
    parse_epsilon,
    split,
)
from privacy.dp import AggregateSpec, DPError, Release, _bound_contributions, release, validate

ALPHA = 1e-6  # failure budget of each statistical assertion
EPS1 = EpsilonUnits(1_000_000)  # ε = 1
EXACT = EpsilonUnits(MAX_EPSILON_UNITS)  # ε = 100: count noise is 0 except with probability < 2·e**-33 per cell


# ----------------------------------------------------------------------------------------------- budget units


@pytest.mark.parametrize(("value", "units"), [
    (0.1, 100_000), ("0.1", 100_000), (Decimal("0.1"), 100_000), (1, 1_000_000), ("1", 1_000_000),
    (1e-6, 1), ("0.000001", 1), (1e-7, 1), ("1e-30", 1), ("0.0000011", 2), (0.30000000000000004, 300_001),
    (100, 100_000_000), ("1E+2", 100_000_000), (2.5, 2_500_000),
])
def test_epsilon_parses_the_decimal_it_spells_rounding_up(value: object, units: int) -> None:
    """Attack: under-charging by rounding down (1e-7 ε must cost one unit, 0.30000000000000004 must cost 300 001
    units) or by binary float error (the float 0.1 means the decimal 0.1 its JSON spelled)."""
    assert parse_epsilon(value) == units


def test_ten_tenths_are_exactly_one_epsilon() -> None:
    """Attack: ten purchases of 0.1 adding up to less than one ε (0.1 + … + 0.1 == 0.9999999999999999 in floats)."""
    assert sum([0.1] * 10) != 1.0  # the float trap the units avoid
    assert sum(parse_epsilon(0.1) for _ in range(10)) == parse_epsilon(1.0) == 1_000_000
    assert format_epsilon(sum(parse_epsilon("0.1") for _ in range(10))) == "1"


@pytest.mark.parametrize("value", [
    float("nan"), float("inf"), float("-inf"), -1, -0.1, 0, 0.0, "0", "-0", True, False, "abc", None, "NaN",
    "Infinity", "-inf", " 0.1", "1_0", "0x10", "1e99999", 100.000001, "101", 10**400, [], {}, b"1", Decimal("NaN"),
])
def test_invalid_epsilon_is_refused_with_a_stable_code(value: object) -> None:
    """Attack: a negative, zero, NaN or infinite ε that would refund budget or disable noise."""
    with pytest.raises(BudgetError) as err:
        parse_epsilon(value)
    assert err.value.code == "invalid_epsilon" and isinstance(err.value, ValueError)


@pytest.mark.parametrize(("value", "units"), [
    (0, 0), (0.0, 0), ("0", 0), (1e-6, 1_000_000), ("1e-12", 1), (1e-13, 1), ("0.000999", 999_000_000),
])
def test_delta_parses_exactly(value: object, units: int) -> None:
    assert parse_delta(value) == units


@pytest.mark.parametrize("value", [1e-3, 0.5, 1, -1e-9, float("nan"), float("inf"), True, "abc", None,
                                   "0.000999999999999999"])
def test_invalid_delta_is_refused_with_a_stable_code(value: object) -> None:
    """Attack: δ ≥ 1e-3 (a mechanism that may leak a whole record with probability δ), negative or NaN δ."""
    with pytest.raises(BudgetError) as err:
        parse_delta(value)
    assert err.value.code == "invalid_delta"


@settings(max_examples=300)
@given(st.decimals(min_value=Decimal("1e-12"), max_value=100, allow_nan=False, allow_infinity=False, places=12))
def test_parsed_units_never_undercharge_and_round_trip(value: Decimal) -> None:
    """Attack: rounding down anywhere in parse → format → parse."""
    if value <= 0:
        return
    units = parse_epsilon(str(value))
    exact = Fraction(value)
    assert Fraction(units, 10**6) >= exact > Fraction(units - 1, 10**6)
    assert parse_epsilon(format_epsilon(units)) == units
    assert epsilon_value(units) <= Fraction(units, 10**6) < Fraction(math.nextafter(epsilon_value(units), math.inf))
    delta_units = parse_delta(str(value / 10**6))
    assert Fraction(delta_units, 10**12) >= exact / 10**6
    assert Fraction(delta_value(delta_units)) <= Fraction(delta_units, 10**12)
    assert parse_delta(format_delta(delta_units)) == delta_units


@given(st.integers(min_value=1, max_value=MAX_EPSILON_UNITS), st.integers(min_value=1, max_value=50))
def test_split_sums_exactly(total: int, parts: int) -> None:
    """Attack: mean = sum + count spending more (or less) than the ε charged."""
    if total < parts:
        with pytest.raises(BudgetError):
            split(EpsilonUnits(total), parts)
        return
    shares = split(EpsilonUnits(total), parts)
    assert sum(shares) == total and len(shares) == parts
    assert min(shares) >= 1 and max(shares) - min(shares) <= 1


def test_format_is_exact_decimal() -> None:
    assert [format_epsilon(u) for u in (1, 100_000, 1_000_000, 1_500_000, 123_456_789)] == [
        "0.000001", "0.1", "1", "1.5", "123.456789"]
    assert format_delta(1) == "0.000000000001"


# --------------------------------------------------------------------------------------------- statistics helpers


def _kl(p: float, q: float) -> float:
    out = 0.0
    if p > 0:
        out += p * math.log(p / q)
    if p < 1:
        out += (1 - p) * math.log((1 - p) / (1 - q))
    return out


def _binomial_interval(successes: int, n: int, log_inv_alpha: float) -> tuple[float, float]:
    """Chernoff (KL) confidence interval: P(p < lower) ≤ α and P(p > upper) ≤ α, for any n."""
    p_hat = successes / n

    def solve(lo: float, hi: float, outward_is_hi: bool) -> float:
        for _ in range(100):
            mid = (lo + hi) / 2
            inside = n * _kl(p_hat, mid) <= log_inv_alpha
            lo, hi = (mid, hi) if inside == outward_is_hi else (lo, mid)
        return lo if outward_is_hi else hi

    lower = 0.0 if successes == 0 else solve(1e-300, p_hat, outward_is_hi=False)
    upper = 1.0 if successes == n else solve(p_hat, 1 - 1e-16, outward_is_hi=True)
    return lower, upper


def _epsilon_lower_bound(a: np.ndarray, b: np.ndarray, edges: np.ndarray, min_count: int = 100) -> float:
    """A (1 − ALPHA)-confidence lower bound on max over bins of |log P_a(bin) / P_b(bin)|: for an ε-DP mechanism
    it is ≤ ε except with probability ALPHA (union bound over 4 one-sided intervals per bin, every bin counted;
    ``min_count`` only skips numerators too small to matter)."""
    ha, _ = np.histogram(a, edges)
    hb, _ = np.histogram(b, edges)
    log_inv = math.log(4 * (len(edges) - 1) / ALPHA)
    best = -math.inf
    for x, y in zip(ha.tolist(), hb.tolist(), strict=True):
        lo_a, hi_a = _binomial_interval(x, len(a), log_inv)
        lo_b, hi_b = _binomial_interval(y, len(b), log_inv)
        if x >= min_count:  # a bin one side hits often and the other rarely (or never) is the strongest evidence
            best = max(best, math.log(lo_a / hi_b))
        if y >= min_count:
            best = max(best, math.log(lo_b / hi_a))
    assert best > -math.inf, "no bin has enough mass: the test would be vacuous"
    return best


def _discrete_laplace_cdf(d: np.ndarray, scale: float) -> np.ndarray:
    """CDF of OpenDP's discrete Laplace, P(Y = y) = tanh(1/(2·scale))·exp(−|y|/scale), at integers ``d``."""
    r = math.exp(-1 / scale)
    d = d.astype(np.float64)
    return np.where(d < 0, r ** np.abs(d) / (1 + r), 1 - r ** (d + 1) / (1 + r))


def _dkw_distance(samples: np.ndarray, center: int, scale: float) -> tuple[float, float]:
    """sup |F̂ − F| over the integers, and the DKW threshold sqrt(ln(2/α)/(2n)) it exceeds with probability ≤ α
    under the null (valid for discrete distributions too)."""
    noise = np.sort(samples - center)
    grid = np.arange(noise[0] - 1, noise[-1] + 1)
    empirical = np.searchsorted(noise, grid, side="right") / len(noise)
    return float(np.max(np.abs(empirical - _discrete_laplace_cdf(grid, scale)))), math.sqrt(
        math.log(2 / ALPHA) / (2 * len(noise)))


def _cells_table(cells: int, rows_per_cell: int, value: float = 1.0, *, ids_from: int = 0) -> pa.Table:
    """``rows_per_cell`` rows (each its own id) in every one of ``cells`` integer keys."""
    n = cells * rows_per_cell
    return pa.table({"cell": np.repeat(np.arange(cells), rows_per_cell), "id": np.arange(ids_from, ids_from + n),
                     "v": np.full(n, value)})


def _pooled(table: pa.Table, spec: AggregateSpec, repeats: int) -> np.ndarray:
    return np.concatenate([release(table, spec).table[spec.value_name].to_numpy() for _ in range(repeats)])


# ------------------------------------------------------------------------------------------------ goodness of fit


GOF_CELLS, GOF_REPEATS, GOF_COUNT = 5000, 8, 60


@pytest.mark.parametrize(("k", "eps", "weakened"), [
    (1, EPS1, None),
    (3, EpsilonUnits(500_000), None),
    (1, EPS1, "20% less noise"),
    (3, EpsilonUnits(500_000), "sensitivity ignores max_contributions"),
])
def test_noisy_count_is_exact_discrete_laplace_at_scale_k_over_epsilon(k: int, eps: EpsilonUnits,
                                                                       weakened: str | None) -> None:
    """Attack: a mechanism whose noise is not the claimed distribution (wrong scale, wrong sensitivity, a biased
    sampler). 40 000 noisy counts are compared with the exact pmf by the DKW bound on the CDF distance."""
    cells = _cells_table(GOF_CELLS, GOF_COUNT)
    spec = AggregateSpec(op="count", epsilon=eps, group_by=("cell",), domains={"cell": range(GOF_CELLS)},
                         privacy_unit="id", max_contributions=k)
    claimed = k / epsilon_value(eps)
    if weakened == "20% less noise":
        spec = replace(spec, epsilon=EpsilonUnits(eps * 5 // 4))
    elif weakened == "sensitivity ignores max_contributions":
        spec = replace(spec, max_contributions=1)
    assert release(cells, spec).scale == pytest.approx(spec.max_contributions / epsilon_value(spec.epsilon),
                                                       rel=1e-12)
    distance, threshold = _dkw_distance(_pooled(cells, spec, GOF_REPEATS), GOF_COUNT, claimed)
    if weakened is None:
        assert distance <= threshold
    else:
        assert distance > threshold, f"the DKW test missed a broken mechanism ({weakened})"


# ------------------------------------------------------------------------------------ neighbouring datasets: LR


LR_CELLS, LR_REPEATS, LR_COUNT = 10_000, 4, 40


def _neighbours(case: str) -> tuple[pa.Table, pa.Table, AggregateSpec, np.ndarray]:
    """D, D' (D plus one privacy unit in every cell), the spec and fixed histogram edges around the outputs."""
    d = _cells_table(LR_CELLS, LR_COUNT, 5.0)
    domains = {"cell": range(LR_CELLS)}
    if case == "count, unit = row":
        extra = _cells_table(LR_CELLS, 1, 5.0, ids_from=10**8)
        spec = AggregateSpec(op="count", epsilon=EPS1, group_by=("cell",), domains=domains)
        edges = np.arange(LR_COUNT - 20.5, LR_COUNT + 22.5)
    elif case in ("count, unit = id with 20 rows, k = 3", "count, no contribution bound"):
        # the extra unit is one id holding 20 rows in its cell
        extra = pa.table({"cell": np.repeat(np.arange(LR_CELLS), 20), "id": np.repeat(np.arange(LR_CELLS) + 10**8, 20),
                          "v": np.full(LR_CELLS * 20, 5.0)})
        bounded = case.endswith("k = 3")
        spec = AggregateSpec(op="count", epsilon=EPS1, group_by=("cell",), domains=domains,
                             privacy_unit="id" if bounded else None, max_contributions=3 if bounded else 1)
        edges = np.arange(LR_COUNT - 40.5, LR_COUNT + 60.5, 3.0)
    elif case == "sum, bounds [0, 10], extra value clamped from 1e6":
        extra = _cells_table(LR_CELLS, 1, 1e6, ids_from=10**8)
        spec = AggregateSpec(op="sum", epsilon=EPS1, column="v", bounds=(0.0, 10.0), group_by=("cell",),
                             domains=domains)
        edges = LR_COUNT * 5.0 + np.arange(-60.0, 75.0, 5.0)
    elif case == "mean, bounds [0, 10]":
        extra = _cells_table(LR_CELLS, 1, 10.0, ids_from=10**8)
        spec = AggregateSpec(op="mean", epsilon=EPS1, column="v", bounds=(0.0, 10.0), group_by=("cell",),
                             domains=domains)
        edges = np.arange(3.5, 7.0, 0.25)
    else:  # pragma: no cover
        raise AssertionError(case)
    return d, pa.concat_tables([d, extra]), spec, edges


@pytest.mark.parametrize("case", ["count, unit = row", "count, unit = id with 20 rows, k = 3",
                                  "sum, bounds [0, 10], extra value clamped from 1e6", "mean, bounds [0, 10]"])
def test_neighbours_are_indistinguishable_beyond_epsilon(case: str) -> None:
    """Attack: membership inference by comparing output frequencies of D and D' = D + one unit. The empirical
    privacy loss (a confidence lower bound on the largest bin log-ratio) must not exceed the claimed ε; for count
    and sum the true loss is exactly ε on most bins, so the bound must also come close (the test has power)."""
    d, d_prime, spec, edges = _neighbours(case)
    lower = _epsilon_lower_bound(_pooled(d, spec, LR_REPEATS), _pooled(d_prime, spec, LR_REPEATS), edges)
    eps = epsilon_value(spec.epsilon)
    assert lower <= eps
    if not case.startswith("mean"):
        assert lower >= 0.5 * eps, "the test should see the mechanism's real privacy loss (exactly ε)"


@pytest.mark.parametrize(("case", "broken"), [
    ("count, unit = row", "half the noise"),
    ("sum, bounds [0, 10], extra value clamped from 1e6", "half the noise"),
    ("count, no contribution bound", "an id with 20 rows counted in full"),
])
def test_the_likelihood_ratio_test_flags_broken_mechanisms(case: str, broken: str) -> None:
    """The same statistic on a broken mechanism that still claims ε: half the noise (twice the ε actually spent),
    or a privacy unit whose 20 rows are all counted under row-level noise. It must exceed ε."""
    d, d_prime, spec, edges = _neighbours(case)
    claimed = epsilon_value(spec.epsilon)
    if broken == "half the noise":
        spec = replace(spec, epsilon=EpsilonUnits(2 * spec.epsilon))
    lower = _epsilon_lower_bound(_pooled(d, spec, LR_REPEATS), _pooled(d_prime, spec, LR_REPEATS), edges)
    assert lower > claimed, f"the likelihood-ratio test missed {broken}"


# -------------------------------------------------------------------------------------- Mironov 2012 float attack


def _off_grid(values: np.ndarray, step_log2: int) -> np.ndarray:
    """True where a float is not an integer multiple of 2**step_log2 (scaling by a power of two is exact)."""
    scaled = np.ldexp(values, -step_log2)
    return np.asarray(np.floor(scaled) != scaled)


def test_mironov_naive_float_laplace_leaks_the_input_through_low_order_bits() -> None:
    """The attack this library must not be open to (Mironov 2012, "On significance of the least significant bits
    for differential privacy"). Naive release ``x + numpy Laplace(1/ε)`` for a count x ∈ {0, 1}: when x = 1 every
    output fl(1 + Y) is a multiple of 2⁻⁵³ (if |1 + Y| ≥ ½ its ulp is ≥ 2⁻⁵³; otherwise Y ∈ [−1.5, −½] and Sterbenz
    makes 1 + Y exact on Y's grid of ≥ 2⁻⁵³). When x = 0 the output is Y itself, and for |Y| < ½ the sampler's
    outputs are mostly finer than 2⁻⁵³. So an output off the 2⁻⁵³ grid proves x = 0: probability > 0 under D and 0
    under D' — an infinite privacy loss, whatever the scale. This is the statistic's "weakened variant"; the next
    test runs it on the real release."""
    rng = np.random.default_rng(2012)
    n, scale = 20_000, 1.0
    under_d = 0.0 + rng.laplace(0.0, scale, n)
    under_d_prime = 1.0 + rng.laplace(0.0, scale, n)
    assert not _off_grid(under_d_prime, -53).any(), "every output of x = 1 is on the 2**-53 grid (proof above)"
    assert _off_grid(under_d, -53).mean() > 0.2, "most outputs with |Y| < 1/2 (~39%) reveal x = 0"


def test_mironov_opendp_sums_lie_on_an_input_independent_grid() -> None:
    """The release's answer to Mironov: a float sum is clamped, scaled by a power of two to integers, noised with
    OpenDP's integer discrete Laplace and scaled back, so every output of D and of D' is an integer multiple of the
    same grid 2**-29 (bounds [0, 1] → max |bound| = 2**0, 30 bits of resolution; fixed by the spec, not the data),
    and discrete Laplace gives every multiple positive probability under both. The low-bits distinguisher above
    finds nothing; the likelihood-ratio test bounds everything else."""
    rng = np.random.default_rng(7)
    cells, per_cell = 5000, 20
    d = pa.table({"cell": np.repeat(np.arange(cells), per_cell), "v": rng.random(cells * per_cell)})
    d_prime = pa.concat_tables([d, pa.table({"cell": np.arange(cells), "v": np.ones(cells)})])
    spec = AggregateSpec(op="sum", epsilon=EPS1, column="v", bounds=(0.0, 1.0), group_by=("cell",),
                         domains={"cell": range(cells)})
    out_d, out_d_prime = _pooled(d, spec, 2), _pooled(d_prime, spec, 2)
    for out in (out_d, out_d_prime):
        assert not _off_grid(out, -29).any()
        assert not _off_grid(out, -53).any()
    # the grid is fine enough not to matter and the outputs really use it (not, say, rounded to integers)
    assert _off_grid(out_d, 0).mean() > 0.9


def test_noise_comes_only_from_opendp() -> None:
    """Attack: a refactor that draws noise from numpy.random / random (Mironov, and not a CSPRNG). The checker
    is shown to catch such code before it is trusted on privacy/dp.py."""

    def randomness(source: str) -> list[str]:
        found = []
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom)
                                                        and node.module else [])
                found += [n for n in names if n.split(".")[0] in ("random", "secrets") or "random" in n]
            elif isinstance(node, ast.Attribute) and node.attr in ("random", "laplace", "default_rng"):
                found.append(node.attr)
        return found

    assert randomness("import numpy as np\nnoise = np.random.laplace(0, 1)\n")
    assert randomness("from random import gauss\n")
    source = (Path(__file__).resolve().parent.parent / "privacy" / "dp.py").read_text(encoding="utf-8")
    assert randomness(source) == []


# ------------------------------------------------------------------------------------------ contribution bounding


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("bounded", [True, False])
def test_one_id_with_1000_rows_moves_counts_by_at_most_k(k: int, bounded: bool) -> None:
    """Attack: one person with many rows dominating a count (and the noise calibrated for one row). 1000 rows
    spread over 3 groups must move the counts, in total, by at most k. Unbounded (row-level unit), it moves them
    by 1000: the check fails, as it must."""
    base = pa.table({"id": np.arange(300), "g": np.arange(300) % 3})
    attacker = pa.table({"id": np.full(1000, 10**6), "g": np.arange(1000) % 3})
    spec = AggregateSpec(op="count", epsilon=EXACT, group_by=("g",), domains={"g": [0, 1, 2]},
                         privacy_unit="id" if bounded else None, max_contributions=k if bounded else 1)
    before = release(base, spec).table["count"].to_numpy()
    after = release(pa.concat_tables([base, attacker]), spec).table["count"].to_numpy()
    moved = int(np.abs(after - before).sum())
    if bounded:
        assert moved == k  # the attacker's first k rows, in table order, and nothing else
    else:
        assert moved == 1000


def _reference_first_k(ids: list[Any], k: int) -> list[bool]:
    seen: dict[Any, int] = {}
    keep = []
    for i in ids:
        if i is None:
            keep.append(False)
            continue
        seen[i] = seen.get(i, 0) + 1
        keep.append(seen[i] <= k)
    return keep


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(-3, 6)), max_size=60), st.integers(1, 20),
       st.sampled_from(["int", "sparse int", "string", "dictionary"]))
def test_truncation_keeps_the_first_k_rows_of_each_unit_in_table_order(ids: list[int | None], k: int,
                                                                       kind: str) -> None:
    """The contribution bound is a deterministic, k-stable transformation: each id keeps its first k rows."""
    values: list[Any] = ids
    if kind == "sparse int":
        values = [None if i is None else i * 10**12 for i in ids]
    elif kind in ("string", "dictionary"):
        values = [None if i is None else f"id{i}" for i in ids]
    col = pa.array(values, type=pa.int64() if "int" in kind else pa.string())
    if kind == "dictionary":
        col = col.dictionary_encode()
    table = pa.table({"u": col, "row": np.arange(len(ids))})
    kept = _bound_contributions(table, "u", k)["row"].to_pylist()
    assert kept == [i for i, keep in enumerate(_reference_first_k(values, k)) if keep]


# ---------------------------------------------------------------------------------------------- public domains


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.none(), st.sampled_from(["a", "b", "c", "secret"])),
                          st.sampled_from([1, 2, 99])), max_size=40))
def test_declared_domain_fixes_the_output_key_set(rows: list[tuple[str | None, int]]) -> None:
    """Attack: learning a value from the *presence* of a key (a group that exists only because one person has an
    unusual value), or the absence of one. The output key set is exactly the declared cross product, in order,
    zeros included; a value outside the domain ('secret', 99, null) never appears and counts nowhere."""
    table = pa.table({"g": pa.array([r[0] for r in rows], pa.string()),
                      "h": pa.array([r[1] for r in rows], pa.int64())})
    domains: dict[str, list[Any]] = {"g": ["a", "b", "c", "d"], "h": [1, 2]}
    spec = AggregateSpec(op="histogram", epsilon=EXACT, group_by=("g",), column="h", domains=domains)
    out = release(table, spec).table
    assert out.column_names == ["g", "h", "count"]
    assert list(zip(out["g"].to_pylist(), out["h"].to_pylist(), strict=True)) == [
        (g, h) for g in domains["g"] for h in domains["h"]]
    expected = [sum(1 for r in rows if r == (g, h)) for g in domains["g"] for h in domains["h"]]
    assert out["count"].to_pylist() == expected


def test_a_key_set_from_the_data_would_leak_and_the_domain_does_not() -> None:
    """The weakened variant of the domain test: grouping by the observed keys reveals that someone has 'secret'."""
    d = pa.table({"g": ["a", "b", "a"]})
    d_prime = pa.concat_tables([d, pa.table({"g": ["secret"]})])
    observed = set(d_prime.group_by("g").aggregate([([], "count_all")])["g"].to_pylist())
    assert "secret" in observed  # the naive key set differs between neighbours
    spec = AggregateSpec(op="count", epsilon=EPS1, group_by=("g",), domains={"g": ["a", "b", "c"]})
    assert release(d, spec).table["g"].to_pylist() == release(d_prime, spec).table["g"].to_pylist() == ["a", "b", "c"]


# ----------------------------------------------------------------------------------------- partition selection


def test_partition_selection_almost_never_releases_a_rare_key() -> None:
    """Attack: a key held by one person appearing in the output. Without a public domain, keys pass a noisy
    threshold calibrated so the release is (ε, δ)-DP: a key with one row is released with probability ≤ δ
    (its absence is certain on the neighbour without that row), so among 10 000 such keys P(≥ 3 released) ≤
    C(10⁴, 3)·δ³ < 2e-7. Frequent keys (1000 rows) are all released, sorted; the weakened variant (a threshold of
    2, δ ≈ 0.1 by OpenDP's own map) releases thousands of rare keys."""
    rare = [f"rare{i:05d}" for i in range(10_000)]
    frequent = [f"top{i:02d}" for i in range(20)]
    table = pa.table({"g": rare + [g for g in frequent for _ in range(1000)]})
    spec = AggregateSpec(op="count", epsilon=EPS1, group_by=("g",), delta=1e-6)
    out = release(table, spec)
    keys = out.table["g"].to_pylist()
    assert sum(k.startswith("rare") for k in keys) <= 2
    assert [k for k in keys if k.startswith("top")] == frequent
    assert keys == sorted(keys) and out.delta == 1e-6 and "threshold" in out.mechanism

    space = (dp.map_domain(dp.atom_domain(T="i64"), dp.atom_domain(T="i64")),
             dp.l01inf_distance(dp.absolute_distance(T="i64")))
    weak = dp.m.make_laplace_threshold(*space, scale=1.0, threshold=2)
    assert weak.map((1, 1, 1))[1] > 0.05  # type: ignore[no-untyped-call]
    leaked = weak({i: 1 for i in range(10_000)})
    assert len(leaked) > 2, "the statistic must catch a threshold that is too low"


def test_partition_selection_for_sums_and_mixed_domains() -> None:
    """Keys outside a declared domain stay out even when another key column is selected privately."""
    table = pa.table({"g": ["x"] * 500 + ["y"] * 500 + ["z"] * 500, "h": [1] * 1000 + [7] * 500,
                      "v": np.full(1500, 2.0)})
    spec = AggregateSpec(op="sum", epsilon=EXACT, column="v", bounds=(0.0, 4.0), group_by=("g", "h"),
                         domains={"h": [1, 2]}, delta=1e-9)
    out = release(table, spec).table
    assert list(zip(out["g"].to_pylist(), out["h"].to_pylist(), strict=True)) == [("x", 1), ("y", 1)]
    assert out["sum"].to_numpy() == pytest.approx([1000.0, 1000.0], abs=3.0)  # sum noise scale 0.08: e**-37


# ------------------------------------------------------------------------------------------- exact aggregates


def test_sum_clamps_and_mean_ignores_missing_values() -> None:
    """Clamping is what bounds the sensitivity: a value of 1e9 counts as the upper bound, never more."""
    table = pa.table({"g": ["a", "a", "a", "b", "b"], "v": [1.0, 1e9, None, -5.0, float("nan")]})
    common: dict[str, Any] = {"column": "v", "bounds": (0.0, 10.0), "group_by": ("g",), "domains": {"g": ["a", "b"]}}
    sums = release(table, AggregateSpec(op="sum", epsilon=EXACT, **common))
    assert sums.table["sum"].to_numpy() == pytest.approx([11.0, 0.0], abs=2.5)  # noise scale 0.1: P(miss) < e**-25
    means = release(table, AggregateSpec(op="mean", epsilon=EXACT, **common)).table["mean"].to_numpy()
    assert means[0] == pytest.approx(5.5, abs=2.5) and 0.0 <= means[1] <= 10.0  # sum noise 0.2, count exact
    total = release(table, AggregateSpec(op="count", epsilon=EXACT, column="v"))
    assert total.table.to_pylist() == [{"count": 4}]  # NaN is a value, null is not
    assert release(table.slice(0, 0), AggregateSpec(op="count", epsilon=EXACT)).table.to_pylist() == [{"count": 0}]


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 100_000_000), st.integers(1, 50))
def test_calibration_never_spends_more_than_charged(units: int, k: int) -> None:
    """Attack: float rounding in ε → scale making the noise slightly too small. k / scale ≤ ε exactly."""
    table = pa.table({"id": [1, 2], "g": ["a", "b"], "v": [1.0, 2.0]})
    spec = AggregateSpec(op="count", epsilon=EpsilonUnits(units), group_by=("g",), domains={"g": ["a", "b"]},
                         privacy_unit="id", max_contributions=k)
    got: Release = release(table, spec)
    assert Fraction(k) / Fraction(got.scale) <= Fraction(units, 10**6)
    assert got.epsilon == units and got.delta == 0.0
    assert got.metadata()["dp.epsilon"] == format_epsilon(units)


# ------------------------------------------------------------------------------------------------ validation


_SCHEMA_TABLE = pa.table({"g": ["a"], "v": [1.0], "s": ["x"], "id": [1], "f": [0.5], "l": [[1]]})


@pytest.mark.parametrize(("changes", "code"), [
    ({"op": "median"}, "invalid_op"),
    ({"op": "sum", "column": None}, "missing_column"),
    ({"column": "nope"}, "unknown_column"),
    ({"group_by": ("g", "nope")}, "unknown_column"),
    ({"privacy_unit": "nope"}, "unknown_column"),
    ({"group_by": ("g", "g")}, "duplicate_column"),
    ({"op": "histogram", "column": "g"}, "duplicate_column"),
    ({"group_by": ("l",), "domains": {"l": [[1]]}}, "unsupported_key_type"),
    ({"privacy_unit": "f"}, "unsupported_key_type"),
    ({"op": "sum", "column": "s", "bounds": (0, 1)}, "non_numeric_column"),
    ({"op": "mean", "column": "v"}, "missing_bounds"),
    ({"op": "count", "bounds": (0, 1)}, "unexpected_bounds"),
    ({"op": "sum", "column": "v", "bounds": (1, 1)}, "invalid_bounds"),
    ({"op": "sum", "column": "v", "bounds": (2, 1)}, "invalid_bounds"),
    ({"op": "sum", "column": "v", "bounds": (0, math.inf)}, "invalid_bounds"),
    ({"op": "sum", "column": "v", "bounds": (math.nan, 1)}, "invalid_bounds"),
    ({"op": "sum", "column": "v", "bounds": (0, True)}, "invalid_bounds"),
    ({"domains": {}}, "missing_domain"),
    ({"domains": {"g": ["a", "a"]}}, "invalid_domain"),
    ({"domains": {"g": ["a", None]}}, "invalid_domain"),
    ({"domains": {"g": []}}, "invalid_domain"),
    ({"domains": {"g": "abc"}}, "invalid_domain"),
    ({"group_by": ("id",), "domains": {"id": ["x"]}}, "invalid_domain"),
    ({"group_by": ("g", "id"), "domains": {"g": [f"a{i}" for i in range(1001)], "id": range(1000)}},
     "domain_too_large"),
    ({"epsilon": 0}, "invalid_epsilon"),
    ({"epsilon": -5}, "invalid_epsilon"),
    ({"epsilon": MAX_EPSILON_UNITS + 1}, "invalid_epsilon"),
    ({"epsilon": 0.5}, "invalid_epsilon"),
    ({"op": "mean", "column": "v", "bounds": (0, 1), "epsilon": 1}, "invalid_epsilon"),
    ({"delta": -1e-9}, "invalid_delta"),
    ({"delta": math.nan}, "invalid_delta"),
    ({"delta": 0.01}, "invalid_delta"),
    ({"delta": 1e-6}, "unexpected_delta"),
    ({"max_contributions": 2}, "invalid_contributions"),
    ({"privacy_unit": "id", "max_contributions": 0}, "invalid_contributions"),
    ({"privacy_unit": "id", "max_contributions": 10**6}, "invalid_contributions"),
])
def test_invalid_specs_are_refused_before_any_row_is_read(changes: dict[str, Any], code: str) -> None:
    """Attack: a spec that would run with unbounded sensitivity, a data-derived key set, or a wrong budget."""
    base = AggregateSpec(op="count", epsilon=EPS1, group_by=("g",), domains={"g": ["a", "b"]})
    spec = replace(base, **changes)
    with pytest.raises(DPError) as err:
        validate(spec, _SCHEMA_TABLE.schema)
    assert err.value.code == code
    with pytest.raises(DPError):
        release(_SCHEMA_TABLE, spec)


def test_valid_specs_pass_validation() -> None:
    for spec in (
        AggregateSpec(op="count", epsilon=EPS1),
        AggregateSpec(op="sum", epsilon=EPS1, column="v", bounds=(-1, 1)),
        AggregateSpec(op="mean", epsilon=EPS1, column="id", bounds=(0, 10), group_by=("g",), delta=1e-7),
        AggregateSpec(op="histogram", epsilon=EPS1, column="s", domains={"s": ["x", "y"]}, privacy_unit="id",
                      max_contributions=5),
    ):
        validate(spec, _SCHEMA_TABLE.schema)
        assert isinstance(release(_SCHEMA_TABLE, spec), Release)
