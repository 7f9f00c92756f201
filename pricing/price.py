"""Arbitrage-free prices, history-aware charges inside one licence, and quotes anyone can recompute.

**The price** of terms ``t = (rows, columns, ε, days)`` on a dataset is, in fen,

    price(t) = ceil( base × g × S × u × F_rows × F_cols × F_ε × F_term )

- ``base`` (fen): what all rows and all columns for the tariff's reference term cost at grade factor 1, scarcity
  1 and use factor 1 (with ε → ∞ in DP modes); ``g`` the grade factor; ``S`` scarcity (:mod:`pricing.scarcity`,
  independent of ``t``); ``u`` the use factor for the licence's mode (and purpose);
- ``F_rows = ceil_Q((rows / N)^γ_r)``; ``F_cols = ceil_Q((w(columns) / W)^γ_c)`` with integer column weights
  ``w`` and ``W`` their total; ``F_ε = ceil_Q(1 − e^{−ε/ε0})`` in ``aggregate``/``model`` mode and exactly 1 in
  ``rows`` mode (where ε must be 0); ``F_term`` the concave term tariff (:mod:`pricing.tariff`).

**Exact pipeline.** Every factor is an exact rational on the grid ``10⁻¹²`` (each is the exact ceiling of its real
value; floats only propose a candidate that integer arithmetic confirms, see :mod:`pricing.tariff`). Their product
is computed in :class:`fractions.Fraction`, so it is an exact finite decimal (listed in the quote as ``product``),
and the charged amount is its ceiling in whole fen. No step rounds to nearest.

**Why it is arbitrage-free.** Each ``F`` is non-decreasing and subadditive (``F(a+b) ≤ F(a) + F(b)``) and all
factors are non-negative, so splitting any one axis into pieces never lowers the sum of exact products; a grid
cover (rows split into ``r_i`` *and* columns into ``C_j``) costs ``(Σ F_rows(r_i))·(Σ F_cols(C_j))·… ≥`` the
whole, and guillotine covers follow by induction. Rounding up keeps it in whole fen:
``Σ ceil(p_i) ≥ Σ p_i ≥ p`` and the left side is an integer, so it is ``≥ ceil(p)``. Rounding to nearest does not
(two pieces of 0.4 fen round to 0 while the whole, 0.8, rounds to 1).

**History inside one licence.** A licence holds a *scope* (a box of terms); buying ``new`` terms charges
``price(held ∪ new) − price(held)``, where ``∪`` takes the larger row count (rows are a prefix of the dataset's
canonical order, so the union of prefixes is the longer one), the union of column sets, the **sum** of ε (budget
top-ups compose) and the larger term in days (days count from the licence's start; the node sets expiry from the
scope's days). The charge is never negative (price is monotone and the union dominates ``held``) and a sequence of
purchases costs exactly ``price(t₁ ∪ … ∪ tₙ)`` (the charges telescope), so spreading a purchase over time never
saves money.

**Quotes** (:class:`Quote`) list every input and component; :func:`recompute` rebuilds every number from the listed
inputs and refuses the quote (``quote_mismatch``) if anything differs. Signing, expiry and ids are the node's:
they are plain fields here, and :meth:`Quote.to_json` is plain JSON (no floats) ready for RFC 8785.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from pricing.scarcity import Scarcity, scarcity
from pricing.tariff import (
    DP_MODES,
    MAX_SAFE_FEN,
    MODES,
    TRADABLE_GRADES,
    Fen,
    PricingError,
    Tariff,
    TermTariff,
    _check_factor,
    _check_gamma,
    _check_purpose,
    _decimal_text,
    _parse_decimal,
    _parse_id,
    _parse_int,
    _recoded,
    ceil_fen,
    epsilon_factor,
    power_factor,
)

__all__ = [
    "QUOTE_VERSION",
    "Breakdown",
    "Listing",
    "PriceBasis",
    "Quote",
    "Terms",
    "breakdown",
    "charge",
    "make_quote",
    "price",
    "price_basis",
    "recompute",
]

QUOTE_VERSION = 1
_MAX_INT = 2**53 - 1
_MAX_DAYS = 36_500
_MAX_COLUMNS = 10_000
_MAX_WEIGHT = 10**6


@dataclass(frozen=True, slots=True)
class Terms:
    """What a licence covers: the first ``rows`` rows of the dataset's canonical order, the ``columns``, a DP budget
    of ``epsilon`` micro-epsilon (0 in ``rows`` mode) and a term of ``days`` whole days from the licence's start."""

    rows: int
    columns: frozenset[str]
    epsilon: int = 0
    days: int = 0

    def __post_init__(self) -> None:
        cols = self.columns
        if isinstance(cols, str) or not isinstance(cols, Iterable):
            raise PricingError("columns must be a collection of column names", "invalid_terms")
        cols = frozenset(cols)
        if len(cols) > _MAX_COLUMNS or not all(isinstance(c, str) and c for c in cols):
            raise PricingError("columns must be at most 10000 non-empty names", "invalid_terms")
        object.__setattr__(self, "columns", cols)
        _parse_int(self.rows, "rows", "invalid_terms")
        _parse_int(self.epsilon, "epsilon", "invalid_terms")
        _parse_int(self.days, "days", "invalid_terms", 0, _MAX_DAYS)

    def union(self, other: Terms) -> Terms:
        """The smallest scope holding both: max rows, union of columns, sum of ε, max days."""
        return Terms(max(self.rows, other.rows), self.columns | other.columns,
                     min(_MAX_INT, self.epsilon + other.epsilon), max(self.days, other.days))

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "columns": sorted(self.columns), "epsilon": self.epsilon, "days": self.days}

    @classmethod
    def from_json(cls, obj: Any) -> Terms:
        if not isinstance(obj, dict) or set(obj) != {"rows", "columns", "epsilon", "days"}:
            raise PricingError("terms have exactly the fields rows, columns, epsilon, days", "invalid_terms")
        if not isinstance(obj["columns"], list):
            raise PricingError("columns must be a list of names", "invalid_terms")
        return cls(obj["rows"], frozenset(obj["columns"]), obj["epsilon"], obj["days"])


