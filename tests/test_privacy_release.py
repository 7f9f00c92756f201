"""Release policies, transforms and k-anonymity on Arrow data — each privacy property attacked directly."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from node.sample import personal_records
from privacy.kanon import check, risk, suppress
from privacy.policy import ColumnRule, Generalization, Mask, PolicyError, ReleasePolicy, changes, propose
from privacy.transform import apply_policy, generalize, mask, pseudonymize, release_schema

KEY_A = b"licence-A-key-0123456789abcdef"
KEY_B = b"licence-B-key-0123456789abcdef"


@dataclass(frozen=True)
class _Found:
    column: str
    kind: str
    role: str


def _policy(table: pa.Table, k: int = 5, income_band: int | None = None) -> ReleasePolicy:
    """The proposal for the sample's columns; ``income_band`` also makes income a (banded) quasi-identifier,
    which leaves many small classes for suppression to deal with."""
    found = [_Found("name", "name", "direct_identifier"), _Found("resident_id", "resident_id", "direct_identifier"),
             _Found("mobile", "mobile", "direct_identifier"), _Found("age", "age", "quasi_identifier"),
             _Found("gender", "gender", "quasi_identifier"), _Found("city", "region", "quasi_identifier")]
    policy = propose([(f.name, str(f.type)) for f in table.schema], found, k)
    if income_band is None:
        return policy
    banded = ColumnRule("income", "quasi_identifier", "generalize", Generalization("band", width=income_band))
    return ReleasePolicy(tuple(banded if r.column == "income" else r for r in policy.rules), k)


@pytest.fixture(scope="module")
def people() -> pa.Table:
    return personal_records(20_000, seed=11)


# ---- transforms ----------------------------------------------------------------------------------------------
def test_mask_known_answers() -> None:
    values = pa.array(["13800138000", "abc", None, "6222021234567890123", "北京市海淀区中关村"])
    assert mask(values, Mask(0, 4)).to_pylist() == ["*******8000", "***", None, "***************0123",
                                                    "*****区中关村"]
    assert mask(values, Mask(3, 4)).to_pylist()[0] == "138****8000"
    assert mask(pa.array(["1234567"]), Mask(3, 4)).to_pylist() == ["*******"]  # never shown whole
    assert mask(pa.array([13800138000]), Mask(0, 4)).to_pylist() == ["*******8000"]


def test_generalize_known_answers() -> None:
    assert generalize(pa.array([23, 30, 39, None]), Generalization("band", width=10)).to_pylist() == \
        ["[20,30)", "[30,40)", "[30,40)", None]
    assert generalize(pa.array([1.5, 2.6]), Generalization("band", width=0.5)).to_pylist() == \
        ["[1.5,2)", "[2.5,3)"]
    assert generalize(pa.array([dt.date(1990, 5, 17)]), Generalization("date", unit="year")).to_pylist() == \
        [dt.date(1990, 1, 1)]
    assert generalize(pa.array([dt.date(1990, 5, 17)]), Generalization("date", unit="month")).to_pylist() == \
        [dt.date(1990, 5, 1)]
    assert generalize(pa.array(["310012", "1"]), Generalization("prefix", length=3)).to_pylist() == ["310", "1"]
    with pytest.raises(PolicyError):
        generalize(pa.array(["x"]), Generalization("band", width=10))


def test_pseudonyms_are_stable_within_a_licence_and_unlinkable_across() -> None:
    ids = pa.array(["110101199003071234", "110101199003071234", "310101198001010011", None])
    a, b = pseudonymize(ids, KEY_A).to_pylist(), pseudonymize(ids, KEY_B).to_pylist()
    assert a[0] == a[1] != a[2] and a[3] is None
    assert len(a[0]) == 24 and set(a[:3]).isdisjoint(b[:3])
    chunked = pa.chunked_array([ids[:2], ids[2:]])
    assert pseudonymize(chunked, KEY_A).to_pylist() == a  # chunking and dictionary order do not matter
    assert pseudonymize(pa.array(ids.to_pylist()[::-1]), KEY_A).to_pylist() == a[::-1]
    with pytest.raises(PolicyError):
        pseudonymize(ids, b"short")


def test_dictionary_attack_on_pseudonyms_fails_without_the_key(people: pa.Table) -> None:
    """Attack: the adversary enumerates every plausible resident ID (here: the true population itself, the best
    case for them) and hashes each candidate. Against an unsalted hash that re-identifies everyone — the sanity
    check that the attack works — against HMAC with the licence key it matches no one."""
    ids = people["resident_id"].to_pylist()[:5000]
    candidates = ids + [f"{i:018d}" for i in range(5000)]
    released_keyed = set(pseudonymize(pa.array(ids), KEY_A).to_pylist())
    released_unsalted = {hashlib.sha256(v.encode()).hexdigest()[:24] for v in ids}
    unsalted_hits = sum(hashlib.sha256(c.encode()).hexdigest()[:24] in released_unsalted for c in candidates)
    wrong_key = b"attacker-guess-key-000000000000"
    keyed_hits = len(set(pseudonymize(pa.array(candidates), wrong_key).to_pylist()) & released_keyed)
    assert unsalted_hits == len(set(ids))  # the attack works on a plain hash …
    assert keyed_hits == 0                 # … and finds nothing without the key


# ---- policies ------------------------------------------------------------------------------------------------
def test_proposed_policy_hides_identifiers_and_generalizes_quasi_identifiers(people: pa.Table) -> None:
    policy = _policy(people)
    assert policy.rule("name") == ColumnRule("name", "direct_identifier", "drop", detected="name")
    assert policy.rule("resident_id").transform == "pseudonymize"  # type: ignore[union-attr]
    assert policy.rule("mobile").transform == "mask"  # type: ignore[union-attr]
    assert policy.rule("age").generalization == Generalization("band", width=10)  # type: ignore[union-attr]
    assert policy.rule("income").role == "attribute"  # type: ignore[union-attr]
    assert set(policy.quasi_identifiers) == {"age", "gender", "city"}
    assert set(_policy(people, income_band=1000).quasi_identifiers) == {"age", "gender", "city", "income"}
    assert ReleasePolicy.from_json(policy.to_json()) == policy


@pytest.mark.parametrize("bad", [
    {"k": 1, "columns": []},
    {"k": 5, "columns": [{"column": "id", "role": "direct_identifier", "transform": "keep"}]},
    {"k": 5, "columns": [{"column": "id", "role": "direct_identifier", "transform": "generalize",
                          "generalization": {"kind": "prefix", "length": 2}}]},
    {"k": 5, "columns": [{"column": "a", "role": "attribute", "transform": "generalize"}]},
    {"k": 5, "columns": [{"column": "a", "role": "attribute", "transform": "mask",
                          "mask": {"keep_first": 20, "keep_last": 0}}]},
    {"k": 5, "columns": [{"column": "a", "role": "boss", "transform": "keep"}]},
    {"k": 5, "columns": [{"column": "a", "role": "attribute", "transform": "keep"},
                         {"column": "a", "role": "attribute", "transform": "drop"}]},
    {"k": 5, "columns": "all"},
])
def test_malformed_or_unsafe_policies_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(PolicyError):
        ReleasePolicy.from_json(bad)


def test_loosening_a_detected_identifier_is_reported(people: pa.Table) -> None:
    proposed = _policy(people)
    tighter = ReleasePolicy(tuple(
        ColumnRule(r.column, r.role, "drop", detected=r.detected) if r.column == "mobile" else r
        for r in proposed.rules), 10)
    assert changes(proposed, tighter) == []
    looser = ReleasePolicy(tuple(
        ColumnRule("mobile", "attribute", "keep") if r.column == "mobile" else
        ColumnRule("resident_id", "direct_identifier", "mask", mask=Mask(0, 4)) if r.column == "resident_id" else r
        for r in proposed.rules), 5)
    found = {(c.column, c.after) for c in changes(proposed, looser)}
    assert found == {("mobile", "attribute/keep"), ("resident_id", "direct_identifier/mask")}


def test_release_schema_is_known_before_reading(people: pa.Table) -> None:
    policy = _policy(people)
    released = apply_policy(people, policy, KEY_A)
    assert released.schema == release_schema(people.schema, policy)
    assert "name" not in released.column_names and released.num_rows == people.num_rows
    with pytest.raises(PolicyError, match="key"):
        apply_policy(people, policy, None)
    unnamed = people.append_column("new_secret", pa.array(["x"] * people.num_rows))
    assert "new_secret" not in apply_policy(unnamed, policy, KEY_A).column_names  # fail closed


# ---- k-anonymity ---------------------------------------------------------------------------------------------
def test_suppression_makes_any_release_k_anonymous(people: pa.Table) -> None:
    policy = _policy(people, k=10, income_band=20_000)
    released = apply_policy(people, policy, KEY_A)
    qi = policy.quasi_identifiers
    assert not check(released, qi, 10).ok  # rare combinations exist before suppression
    kept, dropped = suppress(released, qi, 10)
    report = check(kept, qi, 10)
    assert report.ok and report.smallest >= 10 and dropped > 0
    assert kept.num_rows + dropped == people.num_rows
    assert risk(kept, qi).prosecutor_max <= 1 / 10


def test_check_is_independent_of_suppression_and_sees_nulls_as_values() -> None:
    t = pa.table({"a": ["x", None, "x", None, "y"], "b": [1, 1, 1, 1, 2]})
    report = check(t, ["a", "b"], 2)
    assert (report.classes, report.smallest, report.violating_classes) == (3, 1, 1)
    kept, dropped = suppress(t, ["a", "b"], 2)
    assert dropped == 1 and kept.to_pydict() == {"a": ["x", None, "x", None], "b": [1, 1, 1, 1]}
    assert check(t.slice(0, 0), ["a"], 5).ok
    assert not check(t, [], 6).ok and check(t, [], 5).ok


def _linkage_attack(register: pa.Table, release: pa.Table, policy: ReleasePolicy) -> float:
    """Attack: an adversary holds a population register with names and quasi-identifiers (here: the very people
    in the dataset), generalizes it the way the release did and joins on the quasi-identifiers. A released row
    matching ``m`` register rows is re-identified with probability 1/m; returns the worst case."""
    qi = list(policy.quasi_identifiers)
    known = apply_policy(register, ReleasePolicy(tuple(r for r in policy.rules if r.column in qi), policy.k), None)
    candidates = known.group_by(qi).aggregate([([], "count_all")])
    joined = release.select(qi).join(candidates, keys=qi, join_type="left outer")
    matches = pc.fill_null(joined["count_all"], 0)
    assert pc.min(matches).as_py() > 0  # everyone in the release is in the register
    return float(pc.max(pc.divide(1.0, pc.cast(matches, pa.float64()))).as_py())


@pytest.mark.parametrize("k", [2, 5, 20])
def test_linkage_attack_reidentifies_no_one_above_one_over_k(people: pa.Table, k: int) -> None:
    policy = _policy(people, k, income_band=20_000)
    release, _ = suppress(apply_policy(people, policy, KEY_A), policy.quasi_identifiers, k)
    assert _linkage_attack(people, release, policy) <= 1 / k


def test_linkage_attack_succeeds_without_suppression(people: pa.Table) -> None:
    """The same attack against the weakened release (generalized but not suppressed) singles people out."""
    policy = _policy(people, 5, income_band=20_000)
    assert _linkage_attack(people, apply_policy(people, policy, KEY_A), policy) == 1.0
