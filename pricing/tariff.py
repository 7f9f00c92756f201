"""The tariff: a provider's schedule of price factors, and the exact concave factor functions it is built from.

Every price in dsnode is ``base × grade × scarcity × use × f_rows × f_cols × f_ε × f_term`` (:mod:`pricing.price`).
This module owns the four term-dependent factors and the money unit:

- :data:`Fen`: 1 fen = 0.01 yuan; every amount charged or paid is a whole number of fen.
- Each factor ``F = ceil_Q ∘ f`` is the **exact** value of a non-decreasing, concave, zero-at-zero function ``f``
  rounded **up** to the grid ``Q⁻¹ℤ`` with ``Q = 10**12`` (:data:`FACTOR_PLACES` = 12 decimal places). Because the
  grid value is exact (no float ever decides it), ``F`` inherits what arbitrage-freeness needs (the step function
  itself is not concave; monotonicity and subadditivity are the properties the argument uses):

  * non-decreasing: the ceiling of a non-decreasing function is non-decreasing;
  * subadditive: ``F(a) + F(b) ≥ f(a) + f(b) ≥ f(a + b)`` (concave with ``f(0) ≥ 0``), and the left side lies on
    the grid, so it is ``≥ ceil_Q(f(a + b)) = F(a + b)``;
  * zero at zero, and exactly 1 at the whole dataset.

- :func:`power_factor` ``ceil_Q((part/whole)^γ)`` with γ ∈ (0, 1] a decimal of at most 2 places (γ = p/q,
  q ≤ 100): a float gives a first guess ``m``, then integer arithmetic moves ``m`` to the least integer with
  ``m^q · whole^p ≥ Q^q · part^p``, so the result is exact whatever the float said.
- :func:`epsilon_factor` ``ceil_Q(1 − e^{−ε/ε0})`` for ε, ε0 in micro-epsilon units: evaluated in ``decimal`` at
  40 digits, then 80, 160 … (Ziv's strategy) until an error enclosure of width ``2·10^(4−prec)`` holds no grid
  point. ``Context.exp`` and ``Context.divide`` are correctly rounded, so the enclosure is rigorous; the loop ends
  because ``1 − e^{−x}`` is irrational for rational ``x ≠ 0`` (Lindemann) and never lands on the grid.
- :class:`TermTariff`: a piecewise-linear table of ``(days, factor)`` points, evaluated exactly in rationals.
  At load it must start at ``(0, 0)``, have strictly increasing days, non-decreasing factors and non-increasing
  slopes (concave); after the last point it stays flat. Anything else is refused (``invalid_tariff``).

:class:`Tariff` groups everything a provider configures: grade factors (A ≥ B ≥ C ≥ D ≥ 0; grade E is not
tradable), use factors per mode or ``mode/purpose``, γ for rows and columns, ε0, the term tariff and the scarcity
weight ``a`` and cap ``S_max``. All decimals are read exactly (``"0.1"`` is one tenth) and written back as strings.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, InvalidOperation, Overflow
from fractions import Fraction
from functools import lru_cache
from typing import Any, NewType

__all__ = [
    "DEFAULT_TARIFF",
    "DP_MODES",
    "FACTOR_PLACES",
    "GRADES",
    "MAX_SAFE_FEN",
    "MODES",
    "TARIFF_VERSION",
    "TRADABLE_GRADES",
    "Fen",
    "PricingError",
    "Tariff",
    "TermTariff",
    "ceil_fen",
    "epsilon_factor",
    "power_factor",
]

Fen = NewType("Fen", int)
"""Money in fen: ``Fen(1)`` is 0.01 yuan. Amounts are never fractional."""

TARIFF_VERSION = 1
FACTOR_PLACES = 12
"""Factors are rounded up to this many decimal places (the grid ``10**-12``)."""
GRADES = ("A", "B", "C", "D", "E")
TRADABLE_GRADES = ("A", "B", "C", "D")
MODES = ("rows", "aggregate", "model")
DP_MODES = frozenset({"aggregate", "model"})
MAX_SAFE_FEN = Fen(2**53 - 1)
"""The largest amount a quote or ledger entry can carry (JSON integers are exact up to 2**53 − 1)."""

_Q = 10**FACTOR_PLACES
_MAX_DAYS = 36_500
_MAX_FACTOR = Fraction(1000)
_DECIMAL = re.compile(r"(\d{1,20})(?:\.(\d{1,100}))?")
_PURPOSE = re.compile(r"[a-z0-9_\-]{1,32}")
_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
_START_PRECISION = 40
_MAX_PRECISION = 5120


class PricingError(ValueError):
    """A price, quote, settlement or contribution input is refused; ``code`` is stable and the message never
    echoes data. Codes: ``invalid_tariff``, ``invalid_listing``, ``invalid_terms``, ``not_tradable``,
    ``unknown_use``, ``invalid_scarcity``, ``price_overflow``, ``invalid_quote``, ``quote_mismatch``,
    ``invalid_shares``, ``invalid_contribution``, ``invalid_valuation``."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


