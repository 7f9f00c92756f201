"""The price function (DESIGN §6): exact factors, arbitrage-freeness as properties, history-aware charges, scarcity,
and quotes that recompute from their listed inputs. Attacks named: split purchases, mixed covers, spreading a
purchase over time, rounding arbitrage, tampered quotes."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction

import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st

from ledger.canonical import canonical_json
from pricing.price import (
    Breakdown,
    Listing,
    PriceBasis,
    Quote,
    Terms,
    breakdown,
    charge,
    make_quote,
    price,
    price_basis,
    recompute,
)
from pricing.scarcity import CatalogProfile, count_substitutes, scarcity, similarity
from pricing.tariff import (
    DEFAULT_TARIFF,
    MODES,
    TRADABLE_GRADES,
    Fen,
    PricingError,
    Tariff,
    TermTariff,
    ceil_fen,
    epsilon_factor,
    power_factor,
)

Q = 10**12
HOUR = "2026-01-01T00:00:00.000000Z"
LATER = "2026-01-01T00:15:00.000000Z"


def _tariff(rows_gamma: str = "0.8", columns_gamma: str = "0.9", term: list[list[object]] | None = None,
            **changes: object) -> Tariff:
    obj = DEFAULT_TARIFF.to_json() | {"rows_gamma": rows_gamma, "columns_gamma": columns_gamma}
    if term is not None:
        obj["term"] = term
    obj.update(changes)
    return Tariff.from_json(obj)


@st.composite
def term_tariffs(draw: st.DrawFn) -> list[list[object]]:
    """Random concave tariffs: non-increasing slopes (decimals of 6 places) over increasing day gaps."""
    n = draw(st.integers(1, 5))
    gaps = draw(st.lists(st.integers(1, 400), min_size=n, max_size=n))
    slopes = sorted(draw(st.lists(st.integers(0, 50_000), min_size=n, max_size=n)), reverse=True)
    slopes[0] = max(slopes[0], 1)
    points: list[list[object]] = [[0, "0"]]
    day, factor = 0, Fraction(0)
    for gap, slope in zip(gaps, slopes, strict=True):
        day, factor = day + gap, factor + Fraction(slope, 10**6) * gap
        points.append([day, str(Decimal(factor.numerator) / Decimal(factor.denominator))])
    return points


gammas = st.integers(1, 100).map(lambda g: str(Decimal(g) / 100))


@st.composite
def bases(draw: st.DrawFn, mode: str | None = None, grade: str | None = None) -> PriceBasis:
    tariff = _tariff(draw(gammas), draw(gammas), draw(term_tariffs()))
    ncols = draw(st.integers(1, 6))
    weights = {f"c{i}": draw(st.integers(1, 10)) for i in range(ncols)}
    listing = Listing("ds_1", Fen(draw(st.integers(0, 10_000_000))), grade or draw(st.sampled_from(TRADABLE_GRADES)),
                      draw(st.integers(1, 10**9)), weights)
    return price_basis(listing, tariff, mode=mode or draw(st.sampled_from(MODES)),
                       substitutes=draw(st.integers(0, 20)), buyers=draw(st.integers(0, 50)))


def _max_days(basis: PriceBasis) -> int:
    return basis.term.points[-1][0] + 30


@st.composite
def terms_for(draw: st.DrawFn, basis: PriceBasis) -> Terms:
    cols = draw(st.sets(st.sampled_from(sorted(basis.column_weights))))
    eps = draw(st.integers(0, 5 * basis.epsilon0)) if basis.mode != "rows" else 0
    return Terms(draw(st.integers(0, basis.rows_total)), frozenset(cols), eps, draw(st.integers(0, _max_days(basis))))


def _split(draw: st.DrawFn, total: int, pieces: int) -> list[int]:
    """``total`` as ``pieces`` non-negative integers that sum to it."""
    cuts = sorted(draw(st.lists(st.integers(0, total), min_size=pieces - 1, max_size=pieces - 1)))
    return [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]


# ---- the exact factors --------------------------------------------------------------------------------------

def test_factors_known_answers() -> None:
    assert power_factor(1, 4, Fraction(1, 2)) == Fraction(1, 2)  # exactly on the grid: no spurious round-up
    assert power_factor(1, 2, Fraction(1, 2)) == Fraction(707106781187, Q)  # √½ = 0.7071067811865475…
    assert power_factor(1, 3, Fraction(1)) == Fraction(333333333334, Q)  # ⅓ rounded up, not to nearest
    assert power_factor(0, 7, Fraction(3, 10)) == 0 and power_factor(7, 7, Fraction(3, 10)) == 1
    assert epsilon_factor(1_000_000, 1_000_000) == Fraction(632120558829, Q)  # 1 − 1/e = 0.6321205588285576…
    assert epsilon_factor(0, 5) == 0 and epsilon_factor(64 * 10**6, 10**6) == 1
    assert epsilon_factor(1, 10**8) == Fraction(1, 10**8)  # 1 − e^{−1e-8} = 9.999999950e-9, rounded up
    tariff = DEFAULT_TARIFF.term
    assert [tariff.factor(d) for d in (0, 15, 30, 60, 365, 10_000)] == [0, Fraction(1, 5), Fraction(2, 5),
                                                                        Fraction(11, 20), 1, Fraction(13, 10)]
    assert tariff.factor(1) == Fraction(13333333334, Q)  # 0.4/30 rounded up


@settings(max_examples=300, deadline=None)
@given(whole=st.integers(1, 2**53 - 1), data=st.data(), gamma=st.integers(1, 100))
def test_power_factor_is_the_exact_ceiling(whole: int, data: st.DataObject, gamma: int) -> None:
    part = data.draw(st.integers(0, whole))
    got = power_factor(part, whole, Fraction(gamma, 100))
    with localcontext() as ctx:
        ctx.prec = 80
        true = (Decimal(part) / Decimal(whole)) ** (Decimal(gamma) / 100) if part else Decimal(0)
    assert (got * Q).denominator == 1
    assert Decimal(got.numerator) / Decimal(got.denominator) - Decimal(10) ** -12 < true <= (
        Decimal(got.numerator) / Decimal(got.denominator)) + Decimal(10) ** -60


@settings(max_examples=300, deadline=None)
@given(eps=st.integers(0, 10**9), eps0=st.integers(1, 10**8))
def test_epsilon_factor_is_the_exact_ceiling(eps: int, eps0: int) -> None:
    got = epsilon_factor(eps, eps0)
    with localcontext() as ctx:
        ctx.prec = 80
        true = 1 - (Decimal(-eps) / Decimal(eps0)).exp()
        grid = Decimal(got.numerator) / Decimal(got.denominator)
    assert grid - Decimal(10) ** -12 < true <= grid


def _concave_factor_laws(f: Callable[[int], Fraction], a: int, b: int) -> None:
    assert f(0) == 0
    assert f(a) <= f(a + b)  # non-decreasing
    assert f(a + b) <= f(a) + f(b)  # subadditive, exactly (rationals)


@settings(max_examples=300, deadline=None)
@given(whole=st.integers(2, 10**12), gamma=st.integers(1, 100), data=st.data())
def test_power_factor_is_monotone_and_subadditive(whole: int, gamma: int, data: st.DataObject) -> None:
    a = data.draw(st.integers(0, whole))
    b = data.draw(st.integers(0, whole - a))
    _concave_factor_laws(lambda x: power_factor(x, whole, Fraction(gamma, 100)), a, b)


@settings(max_examples=300, deadline=None)
@given(eps0=st.integers(1, 10**7), a=st.integers(0, 10**8), b=st.integers(0, 10**8))
def test_epsilon_factor_is_monotone_and_subadditive(eps0: int, a: int, b: int) -> None:
    _concave_factor_laws(lambda x: epsilon_factor(x, eps0), a, b)


@settings(max_examples=200, deadline=None)
@given(points=term_tariffs(), a=st.integers(0, 2500), b=st.integers(0, 2500))
def test_term_tariff_is_monotone_and_subadditive(points: list[list[object]], a: int, b: int) -> None:
    _concave_factor_laws(TermTariff.from_json(points).factor, a, b)


@pytest.mark.parametrize(("points", "why"), [
    ([[0, "0"]], "2 to 64"),
    ([[1, "0"], [30, "1"]], "starts at"),
    ([[0, "0.1"], [30, "1"]], "starts at"),
    ([[0, "0"], [30, "1"], [30, "1.2"]], "increase strictly"),
    ([[0, "0"], [30, "1"], [20, "1.2"]], "increase strictly"),
    ([[0, "0"], [30, "1"], [60, "0.9"]], "must not decrease"),
    ([[0, "0"], [30, "0.3"], [60, "1"]], "not concave"),  # convex kink: two 30-day terms would beat one 60-day
    ([[0, "0"], [30, "0"]], "positive factor"),
    ([[0, "0"], [30, "-1"]], "decimal"),
    ([[0, "0"], [30, "1e3"]], "decimal"),
    ([[0, "0"], [30, "nan"]], "decimal"),
    ([[0, "0"], [True, "1"]], "integer"),
    ("0-30:1", "list of"),
])
def test_term_tariff_refuses_what_is_not_concave_from_zero(points: object, why: str) -> None:
    with pytest.raises(PricingError, match=why) as err:
        TermTariff.from_json(points)
    assert err.value.code == "invalid_tariff"


def test_tariff_validation_and_round_trip() -> None:
    assert Tariff.from_json(json.loads(json.dumps(DEFAULT_TARIFF.to_json()))) == DEFAULT_TARIFF
    canonical_json(DEFAULT_TARIFF.to_json())  # plain JSON, no floats
    bad = [
        {"grade_factors": {"A": "1", "B": "1.2", "C": "1", "D": "0.5"}},  # B dearer than A
        {"grade_factors": {"A": "1", "B": "1", "C": "1", "D": "1", "E": "0"}},  # E takes no factor
        {"use_factors": {"download": "1"}},
        {"use_factors": {"rows/Research!": "1"}},
        {"rows_gamma": "1.5"},
        {"rows_gamma": "0"},
        {"columns_gamma": "0.333"},  # more than 2 places
        {"epsilon0": 0},
        {"scarcity_max": "0.5"},
        {"v": 2},
    ]
    for change in bad:
        with pytest.raises(PricingError) as err:
            Tariff.from_json(DEFAULT_TARIFF.to_json() | change)
        assert err.value.code == "invalid_tariff", change
    assert _tariff(use_factors={"rows": 1, "model/research": 0.25}).use_factor("model", "research") == (
        "model/research", Fraction(1, 4))  # JSON numbers are read as the decimals they print as


def test_grade_e_is_not_tradable_and_uses_must_be_priced() -> None:
    listing = Listing("ds_1", Fen(1000), "E", 10, {"a": 1})
    for call in (lambda: DEFAULT_TARIFF.grade_factor("E"),
                 lambda: price_basis(listing, DEFAULT_TARIFF, mode="rows", substitutes=0, buyers=0)):
        with pytest.raises(PricingError) as err:
            call()
        assert err.value.code == "not_tradable"
    tariff = _tariff(use_factors={"rows": "1"})
    with pytest.raises(PricingError) as err:
        price_basis(Listing("ds_1", Fen(1000), "A", 10, {"a": 1}), tariff, mode="model", substitutes=0, buyers=0)
    assert err.value.code == "unknown_use"


def test_terms_are_checked_against_the_listing() -> None:
    basis = price_basis(Listing("ds_1", Fen(1000), "C", 10, {"a": 1, "b": 2}), DEFAULT_TARIFF, mode="rows",
                        substitutes=0, buyers=0)
    for terms in (Terms(11, frozenset({"a"}), 0, 30), Terms(5, frozenset({"z"}), 0, 30),
                  Terms(5, frozenset({"a"}), 1, 30)):
        with pytest.raises(PricingError) as err:
            price(basis, terms)
        assert err.value.code == "invalid_terms"
    for args in ((-1, frozenset(), 0, 0), (1, "a", 0, 0), (1, frozenset(), -1, 0), (1, frozenset(), 0, 40_000),
                 (True, frozenset(), 0, 0)):
        with pytest.raises(PricingError):
            Terms(*args)  # type: ignore[arg-type]
    assert price(basis, Terms(10, frozenset({"a", "b"}), 0, 365)) == 1000  # the base buys everything for a year
    assert price(basis, Terms(0, frozenset({"a", "b"}), 0, 365)) == 0  # zero at zero


# ---- arbitrage-freeness -------------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_price_is_monotone_in_every_axis(data: st.DataObject) -> None:
    basis = data.draw(bases())
    small = data.draw(terms_for(basis))
    big = Terms(data.draw(st.integers(small.rows, basis.rows_total)),
                small.columns | data.draw(st.sets(st.sampled_from(sorted(basis.column_weights)))),
                small.epsilon + (data.draw(st.integers(0, 10**7)) if basis.mode != "rows" else 0),
                data.draw(st.integers(small.days, _max_days(basis))))
    assert price(basis, small) <= price(basis, big)
    # and in the term-independent inputs: base, scarcity (more buyers), use factor
    richer = PriceBasis(**{**{f: getattr(basis, f) for f in PriceBasis.__dataclass_fields__ if f != "_weight_total"},
                           "base": Fen(basis.base + data.draw(st.integers(0, 10**6))),
                           "scarcity": scarcity(basis.scarcity.substitutes, basis.scarcity.buyers + 5,
                                                basis.scarcity.weight, basis.scarcity.cap),
                           "use_factor": basis.use_factor + Fraction(1, 10)})
    assert price(basis, big) <= price(richer, big)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), pieces=st.integers(2, 5))
def test_buying_in_pieces_never_costs_less_along_any_axis(data: st.DataObject, pieces: int) -> None:
    """Attack: split one purchase along one axis (row ranges, column groups, ε top-ups, consecutive terms)."""
    basis = data.draw(bases())
    whole = data.draw(terms_for(basis))
    axis = data.draw(st.sampled_from(["rows", "columns", "epsilon", "days"]))
    if axis == "columns":
        groups = [set[str]() for _ in range(pieces)]
        for c in sorted(whole.columns):
            groups[data.draw(st.integers(0, pieces - 1))].add(c)
        parts = [Terms(whole.rows, frozenset(g), whole.epsilon, whole.days) for g in groups]
    else:
        amounts = _split(data.draw, getattr(whole, axis), pieces)
        parts = [Terms(**{"rows": whole.rows, "columns": whole.columns, "epsilon": whole.epsilon,
                          "days": whole.days, axis: n}) for n in amounts]
    assert sum(price(basis, p) for p in parts) >= price(basis, whole)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), row_pieces=st.integers(1, 4), col_pieces=st.integers(1, 4))
def test_mixed_row_by_column_covers_never_cost_less(data: st.DataObject, row_pieces: int, col_pieces: int) -> None:
    """Attack: split rows AND columns and buy every (row range × column group) cell separately."""
    basis = data.draw(bases())
    whole = data.draw(terms_for(basis))
    rows = _split(data.draw, whole.rows, row_pieces)
    groups = [set[str]() for _ in range(col_pieces)]
    for c in sorted(whole.columns):
        groups[data.draw(st.integers(0, col_pieces - 1))].add(c)
    cells = [Terms(r, frozenset(g), whole.epsilon, whole.days) for r in rows for g in groups]
    assert sum(price(basis, c) for c in cells) >= price(basis, whole)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_guillotine_covers_never_cost_less(data: st.DataObject) -> None:
    """Attack: cut the box of terms again and again, each time along any axis, and buy the leaves."""
    basis = data.draw(bases())

    def cost(box: Terms, depth: int) -> int:
        axes = [a for a in ("rows", "columns", "epsilon", "days")
                if (len(box.columns) > 1 if a == "columns" else getattr(box, a) > 1)]
        if depth == 0 or not axes or not data.draw(st.booleans()):
            return price(basis, box)
        axis = data.draw(st.sampled_from(axes))
        if axis == "columns":
            cols = sorted(box.columns)
            left = frozenset(data.draw(st.sets(st.sampled_from(cols))))
            halves = [Terms(box.rows, left, box.epsilon, box.days), Terms(box.rows, box.columns - left, box.epsilon,
                                                                         box.days)]
        else:
            cut = data.draw(st.integers(0, getattr(box, axis)))
            halves = [Terms(**{**{"rows": box.rows, "columns": box.columns, "epsilon": box.epsilon,
                                  "days": box.days}, axis: n}) for n in (cut, getattr(box, axis) - cut)]
        return sum(cost(h, depth - 1) for h in halves)

    whole = data.draw(terms_for(basis))
    assert cost(whole, 4) >= price(basis, whole)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_better_grade_is_never_cheaper(data: st.DataObject) -> None:
    basis = data.draw(bases(grade="D"))
    terms = data.draw(terms_for(basis))
    inputs = basis.to_json()
    tariff = _tariff(inputs["rows"]["gamma"], inputs["columns"]["gamma"], inputs["term_tariff"])
    prices = []
    for grade in ("D", "C", "B", "A"):
        listing = Listing(basis.dataset, basis.base, grade, basis.rows_total, basis.column_weights)
        graded = price_basis(listing, tariff, mode=basis.mode, substitutes=basis.scarcity.substitutes,
                             buyers=basis.scarcity.buyers)
        prices.append(price(graded, terms))
    assert prices == sorted(prices)


@settings(max_examples=300, deadline=None)
@given(m=st.integers(0, 10**6), d=st.integers(0, 10**9), a=st.integers(0, 5000), cap=st.integers(1000, 5000))
def test_scarcity_stays_in_bounds_and_moves_the_right_way(m: int, d: int, a: int, cap: int) -> None:
    weight, s_max = Fraction(a, 1000), Fraction(cap, 1000)
    s = scarcity(m, d, weight, s_max)
    assert 1 <= s.value <= s_max and (s.value * Q).denominator == 1
    assert scarcity(m, d + 1, weight, s_max).value >= s.value  # more paying buyers: never cheaper
    assert scarcity(m + 1, d, weight, s_max).value <= s.value  # more substitutes: never dearer
    assert scarcity(m, d, weight + Fraction(1, 1000), s_max).value >= s.value
    if s.value < s_max:  # the exact value rounded up to 12 places
        with localcontext() as ctx:
            ctx.prec = 60
            true = 1 + Decimal(a) / 1000 * Decimal(1 + d).ln() / (1 + m)
        grid = Decimal(s.value.numerator) / Decimal(s.value.denominator)
        assert grid - Decimal(10) ** -12 < true <= grid


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_scarcity_is_frozen_into_the_quote_and_independent_of_the_terms(data: st.DataObject) -> None:
    basis = data.draw(bases())
    one, two = data.draw(terms_for(basis)), data.draw(terms_for(basis))
    q1 = make_quote(basis, one, id="q1", buyer="b1", issued_at=HOUR, expires_at=LATER)
    q2 = make_quote(basis, two, id="q2", buyer="b2", issued_at=HOUR, expires_at=LATER)
    assert q1.basis.scarcity == q2.basis.scarcity
    assert q1.to_json()["inputs"]["scarcity"] == q2.to_json()["inputs"]["scarcity"]


def test_scarcity_known_answer() -> None:
    # 1 + 0.5·ln 6 / 4 = 1.2239699336539…, up to 12 places
    assert scarcity(3, 5, Fraction(1, 2), Fraction(2)).value == Fraction(1223969933654, Q)
    assert scarcity(0, 10**6, Fraction(1, 2), Fraction(2)).value == 2  # capped
    assert scarcity(0, 0, Fraction(1, 2), Fraction(2)).value == 1
    for bad in ((-1, 0), (0, -1), (True, 0)):
        with pytest.raises(PricingError) as err:
            scarcity(*bad, Fraction(1, 2), Fraction(2))
        assert err.value.code == "invalid_scarcity"


# ---- rounding -----------------------------------------------------------------------------------------------

def _round_half_even(x: Fraction) -> int:
    return round(x)  # Fraction.__round__ rounds half to even


amounts = st.fractions(min_value=0, max_value=1000, max_denominator=10**6)


@settings(max_examples=500)
@given(pieces=st.lists(amounts, min_size=1, max_size=6))
def test_rounding_up_keeps_subadditivity(pieces: list[Fraction]) -> None:
    assert sum(ceil_fen(p) for p in pieces) >= ceil_fen(sum(pieces, Fraction(0)))


def test_round_half_even_would_let_a_split_purchase_undercut_the_whole() -> None:
    """Attack on a nearest-rounding price: find real terms whose pieces round down below the rounded whole."""
    basis = price_basis(Listing("ds_1", Fen(3), "C", 100, {"a": 1, "b": 1}), _tariff("1", "1"), mode="rows",
                        substitutes=0, buyers=0)

    def undercuts(split: tuple[int, int]) -> bool:
        rows, cut = split
        cut = min(cut, rows)
        whole = breakdown(basis, Terms(rows, frozenset({"a", "b"}), 0, 365)).product
        parts = [breakdown(basis, Terms(n, frozenset({"a", "b"}), 0, 365)).product for n in (cut, rows - cut)]
        # with round-half-even the split is cheaper; with ceil it never is
        assert sum(ceil_fen(p) for p in parts) >= ceil_fen(whole)
        return sum(_round_half_even(p) for p in parts) < _round_half_even(whole)

    rows, cut = find(st.tuples(st.integers(0, 100), st.integers(0, 100)), undercuts,
                     settings=settings(max_examples=2000, database=None))
    assert undercuts((rows, cut))


def test_half_even_counterexample_by_hand() -> None:
    whole = Fraction(8, 10)  # 0.8 fen → 1 fen to nearest; two halves of 0.4 → 0 + 0
    with localcontext() as ctx:
        assert Decimal("0.4").quantize(Decimal(1), rounding=ROUND_HALF_EVEN, context=ctx) * 2 < Decimal(
            "0.8").quantize(Decimal(1), rounding=ROUND_HALF_EVEN, context=ctx)
        assert Decimal("0.4").quantize(Decimal(1), rounding=ROUND_CEILING, context=ctx) * 2 >= 1
    assert 2 * ceil_fen(whole / 2) >= ceil_fen(whole)


# ---- history inside one licence -----------------------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(data=st.data(), steps=st.integers(1, 6))
def test_history_charges_are_never_negative_and_telescope(data: st.DataObject, steps: int) -> None:
    """Attack: spread a purchase over time inside one licence. The charges sum to the price of the union."""
    basis = data.draw(bases())
    held: Terms | None = None
    paid = 0
    for _ in range(steps):
        new = data.draw(terms_for(basis))
        if held is not None and held.epsilon + new.epsilon > 0 and basis.mode == "rows":
            new = Terms(new.rows, new.columns, 0, new.days)
        amount = charge(basis, held, new)
        assert amount >= 0
        quote = make_quote(basis, new, id="q1", buyer="b1", issued_at=HOUR, expires_at=LATER, held=held)
        assert quote.charge == amount == recompute(quote)
        paid += amount
        held = new if held is None else held.union(new)
    assert held is not None
    assert paid == price(basis, held)  # exactly what buying the final scope at once costs


def test_union_semantics() -> None:
    a = Terms(100, frozenset({"x"}), 10, 30)
    b = Terms(50, frozenset({"y"}), 5, 90)
    assert a.union(b) == b.union(a) == Terms(100, frozenset({"x", "y"}), 15, 90)
    basis = price_basis(Listing("ds_1", Fen(10_000), "B", 100, {"x": 1, "y": 1}), DEFAULT_TARIFF,
                        mode="aggregate", substitutes=0, buyers=0)
    assert charge(basis, a, Terms(100, frozenset({"x"}), 0, 30)) == 0  # already held: free
    assert charge(basis, a, b) == price(basis, a.union(b)) - price(basis, a)


# ---- quotes -------------------------------------------------------------------------------------------------

def _quote(held: Terms | None = None) -> Quote:
    listing = Listing("ds_1", Fen(100_000), "B", 10_000, {"age": 1, "income": 2, "label": 1})
    basis = price_basis(listing, DEFAULT_TARIFF, mode="aggregate", purpose="research", substitutes=3, buyers=5)
    return make_quote(basis, Terms(5_000, frozenset({"age", "income"}), 500_000, 90), id="q_1", buyer="p_b",
                      issued_at=HOUR, expires_at=LATER, held=held)


def test_quote_lists_every_input_and_recomputes_by_hand() -> None:
    quote = _quote()
    obj = quote.to_json()
    assert obj["inputs"] == {
        "base": 100_000, "grade": "B", "grade_factor": "1.2",
        "scarcity": {"substitutes": 3, "buyers": 5, "a": "0.5", "s_max": "2", "value": "1.223969933654"},
        "use": "aggregate", "use_factor": "0.5", "rows": {"total": 10_000, "gamma": "0.8"},
        "columns": {"weights": {"age": 1, "income": 2, "label": 1}, "gamma": "0.9"}, "epsilon0": 1_000_000,
        "term_tariff": [[0, "0"], [30, "0.4"], [90, "0.7"], [365, "1"], [730, "1.3"]],
    }
    assert obj["scope"]["factors"] == {"rows": "0.574349177499", "columns": "0.771889506724",
                                       "epsilon": "0.393469340288", "term": "0.7"}
    # by hand: multiply the listed decimals, round up
    inputs, factors = obj["inputs"], obj["scope"]["factors"]
    with localcontext() as ctx:
        ctx.prec = 200
        product = Decimal(inputs["base"])
        for text in (inputs["grade_factor"], inputs["scarcity"]["value"], inputs["use_factor"], *factors.values()):
            product *= Decimal(text)
        assert product == Decimal(obj["scope"]["product"])
        assert obj["scope"]["price"] == obj["charge"] == int(product.to_integral_value(rounding=ROUND_CEILING))
    # and each factor from its inputs: (5000/10000)^0.8, (3/4)^0.9, 1 − e^{−0.5}, 0.4 + 0.3·60/60
    with localcontext() as ctx:
        ctx.prec = 50
        assert Decimal(factors["rows"]) - Decimal("0.5") ** Decimal("0.8") < Decimal("1e-12")
        assert Decimal(factors["columns"]) - Decimal("0.75") ** Decimal("0.9") < Decimal("1e-12")
        assert Decimal(factors["epsilon"]) - (1 - Decimal("-0.5").exp()) < Decimal("1e-12")
    assert recompute(quote) == quote.charge == 8968


def test_quote_round_trips_as_canonical_json() -> None:
    for quote in (_quote(), _quote(held=Terms(2_000, frozenset({"age"}), 100_000, 30))):
        wire = canonical_json(quote.to_json())
        back = Quote.from_json(json.loads(wire))
        assert back == quote and canonical_json(back.to_json()) == wire
        assert recompute(back) == quote.charge
        assert quote.dataset == "ds_1" and quote.mode == "aggregate"


def test_a_held_quote_charges_only_the_difference() -> None:
    held = Terms(2_000, frozenset({"age"}), 100_000, 30)
    quote = _quote(held=held)
    assert quote.held is not None
    assert quote.scope.terms == held.union(quote.requested)
    assert quote.charge == quote.scope.price - quote.held.price == recompute(quote) > 0


def _tamper(obj: dict[str, object], path: tuple[str, ...], value: object) -> dict[str, object]:
    copy = json.loads(json.dumps(obj))
    node = copy
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return copy  # type: ignore[no-any-return]


@pytest.mark.parametrize(("path", "value"), [
    (("charge",), 1),
    (("scope", "price"), 1),
    (("scope", "product"), "1.5"),
    (("scope", "factors", "rows"), "0.1"),
    (("scope", "terms", "rows"), 10_000),
    (("requested", "rows"), 10_000),
    (("inputs", "base"), 100),
    (("inputs", "grade_factor"), "0.7"),
    (("inputs", "use_factor"), "0.1"),
    (("inputs", "scarcity", "value"), "1"),
    (("inputs", "scarcity", "buyers"), 0),
    (("inputs", "rows", "gamma"), "1"),
    (("inputs", "columns", "weights", "label"), 100),
    (("inputs", "epsilon0"), 10),
    (("inputs", "term_tariff"), [[0, "0"], [90, "0.1"]]),
    (("held",), {"terms": {"rows": 1, "columns": [], "epsilon": 0, "days": 0},
                 "factors": {"rows": "0", "columns": "0", "epsilon": "0", "term": "0"}, "product": "0",
                 "price": 0}),
])
def test_a_tampered_quote_does_not_recompute(path: tuple[str, ...], value: object) -> None:
    """Attack: edit any listed input or component of a quote (before the node's signature is even checked)."""
    obj = _quote().to_json()
    with pytest.raises(PricingError) as err:
        recompute(Quote.from_json(_tamper(obj, path, value)))
    assert err.value.code in {"quote_mismatch", "invalid_quote", "invalid_terms"}


@pytest.mark.parametrize("change", [
    {"v": 2}, {"id": ""}, {"buyer": "a b"}, {"mode": "download"}, {"purpose": "Research!"},
    {"inputs": {}}, {"charge": -1}, {"charge": 1.5}, {"extra": 1},
])
def test_malformed_quotes_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(PricingError) as err:
        Quote.from_json(_quote().to_json() | change)
    assert err.value.code == "invalid_quote"
    with pytest.raises(PricingError):
        Breakdown.from_json({"terms": {}})


def test_grade_e_in_a_quote_is_not_tradable() -> None:
    obj = _quote().to_json()
    with pytest.raises(PricingError) as err:
        Quote.from_json(_tamper(obj, ("inputs", "grade"), "E"))
    assert err.value.code == "not_tradable"


def test_price_overflow_is_refused() -> None:
    tariff = _tariff(grade_factors={"A": "1000", "B": "1", "C": "1", "D": "1"}, scarcity_weight="0")
    basis = price_basis(Listing("ds_1", Fen(2**53 - 1), "A", 1, {"a": 1}), tariff, mode="rows", substitutes=0,
                        buyers=0)
    with pytest.raises(PricingError) as err:
        price(basis, Terms(1, frozenset({"a"}), 0, 365))
    assert err.value.code == "price_overflow"


# ---- near-substitutes ---------------------------------------------------------------------------------------

def test_near_substitutes_from_catalog_facts() -> None:
    target = CatalogProfile("ds_1", frozenset({"Age", "income", "label"}), frozenset({"credit", "finance"}))
    same_content = CatalogProfile("ds_2", frozenset({"age", "Income", "label"}), frozenset({"credit", "Finance"}))
    renamed = CatalogProfile("ds_3", frozenset({"AGE", "income ", "Label"}), frozenset({"credit"}))
    unrelated = CatalogProfile("ds_4", frozenset({"pixel", "class"}), frozenset({"images"}))
    assert similarity(target, same_content) == 1
    assert similarity(target, renamed) == Fraction(4, 5)
    assert similarity(target, unrelated) == 0
    catalog = [target, same_content, renamed, unrelated, same_content]
    assert count_substitutes(target, catalog) == 2  # itself and the duplicate listing are not counted
    assert count_substitutes(target, catalog, threshold=Fraction(9, 10)) == 1
    assert similarity(CatalogProfile("a", frozenset()), CatalogProfile("b", frozenset())) == 0
    assert CatalogProfile("x", frozenset({"first-name"})).features == CatalogProfile(
        "y", frozenset({"First Name"})).features
    with pytest.raises(PricingError):
        count_substitutes(target, catalog, threshold=Fraction(0))
