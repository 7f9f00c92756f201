"""Scarcity: how much a dataset's price rises because few substitutes exist and many buyers pay for it.

``S = clip(1 + a·ln(1 + D) / (1 + M), 1, S_max)`` where ``M`` is the number of near-substitutes in the catalog,
``D`` the number of distinct paying buyers in the node's recent window, ``a`` the tariff's scarcity weight and
``S_max`` its cap. ``S`` is a pure function of ``(M, D, a, S_max)`` — never of the requested terms — and it is
frozen into each quote with its inputs. The exact value is rounded **up** to 12 decimal places with the same
rigorous enclosure as :func:`pricing.tariff.epsilon_factor` (``ln`` of an integer ≥ 2 is irrational, so the value
never sits on the grid). Properties: ``1 ≤ S ≤ S_max``; non-decreasing in ``D`` and ``a``; non-increasing in ``M``.

Near-substitutes are counted from catalog facts only (:func:`count_substitutes`): a dataset's *features* are its
column names (prefixed ``col:``) and tags (``tag:``), case-folded with runs of spaces, ``-`` and ``_`` read as one
``_``; two datasets are near-substitutes when the Jaccard similarity of their feature sets is at least the
threshold (default ½). The dataset itself is never its own substitute.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Context, Decimal
from fractions import Fraction
from typing import Any

from pricing.tariff import (
    PricingError,
    _ceil_grid_enclosed,
    _check_factor,
    _decimal_text,
    _parse_decimal,
    _parse_int,
    _recoded,
)

__all__ = ["DEFAULT_SIMILARITY", "CatalogProfile", "Scarcity", "count_substitutes", "scarcity", "similarity"]

DEFAULT_SIMILARITY = Fraction(1, 2)
_SEPARATORS = re.compile(r"[\s_\-]+")
_MAX_COUNT = 2**53 - 1


@dataclass(frozen=True, slots=True)
class Scarcity:
    """A scarcity value with the inputs it was computed from; build it with :func:`scarcity`."""

    substitutes: int
    buyers: int
    weight: Fraction
    cap: Fraction
    value: Fraction

    def to_json(self) -> dict[str, Any]:
        return {"substitutes": self.substitutes, "buyers": self.buyers, "a": _decimal_text(self.weight),
                "s_max": _decimal_text(self.cap), "value": _decimal_text(self.value)}

    @classmethod
    def from_json(cls, obj: Any) -> Scarcity:
        """Parse without recomputing: :func:`pricing.price.recompute` checks ``value`` against the inputs."""
        if not isinstance(obj, dict) or set(obj) != {"substitutes", "buyers", "a", "s_max", "value"}:
            raise PricingError("scarcity has exactly the fields a, buyers, s_max, substitutes, value",
                               "invalid_quote")
        return cls(_parse_int(obj["substitutes"], "substitutes", "invalid_quote"),
                   _parse_int(obj["buyers"], "buyers", "invalid_quote"),
                   _parse_decimal(obj["a"], "scarcity weight", "invalid_quote"),
                   _parse_decimal(obj["s_max"], "scarcity cap", "invalid_quote"),
                   _parse_decimal(obj["value"], "scarcity", "invalid_quote"))


def scarcity(substitutes: int, buyers: int, weight: Fraction, cap: Fraction) -> Scarcity:
    """``S = clip(1 + a·ln(1 + D)/(1 + M), 1, S_max)`` rounded up to 12 places, with ``M = substitutes``,
    ``D = buyers`` (distinct paying buyers in the recent window), ``a = weight``, ``S_max = cap``."""
    m = _parse_int(substitutes, "substitutes", "invalid_scarcity", 0, _MAX_COUNT)
    d = _parse_int(buyers, "buyers", "invalid_scarcity", 0, _MAX_COUNT)
    with _recoded("invalid_scarcity"):
        _check_factor(weight, "scarcity weight")
        _check_factor(cap, "scarcity cap")
    if cap < 1:
        raise PricingError("the scarcity cap must be at least 1", "invalid_scarcity")
    if d == 0 or weight == 0 or cap == 1:
        return Scarcity(m, d, weight, cap, Fraction(1))
    coef = weight / (1 + m)

    def enclose(ctx: Context) -> tuple[Fraction, Fraction]:
        # ln is correctly rounded: error ≤ ½ulp ≤ ½·10^(1−prec)·ln(2^53) < 10^(3−prec); the enclosure uses 10^(4−prec).
        approx = Fraction(ctx.ln(Decimal(1 + d)))
        err = Fraction(1, 10 ** (ctx.prec - 4))
        return min(cap, 1 + coef * (approx - err)), min(cap, 1 + coef * (approx + err))

    return Scarcity(m, d, weight, cap, max(Fraction(1), _ceil_grid_enclosed(enclose)))


def _normalize(name: str) -> str:
    return _SEPARATORS.sub("_", name.strip().casefold()).strip("_")


@dataclass(frozen=True, slots=True)
class CatalogProfile:
    """What the catalog says about a dataset's content: its id, column names and tags."""

    dataset: str
    columns: frozenset[str]
    tags: frozenset[str] = frozenset()
    features: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        feats = {"col:" + _normalize(c) for c in self.columns} | {"tag:" + _normalize(t) for t in self.tags}
        object.__setattr__(self, "features", frozenset(f for f in feats if not f.endswith(":")))


def similarity(a: CatalogProfile, b: CatalogProfile) -> Fraction:
    """Jaccard similarity ``|A ∩ B| / |A ∪ B|`` of the two feature sets (0 when both are empty)."""
    union = len(a.features | b.features)
    return Fraction(len(a.features & b.features), union) if union else Fraction(0)


def count_substitutes(target: CatalogProfile, candidates: Iterable[CatalogProfile],
                      threshold: Fraction = DEFAULT_SIMILARITY) -> int:
    """``M``: how many other datasets (distinct ids, ``target`` excluded) have similarity ``≥ threshold``
    (0 < threshold ≤ 1) with ``target``."""
    if not isinstance(threshold, Fraction) or not 0 < threshold <= 1:
        raise PricingError("the similarity threshold must be a fraction in (0, 1]", "invalid_scarcity")
    num, den = threshold.numerator, threshold.denominator
    mine = target.features
    seen: set[str] = {target.dataset}
    count = 0
    for other in candidates:
        if other.dataset in seen:
            continue
        seen.add(other.dataset)
        inter = len(mine & other.features)
        # |A ∪ B| = |A| + |B| − |A ∩ B|; compare in integers: inter / union ≥ num / den
        if inter and inter * den >= num * (len(mine) + len(other.features) - inter):
            count += 1
    return count