@dataclass(frozen=True, slots=True)
class Listing:
    """A dataset's own price facts: ``base`` in fen, its quality ``grade`` (A–E), its row count ``rows`` (N ≥ 1)
    and a positive integer weight per column (``W`` is their sum; default weight 1 is the caller's choice)."""

    dataset: str
    base: Fen
    grade: str
    rows: int
    column_weights: Mapping[str, int]

    def __post_init__(self) -> None:
        _check_listing(self.dataset, self.base, self.rows, self.column_weights, "invalid_listing")


def _check_listing(dataset: object, base: object, rows: object, weights: object, code: str) -> None:
    _parse_id(dataset, "dataset", code)
    _parse_int(base, "base price (fen)", code)
    _parse_int(rows, "dataset rows", code, 1)
    if not isinstance(weights, Mapping) or not 1 <= len(weights) <= _MAX_COLUMNS:
        raise PricingError("a dataset has 1 to 10000 weighted columns", code)
    for name, weight in weights.items():
        if not isinstance(name, str) or not name:
            raise PricingError("column names must be non-empty strings", code)
        _parse_int(weight, "column weight", code, 1, _MAX_WEIGHT)


@dataclass(frozen=True, slots=True)
class PriceBasis:
    """Everything a price depends on except the terms, as applied: the listing's facts, the tariff entries that
    matched (grade factor, use key and factor, γ's, ε0, term tariff) and the frozen :class:`Scarcity`."""

    dataset: str
    mode: str
    purpose: str | None
    base: Fen
    grade: str
    grade_factor: Fraction
    scarcity: Scarcity
    use: str
    use_factor: Fraction
    rows_total: int
    rows_gamma: Fraction
    column_weights: Mapping[str, int]
    columns_gamma: Fraction
    epsilon0: int
    term: TermTariff
    _weight_total: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        code = "invalid_quote"
        _check_listing(self.dataset, self.base, self.rows_total, self.column_weights, code)
        if self.mode not in MODES:
            raise PricingError(f"mode must be one of {', '.join(MODES)}", code)
        _check_purpose(self.purpose, code)
        if self.use != self.mode and (self.purpose is None or self.use != f"{self.mode}/{self.purpose}"):
            raise PricingError("the use key must be the mode or mode/purpose", code)
        if self.grade == "E":
            raise PricingError("grade E datasets are not tradable", "not_tradable")
        if self.grade not in TRADABLE_GRADES:
            raise PricingError("grade must be one of A, B, C, D, E", code)
        with _recoded(code):
            _check_factor(self.grade_factor, "grade factor")
            _check_factor(self.use_factor, "use factor")
        _check_gamma(self.rows_gamma, code)
        _check_gamma(self.columns_gamma, code)
        _parse_int(self.epsilon0, "epsilon0", code, 1)
        if not isinstance(self.scarcity, Scarcity) or not isinstance(self.term, TermTariff):
            raise PricingError("scarcity and term tariff must be given as values", code)
        object.__setattr__(self, "_weight_total", sum(self.column_weights.values()))

    @property
    def constant(self) -> Fraction:
        """``base × g × S × u``: the part of every price that does not depend on the terms."""
        return self.base * self.grade_factor * self.scarcity.value * self.use_factor

    def to_json(self) -> dict[str, Any]:
        """The inputs object of a quote (dataset, mode and purpose are the quote's own fields)."""
        return {
            "base": self.base, "grade": self.grade, "grade_factor": _decimal_text(self.grade_factor),
            "scarcity": self.scarcity.to_json(), "use": self.use, "use_factor": _decimal_text(self.use_factor),
            "rows": {"total": self.rows_total, "gamma": _decimal_text(self.rows_gamma)},
            "columns": {"weights": dict(sorted(self.column_weights.items())),
                        "gamma": _decimal_text(self.columns_gamma)},
            "epsilon0": self.epsilon0, "term_tariff": self.term.to_json(),
        }

    @classmethod
    def from_json(cls, obj: Any, dataset: str, mode: str, purpose: str | None) -> PriceBasis:
        keys = {"base", "grade", "grade_factor", "scarcity", "use", "use_factor", "rows", "columns", "epsilon0",
                "term_tariff"}
        if (not isinstance(obj, dict) or set(obj) != keys or not isinstance(obj["rows"], dict)
                or set(obj["rows"]) != {"total", "gamma"} or not isinstance(obj["columns"], dict)
                or set(obj["columns"]) != {"weights", "gamma"} or not isinstance(obj["columns"]["weights"], dict)):
            raise PricingError("quote inputs are malformed", "invalid_quote")
        with _recoded("invalid_quote"):
            term = TermTariff.from_json(obj["term_tariff"])
        return cls(
            dataset=dataset, mode=mode, purpose=purpose, base=Fen(obj["base"]), grade=obj["grade"],
            grade_factor=_parse_decimal(obj["grade_factor"], "grade factor", "invalid_quote"),
            scarcity=Scarcity.from_json(obj["scarcity"]), use=obj["use"],
            use_factor=_parse_decimal(obj["use_factor"], "use factor", "invalid_quote"),
            rows_total=obj["rows"]["total"],
            rows_gamma=_parse_decimal(obj["rows"]["gamma"], "rows gamma", "invalid_quote", 2),
            column_weights=dict(obj["columns"]["weights"]),
            columns_gamma=_parse_decimal(obj["columns"]["gamma"], "columns gamma", "invalid_quote", 2),
            epsilon0=obj["epsilon0"], term=term,
        )


