"""Wire value types of the control plane: dataset manifests and licence requests (see docs/PROTOCOL.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ledger import CanonicalError, canonical_json
from node.errors import InvalidArgument

__all__ = ["MODES", "LicenseRequest", "Manifest"]

MODES = ("rows", "aggregate", "model")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_MAX_TEXT = 20_000
_MAX_TERMS_BYTES = 8192


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
        return cls(obj["dataset"], obj["buyer"], mode, columns, expires_at, terms)


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
