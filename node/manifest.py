"""Wire value types of the control plane: dataset manifests and licence requests (see docs/PROTOCOL.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from ledger import CanonicalError, canonical_json
from node.errors import InvalidArgument
from privacy.budget import BudgetError, parse_epsilon
from privacy.policy import PolicyError, ReleasePolicy

__all__ = ["MODES", "LicenseRequest", "Manifest", "PrivacyDeclarations"]

MODES = ("rows", "aggregate", "model")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_MAX_TEXT = 20_000
_MAX_TERMS_BYTES = 8192
_DEFAULT_EPSILON_CAP = "10"
_MAX_DOMAIN = 10_000


def _text(obj: dict[str, Any], key: str, *, required: bool = False, limit: int = _MAX_TEXT) -> str:
    value = obj.get(key, "")
    if not isinstance(value, str) or len(value) > limit or (required and not value.strip()):
        need = "a non-empty string" if required else "a string"
        raise InvalidArgument(f"manifest '{key}' must be {need} of at most {limit} characters",
                              code="invalid_manifest")
    return value


def _str_list(obj: dict[str, Any], key: str, code: str) -> tuple[str, ...]:
    value = obj.get(key, [])
    if not isinstance(value, list) or len(value) > 200 or not all(isinstance(v, str) and v for v in value):
        raise InvalidArgument(f"'{key}' must be a list of non-empty strings", code=code)
    return tuple(value)


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a provider says about a dataset. ``name`` is a slug (``[a-z0-9][a-z0-9_-]{0,63}``): it is never used
    as a path, but keeping it a slug keeps catalogs and URLs clean."""

    name: str
    title: str
    description: str = ""
    license_text: str = ""
    tags: tuple[str, ...] = ()
    listed: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    version: int = 1

    @classmethod
    def from_json(cls, obj: Any) -> Manifest:
        if not isinstance(obj, dict):
            raise InvalidArgument("the manifest must be a JSON object", code="invalid_manifest")
        name = obj.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidArgument(
                "manifest 'name' must be 1-64 lowercase letters, digits, '-' or '_', starting with a letter or "
                "digit", code="invalid_manifest",
            )
        listed = obj.get("listed", True)
        if not isinstance(listed, bool):
            raise InvalidArgument("manifest 'listed' must be true or false", code="invalid_manifest")
        known = {"name", "title", "description", "license_text", "tags", "listed", "version"}
        return cls(
            name=name,
            title=_text(obj, "title", required=True, limit=300),
            description=_text(obj, "description"),
            license_text=_text(obj, "license_text"),
            tags=_str_list(obj, "tags", "invalid_manifest"),
            listed=listed,
            extra={k: v for k, v in obj.items() if k not in known},
        )

    def to_json(self) -> dict[str, Any]:
        return {
            **self.extra,
            "version": self.version,
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "license_text": self.license_text,
            "tags": list(self.tags),
            "listed": self.listed,
        }


@dataclass(frozen=True, slots=True)
class LicenseRequest:
    """A provider's grant: who may use which dataset, in which mode, on which columns, until when."""

    dataset: str
    buyer: str
    mode: str = "rows"
    columns: tuple[str, ...] | None = None
    expires_at: datetime | None = None
    terms: dict[str, Any] = field(default_factory=dict)
    epsilon: int | None = None  # ε budget in privacy.budget units; required for aggregate and model modes

    @classmethod
    def from_json(cls, obj: Any, now: datetime) -> LicenseRequest:
        if not isinstance(obj, dict):
            raise InvalidArgument("the licence request must be a JSON object", code="invalid_license")
        for key in ("dataset", "buyer"):
            if not isinstance(obj.get(key), str) or not obj[key]:
                raise InvalidArgument(f"'{key}' must be an id string", code="invalid_license")
        mode = obj.get("mode", "rows")
        if mode not in MODES:
            raise InvalidArgument(f"'mode' must be one of {', '.join(MODES)}", code="invalid_license")
        columns = None
        if obj.get("columns") is not None:
            columns = _str_list(obj, "columns", "invalid_license")
            if not columns or len(set(columns)) != len(columns):
                raise InvalidArgument("'columns' must be a non-empty list without repeats", code="invalid_license")
        expires_at = obj.get("expires_at")
        if expires_at is not None:
            expires_at = _parse_time(expires_at)
            if expires_at <= now:
                raise InvalidArgument("'expires_at' must be in the future", code="invalid_license")
        terms = obj.get("terms", {})
        if not isinstance(terms, dict):
            raise InvalidArgument("'terms' must be a JSON object", code="invalid_license")
        try:  # terms are recorded on the ledger, which takes plain JSON only
            encoded = canonical_json(terms)
        except CanonicalError as exc:
            raise InvalidArgument("'terms' must be plain JSON (integers within ±2^53, no NaN)",
                                  code="invalid_license") from exc
        if len(encoded) > _MAX_TERMS_BYTES:
            raise InvalidArgument("'terms' must be at most 8 KiB of JSON", code="invalid_license")
        epsilon = None
        if mode in ("aggregate", "model"):
            if obj.get("epsilon") is None:
                raise InvalidArgument(f"a licence in {mode} mode needs an 'epsilon' budget", code="invalid_license")
            epsilon = _epsilon(obj["epsilon"])
        elif obj.get("epsilon") is not None:
            raise InvalidArgument("only aggregate and model licences carry an 'epsilon' budget",
                                  code="invalid_license")
        return cls(obj["dataset"], obj["buyer"], mode, columns, expires_at, terms, epsilon)