# ---- exact decimals ------------------------------------------------------------------------------------------

def _ceil(value: Fraction) -> int:
    return -(-value.numerator // value.denominator)


def _ceil_grid(value: Fraction) -> Fraction:
    return Fraction(_ceil(value * _Q), _Q)


def ceil_fen(amount: Fraction) -> Fen:
    """The least whole number of fen that is ``≥ amount`` (round **up**: ``ceil(a) + ceil(b) ≥ ceil(a + b)``)."""
    return Fen(_ceil(amount))


def _decimal_text(value: Fraction) -> str:
    """The exact decimal spelling of a rational whose denominator divides a power of ten (``3/8`` → ``"0.375"``)."""
    den, places = value.denominator, 0
    twos = fives = 0
    while den % 2 == 0:
        den //= 2
        twos += 1
    while den % 5 == 0:
        den //= 5
        fives += 1
    if den != 1:
        raise ValueError("not a finite decimal")
    places = max(twos, fives)
    scaled = abs(value.numerator) * (10**places // value.denominator)
    whole, frac = divmod(scaled, 10**places)
    text = str(whole) if frac == 0 else f"{whole}.{frac:0{places}d}".rstrip("0")
    return "-" + text if value < 0 else text


def _parse_decimal(value: object, what: str, code: str, places: int = FACTOR_PLACES) -> Fraction:
    """A non-negative decimal written as a string (``"0.85"``), an int, or a float read as it prints (``0.1`` is one
    tenth); at most ``places`` decimal places. Refuses booleans, signs, exponents, NaN and infinities."""
    if isinstance(value, bool):
        raise PricingError(f"{what} must be a decimal number", code)
    if isinstance(value, int):
        if value < 0:
            raise PricingError(f"{what} must not be negative", code)
        return Fraction(value)
    if isinstance(value, Fraction):
        if value < 0 or (value * 10**places).denominator != 1:
            raise PricingError(f"{what} must be a non-negative decimal with at most {places} places", code)
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PricingError(f"{what} must be a finite number", code)
        value = format(Decimal(repr(value)), "f")
    if not isinstance(value, str):
        raise PricingError(f"{what} must be a decimal number", code)
    match = _DECIMAL.fullmatch(value)
    if match is None or len(match.group(2) or "") > places:
        raise PricingError(f"{what} must be a non-negative decimal with at most {places} places", code)
    return Fraction(value)


def _parse_int(value: object, what: str, code: str, low: int = 0, high: int = 2**53 - 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PricingError(f"{what} must be an integer in [{low}, {high}]", code)
    return value


def _parse_id(value: object, what: str, code: str) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise PricingError(f"{what} must be an identifier of 1-64 characters", code)
    return value


def _check_purpose(value: object, code: str) -> None:
    if value is not None and not (isinstance(value, str) and _PURPOSE.fullmatch(value)):
        raise PricingError("purpose must be 1-32 characters a-z 0-9 _ -", code)


def _check_gamma(value: object, code: str) -> None:
    if not isinstance(value, Fraction) or not 0 < value <= 1 or (value * 100).denominator != 1:
        raise PricingError("gamma must lie in (0, 1] with at most 2 decimal places", code)


@contextmanager
def _recoded(code: str) -> Iterator[None]:
    """Re-raise a refusal from inside under ``code`` (a bad tariff read back from a quote is a bad quote)."""
    try:
        yield
    except PricingError as exc:
        raise PricingError(str(exc), code) from None


# ---- the concave factor functions ---------------------------------------------------------------------------

@lru_cache(maxsize=128)
def _grid_power(q: int) -> int:
    return int(_Q**q)


def power_factor(part: int, whole: int, gamma: Fraction) -> Fraction:
    """``ceil_Q((part / whole)^γ)`` exactly: 0 at 0, 1 at ``whole``; ``0 ≤ part ≤ whole``, γ ∈ (0, 1] a decimal of
    at most 2 places."""
    if not 0 <= part <= whole or whole < 1:
        raise PricingError("the requested part must lie between 0 and the whole", "invalid_terms")
    _check_gamma(gamma, "invalid_tariff")
    if part == 0 or part == whole:
        return Fraction(part // whole)
    p, q = gamma.numerator, gamma.denominator
    if p == q:
        return _ceil_grid(Fraction(part, whole))
    rhs = _grid_power(q) * part**p
    scale = whole**p
    # The float guess is within a unit or two of the answer; the integer comparisons decide it exactly.
    m = max(1, math.ceil(_Q * (part / whole) ** (p / q)))
    while m**q * scale < rhs:
        m += 1
    while m > 1 and (m - 1) ** q * scale >= rhs:
        m -= 1
    return Fraction(m, _Q)


def _ceil_grid_enclosed(enclose: Callable[[Context], tuple[Fraction, Fraction]]) -> Fraction:
    """``ceil_Q`` of a real known only through enclosures ``lo ≤ x ≤ hi`` that tighten with the precision."""
    prec = _START_PRECISION
    while prec <= _MAX_PRECISION:
        ctx = Context(prec=prec, rounding=ROUND_HALF_EVEN, Emin=-999_999, Emax=999_999,
                      traps=[InvalidOperation, DivisionByZero, Overflow])
        lo, hi = enclose(ctx)
        low, high = _ceil(lo * _Q), _ceil(hi * _Q)
        if low == high:
            return Fraction(low, _Q)
        prec *= 2
    raise ArithmeticError("the enclosure did not separate from the grid")  # unreachable for irrational values


def epsilon_factor(epsilon: int, epsilon0: int) -> Fraction:
    """``ceil_Q(1 − e^{−ε/ε0})`` exactly, ε and ε0 in micro-epsilon units (``privacy.budget.EpsilonUnits``);
    0 at ε = 0, approaches 1 (reaches it once ``e^{−ε/ε0} < 10⁻¹²``)."""
    if epsilon < 0 or epsilon0 < 1:
        raise PricingError("epsilon must not be negative and epsilon0 must be positive", "invalid_terms")
    if epsilon == 0:
        return Fraction(0)
    x = Fraction(epsilon, epsilon0)
    if x >= 64:  # e^-64 < 10^-27: 1 − e^{−x} lies strictly between 1 − 10^-12 and 1
        return Fraction(1)

    def enclose(ctx: Context) -> tuple[Fraction, Fraction]:
        # |divide error| ≤ ½ulp·x ≤ 32·10^(1−prec); exp is correctly rounded (½ulp ≤ ½·10^(1−prec) on [0, 1]);
        # together < 10^(3−prec). The enclosure uses 10^(4−prec).
        approx = Fraction(ctx.exp(ctx.divide(Decimal(-epsilon), Decimal(epsilon0))))
        err = Fraction(1, 10 ** (ctx.prec - 4))
        return 1 - approx - err, 1 - approx + err

    return _ceil_grid_enclosed(enclose)


# ---- the term tariff ----------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TermTariff:
    """A concave piecewise-linear term factor: ``points`` are ``(days, factor)`` from ``(0, 0)``, linear between
    points and flat after the last one. :meth:`factor` returns the exact value rounded up to the factor grid."""

    points: tuple[tuple[int, Fraction], ...]

    def __post_init__(self) -> None:
        pts = self.points
        if not isinstance(pts, tuple) or len(pts) < 2 or len(pts) > 64:
            raise PricingError("a term tariff has 2 to 64 (days, factor) points", "invalid_tariff")
        for point in pts:
            if (not isinstance(point, tuple) or len(point) != 2 or isinstance(point[0], bool)
                    or not isinstance(point[0], int) or not isinstance(point[1], Fraction)):
                raise PricingError("term tariff points are (integer days, exact factor) pairs", "invalid_tariff")
        if pts[0] != (0, Fraction(0)):
            raise PricingError("a term tariff starts at (0 days, factor 0)", "invalid_tariff")
        slope: Fraction | None = None
        for (d0, f0), (d1, f1) in zip(pts, pts[1:], strict=False):
            if d1 <= d0 or d1 > _MAX_DAYS:
                raise PricingError(f"term tariff days must increase strictly, up to {_MAX_DAYS}", "invalid_tariff")
            if f1 < f0 or f1 > _MAX_FACTOR or f1 != _ceil_grid(f1):
                raise PricingError("term tariff factors must not decrease (at most 1000, 12 places)",
                                   "invalid_tariff")
            step = (f1 - f0) / (d1 - d0)
            if slope is not None and step > slope:
                raise PricingError("the term tariff is not concave: a later segment is steeper", "invalid_tariff")
            slope = step
        if pts[-1][1] == 0:
            raise PricingError("a term tariff must reach a positive factor", "invalid_tariff")

    def factor(self, days: int) -> Fraction:
        """The factor for a term of ``days`` whole days (0 ≤ days ≤ 36 500), rounded up to 12 places."""
        if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= _MAX_DAYS:
            raise PricingError(f"days must be an integer in [0, {_MAX_DAYS}]", "invalid_terms")
        for (d0, f0), (d1, f1) in zip(self.points, self.points[1:], strict=False):
            if days <= d1:
                return _ceil_grid(f0 + (f1 - f0) * (days - d0) / (d1 - d0))
        return self.points[-1][1]

    def to_json(self) -> list[list[Any]]:
        return [[d, _decimal_text(f)] for d, f in self.points]

    @classmethod
    def from_json(cls, obj: Any) -> TermTariff:
        if not isinstance(obj, list) or not all(isinstance(p, list) and len(p) == 2 for p in obj):
            raise PricingError("a term tariff is a list of [days, factor] pairs", "invalid_tariff")
        return cls(tuple((_parse_int(d, "term tariff days", "invalid_tariff", 0, _MAX_DAYS),
                          _parse_decimal(f, "term tariff factor", "invalid_tariff")) for d, f in obj))


# ---- the tariff ---------------------------------------------------------------------------------------------

def _use_key_ok(key: object) -> bool:
    if not isinstance(key, str):
        return False
    mode, _, purpose = key.partition("/")
    return mode in MODES and (purpose == "" and "/" not in key or bool(_PURPOSE.fullmatch(purpose)))


@dataclass(frozen=True, slots=True)
class Tariff:
    """A provider's price schedule. ``grade_factors`` for A–D (non-increasing from A to D: a better grade is never
    cheaper); ``use_factors`` keyed ``mode`` or ``mode/purpose`` (the more specific key wins); ``rows_gamma`` and
    ``columns_gamma`` in (0, 1] (2 places); ``epsilon0`` in micro-epsilon; ``scarcity_weight`` ``a`` ≥ 0 and
    ``scarcity_max`` ``S_max`` ≥ 1. Factors and weights are exact rationals with at most 12 decimal places."""

    grade_factors: Mapping[str, Fraction]
    use_factors: Mapping[str, Fraction]
    rows_gamma: Fraction
    columns_gamma: Fraction
    epsilon0: int
    term: TermTariff
    scarcity_weight: Fraction
    scarcity_max: Fraction
    version: int = field(default=TARIFF_VERSION)

    def __post_init__(self) -> None:
        if set(self.grade_factors) != set(TRADABLE_GRADES):
            raise PricingError("grade factors are given for exactly A, B, C and D (E is not tradable)",
                               "invalid_tariff")
        ordered = [self.grade_factors[g] for g in TRADABLE_GRADES]
        for f in ordered:
            _check_factor(f, "grade factor")
        if any(better < worse for better, worse in zip(ordered, ordered[1:], strict=False)):
            raise PricingError("a better grade must never be cheaper (A ≥ B ≥ C ≥ D)", "invalid_tariff")
        if not self.use_factors or len(self.use_factors) > 256:
            raise PricingError("use factors name 1 to 256 uses", "invalid_tariff")
        for key, f in self.use_factors.items():
            if not _use_key_ok(key):
                raise PricingError("use factor keys are a mode or mode/purpose (purpose: a-z 0-9 _ -)",
                                   "invalid_tariff")
            _check_factor(f, "use factor")
        _check_gamma(self.rows_gamma, "invalid_tariff")
        _check_gamma(self.columns_gamma, "invalid_tariff")
        _parse_int(self.epsilon0, "epsilon0", "invalid_tariff", 1, 100 * 10**6)
        if not isinstance(self.term, TermTariff):
            raise PricingError("term must be a TermTariff", "invalid_tariff")
        _check_factor(self.scarcity_weight, "scarcity weight")
        _check_factor(self.scarcity_max, "scarcity cap")
        if self.scarcity_max < 1:
            raise PricingError("the scarcity cap must be at least 1", "invalid_tariff")
        if self.version != TARIFF_VERSION:
            raise PricingError("unsupported tariff version", "invalid_tariff")

    def grade_factor(self, grade: str) -> Fraction:
        """The factor for a quality grade; grade E raises ``not_tradable``."""
        if grade == "E":
            raise PricingError("grade E datasets are not tradable", "not_tradable")
        if grade not in TRADABLE_GRADES:
            raise PricingError("grade must be one of A, B, C, D, E", "invalid_listing")
        return self.grade_factors[grade]

    def use_factor(self, mode: str, purpose: str | None) -> tuple[str, Fraction]:
        """``(key, factor)`` for a declared use: ``mode/purpose`` if the tariff names it, else ``mode``."""
        if mode not in MODES:
            raise PricingError(f"mode must be one of {', '.join(MODES)}", "invalid_terms")
        for key in ((f"{mode}/{purpose}",) if purpose is not None else ()) + (mode,):
            if key in self.use_factors:
                return key, self.use_factors[key]
        raise PricingError("the tariff names no price for this use", "unknown_use")

    def to_json(self) -> dict[str, Any]:
        return {
            "v": self.version,
            "grade_factors": {g: _decimal_text(self.grade_factors[g]) for g in TRADABLE_GRADES},
            "use_factors": {k: _decimal_text(v) for k, v in sorted(self.use_factors.items())},
            "rows_gamma": _decimal_text(self.rows_gamma),
            "columns_gamma": _decimal_text(self.columns_gamma),
            "epsilon0": self.epsilon0,
            "term": self.term.to_json(),
            "scarcity_weight": _decimal_text(self.scarcity_weight),
            "scarcity_max": _decimal_text(self.scarcity_max),
        }

    @classmethod
    def from_json(cls, obj: Any) -> Tariff:
        fields = {"v", "grade_factors", "use_factors", "rows_gamma", "columns_gamma", "epsilon0", "term",
                  "scarcity_weight", "scarcity_max"}
        if not isinstance(obj, dict) or set(obj) != fields:
            raise PricingError("a tariff has exactly the fields " + ", ".join(sorted(fields)), "invalid_tariff")
        if obj["v"] != TARIFF_VERSION or isinstance(obj["v"], bool):
            raise PricingError("unsupported tariff version", "invalid_tariff")
        for name in ("grade_factors", "use_factors"):
            if not isinstance(obj[name], dict):
                raise PricingError(f"{name} must be an object", "invalid_tariff")
        return cls(
            grade_factors={str(g): _parse_decimal(f, "grade factor", "invalid_tariff")
                           for g, f in obj["grade_factors"].items()},
            use_factors={str(k): _parse_decimal(f, "use factor", "invalid_tariff")
                         for k, f in obj["use_factors"].items()},
            rows_gamma=_parse_decimal(obj["rows_gamma"], "rows_gamma", "invalid_tariff", 2),
            columns_gamma=_parse_decimal(obj["columns_gamma"], "columns_gamma", "invalid_tariff", 2),
            epsilon0=_parse_int(obj["epsilon0"], "epsilon0", "invalid_tariff", 1, 100 * 10**6),
            term=TermTariff.from_json(obj["term"]),
            scarcity_weight=_parse_decimal(obj["scarcity_weight"], "scarcity_weight", "invalid_tariff"),
            scarcity_max=_parse_decimal(obj["scarcity_max"], "scarcity_max", "invalid_tariff"),
        )


def _check_factor(value: object, what: str) -> None:
    if (not isinstance(value, Fraction) or not 0 <= value <= _MAX_FACTOR
            or (value * _Q).denominator != 1):
        raise PricingError(f"{what} must be a decimal in [0, 1000] with at most 12 places", "invalid_tariff")


DEFAULT_TARIFF = Tariff.from_json({
    "v": 1,
    "grade_factors": {"A": "1.5", "B": "1.2", "C": "1", "D": "0.7"},
    "use_factors": {"rows": "1", "aggregate": "0.5", "model": "0.8"},
    "rows_gamma": "0.8",
    "columns_gamma": "0.9",
    "epsilon0": 1_000_000,
    "term": [[0, "0"], [30, "0.4"], [90, "0.7"], [365, "1"], [730, "1.3"]],
    "scarcity_weight": "0.5",
    "scarcity_max": "2",
})
"""The schedule the demo and tests use: base price buys all rows and columns for a year, in rows mode, ε → ∞."""
