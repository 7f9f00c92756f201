"""Release policies: what each column becomes before a ``rows`` release leaves the node.

A policy gives every column a *role* (``direct_identifier``, ``quasi_identifier``, ``sensitive``, ``attribute``)
and a *transform* (``drop``, ``mask``, ``pseudonymize``, ``generalize``, ``keep``), plus ``k``: every combination of
quasi-identifier values in a release is shared by at least ``k`` rows. Invariants (checked by :meth:`validate`):

- a direct identifier never leaves in clear: its transform is ``drop``, ``mask`` or ``pseudonymize``;
- ``generalize`` carries a :class:`Generalization`, ``mask`` a :class:`Mask`;
- columns the policy does not name are dropped (fail closed), so a schema change never leaks a new column.

:func:`propose` builds a policy from PII findings; :func:`changes` compares a provider's policy with the proposal:
tightening is free, loosening a detected direct identifier needs a reason (the node records it on the ledger).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ROLES",
    "TRANSFORMS",
    "ColumnRule",
    "Generalization",
    "Loosening",
    "Mask",
    "PolicyError",
    "ReleasePolicy",
    "changes",
    "propose",
]

Role = Literal["direct_identifier", "quasi_identifier", "sensitive", "attribute"]
TransformName = Literal["drop", "mask", "pseudonymize", "generalize", "keep"]
ROLES: tuple[Role, ...] = ("direct_identifier", "quasi_identifier", "sensitive", "attribute")
TRANSFORMS: tuple[TransformName, ...] = ("drop", "mask", "pseudonymize", "generalize", "keep")
_HIDES_IDENTITY = frozenset({"drop", "mask", "pseudonymize"})
# How much of a value a transform lets through; a larger number releases more.
_OPENNESS = {"drop": 0, "pseudonymize": 1, "mask": 2, "generalize": 3, "keep": 4}
MAX_K = 1000


class PolicyError(ValueError):
    """A policy is malformed or breaks an invariant; ``code`` is stable."""

    def __init__(self, message: str, code: str = "invalid_policy") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Generalization:
    """``band``: numbers → ``[lo,hi)`` labels of ``width``; ``date``: dates/timestamps truncated to ``unit``
    (``year`` | ``month``); ``prefix``: strings cut to their first ``length`` characters (region codes, postcodes)."""

    kind: Literal["band", "date", "prefix"]
    width: float | None = None
    unit: Literal["year", "month"] | None = None
    length: int | None = None

    def validate(self) -> None:
        if self.kind == "band" and not (isinstance(self.width, (int, float)) and self.width > 0):
            raise PolicyError("a band generalization needs a positive width")
        if self.kind == "date" and self.unit not in ("year", "month"):
            raise PolicyError("a date generalization needs unit year or month")
        if self.kind == "prefix" and not (isinstance(self.length, int) and self.length > 0):
            raise PolicyError("a prefix generalization needs a positive length")
        if self.kind not in ("band", "date", "prefix"):
            raise PolicyError("generalization kind must be band, date or prefix")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        for name in ("width", "unit", "length"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out

    @classmethod
    def from_json(cls, obj: Any) -> Generalization:
        if not isinstance(obj, dict) or not set(obj) <= {"kind", "width", "unit", "length"}:
            raise PolicyError("a generalization is an object with kind and width | unit | length")
        g = cls(obj.get("kind"), obj.get("width"), obj.get("unit"), obj.get("length"))  # type: ignore[arg-type]
        g.validate()
        return g


@dataclass(frozen=True, slots=True)
class Mask:
    """Keep the first ``keep_first`` and last ``keep_last`` characters; every other character becomes ``*``."""

    keep_first: int = 0
    keep_last: int = 4

    def validate(self) -> None:
        for n in (self.keep_first, self.keep_last):
            if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= 8:
                raise PolicyError("mask keep_first / keep_last must be integers 0-8")

    def to_json(self) -> dict[str, Any]:
        return {"keep_first": self.keep_first, "keep_last": self.keep_last}

    @classmethod
    def from_json(cls, obj: Any) -> Mask:
        if not isinstance(obj, dict) or not set(obj) <= {"keep_first", "keep_last"}:
            raise PolicyError("a mask is an object with keep_first and keep_last")
        m = cls(obj.get("keep_first", 0), obj.get("keep_last", 4))
        m.validate()
        return m


@dataclass(frozen=True, slots=True)
class ColumnRule:
    column: str
    role: Role
    transform: TransformName
    generalization: Generalization | None = None
    mask: Mask | None = None
    detected: str | None = None  # the PII kind detection reported for this column, if any

    def validate(self) -> None:
        if self.role not in ROLES:
            raise PolicyError(f"role must be one of {', '.join(ROLES)}")
        if self.transform not in TRANSFORMS:
            raise PolicyError(f"transform must be one of {', '.join(TRANSFORMS)}")
        if self.role == "direct_identifier" and self.transform not in _HIDES_IDENTITY:
            raise PolicyError(f"direct identifier {self.column!r} must be dropped, masked or pseudonymized",
                              code="identifier_in_clear")
        if (self.transform == "generalize") != (self.generalization is not None):
            raise PolicyError("generalize, and only generalize, takes a generalization")
        if (self.transform == "mask") != (self.mask is not None):
            raise PolicyError("mask, and only mask, takes mask settings")
        if self.generalization is not None:
            self.generalization.validate()
        if self.mask is not None:
            self.mask.validate()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"column": self.column, "role": self.role, "transform": self.transform}
        if self.generalization is not None:
            out["generalization"] = self.generalization.to_json()
        if self.mask is not None:
            out["mask"] = self.mask.to_json()
        if self.detected is not None:
            out["detected"] = self.detected
        return out

    @classmethod
    def from_json(cls, obj: Any) -> ColumnRule:
        allowed = {"column", "role", "transform", "generalization", "mask", "detected"}
        if not isinstance(obj, dict) or not set(obj) <= allowed or not isinstance(obj.get("column"), str):
            raise PolicyError("a column rule is an object with column, role, transform")
        rule = cls(
            obj["column"], obj.get("role"), obj.get("transform"),  # type: ignore[arg-type]
            Generalization.from_json(obj["generalization"]) if obj.get("generalization") is not None else None,
            Mask.from_json(obj["mask"]) if obj.get("mask") is not None else None,
            obj.get("detected") if isinstance(obj.get("detected"), str) else None,
        )
        rule.validate()
        return rule


@dataclass(frozen=True, slots=True)
class ReleasePolicy:
    rules: tuple[ColumnRule, ...]
    k: int = 5
    version: int = 1
    _by_column: Mapping[str, ColumnRule] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_column", {r.column: r for r in self.rules})

    def validate(self, columns: Iterable[str] | None = None) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 2 <= self.k <= MAX_K:
            raise PolicyError(f"k must be an integer 2-{MAX_K}")
        if len(self._by_column) != len(self.rules):
            raise PolicyError("each column appears once in a policy")
        for rule in self.rules:
            rule.validate()
        if columns is not None:
            unknown = set(self._by_column) - set(columns)
            if unknown:
                raise PolicyError("the policy names a column the dataset does not have", code="unknown_column")

    def rule(self, column: str) -> ColumnRule | None:
        return self._by_column.get(column)

    @property
    def quasi_identifiers(self) -> tuple[str, ...]:
        return tuple(r.column for r in self.rules if r.role == "quasi_identifier" and r.transform != "drop")

    def released_columns(self, columns: Sequence[str]) -> list[str]:
        """The columns a release keeps, in dataset order."""
        return [c for c in columns if (r := self._by_column.get(c)) is not None and r.transform != "drop"]

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "k": self.k, "columns": [r.to_json() for r in self.rules]}

    @classmethod
    def from_json(cls, obj: Any) -> ReleasePolicy:
        if not isinstance(obj, dict) or not set(obj) <= {"version", "k", "columns"}:
            raise PolicyError("a release policy is an object with version, k, columns")
        if obj.get("version", 1) != 1:
            raise PolicyError("unsupported policy version")
        columns = obj.get("columns")
        if not isinstance(columns, list):
            raise PolicyError("policy columns must be a list of column rules")
        policy = cls(tuple(ColumnRule.from_json(c) for c in columns), obj.get("k", 5))
        policy.validate()
        return policy


# ---- proposal from detection ---------------------------------------------------------------------------------
_DIRECT_DEFAULTS: Mapping[str, tuple[TransformName, Mask | None]] = {
    "name": ("drop", None),
    "address": ("drop", None),
    "resident_id": ("pseudonymize", None),
    "residence_permit": ("pseudonymize", None),
    "email": ("pseudonymize", None),
    "uscc": ("pseudonymize", None),
    "plate": ("pseudonymize", None),
    "ip": ("pseudonymize", None),
    "mobile": ("mask", Mask(0, 4)),
    "bank_card": ("mask", Mask(0, 4)),
}
_QUASI_DEFAULTS: Mapping[str, Generalization | None] = {
    "age": Generalization("band", width=10),
    "birth_date": Generalization("date", unit="year"),
    "postcode": Generalization("prefix", length=3),
    "region": None,   # kept; suppression makes rare regions k-anonymous
    "gender": None,
}


def propose(columns: Sequence[tuple[str, str]], findings: Iterable[Any], k: int = 5) -> ReleasePolicy:
    """A policy for ``columns`` (``(name, arrow type string)`` pairs) from PII ``findings`` (objects with
    ``column``, ``kind``, ``role``): direct identifiers dropped, masked or pseudonymized, quasi-identifiers
    generalized (numeric bands for numbers, year for dates), everything else kept as an attribute."""
    found = {f.column: f for f in findings}
    rules = []
    for name, type_ in columns:
        f = found.get(name)
        if f is None:
            rules.append(ColumnRule(name, "attribute", "keep"))
        elif f.role == "direct_identifier":
            transform, mask = _DIRECT_DEFAULTS.get(f.kind, ("drop", None))
            rules.append(ColumnRule(name, "direct_identifier", transform, mask=mask, detected=f.kind))
        else:
            gen = _QUASI_DEFAULTS.get(f.kind)
            if gen is not None and gen.kind == "band" and not _numeric(type_):
                gen = None
            if gen is not None and gen.kind == "date" and not type_.startswith(("date", "timestamp")):
                gen = None
            rules.append(ColumnRule(name, "quasi_identifier", "generalize" if gen else "keep",
                                    generalization=gen, detected=f.kind))
    policy = ReleasePolicy(tuple(rules), k)
    policy.validate()
    return policy


def _numeric(type_: str) -> bool:
    return type_.startswith(("int", "uint", "float", "double", "decimal", "halffloat"))


@dataclass(frozen=True, slots=True)
class Loosening:
    column: str
    detected: str
    before: str
    after: str


def changes(proposed: ReleasePolicy, chosen: ReleasePolicy) -> list[Loosening]:
    """Where ``chosen`` releases more of a *detected direct identifier* than ``proposed``: its role was changed
    away from direct identifier, or its transform lets more through. Those need a recorded reason."""
    out = []
    for rule in proposed.rules:
        if rule.role != "direct_identifier":
            continue
        new = chosen.rule(rule.column)
        if new is None or new.transform == "drop":
            continue
        opened = _OPENNESS[new.transform] > _OPENNESS[rule.transform]
        if new.role != "direct_identifier" or opened or (new.mask is not None and rule.mask is not None and (
                new.mask.keep_first + new.mask.keep_last > rule.mask.keep_first + rule.mask.keep_last)):
            out.append(Loosening(rule.column, rule.detected or "", f"{rule.role}/{rule.transform}",
                                 f"{new.role}/{new.transform}"))
    return out

