"""Dataset quality grade on the national guide's three dimensions (DESIGN §6), from one streaming pass.

:func:`assess` reads record batches once (see :mod:`pricing.profile` for the bounded state) and returns a
:class:`QualityReport`: every metric with its value in [0, 1] and the denominator it was measured over, or *not
assessed* (``value`` None) with a reason. A metric that is not assessed is left out of its dimension's mean; it never
counts as perfect. Dimension score = mean of its assessed metrics (equal weights); overall score = the weighted mean
of the dimension scores (:data:`DIMENSION_WEIGHTS`), a dimension with no assessed metric counting 0. Grade bands:
A ≥ .90, B ≥ .80, C ≥ .70, D ≥ .60, else E. Gates (:data:`GATES`), applied after banding:

- ``empty_dataset``: no rows — every data and model metric is not assessed and the grade is E;
- ``compliance_failure``: a direct identifier (detected or declared) that the release policy keeps in clear, or no
  licence text — grade E;
- ``no_model_evidence``: neither model fit nor label accuracy could be assessed (no label, or no usable features
  and no audit) — grade at most C. Scale, timeliness and diversity still score the dimension, but they describe the
  data rather than show that a model can use it, and scale is measured for every non-empty dataset.

E means not tradable. Documentation metrics read these manifest keys (all optional; text = a non-empty string):

- basic info: ``title``, ``description``, ``contact`` (text, or an object with a text field), ``license_text``;
- content features: ``tags`` (non-empty list of text), ``columns`` ({column: description}; credit = fraction of
  schema columns described);
- construction process: ``provenance``: {``source``, ``collection_method``, ``time_span`` (text, or {``start``,
  ``end``}), ``processing``} (``source_sha256``, 64 hex, is read by traceability);
- application notes: ``intended_uses`` (text or list of text), ``limitations`` (text or list of text).

:meth:`QualityInputs.from_manifest` reads the manifest's ``quality`` object (``label``, ``label_values``,
``key_column``, ``diversity_column``, ``as_of`` (ISO date), ``reference_rows``, ``half_life_days``) and the
``privacy`` object's ``bounds`` and ``domains``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ledger import canonical_json
from pricing.profile import Profile, Profiler, baseline_fit

__all__ = [
    "DIMENSION_WEIGHTS",
    "GATES",
    "METHOD_VERSION",
    "Dimension",
    "Metric",
    "QualityError",
    "QualityInputs",
    "QualityReport",
    "assess",
    "band",
    "combine",
]

METHOD_VERSION = "dsnode-quality/1"
Grade = Literal["A", "B", "C", "D", "E"]
DIMENSION_WEIGHTS: Mapping[str, float] = {"documentation": 0.20, "data_quality": 0.45, "model_application": 0.35}
_BANDS: tuple[tuple[Grade, float], ...] = (("A", 0.90), ("B", 0.80), ("C", 0.70), ("D", 0.60))
GATES: Mapping[str, str] = {
    "empty_dataset": "no rows: grade E, not tradable",
    "compliance_failure": "a direct identifier released in clear, or no licence text: grade E, not tradable",
    "no_model_evidence": "no model-application evidence (model fit, label accuracy): grade capped at C",
}
_HIDES_IDENTITY = frozenset({"drop", "mask", "pseudonymize"})
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_EMPTY = "empty dataset: no rows"


class QualityError(ValueError):
    """Inputs or a report are malformed; ``code`` is stable and the message never contains data."""

    def __init__(self, message: str, code: str = "invalid_quality_inputs") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Metric:
    """One measurement: ``value`` in [0, 1] measured over ``denominator`` ``unit`` (rows, cells, columns, items,
    values), with ``numerator`` when the value is the ratio numerator / denominator; or ``value`` None = *not
    assessed*, with ``reason``. ``detail``: plain-JSON extras (counts, column names; never data values)."""

    name: str
    value: float | None
    denominator: int
    unit: str
    numerator: float | None = None
    reason: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.value is None) == (self.reason is None):
            raise QualityError("a metric has a value or a reason, not both", "invalid_quality_report")
        if self.value is not None and not (math.isfinite(self.value) and 0.0 <= self.value <= 1.0):
            raise QualityError("a metric value lies in [0, 1]", "invalid_quality_report")
        if self.denominator < 0:
            raise QualityError("a metric denominator is not negative", "invalid_quality_report")

    @property
    def assessed(self) -> bool:
        return self.value is not None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "numerator": self.numerator,
                "denominator": self.denominator, "unit": self.unit, "reason": self.reason, "detail": dict(self.detail)}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Metric:
        return cls(str(obj["name"]), obj["value"], int(obj["denominator"]), str(obj["unit"]), obj.get("numerator"),
                   obj.get("reason"), dict(obj.get("detail") or {}))


def _ratio(name: str, numerator: float, denominator: int, unit: str, **detail: Any) -> Metric:
    return Metric(name, numerator / denominator, denominator, unit, numerator, None, detail)


def _skip(name: str, reason: str, unit: str = "rows", detail: Mapping[str, Any] | None = None) -> Metric:
    return Metric(name, None, 0, unit, None, reason, detail or {})


@dataclass(frozen=True, slots=True)
class Dimension:
    """A dimension's metrics and ``score`` = mean of its assessed metrics (None when none is assessed)."""

    name: str
    weight: float
    metrics: tuple[Metric, ...]

    @property
    def score(self) -> float | None:
        values = [m.value for m in self.metrics if m.value is not None]
        return sum(values) / len(values) if values else None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "weight": self.weight, "score": self.score,
                "metrics": [m.to_json() for m in self.metrics]}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Dimension:
        return cls(str(obj["name"]), float(obj["weight"]), tuple(Metric.from_json(m) for m in obj["metrics"]))


