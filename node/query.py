"""The ``rows`` command of the Flight data plane (docs/PROTOCOL.md): parsing, validation and scan planning.

Filters are typed against the dataset schema and compiled to Arrow compute expressions; no part of a command is
ever placed into SQL or any other query text, so there is nothing to inject into.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from node.errors import InvalidArgument, PermissionDenied

__all__ = ["OPS", "Filter", "RowsCommand", "ScanPlan", "command_object", "filter_expression", "parse_filters",
           "parse_identifier", "plan_rows"]

OPS = ("=", "!=", "<", "<=", ">", ">=", "in")
_MAX_COMMAND_BYTES = 64 * 1024
_MAX_FILTERS = 64
_MAX_IN_VALUES = 10_000
_ID_MAX = 64


@dataclass(frozen=True, slots=True)
class Filter:
    column: str
    op: str
    value: Any


@dataclass(frozen=True, slots=True)
class RowsCommand:
    """``{"license": L, "dataset": D, "columns": [..], "where": [[col, op, value], ..], "limit": n}``."""

    license: str
    dataset: str
    columns: tuple[str, ...] | None = None
    where: tuple[Filter, ...] = ()
    limit: int | None = None
    version: int = 1

    mode = "rows"

    @classmethod
    def from_json(cls, raw: bytes) -> RowsCommand:
        return cls.from_object(command_object(raw))

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> RowsCommand:
        unknown = set(obj) - {"license", "dataset", "columns", "where", "limit", "version"}
        if unknown:
            raise InvalidArgument("the command has unknown keys", code="invalid_command")
        if obj.get("version", 1) != 1:
            raise InvalidArgument("unsupported command version", code="invalid_command")
        return cls(
            license=_identifier(obj.get("license"), "license"),
            dataset=_identifier(obj.get("dataset"), "dataset"),
            columns=_columns(obj.get("columns")),
            where=_filters(obj.get("where")),
            limit=_limit(obj.get("limit")),
        )

    def to_json(self) -> bytes:
        body: dict[str, Any] = {"license": self.license, "dataset": self.dataset}
        if self.columns is not None:
            body["columns"] = list(self.columns)
        if self.where:
            body["where"] = [[f.column, f.op, f.value] for f in self.where]
        if self.limit is not None:
            body["limit"] = self.limit
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def command_object(raw: bytes) -> dict[str, Any]:
    """Decode a command: a UTF-8 JSON object of at most 64 KiB (``NaN``/``Infinity`` tokens parse to a value
    no validator accepts)."""
    if len(raw) > _MAX_COMMAND_BYTES:
        raise InvalidArgument("the command is too large", code="invalid_command")
    try:
        obj = json.loads(raw.decode("utf-8"), parse_constant=_non_finite)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgument("the command must be a UTF-8 JSON object", code="invalid_command") from exc
    if not isinstance(obj, dict):
        raise InvalidArgument("the command must be a UTF-8 JSON object", code="invalid_command")
    return obj


def parse_filters(value: Any) -> tuple[Filter, ...]:
    return _filters(value)


def parse_identifier(value: Any, what: str) -> str:
    return _identifier(value, what)


def filter_expression(filters: tuple[Filter, ...], schema: pa.Schema, allowed: set[str]) -> pc.Expression | None:
    """The conjunction of ``filters`` typed against ``schema``; a filter on a column outside ``allowed`` is
    ``column_not_licensed`` (or ``unknown_column`` when the schema lacks it)."""
    expr: pc.Expression | None = None
    for f in filters:
        if f.column not in schema.names:
            raise InvalidArgument("the command names a column the dataset does not have", code="unknown_column")
        if f.column not in allowed:
            raise PermissionDenied("the licence does not cover a requested column", code="column_not_licensed")
        term = _compile(f, schema.field(f.column).type)
        expr = term if expr is None else expr & term
    return expr


@dataclass(frozen=True, slots=True)
class ScanPlan:
    columns: list[str]
    filter: pc.Expression | None
    limit: int | None
    schema: pa.Schema


def plan_rows(
    command: RowsCommand, schema: pa.Schema, licensed: tuple[str, ...] | None, max_rows: int = 0
) -> ScanPlan:
    """Check a command against the dataset schema and the licence's columns and build the scan.

    Unknown columns are ``unknown_column`` (400); known columns the licence does not cover are
    ``column_not_licensed`` (403), also when they appear only in a filter. ``max_rows`` > 0 caps the limit.
    """
    allowed = set(schema.names if licensed is None else licensed) & set(schema.names)
    columns = list(command.columns) if command.columns is not None else [n for n in schema.names if n in allowed]
    for name in [*columns, *(f.column for f in command.where)]:
        if name not in schema.names:
            raise InvalidArgument("the command names a column the dataset does not have", code="unknown_column")
        if name not in allowed:
            raise PermissionDenied("the licence does not cover a requested column", code="column_not_licensed")
    if len(set(columns)) != len(columns):
        raise InvalidArgument("columns must not repeat", code="invalid_command")
    expr: pc.Expression | None = None
    for f in command.where:
        term = _compile(f, schema.field(f.column).type)
        expr = term if expr is None else expr & term
    limit = command.limit
    if max_rows:
        limit = max_rows if limit is None else min(limit, max_rows)
    return ScanPlan(columns, expr, limit, pa.schema([schema.field(c) for c in columns]))


def _compile(f: Filter, typ: pa.DataType) -> pc.Expression:
    field = pc.field(f.column)
    if f.op == "in":
        if not isinstance(f.value, list) or not f.value or len(f.value) > _MAX_IN_VALUES:
            raise InvalidArgument(
                f"'in' takes a non-empty list of at most {_MAX_IN_VALUES} values", code="invalid_filter"
            )
        values = _convert(lambda: pa.array([_typed(v, typ) for v in f.value], type=typ))
        return field.isin(values)
    value = _convert(lambda: pa.scalar(_typed(f.value, typ), type=typ))
    match f.op:
        case "=":
            return field == value
        case "!=":
            return field != value
        case "<":
            return field < value
        case "<=":
            return field <= value
        case ">":
            return field > value
        case ">=":
            return field >= value
    raise InvalidArgument("unknown filter operator", code="invalid_filter")


def _convert(build: Callable[[], Any]) -> Any:
    """Build an Arrow value; a value the column type cannot hold (decimal precision or scale, a nanosecond
    timestamp out of range, an integer too large for a float) is ``invalid_filter``, not an internal error."""
    try:
        return build()
    except (pa.ArrowException, OverflowError) as exc:
        raise InvalidArgument("a filter value does not fit its column's type", code="invalid_filter") from exc


def _typed(value: Any, typ: pa.DataType) -> Any:
    """Convert a JSON value to the column's Python type, refusing anything that is not exactly that type."""
    bad = InvalidArgument("a filter value does not match its column's type", code="invalid_filter")
    if value is None:
        raise bad
    if pa.types.is_boolean(typ):
        if isinstance(value, bool):
            return value
        raise bad
    if isinstance(value, bool):
        raise bad
    if pa.types.is_integer(typ):
        if not isinstance(value, int):
            raise bad
        info = _int_range(typ)
        if not info[0] <= value <= info[1]:
            raise bad
        return value
    if pa.types.is_floating(typ):
        if isinstance(value, int | float) and math.isfinite(value):
            return float(value)
        raise bad
    if pa.types.is_decimal(typ):
        if isinstance(value, int | float | str):
            try:
                return Decimal(str(value))
            except InvalidOperation as exc:
                raise bad from exc
        raise bad
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        if isinstance(value, str):
            return value
        raise bad
    if pa.types.is_date(typ):
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value)
            except ValueError as exc:
                raise bad from exc
        raise bad
    if pa.types.is_timestamp(typ):
        if isinstance(value, str):
            try:
                parsed = dt.datetime.fromisoformat(value)
            except ValueError as exc:
                raise bad from exc
            if typ.tz is not None and parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=dt.UTC)
            if typ.tz is None and parsed.tzinfo is not None:
                parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
            return parsed
        raise bad
    raise bad


