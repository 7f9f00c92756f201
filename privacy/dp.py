"""Differentially private aggregates over Arrow tables: count, sum, mean and histogram, grouped by key columns.

Contract of :func:`release` (pure: no I/O; deterministic except for the noise):

- **Neighbours** are tables that differ by adding or removing one *privacy unit*: one row (``privacy_unit=None``),
  or every row of one value of the ``privacy_unit`` column. Each unit is first truncated to its first
  ``max_contributions`` (= k) rows in table order, so one unit changes at most k rows (a k-stable transformation);
  rows whose unit id is null are dropped (they cannot be attributed, hence cannot be bounded).
- **Sensitivities** (L1, over the whole vector of cells, because cells are disjoint): count and histogram k;
  sum k·max(|L|, |U|) after clamping every value to the declared bounds [L, U] (nulls and NaN contribute 0);
  mean = noisy sum / noisy count of non-null values, ε split exactly in two (:func:`privacy.budget.split`, the sum
  gets the extra unit when ε is odd).
- **Noise** comes only from OpenDP's vetted samplers: ``make_laplace`` over ``vector_domain(atom_domain(T=i64))``
  (the exact discrete Laplace, CKS20) and ``make_laplace_threshold`` for partition selection. Each measurement is
  calibrated to the largest float ε at most the charged units and its own privacy map is checked to be within it.
  OpenDP draws from the operating system's CSPRNG, so noise cannot be seeded; nothing else here is random.
- **Float sums** never add float noise (Mironov 2012) and never trust a float64 sum's sensitivity: clamped values
  are scaled by a power of two and rounded to integers on a grid of ``2**e`` (``e`` from the bounds, ε and k only,
  never from the data), summed exactly in int64, noised with integer discrete Laplace of sensitivity
  k·⌈max(|L|,|U|)/grid⌉, and scaled back. Every released sum is an exact multiple of the grid, whatever the input,
  and the grid is below max(|L|,|U|)·2⁻²⁹ (·2⁻²⁰ at worst, for ε = 10⁻⁶ with k = 10 000), far below the noise.
- **Group keys** come from the declared public domain of each key column: rows with a key outside the domain
  (or null) are dropped, and every combination of domain values appears in the output, zeros included, in domain
  order, so the key set leaks nothing. When a key column has no declared domain the caller must grant δ > 0 and
  keys are chosen by DP partition selection (noisy count ≥ a threshold calibrated so the mechanism is (ε, δ)-DP);
  released keys are sorted, so their order leaks nothing either. For sum and mean the selection spends half of ε.
- **Post-processing** (free): counts are clamped at 0, means to [L, U] with the count floored at 1.
- **Output**: the key columns (histogram: ``group_by`` then ``column``) and one value column named after the op:
  ``count`` (int64), ``sum`` (float64) or ``mean`` (float64).

:func:`validate` refuses a bad spec before any data is read, raising :class:`DPError` with a stable ``code``:
``invalid_op``, ``missing_column``, ``unknown_column``, ``duplicate_column``, ``non_numeric_column``,
``unsupported_key_type``, ``missing_bounds``, ``unexpected_bounds``, ``invalid_bounds``, ``missing_domain``,
``invalid_domain``, ``domain_too_large``, ``invalid_epsilon``, ``invalid_delta``, ``unexpected_delta``,
``invalid_contributions``, ``table_too_large``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import opendp.prelude as dp
import pyarrow as pa
import pyarrow.compute as pc

from privacy.budget import (
    MAX_EPSILON_UNITS,
    EpsilonUnits,
    epsilon_value,
    format_epsilon,
    split,
)

__all__ = [
    "MAX_CELLS",
    "MAX_CONTRIBUTIONS",
    "MAX_DELTA",
    "OPS",
    "AggregateSpec",
    "DPError",
    "Op",
    "Release",
    "release",
    "validate",
]

Op = Literal["count", "sum", "mean", "histogram"]
OPS: tuple[Op, ...] = ("count", "sum", "mean", "histogram")
MAX_CELLS = 1_000_000
"""Most output cells a declared domain may span (the product of the key domains' sizes)."""
MAX_CONTRIBUTIONS = 10_000
MAX_DELTA = 1e-3
_SUM_BITS = 30  # grid steps per max(|L|, |U|): 2**30, fewer only when ε/k would risk int64 overflow in the noise
_ROWS_BITS = 62  # rows · 2**bits must fit in int64 with headroom for the noise

dp.enable_features("contrib")


class DPError(ValueError):
    """A spec the node must refuse; ``code`` is stable and the message never contains data values."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True, kw_only=True)
class AggregateSpec:
    """One DP aggregate. ``epsilon`` is in micro-epsilon units (:mod:`privacy.budget`), ``delta`` a probability.

    ``column``: the summed / averaged column, the histogram's value column, or for ``count`` an optional column
    whose non-null values are counted (``None`` counts rows). ``bounds``: declared clamp bounds [L, U], required
    for sum and mean only. ``domains``: declared public values per key column (extra entries are ignored).
    ``privacy_unit``: the id column of the protected entity (``None``: one row). ``max_contributions``: k, rows
    kept per unit. ``delta``: > 0 exactly when some key column has no declared domain (partition selection).
    """

    op: Op
    epsilon: EpsilonUnits
    column: str | None = None
    group_by: tuple[str, ...] = ()
    bounds: tuple[float, float] | None = None
    domains: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    privacy_unit: str | None = None
    max_contributions: int = 1
    delta: float = 0.0

    @property
    def value_name(self) -> str:
        """The output's value column: ``count`` for count and histogram, else the op."""
        return "count" if self.op == "histogram" else self.op

    @property
    def keys(self) -> tuple[str, ...]:
        """The output's key columns: ``group_by``, then ``column`` for a histogram."""
        if self.op == "histogram" and self.column is not None:
            return (*self.group_by, self.column)
        return tuple(self.group_by)


@dataclass(frozen=True, slots=True)
class Release:
    """A released aggregate. ``epsilon``/``delta`` are exactly what the spec allowed (all of it is spent);
    ``scale`` is the Laplace scale of the value column's noise in the value's units (mean: of its sum);
    ``mechanism`` names every mechanism with its sensitivity and scale, for the ledger and schema metadata."""

    table: pa.Table
    epsilon: EpsilonUnits
    delta: float
    mechanism: str
    scale: float

    def metadata(self) -> dict[str, str]:
        """Schema-metadata entries describing the release (ε as an exact decimal)."""
        return {"dp.epsilon": format_epsilon(self.epsilon), "dp.delta": repr(self.delta),
                "dp.mechanism": self.mechanism, "dp.scale": repr(self.scale)}


@dataclass(frozen=True, slots=True)
class _Grid:
    """Integer grid for sums: a value v in [lower, upper] becomes round(v / 2**exponent), |round| ≤ max_units."""

    lower: float
    upper: float
    exponent: int
    max_units: int

    @property
    def step(self) -> float:
        return math.ldexp(1.0, self.exponent)


@dataclass(frozen=True, slots=True)
class _Plan:
    keys: tuple[str, ...]
    domains: tuple[pa.Array | None, ...]  # per key, converted to the key's value type
    select: bool  # some key has no domain: DP partition selection
    count_eps: EpsilonUnits | None  # the count (or selection) mechanism's share
    sum_eps: EpsilonUnits | None
    grid: _Grid | None


# ---------------------------------------------------------------------------------------------------- validation


def _value_type(dtype: pa.DataType) -> pa.DataType:
    return dtype.value_type if pa.types.is_dictionary(dtype) else dtype


def _is_key_type(dtype: pa.DataType) -> bool:
    t = _value_type(dtype)
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)
                or pa.types.is_boolean(t) or pa.types.is_temporal(t) or pa.types.is_binary(t)
                or pa.types.is_floating(t) or pa.types.is_decimal(t))


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _domain(name: str, values: object, dtype: pa.DataType) -> pa.Array:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise DPError(f"the domain of {name!r} must be a list of values", "invalid_domain")
    if not 0 < len(values) <= MAX_CELLS:
        raise DPError(f"the domain of {name!r} must hold 1 to {MAX_CELLS} values", "invalid_domain")
    try:
        try:
            arr = pa.array(list(values), type=dtype)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):  # e.g. ISO date strings for a date column
            arr = pa.array(list(values)).cast(dtype)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError):
        raise DPError(f"the domain of {name!r} does not match the column's type", "invalid_domain") from None
    if arr.null_count or pc.count_distinct(arr).as_py() != len(arr):
        raise DPError(f"the domain of {name!r} must hold distinct non-null values", "invalid_domain")
    return arr