def band(score: float) -> Grade:
    """The grade band of ``score`` (A ≥ .90, B ≥ .80, C ≥ .70, D ≥ .60, else E)."""
    return next((g for g, floor in _BANDS if score >= floor), "E")


def combine(dimensions: Sequence[Dimension], gates: Sequence[str] = ()) -> tuple[float, Grade]:
    """Overall score = Σ weight × dimension score / Σ weight, a dimension without any assessed metric counting 0
    (only an empty dataset has one), and the grade after ``gates`` (codes of :data:`GATES`)."""
    total = sum(d.weight for d in dimensions)
    score = sum(d.weight * (d.score or 0.0) for d in dimensions) / total if total > 0 else 0.0
    grade = band(score)
    if "empty_dataset" in gates or "compliance_failure" in gates:
        grade = "E"
    elif "no_model_evidence" in gates and grade in ("A", "B"):
        grade = "C"
    return score, grade


@dataclass(frozen=True, slots=True)
class QualityReport:
    """The graded report the ledger records. ``input_sha256``: the assessed file's SHA-256; ``policy_version``:
    the release policy's identity (by default the hex SHA-256 of its RFC 8785 JSON, as ``dataset.published``'s
    ``policy_sha256``; ``none`` without a policy); ``params``: every other input that
    changes a number (assessment date, reference size, half-life, sample size, seed, the declared label, label
    set, bounds, key and diversity columns, domain sizes, audit size)."""

    input_sha256: str
    policy_version: str
    rows: int
    dimensions: tuple[Dimension, ...]
    score: float
    grade: Grade
    tradable: bool
    gates: tuple[str, ...]
    params: Mapping[str, Any]
    method_version: str = METHOD_VERSION
    version: int = 1

    def __post_init__(self) -> None:
        if self.grade not in ("A", "B", "C", "D", "E") or self.tradable != (self.grade != "E") \
                or not set(self.gates) <= set(GATES):
            raise QualityError("a report's grade, tradability and gates disagree", "invalid_quality_report")

    def metric(self, name: str) -> Metric:
        return next(m for d in self.dimensions for m in d.metrics if m.name == name)

    def dimension(self, name: str) -> Dimension:
        return next(d for d in self.dimensions if d.name == name)

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "method_version": self.method_version, "input_sha256": self.input_sha256,
                "policy_version": self.policy_version, "rows": self.rows, "score": self.score, "grade": self.grade,
                "tradable": self.tradable, "gates": list(self.gates), "params": dict(self.params),
                "dimensions": [d.to_json() for d in self.dimensions]}

    @classmethod
    def from_json(cls, obj: Any) -> QualityReport:
        if not isinstance(obj, Mapping) or obj.get("version") != 1:
            raise QualityError("unsupported quality report version", "invalid_quality_report")
        try:
            return cls(str(obj["input_sha256"]), str(obj["policy_version"]), int(obj["rows"]),
                       tuple(Dimension.from_json(d) for d in obj["dimensions"]), float(obj["score"]), obj["grade"],
                       bool(obj["tradable"]), tuple(obj["gates"]), dict(obj["params"]), str(obj["method_version"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise QualityError("a quality report is missing or mistypes a field", "invalid_quality_report") from exc


@dataclass(frozen=True, slots=True)
class QualityInputs:
    """Everything besides the rows that the grade depends on.

    ``findings``: PII findings (objects or dicts with ``column``, ``role``; :class:`privacy.pii.Finding`);
    ``policy``: the release policy JSON (``{"columns": [{"column", "role", "transform"}, ...]}``) — None means the
    data is released as stored, so every detected direct identifier counts as exposed; a column the policy does not
    name is dropped. ``label`` / ``label_values``: the declared label column and label set; ``bounds`` / ``domains``:
    declared value bounds of numeric columns and value lists; ``audit_sample``: key → true label, keyed by
    ``key_column``; ``diversity_column``: the column whose entropy measures diversity (default: the label);
    ``as_of``: declared data date, used when no date / timestamp column has values; ``reference_rows``: the size
    at which scale reaches 1; ``half_life_days``: timeliness halves every this many days of age;
    ``policy_version``: recorded as the report's ``policy_version`` (default: the policy's SHA-256, see
    :class:`QualityReport`). Invalid combinations raise :class:`QualityError` ``invalid_quality_inputs``.
    """

    manifest: Mapping[str, Any]
    schema: pa.Schema
    dataset_sha256: str
    today: dt.date
    findings: Sequence[Any] = ()
    policy: Mapping[str, Any] | None = None
    label: str | None = None
    label_values: Sequence[Any] | None = None
    bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    domains: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    audit_sample: Mapping[Any, Any] | None = None
    key_column: str | None = None
    diversity_column: str | None = None
    as_of: dt.date | None = None
    reference_rows: int = 100_000
    half_life_days: float = 365.0
    policy_version: str | None = None

    def __post_init__(self) -> None:
        names = set(self.schema.names)
        for column in (self.label, self.key_column, self.diversity_column):
            if column is not None and column not in names:
                raise QualityError("a declared quality column is not in the schema")
        if self.label_values is not None and (self.label is None or not len(self.label_values)):
            raise QualityError("a label set needs a declared label and at least one value")
        for column, pair in self.bounds.items():
            if column not in names or not _numeric(self.schema.field(column).type):
                raise QualityError("bounds name a column that is not numeric")
            if len(pair) != 2 or not all(math.isfinite(v) for v in pair) or pair[0] > pair[1]:
                raise QualityError("bounds are (low, high) with finite low <= high")
        if any(c not in names or not len(v) for c, v in self.domains.items()):
            raise QualityError("domains map schema columns to non-empty value lists")
        if self.audit_sample is not None and (self.key_column is None or self.label is None):
            raise QualityError("an audit sample needs a key column and a label")
        if self.reference_rows < 1 or not self.half_life_days > 0 or not isinstance(self.today, dt.date):
            raise QualityError("reference_rows >= 1, half_life_days > 0 and today a date")

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any], schema: pa.Schema, *, dataset_sha256: str,
                      today: dt.date, findings: Sequence[Any] = (), policy: Mapping[str, Any] | None = None,
                      audit_sample: Mapping[Any, Any] | None = None,
                      policy_version: str | None = None) -> QualityInputs:
        """Inputs from the manifest's ``quality`` and ``privacy`` objects (module docstring)."""
        q = manifest.get("quality", {})
        privacy = manifest.get("privacy", {})
        if not isinstance(q, Mapping) or not isinstance(privacy, Mapping):
            raise QualityError("manifest 'quality' and 'privacy' are objects", "invalid_quality_declaration")
        try:
            as_of = dt.date.fromisoformat(q["as_of"]) if q.get("as_of") is not None else None
            bounds = {str(c): (float(p[0]), float(p[1])) for c, p in dict(privacy.get("bounds", {})).items()}
            domains = {str(c): list(v) for c, v in dict(privacy.get("domains", {})).items()}
            return cls(manifest, schema, dataset_sha256, today, findings, policy, q.get("label"),
                       list(q["label_values"]) if q.get("label_values") is not None else None, bounds, domains,
                       audit_sample, q.get("key_column"), q.get("diversity_column"), as_of,
                       int(q.get("reference_rows", 100_000)), float(q.get("half_life_days", 365.0)), policy_version)
        except QualityError as exc:
            raise QualityError(str(exc), "invalid_quality_declaration") from exc
        except (TypeError, ValueError, IndexError, KeyError) as exc:
            raise QualityError("manifest 'quality' declarations are malformed", "invalid_quality_declaration") from exc


def _numeric(type_: pa.DataType) -> bool:
    return bool(pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_decimal(type_))


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)


