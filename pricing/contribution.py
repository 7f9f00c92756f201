"""Contribution shares of a jointly built dataset, as exact fractions that sum to 1, with a digest of their inputs.

Each contributor is measured three ways, each turned into a fraction of the dataset's total for that measure:

- **volume**: rows the contributor supplied that survive de-duplication and quality filtering (``rows_kept``);
- **annotation**: labelled rows or declared annotation units (``annotation_units``);
- **value**: the contributor's summed exact KNN-Shapley values (:func:`pricing.shapley.knn_shapley`) on the
  committed validation split (:class:`Valuation`). A negative total (rows that hurt the K-NN on the validation
  split) is **clipped at 0**: such a contributor earns nothing for value but is never charged for it.

``share = Σ_m w_m · part_m / Σ_m w_m`` over the measures ``m`` that are *active*: weight > 0 and a positive total
(so an unlabelled dataset without a valuation, or one nobody annotated, splits by the remaining measures).
:data:`DEFAULT_WEIGHTS` are volume 0.4, annotation 0.2, value 0.4. Everything is rational, so shares sum to
exactly 1 and :func:`pricing.settlement.settle` turns them into fen.

Shapley values are floats; :func:`value_by_contributor` sums them per contributor with ``math.fsum`` (order
independent) and rounds to 12 decimal places (half-even), so the recorded values are exact decimals.
:func:`inputs_digest` is the SHA-256 of the RFC 8785 encoding of :meth:`ShareInputs.to_json` — every input above,
including the validation split's digest and ``k`` — for the ledger entry, so anyone can recompute the shares.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ledger.canonical import canonical_json
from pricing.tariff import PricingError, _decimal_text, _parse_decimal, _parse_id, _parse_int

__all__ = [
    "CONTRIBUTION_VERSION",
    "DEFAULT_WEIGHTS",
    "VALUE_PLACES",
    "Contributor",
    "ShareInputs",
    "ShareWeights",
    "Valuation",
    "contribution_shares",
    "count_by_contributor",
    "inputs_digest",
    "value_by_contributor",
]

CONTRIBUTION_VERSION = 1
VALUE_PLACES = 12
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CODE = "invalid_contribution"


def _signed(value: object, what: str) -> Fraction:
    if isinstance(value, str) and value.startswith("-"):
        return -_parse_decimal(value[1:], what, _CODE, VALUE_PLACES)
    return _parse_decimal(value, what, _CODE, VALUE_PLACES)


@dataclass(frozen=True, slots=True)
class ShareWeights:
    """How much each measure counts (non-negative, at most 12 places, positive total)."""

    volume: Fraction
    annotation: Fraction
    value: Fraction

    def __post_init__(self) -> None:
        for w in (self.volume, self.annotation, self.value):
            if not isinstance(w, Fraction) or w < 0 or (w * 10**VALUE_PLACES).denominator != 1:
                raise PricingError("share weights are non-negative decimals with at most 12 places", _CODE)
        if self.volume + self.annotation + self.value == 0:
            raise PricingError("share weights must not all be zero", _CODE)

    def to_json(self) -> dict[str, str]:
        return {"volume": _decimal_text(self.volume), "annotation": _decimal_text(self.annotation),
                "value": _decimal_text(self.value)}

    @classmethod
    def from_json(cls, obj: Any) -> ShareWeights:
        if not isinstance(obj, dict) or set(obj) != {"volume", "annotation", "value"}:
            raise PricingError("share weights have exactly volume, annotation and value", _CODE)
        return cls(*(_parse_decimal(obj[k], k, _CODE) for k in ("volume", "annotation", "value")))


DEFAULT_WEIGHTS = ShareWeights(Fraction(2, 5), Fraction(1, 5), Fraction(2, 5))


@dataclass(frozen=True, slots=True)
class Contributor:
    """One contributor's measures: ``rows_kept`` after de-duplication and quality filtering, ``annotation_units``,
    and ``value`` = summed KNN-Shapley (exact decimal, 12 places, may be negative; 0 without a valuation)."""

    id: str
    rows_kept: int
    annotation_units: int = 0
    value: Fraction = Fraction(0)

    def __post_init__(self) -> None:
        _parse_id(self.id, "contributor id", _CODE)
        _parse_int(self.rows_kept, "rows kept", _CODE)
        _parse_int(self.annotation_units, "annotation units", _CODE)
        if not isinstance(self.value, Fraction) or (self.value * 10**VALUE_PLACES).denominator != 1:
            raise PricingError("a contributor's value is a decimal with at most 12 places", _CODE)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "rows_kept": self.rows_kept, "annotation_units": self.annotation_units,
                "value": _decimal_text(self.value)}

    @classmethod
    def from_json(cls, obj: Any) -> Contributor:
        if not isinstance(obj, dict) or set(obj) != {"id", "rows_kept", "annotation_units", "value"}:
            raise PricingError("a contributor has exactly id, rows_kept, annotation_units, value", _CODE)
        return cls(obj["id"], obj["rows_kept"], obj["annotation_units"], _signed(obj["value"], "value"))


@dataclass(frozen=True, slots=True)
class Valuation:
    """How ``value`` was measured: exact KNN-Shapley with ``k`` neighbours on a committed validation split of
    ``validation_rows`` rows whose content hashes to ``validation_digest`` (hex SHA-256, computed by the node)."""

    k: int
    validation_rows: int
    validation_digest: str
    method: str = field(default="knn_shapley")

    def __post_init__(self) -> None:
        _parse_int(self.k, "k", _CODE, 1, 10_000)
        _parse_int(self.validation_rows, "validation rows", _CODE, 1)
        if not isinstance(self.validation_digest, str) or not _HEX64.fullmatch(self.validation_digest):
            raise PricingError("the validation digest is 64 lowercase hex digits", _CODE)
        if self.method != "knn_shapley":
            raise PricingError("the only valuation method is knn_shapley", _CODE)

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "k": self.k, "validation_rows": self.validation_rows,
                "validation_digest": self.validation_digest}

    @classmethod
    def from_json(cls, obj: Any) -> Valuation:
        if not isinstance(obj, dict) or set(obj) != {"method", "k", "validation_rows", "validation_digest"}:
            raise PricingError("a valuation has exactly method, k, validation_rows, validation_digest", _CODE)
        return cls(obj["k"], obj["validation_rows"], obj["validation_digest"], obj["method"])


@dataclass(frozen=True, slots=True)
class ShareInputs:
    """Everything the shares of ``dataset`` are computed from. Contributor ids are unique; values other than 0
    need a :class:`Valuation`."""

    dataset: str
    contributors: tuple[Contributor, ...]
    weights: ShareWeights = DEFAULT_WEIGHTS
    valuation: Valuation | None = None
    version: int = CONTRIBUTION_VERSION

    def __post_init__(self) -> None:
        _parse_id(self.dataset, "dataset", _CODE)
        if (not isinstance(self.contributors, tuple) or not 1 <= len(self.contributors) <= 100_000
                or not all(isinstance(c, Contributor) for c in self.contributors)):
            raise PricingError("shares need 1 to 100000 contributors", _CODE)
        if len({c.id for c in self.contributors}) != len(self.contributors):
            raise PricingError("contributor ids must be unique", _CODE)
        if self.valuation is None and any(c.value for c in self.contributors):
            raise PricingError("measured values need the valuation they came from", _CODE)
        if self.version != CONTRIBUTION_VERSION:
            raise PricingError("unsupported contribution version", _CODE)

    def to_json(self) -> dict[str, Any]:
        return {"v": self.version, "dataset": self.dataset, "weights": self.weights.to_json(),
                "valuation": None if self.valuation is None else self.valuation.to_json(),
                "contributors": [c.to_json() for c in sorted(self.contributors, key=lambda c: c.id)]}

    @classmethod
    def from_json(cls, obj: Any) -> ShareInputs:
        if not isinstance(obj, dict) or set(obj) != {"v", "dataset", "weights", "valuation", "contributors"}:
            raise PricingError("share inputs have exactly v, dataset, weights, valuation, contributors", _CODE)
        if obj["v"] != CONTRIBUTION_VERSION or isinstance(obj["v"], bool):
            raise PricingError("unsupported contribution version", _CODE)
        if not isinstance(obj["contributors"], list):
            raise PricingError("contributors must be a list", _CODE)
        return cls(obj["dataset"], tuple(Contributor.from_json(c) for c in obj["contributors"]),
                   ShareWeights.from_json(obj["weights"]),
                   None if obj["valuation"] is None else Valuation.from_json(obj["valuation"]))


def inputs_digest(inputs: ShareInputs) -> str:
    """Hex SHA-256 of the RFC 8785 bytes of ``inputs.to_json()`` (contributors sorted by id)."""
    return hashlib.sha256(canonical_json(inputs.to_json())).hexdigest()


def contribution_shares(inputs: ShareInputs) -> dict[str, Fraction]:
    """Each contributor's share (exact, in id order, summing to 1). Raises ``invalid_contribution`` when no measure
    is active (every weighted measure totals 0)."""
    ids = sorted(c.id for c in inputs.contributors)
    measures: list[tuple[Fraction, dict[str, Fraction]]] = []
    for weight, amounts in (
        (inputs.weights.volume, {c.id: Fraction(c.rows_kept) for c in inputs.contributors}),
        (inputs.weights.annotation, {c.id: Fraction(c.annotation_units) for c in inputs.contributors}),
        (inputs.weights.value if inputs.valuation is not None else Fraction(0),
         {c.id: max(Fraction(0), c.value) for c in inputs.contributors}),  # negative totals clip at 0
    ):
        total = sum(amounts.values(), Fraction(0))
        if weight > 0 and total > 0:
            measures.append((weight, {who: amount / total for who, amount in amounts.items()}))
    if not measures:
        raise PricingError("no weighted contribution measure has a positive total", _CODE)
    weight_sum = sum((w for w, _ in measures), Fraction(0))
    return {who: sum((w * parts[who] for w, parts in measures), Fraction(0)) / weight_sum for who in ids}


def count_by_contributor(owners: ArrayLike, mask: ArrayLike | None = None) -> dict[str, int]:
    """Rows per contributor id (``owners[i]`` owns row ``i``), counting only rows where ``mask`` is true: the rows
    kept after de-duplication and filtering for volume, the labelled rows for annotation."""
    own = np.asarray(owners)
    if own.ndim != 1:
        raise PricingError("owners is a 1-D array of contributor ids", _CODE)
    if mask is not None:
        keep = np.asarray(mask)
        if keep.dtype != np.bool_ or keep.shape != own.shape:
            raise PricingError("the mask is a boolean array with one entry per row", _CODE)
        own = own[keep]
    names, counts = np.unique(own, return_counts=True)
    return {str(name): int(count) for name, count in zip(names.tolist(), counts.tolist(), strict=True)}


def value_by_contributor(values: ArrayLike, owners: ArrayLike) -> dict[str, Fraction]:
    """Per-row Shapley values summed per contributor (``math.fsum``, exact then rounded half-even to 12 places)."""
    vals = np.asarray(values, dtype=np.float64)
    own = np.asarray(owners)
    if vals.ndim != 1 or own.shape != vals.shape:
        raise PricingError("values and owners are 1-D arrays of the same length", _CODE)
    if not np.isfinite(vals).all():
        raise PricingError("values must be finite", _CODE)
    names, inverse = np.unique(own, return_inverse=True)
    out: dict[str, Fraction] = {}
    for i, name in enumerate(names.tolist()):
        total = Fraction(math.fsum(vals[inverse == i].tolist()))
        out[str(name)] = Fraction(round(total * 10**VALUE_PLACES), 10**VALUE_PLACES)
    return out