def price_basis(listing: Listing, tariff: Tariff, *, mode: str, purpose: str | None = None, substitutes: int,
                buyers: int) -> PriceBasis:
    """Freeze a listing, the matching tariff entries and scarcity (from catalog facts ``substitutes`` = M and
    recent distinct paying ``buyers`` = D) into a basis. Grade E raises ``not_tradable``; a use the tariff does not
    price raises ``unknown_use``."""
    grade_factor = tariff.grade_factor(listing.grade)
    _check_purpose(purpose, "invalid_terms")
    use, use_factor = tariff.use_factor(mode, purpose)
    return PriceBasis(
        dataset=listing.dataset, mode=mode, purpose=purpose, base=listing.base, grade=listing.grade,
        grade_factor=grade_factor,
        scarcity=scarcity(substitutes, buyers, tariff.scarcity_weight, tariff.scarcity_max),
        use=use, use_factor=use_factor, rows_total=listing.rows, rows_gamma=tariff.rows_gamma,
        column_weights=dict(listing.column_weights), columns_gamma=tariff.columns_gamma,
        epsilon0=tariff.epsilon0, term=tariff.term,
    )


@dataclass(frozen=True, slots=True)
class Breakdown:
    """One price with every component: the four term factors (exact, 12 places), the exact unrounded ``product``
    (``base × g × S × u × F_rows × F_cols × F_ε × F_term``) and ``price`` = ``ceil(product)`` in fen."""

    terms: Terms
    rows_factor: Fraction
    columns_factor: Fraction
    epsilon_factor: Fraction
    term_factor: Fraction
    product: Fraction
    price: Fen

    def to_json(self) -> dict[str, Any]:
        return {"terms": self.terms.to_json(),
                "factors": {"rows": _decimal_text(self.rows_factor), "columns": _decimal_text(self.columns_factor),
                            "epsilon": _decimal_text(self.epsilon_factor), "term": _decimal_text(self.term_factor)},
                "product": _decimal_text(self.product), "price": self.price}

    @classmethod
    def from_json(cls, obj: Any) -> Breakdown:
        if (not isinstance(obj, dict) or set(obj) != {"terms", "factors", "product", "price"}
                or not isinstance(obj["factors"], dict)
                or set(obj["factors"]) != {"rows", "columns", "epsilon", "term"}):
            raise PricingError("a price breakdown is malformed", "invalid_quote")
        rows, columns, epsilon, term = (_parse_decimal(obj["factors"][k], f"{k} factor", "invalid_quote")
                                        for k in ("rows", "columns", "epsilon", "term"))
        with _recoded("invalid_quote"):
            terms = Terms.from_json(obj["terms"])
        return cls(terms, rows, columns, epsilon, term,
                   _parse_decimal(obj["product"], "product", "invalid_quote", 100),
                   Fen(_parse_int(obj["price"], "price", "invalid_quote")))


