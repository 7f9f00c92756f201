"""Exact privacy-budget units: ε and δ as integers, so budgets add, subtract and compare without rounding.

- :data:`EpsilonUnits`: 1 unit = 10⁻⁶ ε (micro-epsilon). ε = 0.1 is 100 000 units; the cap is 100 ε.
- :data:`DeltaUnits`: 1 unit = 10⁻¹² δ (pico-delta). δ = 10⁻⁶ is 1 000 000 units; δ must stay below 10⁻³.

Parsing is exact: a JSON number or decimal string is read as the decimal it spells (``Decimal(str(value))``, so the
float ``0.1`` means exactly one tenth), converted with rational arithmetic, and rounded **up** to a whole unit, so the
budget charged is never less than the budget asked for (10⁻⁷ ε costs 1 unit). Refusals raise :class:`BudgetError`
with a stable ``code`` (``invalid_epsilon`` / ``invalid_delta``) and a message that never echoes the input.

Mechanisms need the value as a float: :func:`epsilon_value` / :func:`delta_value` return the largest float that does
not exceed the exact decimal, so a mechanism calibrated to it spends at most what was charged.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction
from typing import NewType

__all__ = [
    "DELTA_UNITS_PER_DELTA",
    "EPSILON_UNITS_PER_EPSILON",
    "MAX_DELTA_UNITS",
    "MAX_EPSILON_UNITS",
    "BudgetError",
    "DeltaUnits",
    "EpsilonUnits",
    "delta_value",
    "epsilon_value",
    "format_delta",
    "format_epsilon",
    "parse_delta",
    "parse_epsilon",
    "split",
]

EpsilonUnits = NewType("EpsilonUnits", int)
"""ε in micro-epsilon: ``EpsilonUnits(1)`` is ε = 0.000001."""
DeltaUnits = NewType("DeltaUnits", int)
"""δ in pico-delta: ``DeltaUnits(1)`` is δ = 10⁻¹²."""

EPSILON_UNITS_PER_EPSILON = 10**6
DELTA_UNITS_PER_DELTA = 10**12
MAX_EPSILON_UNITS = EpsilonUnits(100 * EPSILON_UNITS_PER_EPSILON)
"""Largest ε one request may name (100 ε): anything above protects nothing and is refused as a likely mistake."""
MAX_DELTA_UNITS = DeltaUnits(10**9 - 1)
"""Largest δ (in units) one request may name: δ must round up to strictly less than 10⁻³."""

# A JSON number as text (optionally signed, so that a negative value is refused as negative, not as garbage).
# Decimal() alone would also accept "NaN", "Infinity", "1_000" and surrounding whitespace.
_DECIMAL_TEXT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,4})?")
_MAX_TEXT = 64
# Below 10⁻⁴⁰ every positive value rounds up to one unit of either scale; clamping the exponent there keeps the
# exact rational small (no 10**1000000 built from "1e-1000000").
_TINY = Fraction(1, 10**40)


class BudgetError(ValueError):
    """An ε or δ that cannot be charged; ``code`` is ``invalid_epsilon`` or ``invalid_delta``."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def _exact(value: object, code: str, what: str) -> Fraction:
    """The exact rational a JSON number / decimal string spells; refuses bools, NaN, infinities and non-numbers."""
    if isinstance(value, bool):
        raise BudgetError(f"{what} must be a number, not a boolean", code)
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BudgetError(f"{what} must be a finite number", code)
        dec = Decimal(str(value))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise BudgetError(f"{what} must be a finite number", code)
        dec = value
    elif isinstance(value, str):
        if len(value) > _MAX_TEXT or not _DECIMAL_TEXT.fullmatch(value):
            raise BudgetError(f"{what} must be a decimal number", code)
        dec = Decimal(value)
    else:
        raise BudgetError(f"{what} must be a number", code)
    if dec.is_zero():
        return Fraction(0)
    if dec.adjusted() > 40:
        return Fraction(10**41) * (1 if dec > 0 else -1)
    if dec.adjusted() < -40:
        return _TINY * (1 if dec > 0 else -1)
    return Fraction(dec)


def _ceil(value: Fraction) -> int:
    return -(-value.numerator // value.denominator)


def parse_epsilon(value: object) -> EpsilonUnits:
    """ε (a JSON number or decimal string) → micro-epsilon units, rounded up. Refuses zero, negatives, NaN,
    infinities, booleans, non-numbers and ε above 100 (``code == "invalid_epsilon"``)."""
    exact = _exact(value, "invalid_epsilon", "epsilon")
    if exact <= 0:
        raise BudgetError("epsilon must be positive", "invalid_epsilon")
    units = _ceil(exact * EPSILON_UNITS_PER_EPSILON)
    if units > MAX_EPSILON_UNITS:
        raise BudgetError("epsilon must be at most 100", "invalid_epsilon")
    return EpsilonUnits(units)


def parse_delta(value: object) -> DeltaUnits:
    """δ (a JSON number or decimal string) → pico-delta units, rounded up. Zero is allowed (pure ε-DP); refuses
    negatives, NaN, infinities, booleans, non-numbers and δ whose rounded-up units reach 10⁻³
    (``code == "invalid_delta"``)."""
    exact = _exact(value, "invalid_delta", "delta")
    if exact < 0:
        raise BudgetError("delta must not be negative", "invalid_delta")
    units = _ceil(exact * DELTA_UNITS_PER_DELTA)
    if units > MAX_DELTA_UNITS:
        raise BudgetError("delta must be below 0.001", "invalid_delta")
    return DeltaUnits(units)


def _format(units: int, per: int, digits: int) -> str:
    if isinstance(units, bool) or not isinstance(units, int):
        raise TypeError("units must be an int")
    whole, frac = divmod(abs(units), per)
    text = str(whole) if frac == 0 else f"{whole}.{frac:0{digits}d}".rstrip("0")
    return f"-{text}" if units < 0 else text


def format_epsilon(units: int) -> str:
    """The exact decimal ε of ``units`` (``100000`` → ``"0.1"``, ``1`` → ``"0.000001"``), never in exponent form."""
    return _format(units, EPSILON_UNITS_PER_EPSILON, 6)


def format_delta(units: int) -> str:
    """The exact decimal δ of ``units`` (``1000000`` → ``"0.000001"``), never in exponent form."""
    return _format(units, DELTA_UNITS_PER_DELTA, 12)


def _float_at_most(exact: Fraction) -> float:
    value = float(exact)  # int / int true division: correctly rounded, so at most one ulp above
    return math.nextafter(value, -math.inf) if Fraction(value) > exact else value


def epsilon_value(units: int) -> float:
    """The largest float ≤ the exact ε of ``units``: calibrate mechanisms to this, never to ``units / 1e6``."""
    return _float_at_most(Fraction(units, EPSILON_UNITS_PER_EPSILON))


def delta_value(units: int) -> float:
    """The largest float ≤ the exact δ of ``units``."""
    return _float_at_most(Fraction(units, DELTA_UNITS_PER_DELTA))


def split(total: EpsilonUnits, parts: int) -> list[EpsilonUnits]:
    """``total`` in ``parts`` shares that sum to exactly ``total``, the first ``total % parts`` shares one unit
    larger (``split(3, 2) == [2, 1]``). Refuses a split that would leave a share of zero units."""
    if parts < 1:
        raise ValueError("parts must be at least 1")
    if total < parts:
        raise BudgetError("epsilon is too small to split (each part needs at least one unit)", "invalid_epsilon")
    base, extra = divmod(total, parts)
    return [EpsilonUnits(base + (1 if i < extra else 0)) for i in range(parts)]