def _epsilon(value: Any) -> int:
    try:
        return int(parse_epsilon(value))
    except BudgetError as exc:
        raise InvalidArgument(str(exc), code=exc.code) from exc


@dataclass(frozen=True, slots=True)
class PrivacyDeclarations:
    """The manifest's ``privacy`` object: what the provider declares for de-identification and DP.

    ``k`` (2-1000) for rows releases; ``unit``: the column identifying a person (DP privacy unit; default: one
    row), each contributing at most ``max_contributions`` rows; ``bounds``: clamp bounds of numeric columns (DP
    sums and means, model features); ``domains``: public value lists for group keys; ``epsilon_cap``: the
    dataset's global ε cap; ``policy``: a release policy replacing the proposed one; ``reasons``: why a detected
    direct identifier is released more openly than proposed (recorded on the ledger).
    """

    k: int = 5
    unit: str | None = None
    max_contributions: int = 1
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    domains: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    epsilon_cap: int = 0
    policy: ReleasePolicy | None = None
    reasons: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_manifest(cls, manifest: Manifest, schema: pa.Schema) -> PrivacyDeclarations:
        obj = manifest.extra.get("privacy", {})
        if not isinstance(obj, dict):
            raise InvalidArgument("manifest 'privacy' must be an object", code="invalid_manifest")
        known = {"k", "unit", "max_contributions", "bounds", "domains", "epsilon_cap", "policy", "reasons"}
        if not set(obj) <= known:
            raise InvalidArgument("manifest 'privacy' has unknown keys", code="invalid_manifest")
        names = set(schema.names)
        k = obj.get("k", 5)
        if isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= 1000:
            raise InvalidArgument("privacy 'k' must be an integer 2-1000", code="invalid_manifest")
        unit = obj.get("unit")
        if unit is not None and unit not in names:
            raise InvalidArgument("privacy 'unit' must name a column", code="invalid_manifest")
        max_contributions = obj.get("max_contributions", 1)
        if isinstance(max_contributions, bool) or not isinstance(max_contributions, int) \
                or not 1 <= max_contributions <= 1000:
            raise InvalidArgument("privacy 'max_contributions' must be an integer 1-1000", code="invalid_manifest")
        return cls(k, unit, max_contributions, _bounds(obj.get("bounds", {}), schema), _domains(
            obj.get("domains", {}), names), _epsilon(obj.get("epsilon_cap", _DEFAULT_EPSILON_CAP)),
            _policy(obj.get("policy"), names, k), _reasons(obj.get("reasons", {}), names))


def _bounds(obj: Any, schema: pa.Schema) -> dict[str, tuple[float, float]]:
    if not isinstance(obj, dict):
        raise InvalidArgument("privacy 'bounds' must map columns to [low, high]", code="invalid_manifest")
    out = {}
    for column, pair in obj.items():
        if column not in schema.names or not _numeric(schema.field(column).type):
            raise InvalidArgument("privacy 'bounds' names a column that is not numeric", code="invalid_manifest")
        if not (isinstance(pair, list) and len(pair) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) < 1e15 for v in pair)
                and pair[0] < pair[1]):
            raise InvalidArgument("privacy bounds are [low, high] with low < high, |value| < 1e15",
                                  code="invalid_manifest")
        out[column] = (float(pair[0]), float(pair[1]))
    return out


def _numeric(type_: pa.DataType) -> bool:
    return bool(pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_decimal(type_))


def _domains(obj: Any, names: set[str]) -> dict[str, tuple[Any, ...]]:
    if not isinstance(obj, dict):
        raise InvalidArgument("privacy 'domains' must map columns to value lists", code="invalid_manifest")
    out = {}
    for column, values in obj.items():
        if column not in names or not isinstance(values, list) or not 0 < len(values) <= _MAX_DOMAIN \
                or len(set(map(repr, values))) != len(values) \
                or not all(isinstance(v, (str, int, bool)) for v in values):
            raise InvalidArgument(f"privacy domains are lists of 1-{_MAX_DOMAIN} distinct strings or integers "
                                  "of a known column", code="invalid_manifest")
        out[column] = tuple(values)
    return out


def _policy(obj: Any, names: set[str], k: int) -> ReleasePolicy | None:
    if obj is None:
        return None
    try:
        policy = ReleasePolicy.from_json({**obj, "k": obj.get("k", k)} if isinstance(obj, dict) else obj)
        policy.validate(names)
    except PolicyError as exc:
        raise InvalidArgument(f"privacy 'policy': {exc}", code=exc.code) from exc
    return policy


def _reasons(obj: Any, names: set[str]) -> dict[str, str]:
    if not isinstance(obj, dict) or not all(
            c in names and isinstance(r, str) and 0 < len(r.strip()) <= 500 for c, r in obj.items()):
        raise InvalidArgument("privacy 'reasons' map columns to reasons of 1-500 characters",
                              code="invalid_manifest")
    return {c: r.strip() for c, r in obj.items()}


def _parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise InvalidArgument("times are ISO 8601 strings", code="invalid_license") from exc
    else:
        raise InvalidArgument("times are ISO 8601 strings", code="invalid_license")
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