def _sum_grid(bounds: object, eps: EpsilonUnits, k: int) -> _Grid:
    if not (isinstance(bounds, (tuple, list)) and len(bounds) == 2 and all(_is_number(b) for b in bounds)):
        raise DPError("bounds must be two numbers [lower, upper]", "invalid_bounds")
    lower, upper = float(bounds[0]), float(bounds[1])
    largest = max(abs(lower), abs(upper))
    if not (math.isfinite(lower) and math.isfinite(upper) and lower < upper and 2.0**-64 <= largest <= 2.0**64):
        raise DPError("bounds must be finite, lower < upper, magnitudes within 2**-64 .. 2**64", "invalid_bounds")
    # Noise scale in grid units is k·2**bits/ε; keep 64 scales of it below 2**61 (P(|noise| > 64·scale) = e**-64).
    bits = min(_SUM_BITS, math.floor(55 + math.log2(epsilon_value(eps)) - math.log2(k)))
    mantissa, exponent = math.frexp(largest)  # largest = mantissa·2**exponent, mantissa in [0.5, 1)
    return _Grid(lower, upper, exponent - bits, math.ceil(math.ldexp(mantissa, bits)))


def _plan(spec: AggregateSpec, schema: pa.Schema, num_rows: int | None) -> _Plan:
    if spec.op not in OPS:
        raise DPError("op must be count, sum, mean or histogram", "invalid_op")
    eps = spec.epsilon
    if isinstance(eps, bool) or not isinstance(eps, int) or not 1 <= eps <= MAX_EPSILON_UNITS:
        raise DPError("epsilon must be 1 to 100000000 units (0.000001 to 100)", "invalid_epsilon")
    k = spec.max_contributions
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_CONTRIBUTIONS:
        raise DPError(f"max_contributions must be 1 to {MAX_CONTRIBUTIONS}", "invalid_contributions")
    if spec.privacy_unit is None and k != 1:
        raise DPError("max_contributions needs a privacy_unit column (a row contributes once)",
                      "invalid_contributions")
    delta = spec.delta
    if not _is_number(delta) or not (math.isfinite(delta) and 0.0 <= delta < MAX_DELTA):
        raise DPError("delta must be a number with 0 <= delta < 0.001", "invalid_delta")
    if not isinstance(spec.group_by, (tuple, list)) or not all(isinstance(g, str) for g in spec.group_by):
        raise DPError("group_by must be a list of column names", "unknown_column")
    if spec.op in ("sum", "mean", "histogram") and spec.column is None:
        raise DPError(f"{spec.op} needs a column", "missing_column")
    names = set(schema.names)
    for name in (*spec.group_by, spec.column, spec.privacy_unit):
        if name is not None and (not isinstance(name, str) or name not in names):
            raise DPError(f"unknown column {name!r}", "unknown_column")
    keys = spec.keys
    if len(set(keys)) != len(keys) or spec.value_name in keys:
        raise DPError("key columns must be distinct and not named like the value column", "duplicate_column")
    for name in keys:
        if not _is_key_type(schema.field(name).type):
            raise DPError(f"column {name!r} cannot be a group key", "unsupported_key_type")
    if spec.privacy_unit is not None:
        unit_type = _value_type(schema.field(spec.privacy_unit).type)
        if pa.types.is_floating(unit_type) or not _is_key_type(unit_type):
            raise DPError("the privacy unit column must hold ids (strings, integers, dates)",
                          "unsupported_key_type")
    numeric = spec.op in ("sum", "mean")
    if numeric:
        assert spec.column is not None
        t = _value_type(schema.field(spec.column).type)
        if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)):
            raise DPError(f"{spec.op} needs a numeric column", "non_numeric_column")
        if spec.bounds is None:
            raise DPError(f"{spec.op} needs declared bounds", "missing_bounds")
    elif spec.bounds is not None:
        raise DPError("bounds apply to sum and mean only", "unexpected_bounds")
    if not isinstance(spec.domains, Mapping):
        raise DPError("domains must map column names to value lists", "invalid_domain")
    domains = tuple(_domain(n, spec.domains[n], _value_type(schema.field(n).type)) if n in spec.domains else None
                    for n in keys)
    cells = math.prod(len(d) for d in domains if d is not None)
    if cells > MAX_CELLS:
        raise DPError(f"the declared domains span more than {MAX_CELLS} cells", "domain_too_large")
    select = any(d is None for d in domains)
    if select and delta == 0.0:
        raise DPError("a group key without a declared domain needs delta > 0 (partition selection)",
                      "missing_domain")
    if not select and delta != 0.0:
        raise DPError("delta is only spent on keys without a declared domain", "unexpected_delta")
    if spec.op == "mean" or (spec.op == "sum" and select):
        if eps < 2:
            raise DPError("epsilon is too small to split between two mechanisms", "invalid_epsilon")
        count_eps, sum_eps = split(eps, 2)[::-1]  # the sum gets the larger half
    elif spec.op == "sum":
        count_eps, sum_eps = None, eps
    else:
        count_eps, sum_eps = eps, None
    grid = _sum_grid(spec.bounds, sum_eps, k) if numeric and sum_eps is not None else None
    if grid is not None and num_rows is not None and num_rows > 2 ** (_ROWS_BITS - _SUM_BITS):
        raise DPError(f"sums are limited to {2 ** (_ROWS_BITS - _SUM_BITS)} rows", "table_too_large")
    return _Plan(keys, domains, select, count_eps, sum_eps, grid)