def breakdown(basis: PriceBasis, terms: Terms) -> Breakdown:
    """Price ``terms`` on ``basis`` with every component. Refuses (``invalid_terms``) more rows than the dataset
    has, unknown columns and a non-zero ε in ``rows`` mode; ``price_overflow`` above 2**53 − 1 fen."""
    if terms.rows > basis.rows_total:
        raise PricingError("more rows requested than the dataset has", "invalid_terms")
    weights = basis.column_weights
    if not terms.columns <= weights.keys():
        raise PricingError("a requested column is not in the dataset", "invalid_terms")
    f_rows = power_factor(terms.rows, basis.rows_total, basis.rows_gamma)
    f_cols = power_factor(sum(weights[c] for c in terms.columns), basis._weight_total, basis.columns_gamma)
    if basis.mode in DP_MODES:
        f_eps = epsilon_factor(terms.epsilon, basis.epsilon0)
    elif terms.epsilon:
        raise PricingError("rows-mode terms carry no epsilon", "invalid_terms")
    else:
        f_eps = Fraction(1)
    f_term = basis.term.factor(terms.days)
    product = basis.constant * f_rows * f_cols * f_eps * f_term
    fen = ceil_fen(product)
    if fen > MAX_SAFE_FEN:
        raise PricingError("the price exceeds the largest amount a quote can carry", "price_overflow")
    return Breakdown(terms, f_rows, f_cols, f_eps, f_term, product, fen)


def price(basis: PriceBasis, terms: Terms) -> Fen:
    """The price of ``terms`` in whole fen, rounded up (see the module docstring for the exact pipeline)."""
    return breakdown(basis, terms).price


def charge(basis: PriceBasis, held: Terms | None, new: Terms) -> Fen:
    """What buying ``new`` costs a licence that already holds ``held``: ``price(held ∪ new) − price(held)`` ≥ 0."""
    if held is None:
        return price(basis, new)
    return Fen(price(basis, held.union(new)) - price(basis, held))


