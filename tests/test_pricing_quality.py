"""Quality grade (pricing.quality, pricing.profile): each metric, each gate, and the streaming contract."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import canonical_json
from node.sample import personal_records
from pricing.profile import Profiler, baseline_fit, row_hashes
from pricing.quality import (
    GATES,
    Dimension,
    Metric,
    QualityError,
    QualityInputs,
    QualityReport,
    assess,
    band,
    combine,
)
from privacy.pii import detect
from privacy.policy import propose

TODAY = dt.date(2026, 1, 1)
SHA = "b" * 64
MANIFEST: dict[str, Any] = {
    "name": "loans", "title": "Consumer loan outcomes", "description": "Synthetic borrowers and loan defaults.",
    "contact": "data@example.com", "license_text": "CC-BY-4.0", "tags": ["finance", "credit"],
    "columns": {c: f"the {c}" for c in ("name", "resident_id", "mobile", "city", "gender", "age", "income",
                                        "label")},
    "provenance": {"source": "dsnode sample generator", "collection_method": "simulation",
                   "time_span": {"start": "2025-01-01", "end": "2025-12-31"}, "processing": "none",
                   "source_sha256": "a" * 64},
    "intended_uses": ["credit scoring"], "limitations": "synthetic, Chinese-style records only",
}


@pytest.fixture(scope="module")
def people() -> pa.Table:
    return personal_records(2000)


@pytest.fixture(scope="module")
def findings(people: pa.Table) -> list[Any]:
    return detect(people)


def _inputs(table: pa.Table, findings: list[Any], **changes: Any) -> QualityInputs:
    policy = propose([(f.name, str(f.type)) for f in table.schema], findings).to_json()
    base: dict[str, Any] = {
        "manifest": MANIFEST, "schema": table.schema, "dataset_sha256": SHA, "today": TODAY, "findings": findings,
        "policy": policy, "label": "label", "label_values": [0, 1], "as_of": dt.date(2025, 12, 31),
        "bounds": {"age": (18.0, 80.0), "income": (0.0, 1e7)}, "domains": {"gender": ["男", "女"]}}
    base.update(changes)
    return QualityInputs(**base)


def _values(report: QualityReport) -> dict[str, float | None]:
    return {m.name: m.value for d in report.dimensions for m in d.metrics}


# ---- grades and gates ---------------------------------------------------------------------------------------
def test_documented_clean_sample_grades_a(people: pa.Table, findings: list[Any]) -> None:
    report = assess(people.to_batches(), _inputs(people, findings))
    # Documentation and data quality are complete (1.0 each); model application is 0.7225: scale 0.66 (2,000 of a
    # 100,000-row reference), label diversity 0.70 (about 20% defaults), timeliness 0.998 (as_of one day old) and a
    # baseline lift of 0.53; label accuracy is not assessed. 0.20 + 0.45 + 0.35 × 0.7225 = 0.9029 → A.
    assert report.grade == "A" and report.tradable and report.gates == ()
    assert report.dimension("documentation").score == 1.0
    assert report.dimension("data_quality").score == 1.0
    assert report.score == pytest.approx(0.9029, abs=1e-3)
    assert report.metric("model_fit").value == pytest.approx(0.527, abs=0.01)
    assert report.metric("label_accuracy").value is None
    assert report.metric("compliance").detail == {"exposed_identifiers": [], "licence_text": True}
    assert report.input_sha256 == SHA and report.method_version == "dsnode-quality/1"
    assert len(report.policy_version) == 64


def test_identifier_kept_in_clear_is_grade_e_not_tradable(people: pa.Table, findings: list[Any]) -> None:
    policy = propose([(f.name, str(f.type)) for f in people.schema], findings).to_json()
    policy["columns"] = [{"column": "resident_id", "role": "attribute", "transform": "keep"}
                         if c["column"] == "resident_id" else c for c in policy["columns"]]
    report = assess(people.to_batches(), _inputs(people, findings, policy=policy))
    assert report.grade == "E" and not report.tradable and report.gates == ("compliance_failure",)
    assert report.metric("compliance").detail["exposed_identifiers"] == ["resident_id"]
    assert report.metric("compliance").value == pytest.approx(3 / 4)  # 3 identifiers hidden + licence of 4 checks
    # No policy at all: the data would leave as stored, every detected identifier is exposed.
    raw = assess(people.to_batches(), _inputs(people, findings, policy=None))
    assert raw.grade == "E" and raw.metric("compliance").detail["exposed_identifiers"] == [
        "mobile", "name", "resident_id"]
    # A column the policy does not name is dropped: not exposed.
    policy["columns"] = [c for c in policy["columns"] if c["column"] != "resident_id"]
    assert assess(people.to_batches(), _inputs(people, findings, policy=policy)).grade == "A"


def test_missing_licence_is_a_compliance_failure(people: pa.Table, findings: list[Any]) -> None:
    report = assess(people.to_batches(), _inputs(people, findings, manifest={**MANIFEST, "license_text": " "}))
    assert report.grade == "E" and "compliance_failure" in report.gates
    assert report.metric("compliance").detail["licence_text"] is False


def test_no_label_means_no_model_evidence_and_caps_at_c(people: pa.Table, findings: list[Any]) -> None:
    report = assess(people.to_batches(), _inputs(people, findings, label=None, label_values=None))
    assert report.metric("model_fit").reason == "no label declared"
    assert report.metric("label_accuracy").value is None
    assert report.metric("annotation_conformance").value is None
    assert report.gates == ("no_model_evidence",)
    assert report.score >= 0.90 and report.grade == "C"  # the cap is what keeps an A-band score at C


def test_empty_dataset_is_grade_e_and_never_perfect(people: pa.Table, findings: list[Any]) -> None:
    for batches in ([], [pa.RecordBatch.from_pylist([], schema=people.schema)]):  # no batch; one empty batch
        report = assess(iter(batches), _inputs(people, findings))
        assert report.rows == 0 and report.grade == "E" and not report.tradable
        assert "empty_dataset" in report.gates
        for dim in ("data_quality", "model_application"):
            assert report.dimension(dim).score is None
            assert all(m.value is None and m.reason for m in report.dimension(dim).metrics)
        assert report.score == pytest.approx(0.20)  # documentation alone; the unassessed dimensions count 0


# ---- data-quality metrics ------------------------------------------------------------------------------------
def test_exact_and_near_duplicates_are_counted_separately() -> None:
    base = pa.table({"name": ["Alice Smith", "Bob Jones", "Carol King", "Dan Brown"],
                     "score": [0.1234567, 2.5, 3.25, 1e-9], "n": [1, 2, 3, 4]})
    rows = base.to_pylist()
    exact = [rows[0], rows[1]]
    near = [{**rows[0], "name": "  alice   SMITH "}, {**rows[2], "score": 0.1234567 + 3e-8, "name": "Carol King"},
            {**rows[3], "name": "DAN BROWN"}]
    near[1]["score"] = 3.25 + 3e-8  # differs in the 9th significant digit
    different = [{**rows[1], "score": 2.50001}]  # differs in the 6th: not a near duplicate
    table = pa.Table.from_pylist(rows + exact + near + different, schema=base.schema)
    inputs = QualityInputs({}, table.schema, SHA, TODAY)
    m = assess(table.to_batches(max_chunksize=3), inputs).metric("cleanliness")
    assert m.detail == {"exact_duplicates": 2, "near_duplicates": 3}
    assert (m.numerator, m.denominator) == (5, 10) and m.value == 0.5
    clean = assess(base.to_batches(), QualityInputs({}, base.schema, SHA, TODAY)).metric("cleanliness")
    assert clean.value == 1.0


def test_numbers_stored_as_text_lower_type_consistency(people: pa.Table, findings: list[Any]) -> None:
    as_text = people.set_column(6, "income", pc.cast(people["income"], pa.string()))
    report = assess(as_text.to_batches(), _inputs(as_text, findings, bounds={"age": (18.0, 80.0)}))
    m = report.metric("type_consistency")
    # Resident IDs and mobiles are digit strings too, but fixed-width codes: text by nature.
    assert m.detail["stored_as_text"] == ["income"] and (m.numerator, m.denominator) == (7, 8)
    assert m.value == 7 / 8 and report.dimension("data_quality").score != 1.0
    mixed = pa.table({"age": ["31", "42", "unknown", "7", "55"] * 10, "code": ["0101", "0203", "N/A", "0404", ""]
                      * 10, "note": ["fine", "12", "good", "well", "3.5"] * 10})
    stats = assess(mixed.to_batches(), QualityInputs({}, mixed.schema, SHA, TODAY)).metric("type_consistency")
    assert stats.detail["stored_as_text"] == ["age", "note"]  # leading-zero codes are codes; 2 numbers in 5 is mixed


def test_values_outside_declared_bounds_lower_consistency(people: pa.Table, findings: list[Any]) -> None:
    report = assess(people.to_batches(), _inputs(people, findings, bounds={"age": (30.0, 50.0)},
                                                 domains={"city": ["北京", "上海"]}))
    m = report.metric("consistency")
    age, city = people["age"], people["city"]
    inside_age = pc.sum(pc.and_(pc.greater_equal(age, 30), pc.less_equal(age, 50))).as_py()
    inside_city = pc.sum(pc.is_in(city, value_set=pa.array(["北京", "上海"]))).as_py()
    assert (m.numerator, m.denominator) == (inside_age + inside_city, 2 * people.num_rows)
    assert m.detail["outside"] == {"age": people.num_rows - inside_age, "city": people.num_rows - inside_city}
    none = assess(people.to_batches(), _inputs(people, findings, bounds={}, domains={})).metric("consistency")
    assert none.value is None and none.reason == "no declared bounds or domains"


def test_completeness_counts_nulls_and_nan_over_cells() -> None:
    table = pa.table({"a": [1.0, None, float("nan"), 4.0], "b": ["x", None, "y", "z"]})
    m = assess(table.to_batches(), QualityInputs({}, table.schema, SHA, TODAY)).metric("completeness")
    assert (m.numerator, m.denominator, m.unit) == (5, 8, "cells")


def test_annotation_conformance_and_label_accuracy(people: pa.Table, findings: list[Any]) -> None:
    keyed = people.append_column("id", pa.array(np.arange(people.num_rows), pa.int64()))
    labels = keyed["label"].to_pylist()
    audit = {i: (labels[i] if i % 4 else 1 - labels[i]) for i in range(0, 400)}  # 100 of 400 wrong
    report = assess(keyed.to_batches(max_chunksize=300), _inputs(
        keyed, findings, label_values=[0], audit_sample={**audit, 10**9: 0}, key_column="id"))
    zeros = labels.count(0)
    assert report.metric("annotation_conformance").numerator == zeros
    acc = report.metric("label_accuracy")
    assert (acc.numerator, acc.denominator, acc.value) == (300, 400, 0.75)
    missing = assess(keyed.to_batches(), _inputs(keyed, findings, audit_sample={-1: 0}, key_column="id"))
    assert missing.metric("label_accuracy").reason == "no audited key occurs in the data"


def test_timeliness_uses_the_newest_date_else_as_of() -> None:
    days = pa.array([dt.date(2024, 1, 1), dt.date(2025, 1, 1), None], pa.date32())
    table = pa.table({"day": days, "v": [1, 2, 3]})
    m = assess(table.to_batches(), QualityInputs({}, table.schema, SHA, TODAY, half_life_days=365.0,
                                                 as_of=dt.date(2020, 1, 1))).metric("timeliness")
    assert m.detail == {"newest": "2025-01-01", "age_days": 365} and m.value == pytest.approx(0.5)
    assert (m.denominator, m.unit) == (2, "values")
    plain = pa.table({"v": [1, 2]})
    declared = assess(plain.to_batches(), QualityInputs({}, plain.schema, SHA, TODAY, as_of=dt.date(2024, 1, 1)))
    assert declared.metric("timeliness").value == pytest.approx(0.5 ** (731 / 365))
    assert assess(plain.to_batches(), QualityInputs({}, plain.schema, SHA, TODAY)).metric("timeliness").value is None


def test_documentation_credits_each_declared_item(people: pa.Table, findings: list[Any]) -> None:
    sparse = {"title": "t", "columns": {"age": "years", "income": "yuan"}, "provenance": {"time_span": "2025"}}
    dims = assess(people.to_batches(), _inputs(people, findings, manifest=sparse)).dimension("documentation")
    got = {m.name: (m.numerator, m.denominator, m.detail["missing"]) for m in dims.metrics}
    assert got == {
        "basic_info": (1.0, 4, ["contact", "description", "license_text"]),
        "content_features": (0.25, 2, ["columns", "tags"]),
        "construction_process": (1.0, 4, ["collection_method", "processing", "source"]),
        "application_notes": (0.0, 2, ["intended_uses", "limitations"]),
    }


def test_model_fit_measures_signal_against_the_majority_class() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=4000)
    noise = rng.normal(size=4000)
    for label, lo, hi in (((x > 0.8).astype(np.int8), 0.8, 1.0), ((noise > 0.8).astype(np.int8), 0.0, 0.1)):
        table = pa.table({"x": x, "label": label})
        m = assess(table.to_batches(), QualityInputs({}, table.schema, SHA, TODAY, label="label")).metric(
            "model_fit")
        assert lo <= m.value <= hi, m  # type: ignore[operator]
        assert m.detail["majority_accuracy"] > 0.75  # imbalanced: plain accuracy would hide the signal
    one = pa.table({"x": x[:100], "label": np.zeros(100, np.int8)})
    assert baseline_fit(one, "label", ["x"], np.arange(100, dtype=np.uint64) << np.uint64(32)).reason


# ---- scoring properties ---------------------------------------------------------------------------------------
_metric = st.builds(lambda name, v: Metric(name, v, 1, "rows") if v is not None else Metric(
    name, None, 0, "rows", reason="not assessed"), st.sampled_from("abcdef"),
    st.one_of(st.none(), st.floats(0, 1)))
_dims = st.lists(st.lists(_metric, min_size=1, max_size=5), min_size=3, max_size=3)


@settings(max_examples=300, deadline=None)
@given(_dims, st.data())
def test_a_not_assessed_metric_never_scores_above_a_perfect_one(dims: list[list[Metric]], data: Any) -> None:
    def build(ms: list[list[Metric]]) -> list[Dimension]:
        return [Dimension(n, w, tuple(m)) for n, w, m in zip(("d", "q", "m"), (0.2, 0.45, 0.35), ms, strict=True)]

    i = data.draw(st.integers(0, 2))
    j = data.draw(st.integers(0, len(dims[i]) - 1))
    skipped = [list(d) for d in dims]
    skipped[i][j] = Metric("x", None, 0, "rows", reason="not assessed")
    perfect = [list(d) for d in dims]
    perfect[i][j] = Metric("x", 1.0, 1, "rows")
    removed = [list(d) for d in dims]
    del removed[i][j]
    # Not assessed = left out of its dimension (never imputed), hence never above the same metric at 1.0.
    assert combine(build(skipped))[0] == combine(build(removed))[0]
    assert combine(build(skipped))[0] <= combine(build(perfect))[0] + 1e-12
    gates = data.draw(st.lists(st.sampled_from(sorted(GATES)), unique=True))
    score, grade = combine(build(dims), gates)
    assert 0.0 <= score <= 1.0
    assert grade == "E" if {"empty_dataset", "compliance_failure"} & set(gates) else grade >= band(score)
    if "no_model_evidence" in gates:
        assert grade in ("C", "D", "E")


def test_withheld_evidence_is_left_out_not_counted_perfect(people: pa.Table, findings: list[Any]) -> None:
    keyed = people.append_column("id", pa.array(np.arange(people.num_rows), pa.int64()))
    truth = dict(enumerate(keyed["label"].to_pylist()))
    without = assess(keyed.to_batches(), _inputs(keyed, findings, key_column="id"))
    audited = assess(keyed.to_batches(), _inputs(keyed, findings, key_column="id", audit_sample=truth))
    assert audited.metric("label_accuracy").value == 1.0
    assert without.score < audited.score
    model = without.dimension("model_application")
    assessed = [m.value for m in model.metrics if m.value is not None]
    assert len(assessed) == 4 and model.score == pytest.approx(sum(assessed) / 4)


# ---- streaming contract ---------------------------------------------------------------------------------------
def test_batch_size_never_changes_the_report(people: pa.Table, findings: list[Any]) -> None:
    table = pa.concat_tables([people, people.slice(0, 500)])  # duplicates too
    inputs = _inputs(table, findings)
    reports = [assess(batches, inputs, sample_rows=700).to_json() for batches in (
        table.to_batches(), table.to_batches(max_chunksize=1000), table.to_batches(max_chunksize=37))]
    assert len(table.to_batches(max_chunksize=37)) > 60
    assert reports[0] == reports[1] == reports[2]
    assert reports[0]["dimensions"][2]["metrics"][4]["value"] is not None  # the sample-based fit is compared too


def test_assess_streams_an_iterator_once(people: pa.Table, findings: list[Any]) -> None:
    events: list[str] = []

    def source() -> Iterator[pa.RecordBatch]:
        for i, batch in enumerate(people.to_batches(max_chunksize=500)):
            events.append(f"batch {i}")
            yield batch

    report = assess(source(), _inputs(people, findings), progress=lambda n: events.append(f"progress {n}"))
    # Each batch is profiled (progress reported) before the next is pulled: nothing is read ahead or collected.
    assert events == [e for i in range(4) for e in (f"batch {i}", f"progress {500 * (i + 1)}")]
    assert report == assess(people.to_batches(), _inputs(people, findings))


def test_the_sample_stays_bounded_and_uniform() -> None:
    table = pa.table({"i": np.arange(50_000), "label": np.arange(50_000) % 2})
    profiler = Profiler(table.schema, label="label", sample_columns=["i", "label"], sample_rows=1000)
    for batch in table.to_batches(max_chunksize=4096):
        profiler.update(batch)
        assert profiler._sample.num_rows <= 1000
    sample = profiler.finish().sample["i"].to_numpy()
    assert len(sample) == 1000 and np.all(np.diff(sample) > 0)
    assert 20_000 < sample.mean() < 30_000  # spread over the whole file, not its head


def test_row_hashes_ignore_batch_boundaries_and_offsets(people: pa.Table) -> None:
    batch = people.to_batches()[0]
    whole = row_hashes(batch)
    assert np.array_equal(row_hashes(batch.slice(101, 300)), whole[101:401])
    assert len(np.unique(whole)) == batch.num_rows
    upper = batch.set_column(0, "name", pc.utf8_upper(pc.binary_join_element_wise(batch["name"], "  ", "")))
    assert not np.array_equal(row_hashes(upper), whole)
    assert np.array_equal(row_hashes(upper, normalized=True), row_hashes(batch, normalized=True))


# ---- wire format and errors ------------------------------------------------------------------------------------
def test_report_round_trips_as_canonical_json(people: pa.Table, findings: list[Any]) -> None:
    report = assess(people.to_batches(), _inputs(people, findings))
    wire = json.loads(canonical_json(report.to_json()))
    assert QualityReport.from_json(wire) == report
    with pytest.raises(QualityError) as err:
        QualityReport.from_json({**wire, "version": 2})
    assert err.value.code == "invalid_quality_report"
    with pytest.raises(QualityError):
        QualityReport.from_json({**wire, "tradable": False})
    with pytest.raises(QualityError):
        Metric("x", 1.5, 1, "rows")


def test_from_manifest_reads_quality_and_privacy_declarations(people: pa.Table) -> None:
    manifest: Mapping[str, Any] = {**MANIFEST, "quality": {"label": "label", "label_values": [0, 1],
                                                          "as_of": "2025-06-30", "reference_rows": 5000},
                                   "privacy": {"bounds": {"age": [18, 80]}, "domains": {"city": ["北京"]}}}
    inputs = QualityInputs.from_manifest(manifest, people.schema, dataset_sha256=SHA, today=TODAY)
    assert (inputs.label, inputs.label_values, inputs.as_of, inputs.reference_rows) == (
        "label", [0, 1], dt.date(2025, 6, 30), 5000)
    assert inputs.bounds == {"age": (18.0, 80.0)} and inputs.domains == {"city": ["北京"]}
    with pytest.raises(QualityError) as err:
        QualityInputs.from_manifest({"quality": {"label": "nope"}}, people.schema, dataset_sha256=SHA, today=TODAY)
    assert err.value.code == "invalid_quality_declaration"


@pytest.mark.parametrize("changes", [
    {"label": "missing"}, {"bounds": {"city": (0.0, 1.0)}}, {"bounds": {"age": (5.0, 1.0)}},
    {"audit_sample": {1: 0}}, {"label_values": ["yes", "no"]}, {"reference_rows": 0},
])
def test_invalid_inputs_are_refused_with_a_stable_code(people: pa.Table, findings: list[Any],
                                                       changes: dict[str, Any]) -> None:
    with pytest.raises(QualityError) as err:
        assess(people.to_batches(), _inputs(people, findings, **changes))
    assert err.value.code == "invalid_quality_inputs"


def test_a_batch_with_another_schema_is_refused(people: pa.Table, findings: list[Any]) -> None:
    other = people.drop_columns(["income"]).to_batches()
    with pytest.raises(QualityError) as err:
        assess(other, _inputs(people, findings))
    assert err.value.code == "schema_mismatch"


def test_inputs_are_frozen(people: pa.Table, findings: list[Any]) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        _inputs(people, findings).label = "x"  # type: ignore[misc]