def validate(spec: AggregateSpec, schema: pa.Schema, num_rows: int | None = None) -> None:
    """Raise :class:`DPError` if ``spec`` cannot run on a table of ``schema``; reads no data."""
    _plan(spec, schema, num_rows)


# ------------------------------------------------------------------------------------------ exact pre-noise steps


def _first_k_mask(codes: npt.NDArray[np.int64], k: int) -> npt.NDArray[np.bool_]:
    """Rows to keep: the first ``k`` rows (in table order) of each code ≥ 0; rows with code -1 are dropped."""
    n = len(codes)
    keep = np.zeros(n, dtype=np.bool_)
    if n == 0:
        return keep
    if k <= 16:  # k passes of "first remaining row per code": O(k·n), faster than a stable sort for small k
        pending = np.flatnonzero(codes >= 0)
        first = np.empty(int(codes.max()) + 1, dtype=np.int64)
        for _ in range(k):
            if pending.size == 0:
                break
            first.fill(n)
            np.minimum.at(first, codes[pending], pending)
            keep[first[first < n]] = True
            pending = pending[~keep[pending]]
        return keep
    order = np.argsort(codes, kind="stable")  # stable: rows of one code stay in table order
    ordered = codes[order]
    pos = np.arange(n)
    starts = np.empty(n, dtype=np.bool_)
    starts[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
    rank = pos - np.maximum.accumulate(np.where(starts, pos, 0))
    keep[order] = (rank < k) & (ordered >= 0)
    return keep


def _bound_contributions(table: pa.Table, unit: str, k: int) -> pa.Table:
    """Keep the first ``k`` rows of each value of ``unit`` in table order; drop rows whose unit is null."""
    ids = table[unit]
    if pa.types.is_dictionary(ids.type):  # one id may sit under several dictionary codes across chunks
        ids = ids.cast(ids.type.value_type)
    low, high = pc.min_max(ids).values() if pa.types.is_integer(ids.type) else (None, None)
    if (low is not None and high is not None and low.is_valid and -(2**62) <= low.as_py() <= high.as_py() < 2**62
            and high.as_py() - low.as_py() <= 2 * len(ids)):
        codes = pc.subtract(pc.cast(ids, pa.int64()), low.as_py())  # dense integer ids are their own codes
    else:
        codes = pc.dictionary_encode(ids.combine_chunks()).indices
    mask = _first_k_mask(pc.fill_null(codes, -1).to_numpy().astype(np.int64), k)
    return table.filter(pa.array(mask))


def _quantize(column: pa.ChunkedArray, grid: _Grid) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_] | None]:
    """Clamp to the bounds, divide by the grid step (a power of two: exact) and round half to even. Null and NaN
    become 0; the second result marks them (``None`` when every value is present)."""
    if pa.types.is_dictionary(column.type) or pa.types.is_decimal(column.type):
        column = column.cast(pa.float64())
    x = np.clip(column.to_numpy().astype(np.float64, copy=False), grid.lower, grid.upper)  # a fresh array
    missing = np.isnan(x)
    np.multiply(x, math.ldexp(1.0, -grid.exponent), out=x)
    np.rint(x, out=x)
    if missing.any():
        x[missing] = 0.0
        return x.astype(np.int64), missing
    return x.astype(np.int64), None


