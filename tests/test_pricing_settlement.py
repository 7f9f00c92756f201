"""Settlement by largest remainder and contribution shares: payouts always sum to the price, shares are exact and
their inputs hash to a stable digest."""

from __future__ import annotations

import hashlib
import json
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.canonical import canonical_json
from pricing.contribution import (
    DEFAULT_WEIGHTS,
    Contributor,
    ShareInputs,
    ShareWeights,
    Valuation,
    contribution_shares,
    count_by_contributor,
    inputs_digest,
    value_by_contributor,
)
from pricing.settlement import settle
from pricing.tariff import Fen, PricingError

weights = st.one_of(st.integers(0, 10**6), st.fractions(min_value=0, max_value=10**4, max_denominator=10**6))
share_maps = st.dictionaries(st.text("abcdefgh", min_size=1, max_size=3), weights, min_size=1, max_size=12).filter(
    lambda m: sum(m.values()) > 0)
DIGEST = "ab" * 32


# ---- settlement ---------------------------------------------------------------------------------------------

@settings(max_examples=500)
@given(price=st.integers(0, 2**53 - 1), shares=share_maps)
def test_payouts_sum_exactly_and_stay_within_a_fen_of_the_exact_share(price: int, shares: dict[str, Fraction]) -> None:
    payouts = settle(Fen(price), shares)
    assert list(payouts) == sorted(shares)
    assert sum(payouts.values()) == price
    total = sum(Fraction(w) for w in shares.values())
    for who, paid in payouts.items():
        exact = price * Fraction(shares[who]) / total
        assert exact - 1 < paid < exact + 1
        assert paid >= 0 and (shares[who] != 0 or paid == 0)


@settings(max_examples=500)
@given(price=st.integers(0, 10**9), shares=share_maps)
def test_a_larger_share_is_never_paid_less(price: int, shares: dict[str, Fraction]) -> None:
    payouts = settle(Fen(price), shares)
    for a in shares:
        for b in shares:
            if shares[a] > shares[b]:
                assert payouts[a] >= payouts[b]
            if shares[a] == shares[b]:
                assert abs(payouts[a] - payouts[b]) <= 1


def test_settlement_known_answers() -> None:
    third = Fraction(1, 3)
    assert settle(Fen(100), {"b": third, "a": third, "c": third}) == {"a": 34, "b": 33, "c": 33}  # tie: lowest id
    assert settle(Fen(10), {"x": 7, "y": 3}) == {"x": 7, "y": 3}
    assert settle(Fen(1), {"x": Fraction(1, 2), "y": Fraction(1, 2)}) == {"x": 1, "y": 0}
    assert settle(Fen(7), {"x": 1, "zero": 0}) == {"x": 7, "zero": 0}
    assert settle(Fen(0), {"x": 1}) == {"x": 0}


@pytest.mark.parametrize(("price", "shares"), [
    (-1, {"a": 1}), (1.5, {"a": 1}), (10, {}), (10, {"a": 0}), (10, {"a": -1, "b": 2}), (10, {"a": 0.5}),
    (10, {"a": True}), (10, {"": 1}),
])
def test_settlement_refuses_bad_inputs(price: object, shares: object) -> None:
    with pytest.raises(PricingError) as err:
        settle(price, shares)  # type: ignore[arg-type]
    assert err.value.code == "invalid_shares"


# ---- contribution shares ------------------------------------------------------------------------------------

def _inputs(*contributors: Contributor, valuation: Valuation | None = None,
            weights: ShareWeights = DEFAULT_WEIGHTS) -> ShareInputs:
    return ShareInputs("ds_1", tuple(contributors), weights, valuation)


def test_shares_combine_volume_annotation_and_value() -> None:
    inputs = _inputs(Contributor("alice", 600, 100, Fraction(3, 10)), Contributor("bob", 400, 300, Fraction(1, 10)),
                     valuation=Valuation(5, 1000, DIGEST))
    shares = contribution_shares(inputs)
    # 0.4·600/1000 + 0.2·100/400 + 0.4·0.3/0.4 = 0.24 + 0.05 + 0.3
    assert shares == {"alice": Fraction(59, 100), "bob": Fraction(41, 100)}
    assert sum(shares.values()) == 1
    assert settle(Fen(12_345), shares) == {"alice": 7284, "bob": 5061}


def test_negative_value_clips_at_zero_and_absent_measures_drop_out() -> None:
    hurt = _inputs(Contributor("alice", 500, 0, Fraction(2, 10)), Contributor("bob", 500, 0, Fraction(-5, 10)),
                   valuation=Valuation(5, 1000, DIGEST))
    # nobody annotated: weights 0.4 volume + 0.4 value, renormalized; bob's negative value counts as 0
    assert contribution_shares(hurt) == {"alice": Fraction(3, 4), "bob": Fraction(1, 4)}
    unlabelled = _inputs(Contributor("alice", 300), Contributor("bob", 100))
    assert contribution_shares(unlabelled) == {"alice": Fraction(3, 4), "bob": Fraction(1, 4)}
    with pytest.raises(PricingError) as err:
        contribution_shares(_inputs(Contributor("alice", 0), Contributor("bob", 0)))
    assert err.value.code == "invalid_contribution"


