"""k-anonymity: enforcement by suppression, an independent check, re-identification risk and information loss.

An *equivalence class* is the set of rows sharing one combination of quasi-identifier values (a null is a value of
its own). A table is k-anonymous when every class has at least ``k`` rows; then an attacker who knows a person's
quasi-identifiers can narrow them down to no fewer than ``k`` rows (prosecutor risk ≤ 1/k).

:func:`suppress` and :func:`check` deliberately share no code: suppression counts classes on dense integer codes
(dictionary indices folded into one key, counted by hash), the check groups the raw values with Arrow's grouper.
A release is streamed only when :func:`check` agrees, so a bug in one of them cannot leak on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["KReport", "Risk", "check", "risk", "suppress"]


def _codes(column: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, int]:
    """Dense int64 codes of a column (null → its own code) and the number of codes."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    encoded = pc.dictionary_encode(column)
    n = len(encoded.dictionary)
    return pc.fill_null(pc.cast(encoded.indices, pa.int64()), n), n + 1


def _class_sizes(table: pa.Table, qi: Sequence[str]) -> pa.Array:
    """For every row, the size of its equivalence class."""
    if not qi:
        return pa.array([table.num_rows] * table.num_rows, pa.int64())
    key, _ = _codes(table[qi[0]])
    for name in qi[1:]:
        codes, width = _codes(table[name])
        key, _ = _codes(pc.add(pc.multiply(key, width), codes))  # re-densify: the key stays below rows × width
    counts = pc.value_counts(key)
    values, sizes = counts.field("values"), counts.field("counts")
    return pc.take(sizes, pc.index_in(key, values))


def suppress(table: pa.Table, qi: Sequence[str], k: int) -> tuple[pa.Table, int]:
    """Drop the rows of classes smaller than ``k``; returns the kept rows (in order) and how many were dropped."""
    if table.num_rows == 0:
        return table, 0
    keep = pc.greater_equal(_class_sizes(table, qi), k)
    kept = table.filter(keep)
    return kept, table.num_rows - kept.num_rows


@dataclass(frozen=True, slots=True)
class KReport:
    rows: int
    classes: int
    smallest: int          # rows in the smallest class (0 for an empty table)
    violating_classes: int  # classes with fewer than k rows
    k: int

    @property
    def ok(self) -> bool:
        return self.violating_classes == 0


def check(table: pa.Table, qi: Sequence[str], k: int) -> KReport:
    """Independent k-anonymity check of a release (see the module docstring). An empty table passes."""
    if table.num_rows == 0:
        return KReport(0, 0, 0, 0, k)
    if not qi:
        n = table.num_rows
        return KReport(n, 1, n, int(n < k), k)
    grouped = table.select(list(qi)).group_by(list(qi)).aggregate([([], "count_all")])
    sizes = grouped["count_all"]
    smallest = pc.min(sizes).as_py()
    violating = pc.sum(pc.less(sizes, k).cast(pa.int64())).as_py() or 0
    return KReport(table.num_rows, grouped.num_rows, int(smallest), int(violating), k)


@dataclass(frozen=True, slots=True)
class Risk:
    """Re-identification risk of a release under the prosecutor model (the attacker knows the target is in it)
    and the marketer model (the attacker links everyone it can)."""

    prosecutor_max: float   # 1 / smallest class
    prosecutor_avg: float   # mean over rows of 1 / class size (= classes / rows)
    marketer: float         # expected fraction of rows re-identified by linking everyone (= classes / rows)
    records_at_risk: float  # fraction of rows whose 1 / class size exceeds ``threshold``
    threshold: float


def risk(table: pa.Table, qi: Sequence[str], threshold: float = 0.2) -> Risk:
    if table.num_rows == 0:
        return Risk(0.0, 0.0, 0.0, 0.0, threshold)
    sizes = _class_sizes(table, qi)
    n = table.num_rows
    inverse = pc.divide(pa.scalar(1.0), pc.cast(sizes, pa.float64()))
    classes = float(pc.sum(inverse).as_py())  # each class of size f contributes f × 1/f = 1
    at_risk = pc.sum(pc.greater(inverse, threshold).cast(pa.int64())).as_py() or 0
    return Risk(float(pc.max(inverse).as_py()), classes / n, classes / n, at_risk / n, threshold)