@dataclass(frozen=True, slots=True)
class _Groups:
    """Exact per-key aggregates: one row of ``keys`` per distinct key tuple, with ``n`` (count) and ``s`` (sum in
    grid units) aligned to it."""

    keys: pa.Table
    n: npt.NDArray[np.int64]
    s: npt.NDArray[np.int64] | None


def _aggregate(table: pa.Table, spec: AggregateSpec, plan: _Plan) -> _Groups:
    q, missing = (None, None)
    if plan.grid is not None:
        assert spec.column is not None
        q, missing = _quantize(table[spec.column], plan.grid)
    if not plan.keys:
        if q is not None:
            present = len(q) - (0 if missing is None or spec.op != "mean" else int(missing.sum()))
            return _Groups(pa.table({}), np.array([present], dtype=np.int64), np.array([q.sum()], dtype=np.int64))
        present = table.num_rows if spec.column is None else table.num_rows - table[spec.column].null_count
        return _Groups(pa.table({}), np.array([present], dtype=np.int64), None)
    cols: dict[str, pa.ChunkedArray | pa.Array] = {k: table[k] for k in plan.keys}
    aggs: list[tuple[Any, ...]] = []
    if q is not None:
        cols["__s"] = pa.array(q, mask=missing) if spec.op == "mean" and missing is not None else pa.array(q)
        aggs.append(("__s", "sum", pc.ScalarAggregateOptions(min_count=0)))
        aggs.append(("__s", "count") if spec.op == "mean" else ([], "count_all"))
    elif spec.op == "count" and spec.column is not None:
        cols["__c"] = table[spec.column]
        aggs.append(("__c", "count"))
    else:
        aggs.append(([], "count_all"))
    grouped = pa.table(cols).group_by(list(plan.keys)).aggregate(aggs)
    n = grouped.column(grouped.num_columns - 1).to_numpy().astype(np.int64)
    s = grouped["__s_sum"].to_numpy().astype(np.int64) if plan.grid is not None else None
    keys = grouped.select(list(plan.keys))
    decoded = [c.cast(_value_type(c.type)) if pa.types.is_dictionary(c.type) else c for c in keys.columns]
    return _Groups(pa.table(decoded, names=list(plan.keys)), n, s)