@dataclass(frozen=True, slots=True)
class Quote:
    """A price offer that lists every input and component. ``requested`` are the terms asked for; ``held`` the
    licence's current scope priced on the same basis (``None`` for a new licence); ``scope`` the resulting scope
    (``held ∪ requested``) priced; ``charge`` = ``scope.price − held.price``. ``id``, ``buyer``, ``issued_at``,
    ``expires_at`` (RFC 3339 strings) are plain data for the node to sign."""

    id: str
    buyer: str
    issued_at: str
    expires_at: str
    basis: PriceBasis
    requested: Terms
    held: Breakdown | None
    scope: Breakdown
    charge: Fen
    version: int = QUOTE_VERSION

    def __post_init__(self) -> None:
        _parse_id(self.id, "quote id", "invalid_quote")
        _parse_id(self.buyer, "buyer", "invalid_quote")
        for moment in (self.issued_at, self.expires_at):
            if not isinstance(moment, str) or not 1 <= len(moment) <= 40:
                raise PricingError("quote times are RFC 3339 strings", "invalid_quote")
        _parse_int(self.charge, "charge", "invalid_quote")
        if self.version != QUOTE_VERSION:
            raise PricingError("unsupported quote version", "invalid_quote")

    @property
    def dataset(self) -> str:
        return self.basis.dataset

    @property
    def mode(self) -> str:
        return self.basis.mode

    def to_json(self) -> dict[str, Any]:
        return {
            "v": self.version, "id": self.id, "dataset": self.basis.dataset, "buyer": self.buyer,
            "mode": self.basis.mode, "purpose": self.basis.purpose, "issued_at": self.issued_at,
            "expires_at": self.expires_at, "inputs": self.basis.to_json(), "requested": self.requested.to_json(),
            "held": None if self.held is None else self.held.to_json(), "scope": self.scope.to_json(),
            "charge": self.charge,
        }

    @classmethod
    def from_json(cls, obj: Any) -> Quote:
        keys = {"v", "id", "dataset", "buyer", "mode", "purpose", "issued_at", "expires_at", "inputs", "requested",
                "held", "scope", "charge"}
        if not isinstance(obj, dict) or set(obj) != keys:
            raise PricingError("a quote has exactly the fields " + ", ".join(sorted(keys)), "invalid_quote")
        if obj["v"] != QUOTE_VERSION or isinstance(obj["v"], bool):
            raise PricingError("unsupported quote version", "invalid_quote")
        with _recoded("invalid_quote"):
            requested = Terms.from_json(obj["requested"])
        return cls(
            id=obj["id"], buyer=obj["buyer"], issued_at=obj["issued_at"], expires_at=obj["expires_at"],
            basis=PriceBasis.from_json(obj["inputs"], obj["dataset"], obj["mode"], obj["purpose"]),
            requested=requested, held=None if obj["held"] is None else Breakdown.from_json(obj["held"]),
            scope=Breakdown.from_json(obj["scope"]), charge=obj["charge"],
        )


def make_quote(basis: PriceBasis, requested: Terms, *, id: str, buyer: str, issued_at: str, expires_at: str,
               held: Terms | None = None) -> Quote:
    """Price ``requested`` for ``buyer`` on ``basis``; with ``held`` (the licence's current scope) the quote charges
    only the difference ``price(held ∪ requested) − price(held)``."""
    held_bd = None if held is None else breakdown(basis, held)
    scope = breakdown(basis, requested if held is None else held.union(requested))
    amount = Fen(scope.price - (0 if held_bd is None else held_bd.price))
    return Quote(id, buyer, issued_at, expires_at, basis, requested, held_bd, scope, amount)


def recompute(quote: Quote) -> Fen:
    """Rebuild every number of ``quote`` from its listed inputs and return the charge; raises ``quote_mismatch``
    naming the first component that differs (scarcity, held, scope or charge)."""
    basis = quote.basis
    s = basis.scarcity
    if scarcity(s.substitutes, s.buyers, s.weight, s.cap) != s:
        raise PricingError("the quote's scarcity does not follow from its inputs", "quote_mismatch")
    held = quote.held
    if held is not None and breakdown(basis, held.terms) != held:
        raise PricingError("the quote's held price does not follow from its inputs", "quote_mismatch")
    scope_terms = quote.requested if held is None else held.terms.union(quote.requested)
    if breakdown(basis, scope_terms) != quote.scope:
        raise PricingError("the quote's price does not follow from its inputs", "quote_mismatch")
    amount = Fen(quote.scope.price - (0 if held is None else held.price))
    if amount != quote.charge:
        raise PricingError("the quote's charge does not follow from its inputs", "quote_mismatch")
    return amount