def _text(value: Any) -> float:
    """1 for a non-empty string or a non-empty list of them (or an object with a non-empty string field), else 0."""
    if isinstance(value, str):
        return float(bool(value.strip()))
    if isinstance(value, list):
        return float(bool(value) and all(isinstance(v, str) and v.strip() for v in value))
    if isinstance(value, Mapping):
        return float(any(isinstance(v, str) and v.strip() for v in value.values()))
    return 0.0


def _items(name: str, checks: Mapping[str, float]) -> Metric:
    missing = sorted(k for k, v in checks.items() if v < 1)
    return _ratio(name, sum(checks.values()), len(checks), "items", missing=missing)


def _documentation(m: Mapping[str, Any], schema: pa.Schema) -> tuple[Metric, ...]:
    prov, described = _object(m, "provenance"), _object(m, "columns")
    coverage = sum(_text(described.get(n)) for n in schema.names) / max(len(schema.names), 1)
    return (
        _items("basic_info", {k: _text(m.get(k)) for k in ("title", "description", "contact", "license_text")}),
        _items("content_features", {"tags": _text(m.get("tags")), "columns": coverage}),
        _items("construction_process", {"source": _text(prov.get("source")), "time_span": _span(prov),
                                        "collection_method": _text(prov.get("collection_method")),
                                        "processing": _text(prov.get("processing"))}),
        _items("application_notes", {k: _text(m.get(k)) for k in ("intended_uses", "limitations")}),
    )