# ---------------------------------------------------------------------------------------------------- mechanisms


def _privacy_map(meas: dp.Measurement, d_in: object) -> Any:
    return meas.map(d_in)  # type: ignore[no-untyped-call]


def _calibrated(build: Callable[[float], dp.Measurement], d_in: object, l1: int, eps: float,
                loss: Callable[[Any], float]) -> tuple[dp.Measurement, float]:
    """The measurement with the smallest scale ≥ l1/ε whose own privacy map at ``d_in`` stays within ``eps``."""
    scale = l1 / eps
    for _ in range(64):
        meas = build(scale)
        if loss(_privacy_map(meas, d_in)) <= eps:
            return meas, scale
        scale = math.nextafter(scale, math.inf)
    raise AssertionError("could not calibrate the noise scale")  # pragma: no cover - the map is ~exact


def _laplace(values: npt.NDArray[np.int64], sensitivity: int, eps: EpsilonUnits) -> tuple[npt.NDArray[np.int64],
                                                                                          float]:
    """Integer discrete Laplace on every cell: ε-DP for an L1 change of ``sensitivity`` over the whole vector."""
    space = dp.vector_domain(dp.atom_domain(T="i64")), dp.l1_distance(T="i64")
    meas, scale = _calibrated(lambda s: dp.m.make_laplace(*space, scale=s), sensitivity, sensitivity,
                               epsilon_value(eps), float)
    if len(values) == 0:
        return values, scale
    return np.asarray(meas(values.tolist()), dtype=np.int64), scale