def _int_range(typ: pa.DataType) -> tuple[int, int]:
    bits = typ.bit_width
    if pa.types.is_unsigned_integer(typ):
        return 0, (1 << bits) - 1
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


class _NonFinite:
    """What ``NaN`` / ``Infinity`` / ``-Infinity`` tokens parse to (they are not JSON, but ``json.dumps`` writes
    them): no validator accepts it, so as a filter value it is ``invalid_filter`` and elsewhere ``invalid_command``."""

    __slots__ = ()


def _non_finite(name: str) -> Any:
    return _NonFinite()


def _identifier(value: Any, what: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= _ID_MAX:
        raise InvalidArgument(f"'{what}' must be an id string", code="invalid_command")
    return value


def _columns(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(c, str) for c in value):
        raise InvalidArgument("'columns' must be a non-empty list of column names", code="invalid_command")
    return tuple(value)


def _filters(value: Any) -> tuple[Filter, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > _MAX_FILTERS:
        raise InvalidArgument(f"'where' must be a list of at most {_MAX_FILTERS} filters", code="invalid_filter")
    out = []
    for item in value:
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)):
            raise InvalidArgument("each filter is [column, op, value]", code="invalid_filter")
        if item[1] not in OPS:
            raise InvalidArgument(f"filter operators are {', '.join(OPS)}", code="invalid_filter")
        out.append(Filter(item[0], item[1], item[2]))
    return tuple(out)


def _limit(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgument("'limit' must be a non-negative integer", code="invalid_command")
    return value
