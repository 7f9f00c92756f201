"""Streaming dataset profile: one pass over Arrow record batches with bounded state, for the quality grade.

:class:`Profiler` consumes record batches one at a time (``update``) and never holds more than one batch, so a file
read with ``ParquetFile.iter_batches`` profiles out of core. Its state after ``n`` rows and ``c`` columns:

- O(c) counters: nulls per column, string columns' typed-value counters, bounds / domain / label / audit counts,
  the newest date;
- two ``uint64`` row hashes per row (exact and normalized rows): 16 bytes × ``n`` (160 MB at 10 M rows), sorted
  in place at :meth:`Profiler.finish` to count distinct rows;
- a fixed-size uniform sample of at most ``sample_rows`` rows of the sampled columns.

Everything is batch-size invariant: counters are sums, row hashes depend on the row only, and the sample keeps the
rows with the smallest keys ``splitmix64(row index ⊕ seed)``, a fixed-seed priority sample that does not depend on
how the rows were split into batches. :func:`row_hashes` is vectorized (numpy over the Arrow buffers): strings are
hashed by a polynomial over their UTF-8 bytes (mod 2^64) finished with splitmix64; numbers, dates and times by their
64-bit value; rows by folding column hashes in column order. 64-bit hashes collide with probability ≈ n²/2^65
(3·10⁻⁶ at 10 M rows), which could only make two distinct rows count as duplicates.

*Normalized* rows (near duplicates) compare strings after trimming, Unicode lower-casing (Arrow ``utf8_lower``, close
to casefolding) and collapsing whitespace runs to one space, with an empty string equal to null; floats rounded to 6
significant digits, −0.0 equal to 0.0. NaN counts as null everywhere (completeness, bounds).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["Baseline", "ColumnStats", "Profile", "Profiler", "baseline_fit", "row_hashes", "supported_type"]

U64 = npt.NDArray[np.uint64]
_U = np.uint64
_GOLDEN, _M1, _M2 = _U(0x9E3779B97F4A7C15), _U(0xBF58476D1CE4E5B9), _U(0x94D049BB133111EB)
_BASE = _U(0x100000001B3)  # odd polynomial base for string bytes (the FNV-1 64-bit prime)
_NULL = _U(0x5BD1E9955BD1E995)  # the hash of a null cell
# String columns: a value "looks typed" when it is a number or a date written as text.
_CANDIDATE = r"^[+\-.0-9]"
_NUMBER = r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+|\d{1,3}(?:,\d{3})+(?:\.\d+)?)(?:[eE][+-]?\d+)?$"
_DATE = (r"^\d{4}(?:[-/.]\d{1,2}[-/.]\d{1,2}(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:Z|[+-]\d{2}:?\d{2})?"
         r"|年\d{1,2}月\d{1,2}日)$")
_DIGITS = r"^\d+$"
_TYPED_SHARE = 0.05  # a string column is text when at most this share of its values look typed


def supported_type(type_: pa.DataType) -> bool:
    """The column types a dataset may hold (docs/PROTOCOL.md): integers, floats, decimals, strings, booleans,
    dates, timestamps (dictionary-encoded forms of those included)."""
    if pa.types.is_dictionary(type_):
        type_ = type_.value_type
    t = pa.types
    return bool(t.is_integer(type_) or t.is_floating(type_) or t.is_decimal(type_) or t.is_string(type_)
                or t.is_large_string(type_) or t.is_boolean(type_) or t.is_date(type_) or t.is_timestamp(type_))


def _mix(x: U64) -> U64:
    """splitmix64's finalizer, elementwise (uint64 arithmetic wraps mod 2^64 by design)."""
    z = x + _GOLDEN
    z = (z ^ (z >> _U(30))) * _M1
    z = (z ^ (z >> _U(27))) * _M2
    return z ^ (z >> _U(31))


_INVERSE = pow(int(_BASE), -1, 1 << 64)
_BLOCK = 4096  # powers BASE^j are built as BASE^(j mod 4096) × BASE^(4096 × (j div 4096)): small tables