def _select(counts: npt.NDArray[np.int64], k: int, eps: EpsilonUnits, delta: float
            ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], float, int]:
    """DP partition selection (OpenDP ``make_laplace_threshold``): the positions of ``counts`` whose noisy count
    reaches the threshold, in ascending order, with those noisy counts, the scale and the threshold. One unit
    touches at most k cells by at most k each: d_in = (l0, l1, l∞) = (k, k, k)."""
    space = (dp.map_domain(dp.atom_domain(T="i64"), dp.atom_domain(T="i64")),
             dp.l01inf_distance(dp.absolute_distance(T="i64")))
    d_in = (k, k, k)

    def build(scale: float, threshold: int) -> dp.Measurement:
        return dp.m.make_laplace_threshold(*space, scale=scale, threshold=threshold)

    _, scale = _calibrated(lambda s: build(s, 2**40), d_in, k, epsilon_value(eps), lambda ed: float(ed[0]))

    def delta_at(threshold: int) -> float:
        return float(_privacy_map(build(scale, threshold), d_in)[1])

    low, high = k, 2 * k  # smallest threshold whose δ ≤ delta, by doubling then bisection (δ falls as it grows)
    while delta_at(high) > delta:
        low, high = high, 2 * high
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if delta_at(mid) <= delta else (mid, high)
    meas = build(scale, high)
    eps_spent, delta_spent = _privacy_map(meas, d_in)
    if not (eps_spent <= epsilon_value(eps) and delta_spent <= delta):  # pragma: no cover - calibrated above
        raise AssertionError("partition selection would overspend")
    noisy: dict[int, int] = meas({i: int(c) for i, c in enumerate(counts.tolist())}) if len(counts) else {}
    chosen = np.array(sorted(noisy), dtype=np.int64)
    return chosen, np.array([noisy[i] for i in chosen.tolist()], dtype=np.int64), scale, high


# ------------------------------------------------------------------------------------------------------- release


