"""The ``aggregate`` and ``model`` commands of the Flight data plane (docs/PROTOCOL.md), and the dispatch of any
command to its mode. ε and δ are parsed exactly into budget units (``privacy.budget``) here, before anything is
charged or read: an invalid ε (negative, zero, NaN, infinite, not a number) is refused with nothing charged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from node.errors import InvalidArgument
from node.query import Filter, RowsCommand, command_object, parse_filters, parse_identifier
from privacy.budget import BudgetError, delta_value, parse_delta, parse_epsilon

__all__ = ["AGGREGATE_OPS", "AggregateCommand", "Command", "TrainCommand", "parse_command"]

AGGREGATE_OPS = ("count", "sum", "mean", "histogram")
_MAX_GROUP_BY = 4
_MAX_FEATURES = 64


def _budget(obj: dict[str, Any]) -> tuple[int, float]:
    try:
        epsilon = int(parse_epsilon(obj.get("epsilon")))
        delta = delta_value(parse_delta(obj["delta"])) if obj.get("delta") is not None else 0.0
    except BudgetError as exc:
        raise InvalidArgument(str(exc), code=exc.code) from exc
    return epsilon, delta


def _names(value: Any, what: str, limit: int) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > limit or not all(isinstance(v, str) and v for v in value) \
            or len(set(value)) != len(value):
        raise InvalidArgument(f"'{what}' must be a list of at most {limit} distinct column names",
                              code="invalid_command")
    return tuple(value)


def _keys(obj: dict[str, Any], allowed: set[str], what: str = "the command") -> None:
    if not set(obj) <= allowed:
        raise InvalidArgument(f"{what} has unknown keys", code="invalid_command")
    if obj.get("version", 1) != 1:
        raise InvalidArgument("unsupported command version", code="invalid_command")


@dataclass(frozen=True, slots=True)
class AggregateCommand:
    """``{"license", "dataset", "aggregate": {"op", "column"?, "group_by"?}, "where"?, "epsilon", "delta"?}``."""

    license: str
    dataset: str
    op: str
    column: str | None
    group_by: tuple[str, ...]
    where: tuple[Filter, ...]
    epsilon: int
    delta: float
    mode = "aggregate"

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> AggregateCommand:
        _keys(obj, {"license", "dataset", "aggregate", "where", "epsilon", "delta", "version"})
        agg = obj["aggregate"]
        if not isinstance(agg, dict):
            raise InvalidArgument("'aggregate' must be an object", code="invalid_command")
        _keys(agg, {"op", "column", "group_by"}, "'aggregate'")
        op = agg.get("op")
        if op not in AGGREGATE_OPS:
            raise InvalidArgument(f"aggregate 'op' must be one of {', '.join(AGGREGATE_OPS)}",
                                  code="invalid_command")
        column = agg.get("column")
        if op == "count":
            if column is not None:
                raise InvalidArgument("count takes no column", code="invalid_command")
        elif not isinstance(column, str) or not column:
            raise InvalidArgument(f"{op} needs a 'column'", code="invalid_command")
        epsilon, delta = _budget(obj)
        return cls(parse_identifier(obj.get("license"), "license"), parse_identifier(obj.get("dataset"), "dataset"),
                   op, column, _names(agg.get("group_by"), "group_by", _MAX_GROUP_BY),
                   parse_filters(obj.get("where")), epsilon, delta)

    def columns(self) -> set[str]:
        return {*self.group_by, *(f.column for f in self.where), *((self.column,) if self.column else ())}


@dataclass(frozen=True, slots=True)
class TrainCommand:
    """``{"license", "dataset", "train": {"features", "label", "epochs"?, "model"?}, "epsilon", "delta"}``."""

    license: str
    dataset: str
    features: tuple[str, ...]
    label: str
    epochs: int
    model: str
    epsilon: int
    delta: float
    mode = "model"

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> TrainCommand:
        _keys(obj, {"license", "dataset", "train", "epsilon", "delta", "version"})
        train = obj["train"]
        if not isinstance(train, dict):
            raise InvalidArgument("'train' must be an object", code="invalid_command")
        _keys(train, {"features", "label", "epochs", "model"}, "'train'")
        features = _names(train.get("features"), "features", _MAX_FEATURES)
        label = train.get("label")
        epochs = train.get("epochs", 5)
        model = train.get("model", "logreg")
        if not features or not isinstance(label, str) or not label or label in features:
            raise InvalidArgument("train needs 'features' and a distinct 'label' column", code="invalid_command")
        if isinstance(epochs, bool) or not isinstance(epochs, int) or not 1 <= epochs <= 50:
            raise InvalidArgument("'epochs' must be an integer 1-50", code="invalid_command")
        if model not in ("logreg", "mlp"):
            raise InvalidArgument("'model' must be logreg or mlp", code="invalid_command")
        if obj.get("delta") is None:
            raise InvalidArgument("model training needs a 'delta'", code="invalid_delta")
        epsilon, delta = _budget(obj)
        return cls(parse_identifier(obj.get("license"), "license"), parse_identifier(obj.get("dataset"), "dataset"),
                   features, label, epochs, model, epsilon, delta)

    def columns(self) -> set[str]:
        return {*self.features, self.label}


Command = RowsCommand | AggregateCommand | TrainCommand


def parse_command(raw: bytes) -> Command:
    """Decode a ticket or descriptor command; its keys decide its mode (``aggregate`` / ``train`` / rows)."""
    obj = command_object(raw)
    if "aggregate" in obj:
        return AggregateCommand.from_object(obj)
    if "train" in obj:
        return TrainCommand.from_object(obj)
    return RowsCommand.from_object(obj)