def _powers(base: int, n: int, step: int = 1) -> U64:
    """base^(step·i) mod 2^64 for i < n."""
    table = np.full(max(n, 1), pow(base, step, 1 << 64), np.uint64)
    table[0] = 1
    return np.cumprod(table)


def _hash_bytes(arr: pa.Array) -> U64:
    """Per value of a string / binary array: Σ_j (byte_j + 1)·BASE^j mod 2^64 over its bytes, mixed with the
    length. Computed for all values at once from one prefix sum over the data buffer: the sum over a value's
    bytes at buffer positions [s, e) is BASE^s times its hash, and BASE is odd, hence invertible mod 2^64."""
    n = len(arr)
    large = pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)
    buffers = arr.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64 if large else np.int32, count=n + 1,
                            offset=arr.offset * (8 if large else 4)).astype(np.int64)
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.empty(0, np.uint8)
    data = data[offsets[0]:offsets[-1]]
    starts, ends = offsets[:-1] - offsets[0], offsets[1:] - offsets[0]
    blocks = -(-data.size // _BLOCK)
    terms = np.zeros(blocks * _BLOCK, np.uint64)
    terms[:data.size] = data
    terms[:data.size] += _U(1)
    terms = terms.reshape(blocks, _BLOCK) * _powers(int(_BASE), _BLOCK)
    terms *= _powers(int(_BASE), blocks, _BLOCK)[:, None]
    prefix = np.zeros(data.size + 1, np.uint64)
    np.cumsum(terms.ravel()[:data.size], out=prefix[1:])
    unshift = _powers(_INVERSE, _BLOCK)[starts % _BLOCK] * _powers(_INVERSE, blocks + 1, _BLOCK)[starts // _BLOCK]
    h = (prefix[ends] - prefix[starts]) * unshift
    return _mix(h ^ ((ends - starts).astype(np.uint64) * _M2))


def _round6(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    out = x.copy()
    ok = np.isfinite(out) & (out != 0)
    v = out[ok]
    scale = 10.0 ** (5 - np.clip(np.floor(np.log10(np.abs(v))), -290, 290))
    out[ok] = np.round(v * scale) / scale
    return out


def _hash_column(arr: pa.Array, normalized: bool) -> U64:
    """64-bit hash per cell of one column; nulls (and NaN) hash to ``_NULL``."""
    type_ = arr.type
    if pa.types.is_dictionary(type_):
        arr = arr.dictionary_decode()
        type_ = arr.type
    if pa.types.is_decimal(type_):
        arr, type_ = pc.cast(arr, pa.string()), pa.string()
    if normalized and (pa.types.is_string(type_) or pa.types.is_large_string(type_)):
        arr = pc.utf8_lower(pc.utf8_trim_whitespace(arr))
        if pc.any(pc.match_substring_regex(arr, r"\s\s|[\t\n\v\f\r]")).as_py():  # rare: skip the costly rewrite
            arr = pc.replace_substring_regex(arr, r"\s+", " ")
        arr = pc.if_else(pc.equal(pc.utf8_length(arr), 0), pa.scalar(None, arr.type), arr)
    if pa.types.is_string(type_) or pa.types.is_large_string(type_) or pa.types.is_binary(type_) \
            or pa.types.is_large_binary(type_):
        h = _hash_bytes(arr)
    elif pa.types.is_floating(type_):
        x = pc.fill_null(pc.cast(arr, pa.float64()), 0.0).to_numpy(zero_copy_only=False) + 0.0  # -0.0 → 0.0
        h = _mix((_round6(x) if normalized else x).view(np.uint64))
    elif pa.types.is_boolean(type_) or pa.types.is_integer(type_):
        x = pc.fill_null(arr, 0 if pa.types.is_integer(type_) else False).to_numpy(zero_copy_only=False)
        h = _mix(x.astype(np.int64).view(np.uint64))
    elif pa.types.is_temporal(type_) and type_.bit_width in (32, 64):
        ints = arr.view(pa.int32() if type_.bit_width == 32 else pa.int64())
        h = _mix(pc.fill_null(ints, 0).to_numpy(zero_copy_only=False).astype(np.int64).view(np.uint64))
    else:  # lists, structs, …: rare and already graded down by the format metric; hashed value by value
        h = np.array([int.from_bytes(hashlib.blake2b(repr(v).encode(), digest_size=8).digest(), "little")
                      for v in arr.to_pylist()], dtype=np.uint64)
    missing = pc.is_null(arr, nan_is_null=True).to_numpy(zero_copy_only=False)
    h[missing] = _NULL
    return h


def row_hashes(batch: pa.RecordBatch, normalized: bool = False) -> U64:
    """A 64-bit hash per row of ``batch``: column hashes folded in column order. Equal rows (or rows equal after
    normalization, see the module docstring) hash equally, whatever batch they arrive in."""
    h = np.full(batch.num_rows, _GOLDEN, dtype=np.uint64)
    for column in batch.columns:
        h = _mix(h * _BASE + _hash_column(column, normalized))
    return h


def _distinct(parts: list[U64]) -> int:
    hashes = np.concatenate(parts) if parts else np.empty(0, np.uint64)
    parts.clear()  # the sorted copy is now the only one
    hashes.sort()
    return int(hashes.size and 1 + np.count_nonzero(hashes[1:] != hashes[:-1]))


def _count(mask: pa.Array | pa.ChunkedArray) -> int:
    return int(pc.sum(pc.cast(mask, pa.int64())).as_py() or 0)


def _typed_set(values: Sequence[Any], type_: pa.DataType) -> pa.Array:
    """``values`` as an Arrow array of ``type_`` (for ``is_in`` / ``index_in``); ValueError when impossible."""
    if pa.types.is_dictionary(type_):
        type_ = type_.value_type
    try:
        return pa.array(list(values), type=type_)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        pass
    try:
        return pc.cast(pa.array(list(values)), type_)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, OverflowError) as exc:
        raise ValueError("declared values do not fit the column type") from exc


def _plain(arr: pa.Array) -> pa.Array:
    return arr.dictionary_decode() if pa.types.is_dictionary(arr.type) else arr


@dataclass(frozen=True, slots=True)
class ColumnStats:
    """One column after the pass. ``nulls`` counts nulls and NaN. For string columns, of the ``non_null`` values:
    ``numeric`` / ``dates`` look like numbers / dates written as text; ``digits`` are plain digit strings, of which
    ``leading_zero`` start with 0 and whose lengths span ``min_digits``..``max_digits``."""

    name: str
    type: str
    supported: bool
    nulls: int
    non_null: int
    is_string: bool
    numeric: int = 0
    dates: int = 0
    digits: int = 0
    leading_zero: int = 0
    min_digits: int = 0
    max_digits: int = 0

    @property
    def type_consistent(self) -> bool | None:
        """Whether the values share one type: always for typed (non-string) columns; for a string column, when
        at most 5% of its values look like numbers or dates, or when every number-like value is a plain digit
        string of a *code* (fixed width, a leading zero or more than 15 digits: identifiers, phone numbers,
        postcodes — text by nature). ``None`` for a column without values."""
        if self.non_null == 0:
            return None
        if not self.is_string or self.numeric + self.dates <= _TYPED_SHARE * self.non_null:
            return True
        code = self.dates == 0 and self.numeric == self.digits and (
            self.leading_zero > 0 or self.min_digits == self.max_digits or self.max_digits > 15)
        return code


@dataclass(frozen=True, slots=True)
class Profile:
    """The result of one pass. ``bounds`` / ``domains``: column → (non-null values checked, values inside);
    ``label_conforming``: rows whose label is in the declared set; ``audit``: (audited rows found, labels that
    agree); ``newest``: the latest date over date / timestamp columns, from ``dated`` non-null values; ``sample``:
    at most ``sample_rows`` rows of the sampled columns in row order, ``sample_keys`` their priority keys."""

    rows: int
    columns: tuple[ColumnStats, ...]
    exact_distinct: int
    normalized_distinct: int
    bounds: Mapping[str, tuple[int, int]]
    domains: Mapping[str, tuple[int, int]]
    label_conforming: int
    audit: tuple[int, int]
    newest: dt.date | None
    dated: int
    sample: pa.Table
    sample_keys: U64


class Profiler:
    """Accumulates a :class:`Profile` batch by batch (see the module docstring for the state it keeps).

    ``label_values``: the declared label set (conformance is counted when given); ``audit``: (true-label map,
    key column) — rows whose key is audited are compared with their label; ``sample_columns``: the columns kept in
    the fixed-seed sample (none: no sample is kept). Raises ValueError when declared values cannot be typed as
    their column, or a batch's schema differs from ``schema``.
    """

    def __init__(self, schema: pa.Schema, *, label: str | None = None, label_values: Sequence[Any] | None = None,
                 bounds: Mapping[str, tuple[float, float]] | None = None,
                 domains: Mapping[str, Sequence[Any]] | None = None,
                 audit: tuple[Mapping[Any, Any], str] | None = None, sample_columns: Sequence[str] = (),
                 sample_rows: int = 20_000, seed: int = 0) -> None:
        self.schema = schema
        self._label = label
        self._label_set = _typed_set(label_values, schema.field(label).type) \
            if label is not None and label_values is not None else None
        self._bounds = dict(bounds or {})
        self._domains = {c: _typed_set(v, schema.field(c).type) for c, v in (domains or {}).items()}
        self._audit: tuple[pa.Array, pa.Array, str] | None = None
        if audit is not None and label is not None:
            truth, key = audit
            self._audit = (_typed_set(list(truth), schema.field(key).type),
                           _typed_set(list(truth.values()), schema.field(label).type), key)
        self._sample_columns = list(sample_columns)
        self._sample_rows = sample_rows
        self._seed = _mix(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]
        n = len(schema)
        self.rows = 0
        self._nulls = [0] * n
        self._text = [[0, 0, 0, 0, -1, 0] for _ in range(n)]  # numeric, dates, digits, leading zero, min, max len
        self._exact: list[U64] = []
        self._normalized: list[U64] = []
        self._bound_counts = {c: [0, 0] for c in self._bounds}
        self._domain_counts = {c: [0, 0] for c in self._domains}
        self._label_conforming = 0
        self._audit_counts = [0, 0]
        self._newest: dt.date | None = None
        self._dated = 0
        self._sample = schema.empty_table().select(self._sample_columns)
        self._sample_keys = np.empty(0, np.uint64)
        self._sample_index = np.empty(0, np.int64)

    def update(self, batch: pa.RecordBatch) -> None:
        if batch.schema.names != self.schema.names or batch.schema.types != self.schema.types:
            raise ValueError("a record batch does not match the dataset schema")
        for i, column in enumerate(batch.columns):
            self._column(i, _plain(column))
        self._exact.append(row_hashes(batch))
        self._normalized.append(row_hashes(batch, normalized=True))
        for c, (lo, hi) in self._bounds.items():
            x = pc.cast(_plain(batch.column(c)), pa.float64())
            x = pc.drop_null(pc.if_else(pc.is_nan(x), pa.scalar(None, pa.float64()), x))
            self._bound_counts[c][0] += len(x)
            self._bound_counts[c][1] += _count(pc.and_(pc.greater_equal(x, lo), pc.less_equal(x, hi)))
        for c, value_set in self._domains.items():
            col = _plain(batch.column(c))
            self._domain_counts[c][0] += len(col) - col.null_count
            self._domain_counts[c][1] += _count(pc.is_in(col, value_set=value_set))
        if self._label is not None and self._label_set is not None:
            self._label_conforming += _count(pc.is_in(_plain(batch.column(self._label)), value_set=self._label_set))
        if self._audit is not None and self._label is not None:
            keys, truth, key = self._audit
            idx = pc.index_in(_plain(batch.column(key)), value_set=keys)
            self._audit_counts[0] += len(idx) - idx.null_count
            agree = pc.equal(_plain(batch.column(self._label)), pc.take(truth, idx))
            self._audit_counts[1] += _count(pc.fill_null(agree, False))
        if self._sample_columns and self._sample_rows > 0:
            self._keep_sample(batch)
        self.rows += batch.num_rows

    def _column(self, i: int, col: pa.Array) -> None:
        type_ = col.type
        self._nulls[i] += col.null_count
        if pa.types.is_floating(type_):
            self._nulls[i] += _count(pc.is_nan(col))
        elif pa.types.is_string(type_) or pa.types.is_large_string(type_):
            cand = pc.filter(col, pc.match_substring_regex(col, _CANDIDATE))
            if len(cand):
                counts = self._text[i]
                trimmed = pc.utf8_trim_whitespace(cand)
                counts[0] += _count(pc.match_substring_regex(trimmed, _NUMBER))
                counts[1] += _count(pc.match_substring_regex(trimmed, _DATE))
                digits = pc.filter(trimmed, pc.match_substring_regex(trimmed, _DIGITS))
                if len(digits):
                    counts[2] += len(digits)
                    counts[3] += _count(pc.starts_with(digits, "0")) - _count(pc.equal(digits, "0"))
                    lengths = pc.min_max(pc.utf8_length(digits)).as_py()
                    counts[4] = lengths["min"] if counts[4] < 0 else min(counts[4], lengths["min"])
                    counts[5] = max(counts[5], lengths["max"])
        elif pa.types.is_date(type_) or pa.types.is_timestamp(type_):
            newest = pc.max(col)
            if newest.is_valid:
                day = pc.cast(newest, pa.date32()).as_py()
                self._newest = day if self._newest is None else max(self._newest, day)
                self._dated += len(col) - col.null_count

    def _keep_sample(self, batch: pa.RecordBatch) -> None:
        """Keep the ``sample_rows`` rows with the smallest priority keys seen so far (keys are a bijection of the
        row index, so there are no ties and the choice does not depend on batch boundaries)."""
        index = np.arange(self.rows, self.rows + batch.num_rows, dtype=np.int64)
        keys = _mix(index.astype(np.uint64) ^ self._seed)
        if self._sample_keys.size >= self._sample_rows:
            chosen = np.flatnonzero(keys < self._sample_keys.max())
        else:
            chosen = np.arange(batch.num_rows)
        if chosen.size == 0:
            return
        new_rows = pa.Table.from_batches([batch.select(self._sample_columns)]).take(pa.array(chosen))
        table = pa.concat_tables([self._sample, new_rows])
        keys_all = np.concatenate([self._sample_keys, keys[chosen]])
        index_all = np.concatenate([self._sample_index, index[chosen]])
        if keys_all.size > self._sample_rows:
            keep = np.sort(np.argpartition(keys_all, self._sample_rows - 1)[:self._sample_rows])
            table, keys_all, index_all = table.take(pa.array(keep)), keys_all[keep], index_all[keep]
        self._sample, self._sample_keys, self._sample_index = table.combine_chunks(), keys_all, index_all

    def finish(self) -> Profile:
        """The profile; consumes the row hashes (call once)."""
        columns = []
        for i, f in enumerate(self.schema):
            t = self._text[i]
            is_string = pa.types.is_string(f.type) or pa.types.is_large_string(f.type) or (
                pa.types.is_dictionary(f.type) and pa.types.is_string(f.type.value_type))
            columns.append(ColumnStats(f.name, str(f.type), supported_type(f.type), self._nulls[i],
                                       self.rows - self._nulls[i], bool(is_string), t[0], t[1], t[2], t[3],
                                       max(t[4], 0), t[5]))
        order = np.argsort(self._sample_index, kind="stable")
        return Profile(
            self.rows, tuple(columns), _distinct(self._exact), _distinct(self._normalized),
            {c: (v[0], v[1]) for c, v in self._bound_counts.items()},
            {c: (v[0], v[1]) for c, v in self._domain_counts.items()},
            self._label_conforming, (self._audit_counts[0], self._audit_counts[1]), self._newest, self._dated,
            self._sample.take(pa.array(order)), self._sample_keys[order])


@dataclass(frozen=True, slots=True)
class Baseline:
    """The fixed-seed baseline's result: ``lift`` = (BA − 1/K) / (1 − 1/K) clipped to [0, 1], where BA is the
    model's balanced accuracy on ``test_rows`` held-out rows and 1/K the balanced accuracy of always predicting the
    majority class (K = classes in the test rows); or ``reason`` when it cannot be measured."""

    lift: float = 0.0
    balanced_accuracy: float = 0.0
    accuracy: float = 0.0
    majority_accuracy: float = 0.0
    classes: int = 0
    test_rows: int = 0
    reason: str | None = None


_MAX_CLASSES = 50
_STEPS, _RATE, _L2 = 300, 0.5, 1e-3


def baseline_fit(sample: pa.Table, label: str, features: Sequence[str], keys: U64) -> Baseline:
    """Class-weighted multinomial logistic regression in numpy: full-batch gradient descent (300 steps, rate 0.5,
    L2 1e-3) on standardized ``features`` (nulls and non-finite values → the training mean) of the sample rows with
    a label. Rows whose priority key satisfies ``(key >> 32) % 10 < 3`` are held out (≈30%), so the split is as
    batch-size invariant as the sample. Deterministic: no randomness beyond the sample itself. Class weights make
    a minority class count, so a model cannot score by predicting the majority; hence the balanced accuracy."""
    y_raw = sample[label]
    has_label = np.asarray(pc.is_valid(y_raw))
    if not has_label.any():
        return Baseline(reason="no labelled rows in the sample")
    classes, y = np.unique(np.asarray(pc.drop_null(y_raw).to_numpy(zero_copy_only=False)), return_inverse=True)
    if len(classes) > _MAX_CLASSES:
        return Baseline(reason="the label has more than 50 classes")
    x = np.column_stack([pc.cast(sample[f], pa.float64()).to_numpy(zero_copy_only=False) for f in features])
    x = np.where(np.isfinite(x), x, np.nan)[has_label]
    test = ((keys[has_label] >> _U(32)) % _U(10)) < _U(3)
    if test.sum() < 10 or (~test).sum() < 10:
        return Baseline(reason="fewer than 10 labelled rows in the training or test split")
    k_test = len(np.unique(y[test]))
    if k_test < 2 or len(np.unique(y[~test])) < 2:
        return Baseline(reason="fewer than two label classes")
    train_x = x[~test]
    with np.errstate(all="ignore"):  # all-null features give a NaN mean: handled below
        mean, std = np.nanmean(train_x, axis=0), np.nanstd(train_x, axis=0)
    mean, std = np.nan_to_num(mean), np.where(np.isfinite(std) & (std > 0), std, 1.0)
    z = np.nan_to_num((x - mean) / std)
    z = np.column_stack([z, np.ones(len(z))])
    k = len(classes)
    onehot = np.eye(k)[y]
    counts = onehot[~test].sum(axis=0)
    weight = (len(train_x) / (k * np.maximum(counts, 1)))[y[~test]]
    w = np.zeros((z.shape[1], k))
    zt, yt = z[~test], onehot[~test]
    for _ in range(_STEPS):
        logits = zt @ w
        logits -= logits.max(axis=1, keepdims=True)
        prob = np.exp(logits)
        prob /= prob.sum(axis=1, keepdims=True)
        grad = zt.T @ ((prob - yt) * weight[:, None]) / weight.sum()
        grad[:-1] += _L2 * w[:-1]
        w -= _RATE * grad
    predicted = np.argmax(z[test] @ w, axis=1)
    truth = y[test]
    present = np.unique(truth)
    balanced = float(np.mean([np.mean(predicted[truth == c] == c) for c in present]))
    majority = float(np.mean(truth == np.bincount(y[~test], minlength=k).argmax()))
    lift = min(1.0, max(0.0, (balanced - 1 / k_test) / (1 - 1 / k_test)))
    return Baseline(lift, balanced, float(np.mean(predicted == truth)), majority, k_test, int(test.sum()))