def _cells(groups: _Groups, domains: tuple[pa.Array, ...]) -> tuple[pa.Table, npt.NDArray[np.int64],
                                                                     npt.NDArray[np.int64] | None]:
    """Scatter the observed keys onto the full cross product of the domains (C order); unknown keys vanish."""
    sizes = [len(d) for d in domains]
    total = math.prod(sizes)
    cell = np.zeros(groups.keys.num_rows, dtype=np.int64)
    ok = np.ones(groups.keys.num_rows, dtype=np.bool_)
    stride = total
    strides = []
    for name, domain, size in zip(groups.keys.column_names, domains, sizes, strict=True):
        stride //= size
        strides.append(stride)
        idx = pc.fill_null(pc.index_in(groups.keys[name], value_set=domain), -1).to_numpy().astype(np.int64)
        ok &= idx >= 0
        cell += idx * stride
    n = np.zeros(total, dtype=np.int64)
    np.add.at(n, cell[ok], groups.n[ok])
    s = None
    if groups.s is not None:
        s = np.zeros(total, dtype=np.int64)
        np.add.at(s, cell[ok], groups.s[ok])
    pos = np.arange(total, dtype=np.int64)
    keys = pa.table([d.take(pa.array((pos // st) % size)) for d, st, size in zip(domains, strides, sizes, strict=True)],
                    names=groups.keys.column_names)
    return keys, n, s


def _observed(groups: _Groups, domains: tuple[pa.Array | None, ...]) -> _Groups:
    """The observed key tuples that are non-null, inside every declared domain and non-empty, sorted by key."""
    ok = np.asarray(groups.n > 0)
    for name, domain in zip(groups.keys.column_names, domains, strict=True):
        col = groups.keys[name]
        inside = pc.is_valid(col) if domain is None else pc.is_in(col, value_set=domain)
        ok &= pc.fill_null(inside, False).to_numpy(zero_copy_only=False)
    keys = groups.keys.filter(pa.array(ok))
    order = pc.sort_indices(keys, sort_keys=[(name, "ascending") for name in keys.column_names]).to_numpy()
    s = None if groups.s is None else groups.s[ok][order]
    return _Groups(keys.take(pa.array(order)), groups.n[ok][order], s)


def release(table: pa.Table, spec: AggregateSpec) -> Release:
    """Validate ``spec`` against ``table`` (raising :class:`DPError` before touching any row), compute the exact
    aggregates and release them with OpenDP noise, spending exactly ``spec.epsilon`` and ``spec.delta``."""
    plan = _plan(spec, table.schema, table.num_rows)
    k = spec.max_contributions
    if spec.privacy_unit is not None:
        table = _bound_contributions(table, spec.privacy_unit, k)
    groups = _aggregate(table, spec, plan)
    parts: list[str] = []
    noisy_n: npt.NDArray[np.int64] | None = None
    count_scale = 0.0
    if plan.select:
        assert plan.count_eps is not None
        obs = _observed(groups, plan.domains)
        chosen, noisy_n, count_scale, threshold = _select(obs.n, k, plan.count_eps, spec.delta)
        keys, exact_s = obs.keys.take(pa.array(chosen)), None if obs.s is None else obs.s[chosen]
        parts.append(f"partition selection: opendp make_laplace_threshold (discrete laplace) on counts, "
                     f"d_in (l0, l1, linf) = ({k}, {k}, {k}), scale {count_scale!r}, threshold {threshold}, "
                     f"epsilon {format_epsilon(plan.count_eps)}, delta {spec.delta!r}")
    else:
        domains = tuple(d for d in plan.domains if d is not None)
        if domains:
            keys, exact_n, exact_s = _cells(groups, domains)
        else:
            keys, exact_n, exact_s = groups.keys, groups.n, groups.s
        if plan.count_eps is not None:
            noisy_n, count_scale = _laplace(exact_n, k, plan.count_eps)
            parts.append(f"count: opendp make_laplace (discrete laplace, i64), l1 sensitivity {k}, "
                         f"scale {count_scale!r}, epsilon {format_epsilon(plan.count_eps)}")
    scale = count_scale
    value: pa.Array
    if plan.grid is not None:
        assert exact_s is not None and plan.sum_eps is not None
        grid = plan.grid
        sensitivity = k * grid.max_units
        noisy_s, units_scale = _laplace(exact_s, sensitivity, plan.sum_eps)
        scale = units_scale * grid.step
        parts.append(f"sum: clamp to [{grid.lower!r}, {grid.upper!r}], round to multiples of 2**{grid.exponent}, "
                     f"opendp make_laplace (discrete laplace, i64), l1 sensitivity {sensitivity} grid steps, "
                     f"scale {scale!r}, epsilon {format_epsilon(plan.sum_eps)}")
        sums = noisy_s.astype(np.float64) * grid.step
        if spec.op == "mean":
            assert noisy_n is not None
            means = np.clip(sums / np.maximum(noisy_n, 1).astype(np.float64), grid.lower, grid.upper)
            value = pa.array(means, type=pa.float64())
        else:
            value = pa.array(sums, type=pa.float64())
    else:
        assert noisy_n is not None
        value = pa.array(np.maximum(noisy_n, 0), type=pa.int64())
    out = keys.append_column(spec.value_name, value) if keys.num_columns else pa.table({spec.value_name: value})
    return Release(out, spec.epsilon, float(spec.delta), "; ".join(parts), scale)