def _identifiers(inputs: QualityInputs) -> tuple[list[str], list[str]]:
    """Direct identifiers (detected, or declared by the policy), and those the release policy lets out in clear."""
    rules = {str(_get(r, "column")): r for r in (inputs.policy or {}).get("columns", [])}
    direct = {str(_get(f, "column")) for f in inputs.findings if _get(f, "role") == "direct_identifier"}
    direct |= {c for c, r in rules.items() if _get(r, "role") == "direct_identifier"}
    exposed = [c for c in sorted(direct) if inputs.policy is None
               or (c in rules and _get(rules[c], "transform") not in _HIDES_IDENTITY)]
    return sorted(direct), exposed


def _span(prov: Mapping[str, Any]) -> float:
    span = prov.get("time_span")
    return _text(span.get("start")) * _text(span.get("end")) if isinstance(span, Mapping) else _text(span)


def _object(manifest: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = manifest.get(key)
    return value if isinstance(value, Mapping) else {}


def _data_quality(p: Profile, inputs: QualityInputs) -> tuple[Metric, ...]:
    licence = _text(inputs.manifest.get("license_text"))
    direct, exposed = _identifiers(inputs)
    compliance_detail = {"exposed_identifiers": exposed, "licence_text": bool(licence)}
    if p.rows == 0:
        return tuple(_skip(n, _EMPTY, detail=compliance_detail if n == "compliance" else None) for n in (
            "format", "compliance", "annotation_conformance", "completeness", "traceability", "consistency",
            "type_consistency", "cleanliness"))
    if inputs.label is None:
        annotation = _skip("annotation_conformance", "no label declared")
    elif inputs.label_values is None:
        annotation = _skip("annotation_conformance", "no label set declared")
    else:
        annotation = _ratio("annotation_conformance", p.label_conforming, p.rows, "rows")
    prov = _object(inputs.manifest, "provenance")
    source_hash = prov.get("source_sha256")
    trace = {"source": _text(prov.get("source")), "time_span": _span(prov),
             "source_sha256": float(isinstance(source_hash, str) and bool(_SHA256.match(source_hash))),
             "dataset_sha256": float(bool(_SHA256.match(inputs.dataset_sha256)))}
    declared = {**p.bounds, **p.domains}
    n_checked = sum(n for n, _ in declared.values())
    if not declared:
        consistency = _skip("consistency", "no declared bounds or domains", unit="values")
    elif n_checked == 0:
        consistency = _skip("consistency", "declared columns hold no values", unit="values")
    else:
        outside = {c: n - k for c, (n, k) in declared.items() if n > k}
        consistency = _ratio("consistency", sum(k for _, k in declared.values()), n_checked, "values",
                             outside=outside)
    examined = [c for c in p.columns if c.type_consistent is not None]
    types = _ratio("type_consistency", sum(1 for c in examined if c.type_consistent), len(examined), "columns",
                   stored_as_text=[c.name for c in examined if not c.type_consistent]) if examined \
        else _skip("type_consistency", "no column holds a value", unit="columns")
    return (
        _ratio("format", sum(c.supported for c in p.columns), len(p.columns), "columns",
               unsupported=[c.name for c in p.columns if not c.supported]),
        _ratio("compliance", len(direct) - len(exposed) + licence, len(direct) + 1, "checks", **compliance_detail),
        annotation,
        _ratio("completeness", sum(c.non_null for c in p.columns), p.rows * len(p.columns), "cells"),
        _items("traceability", trace),
        consistency,
        types,
        _ratio("cleanliness", p.normalized_distinct, p.rows, "rows", exact_duplicates=p.rows - p.exact_distinct,
               near_duplicates=p.exact_distinct - p.normalized_distinct),
    )


def _diversity(p: Profile, inputs: QualityInputs) -> Metric:
    """Normalized Shannon entropy H / ln K of the diversity column over the sample; K = the declared label set's
    size when the column is the label (at least the values seen), else the distinct values seen."""
    column = inputs.diversity_column or inputs.label
    if column is None:
        return _skip("diversity", "no label or diversity column declared")
    values = pc.drop_null(p.sample[column])
    if len(values) == 0:
        return _skip("diversity", "the column holds no values in the sample")
    counts = np.asarray(pc.value_counts(values).field("counts"), dtype=np.float64)
    k = len(counts)
    if column == inputs.label and inputs.label_values is not None:
        k = max(k, len(inputs.label_values))
    freq = counts / counts.sum()
    entropy = float(-(freq * np.log(freq)).sum())
    value = min(1.0, entropy / math.log(k)) if k > 1 else 0.0
    return Metric("diversity", value, len(values), "rows", None, None, {"column": column, "classes": k})


def _timeliness(p: Profile, inputs: QualityInputs) -> Metric:
    """0.5^(age / half-life), age = days from the newest date value (else the declared ``as_of``) to ``today``;
    a date after ``today`` counts as age 0."""
    newest, basis, unit = (p.newest, p.dated, "values") if p.newest is not None else (inputs.as_of, 1, "declaration")
    if newest is None:
        return _skip("timeliness", "no date or timestamp values and no declared as_of", unit="values")
    age = max(0, (inputs.today - newest).days)
    return Metric("timeliness", 0.5 ** (age / inputs.half_life_days), basis, unit, None, None,
                  {"newest": newest.isoformat(), "age_days": age})


def _model_application(p: Profile, inputs: QualityInputs, features: list[str]) -> tuple[Metric, ...]:
    names = ("diversity", "scale", "timeliness", "label_accuracy", "model_fit")
    if p.rows == 0:
        return tuple(_skip(n, _EMPTY) for n in names)
    scale = Metric("scale", min(1.0, math.log1p(p.rows) / math.log1p(inputs.reference_rows)), p.rows, "rows",
                   None, None, {"reference_rows": inputs.reference_rows})
    found, agreed = p.audit
    if inputs.audit_sample is None:
        accuracy = _skip("label_accuracy", "no audit sample supplied")
    elif found == 0:
        accuracy = _skip("label_accuracy", "no audited key occurs in the data")
    else:
        accuracy = _ratio("label_accuracy", agreed, found, "audited rows")
    if inputs.label is None:
        fit = _skip("model_fit", "no label declared")
    elif not features:
        fit = _skip("model_fit", "no numeric feature column")
    else:
        result = baseline_fit(p.sample, inputs.label, features, p.sample_keys)
        fit = _skip("model_fit", result.reason) if result.reason is not None else Metric(
            "model_fit", result.lift, result.test_rows, "test rows", None, None,
            {"balanced_accuracy": result.balanced_accuracy, "accuracy": result.accuracy,
             "majority_accuracy": result.majority_accuracy, "classes": result.classes, "features": features})
    return _diversity(p, inputs), scale, _timeliness(p, inputs), accuracy, fit


def _json_values(values: Sequence[Any] | None) -> list[Any] | None:
    """Declared values as plain JSON scalars (numpy scalars included), for the report's params."""
    if values is None:
        return None
    try:
        return list(pa.array(list(values)).to_pylist())
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return [str(v) for v in values]


def _features(inputs: QualityInputs, direct: Sequence[str]) -> list[str]:
    """Numeric and boolean columns other than the label, the audit key and direct identifiers (at most 64)."""
    skip = {inputs.label, inputs.key_column, *direct}
    return [f.name for f in inputs.schema if f.name not in skip
            and (_numeric(f.type) or pa.types.is_boolean(f.type))][:64]


def assess(batches: Iterable[pa.RecordBatch], inputs: QualityInputs, *,
           progress: Callable[[int], None] | None = None, sample_rows: int = 20_000, seed: int = 0) -> QualityReport:
    """Grade a dataset from one pass over ``batches`` (consumed once, one batch held at a time; every batch must
    have ``inputs.schema``). ``progress(rows_done)`` is called after each batch. The report is the same whatever
    the batch sizes. Raises :class:`QualityError` (``invalid_quality_inputs``, ``schema_mismatch``)."""
    if sample_rows < 1:
        raise QualityError("sample_rows must be at least 1")
    direct, exposed = _identifiers(inputs)
    features = _features(inputs, direct) if inputs.label is not None else []
    sampled = list(dict.fromkeys(c for c in (inputs.label, inputs.diversity_column, *features) if c is not None))
    try:
        profiler = Profiler(
            inputs.schema, label=inputs.label, label_values=inputs.label_values, bounds=inputs.bounds,
            domains=inputs.domains, sample_columns=sampled, sample_rows=sample_rows, seed=seed,
            audit=(inputs.audit_sample, inputs.key_column) if inputs.audit_sample is not None
            and inputs.key_column is not None else None)
    except ValueError as exc:
        raise QualityError("declared values do not fit their column types") from exc
    for batch in batches:
        try:
            profiler.update(batch)
        except ValueError as exc:
            raise QualityError("a record batch does not match the dataset schema", "schema_mismatch") from exc
        if progress is not None:
            progress(profiler.rows)
    p = profiler.finish()
    model = _model_application(p, inputs, features)
    dimensions = (
        Dimension("documentation", DIMENSION_WEIGHTS["documentation"], _documentation(inputs.manifest, inputs.schema)),
        Dimension("data_quality", DIMENSION_WEIGHTS["data_quality"], _data_quality(p, inputs)),
        Dimension("model_application", DIMENSION_WEIGHTS["model_application"], model),
    )
    licence = _text(inputs.manifest.get("license_text"))
    gates = tuple(code for code, hit in (
        ("empty_dataset", p.rows == 0), ("compliance_failure", bool(exposed) or not licence),
        ("no_model_evidence", not any(m.assessed for m in model if m.name in ("label_accuracy", "model_fit"))),
    ) if hit)
    score, grade = combine(dimensions, gates)
    policy_version = inputs.policy_version or (
        hashlib.sha256(canonical_json(dict(inputs.policy))).hexdigest() if inputs.policy is not None else "none")
    params = {"assessed_on": inputs.today.isoformat(), "reference_rows": inputs.reference_rows,
              "half_life_days": inputs.half_life_days, "sample_rows": sample_rows, "seed": seed,
              "label": inputs.label, "label_values": _json_values(inputs.label_values),
              "as_of": inputs.as_of.isoformat() if inputs.as_of else None,
              "bounds": {c: [lo, hi] for c, (lo, hi) in inputs.bounds.items()},
              "domain_sizes": {c: len(v) for c, v in inputs.domains.items()}, "key_column": inputs.key_column,
              "diversity_column": inputs.diversity_column,
              "audit_rows": len(inputs.audit_sample) if inputs.audit_sample is not None else None}
    return QualityReport(inputs.dataset_sha256, policy_version, p.rows, dimensions, score, grade, grade != "E",
                         gates, params)