@settings(max_examples=300)
@given(people=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**6),
                                 st.integers(-10**12, 10**12)), min_size=1, max_size=8),
       w=st.tuples(st.integers(0, 10), st.integers(0, 10), st.integers(0, 10)).filter(lambda t: sum(t) > 0))
def test_shares_are_exact_and_sum_to_one(people: list[tuple[int, int, int]], w: tuple[int, int, int]) -> None:
    contributors = [Contributor(f"c{i}", r, a, Fraction(v, 10**12)) for i, (r, a, v) in enumerate(people)]
    inputs = _inputs(*contributors, valuation=Valuation(3, 10, DIGEST),
                     weights=ShareWeights(*(Fraction(x, 10) for x in w)))
    try:
        shares = contribution_shares(inputs)
    except PricingError as exc:
        assert exc.code == "invalid_contribution"
        return
    assert sum(shares.values()) == 1 and all(s >= 0 for s in shares.values())
    assert sum(settle(Fen(99_999), shares).values()) == 99_999
    assert ShareInputs.from_json(json.loads(canonical_json(inputs.to_json()))) == inputs


def test_inputs_digest_is_stable_and_covers_every_input() -> None:
    base = _inputs(Contributor("bob", 400, 300, Fraction(1, 10)), Contributor("alice", 600, 100, Fraction(3, 10)),
                   valuation=Valuation(5, 1000, DIGEST))
    reordered = _inputs(*reversed(base.contributors), valuation=base.valuation)
    assert inputs_digest(base) == inputs_digest(reordered)  # contributors are sorted before hashing
    assert len(inputs_digest(base)) == 64
    changed = [
        _inputs(Contributor("bob", 401, 300, Fraction(1, 10)), base.contributors[1], valuation=base.valuation),
        _inputs(Contributor("bob", 400, 301, Fraction(1, 10)), base.contributors[1], valuation=base.valuation),
        _inputs(Contributor("bob", 400, 300, Fraction(2, 10)), base.contributors[1], valuation=base.valuation),
        _inputs(*base.contributors, valuation=Valuation(3, 1000, DIGEST)),
        _inputs(*base.contributors, valuation=Valuation(5, 1000, "cd" * 32)),
        _inputs(*base.contributors, valuation=base.valuation,
                weights=ShareWeights(Fraction(1, 2), Fraction(0), Fraction(1, 2))),
    ]
    assert len({inputs_digest(base), *(inputs_digest(c) for c in changed)}) == 1 + len(changed)
    # the digest is SHA-256 over the RFC 8785 bytes of to_json()
    assert inputs_digest(base) == hashlib.sha256(canonical_json(base.to_json())).hexdigest()
    assert base.to_json()["contributors"][0] == {"id": "alice", "rows_kept": 600, "annotation_units": 100,
                                                 "value": "0.3"}


@pytest.mark.parametrize("build", [
    lambda: _inputs(Contributor("a", 1), Contributor("a", 2)),  # duplicate ids
    lambda: _inputs(Contributor("a", 1, 0, Fraction(1, 10))),  # a value without its valuation
    lambda: Contributor("a b", 1),
    lambda: Contributor("a", -1),
    lambda: Contributor("a", 1, 0, Fraction(1, 3)),  # not a 12-place decimal
    lambda: Valuation(0, 10, DIGEST),
    lambda: Valuation(5, 10, "xyz"),
    lambda: ShareWeights(Fraction(0), Fraction(0), Fraction(0)),
    lambda: ShareWeights(Fraction(-1), Fraction(1), Fraction(1)),
    lambda: ShareInputs("ds_1", ()),
])
def test_bad_contribution_inputs_are_refused(build: object) -> None:
    with pytest.raises(PricingError) as err:
        build()  # type: ignore[operator]
    assert err.value.code == "invalid_contribution"


def test_per_contributor_volume_annotation_and_value_from_row_arrays() -> None:
    owners = np.array(["alice", "bob", "alice", "carol", "bob", "alice"])
    kept = np.array([True, True, False, True, True, True])  # row 2 was a duplicate
    labelled = np.array([True, False, False, False, True, True])
    assert count_by_contributor(owners, kept) == {"alice": 2, "bob": 2, "carol": 1}
    assert count_by_contributor(owners, labelled) == {"alice": 2, "bob": 1}
    assert count_by_contributor(owners) == {"alice": 3, "bob": 2, "carol": 1}
    values = np.array([0.1, 0.2, 0.3, -0.05, 1e-13, 0.7])
    got = value_by_contributor(values, owners)
    assert got == {"alice": Fraction(11, 10), "bob": Fraction(2, 10), "carol": Fraction(-5, 100)}
    with pytest.raises(PricingError):
        count_by_contributor(owners, np.array([1, 0]))
    with pytest.raises(PricingError):
        value_by_contributor(np.array([np.nan]), np.array(["a"]))
