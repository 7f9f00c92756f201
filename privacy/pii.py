"""PII detection in Arrow tables: which columns hold personal identifiers, in Chinese and common formats.

``detect`` classifies the columns of an input table from a fixed-seed sample, with two signals: the values (formats
checked by their validators, not by shape alone) and the column name (中文 and English). It suggests a release
policy role per column. ``scan`` is the residual check on an output table: every value of every column, reporting
a column if any single value contains a validated direct identifier.

Values are compared in a compact form: whitespace and hyphens are removed before digit formats are matched, so
"+86 138-0013-8000" is a mobile number and "6222 0212 3456 7890 128" a card number; full-width digits are folded.
Masked values such as "138****8000" or "110105********002X" never validate. Both paths are vectorized: Arrow
kernels (RE2 regexes, trims) select candidates, numpy works on the UTF-8 bytes (tokens, fixed-width character
matrices grouped by length) and verifies check digits by exactly the rules of ``privacy.checksums``. ``identify``
is the same rule for one value in plain Python; a property test holds ``scan`` to it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, get_args

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from privacy.checksums import (
    CARD_ISSUER_RANGES,
    PROVINCE_CODES,
    RESIDENCE_PERMIT_PREFIXES,
    RESIDENT_ID_WEIGHTS,
    USCC_ALPHABET,
    USCC_WEIGHTS,
    valid_bank_card,
    valid_residence_permit,
    valid_resident_id,
    valid_uscc,
)
from privacy.pii_patterns import (
    _ADDRESS,
    _ADDRESS_SHAPE,
    _AGE,
    _DATE_COMPACT,
    _DATE_SEP,
    _DIGIT_GAP,
    _EMAIL,
    _GENDER,
    _GENDER_SHAPE,
    _HINTS,
    _MOBILE,
    _NAME,
    _NAME_SHAPE,
    _NOT_PERSON,
    _NOT_PERSON_ZH,
    _PLATE,
    _POSTCODE,
    _PREFILTER,
    _REGION,
    _SEP,
    _SHAPES,
    _SPLIT,
    _TRIM,
    _WIDE,
    PiiKind,
    PiiRole,
)

__all__ = ["ROLES", "Finding", "PiiKind", "PiiRole", "detect", "identify", "scan"]

_QUASI: frozenset[PiiKind] = frozenset(("birth_date", "gender", "age", "region", "postcode", "address"))
ROLES: Mapping[PiiKind, PiiRole] = {
    k: "quasi_identifier" if k in _QUASI else "direct_identifier" for k in get_args(PiiKind)}

# Kinds whose validated values are specific enough to report a column without a name hint. A personal name,
# an age, a city or a date are ordinary values on their own.
_VALUE_ONLY: frozenset[PiiKind] = frozenset(
    ("resident_id", "residence_permit", "mobile", "bank_card", "uscc", "email", "ip", "plate", "gender", "address"))
# How strongly one validated value indicates its kind (1 - rough false-positive rate on unrelated data).
_STRENGTH: Mapping[PiiKind, float] = {
    "resident_id": 0.99, "residence_permit": 0.99, "uscc": 0.95, "email": 0.97, "bank_card": 0.9, "ip": 0.9,
    "plate": 0.9, "mobile": 0.85, "gender": 0.8, "address": 0.6, "name": 0.5, "birth_date": 0.5, "region": 0.4,
    "postcode": 0.4, "age": 0.3,
}
_NAME_WEIGHT = 0.7  # weight of a column-name hint, scaled by the fraction of values with the kind's shape
# scan()'s kinds; code = index + 1, and a value matching several kinds counts as the highest code.
_SCAN_KINDS: tuple[PiiKind, ...] = ("email", "mobile", "bank_card", "uscc", "residence_permit", "resident_id")
_CODE = {k: i + 1 for i, k in enumerate(_SCAN_KINDS)}


@dataclass(frozen=True, slots=True)
class Finding:
    """One column's strongest PII evidence. ``matched`` of the ``sampled`` non-null values validated as ``kind``
    (for ``scan``: contained one); ``by_name`` says the column name suggests ``kind``; ``confidence`` in [0, 1]
    combines both signals."""

    column: str
    kind: PiiKind
    role: PiiRole
    confidence: float
    matched: int
    sampled: int
    by_name: bool

    def __post_init__(self) -> None:
        if self.kind not in ROLES or self.role != ROLES[self.kind]:
            raise ValueError("unknown kind or a role that does not match it")
        if not 0.0 <= self.confidence <= 1.0 or not 0 <= self.matched <= self.sampled:
            raise ValueError("confidence outside [0, 1] or matched outside [0, sampled]")

    def to_json(self) -> dict[str, Any]:
        return {"column": self.column, "kind": self.kind, "role": self.role, "confidence": self.confidence,
                "matched": self.matched, "sampled": self.sampled, "by_name": self.by_name}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Finding:
        return cls(str(data["column"]), data["kind"], data["role"], float(data["confidence"]), int(data["matched"]),
                   int(data["sampled"]), bool(data["by_name"]))


def _name_kinds(column: str) -> frozenset[PiiKind]:
    """Kinds the column name suggests. Chinese keywords match as substrings; English keywords as whole words
    (snake_case, camelCase, kebab-case or run together: id_card, idCard, idcard), so "zip" is not "ip"."""
    text = unicodedata.normalize("NFKC", column)
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text).lower()
    raw = re.findall(r"[a-z]+\d*|\d+", text)
    words = [raw, [w.rstrip("0123456789") or w for w in raw]]  # address1 is address
    found: set[PiiKind] = set()
    for kind, (zh, phrases) in _HINTS.items():
        if any(k in text for k in zh) or any(_has_phrase(ws, p) for ws in words for p in phrases):
            found.add(kind)
    thing = any(w in _NOT_PERSON for ws in words for w in ws) or any(k in text for k in _NOT_PERSON_ZH)
    if thing:
        found.discard("name")
    return frozenset(found)


def _has_phrase(words: list[str], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    return "".join(phrase) in words or any(tuple(words[i:i + n]) == phrase for i in range(len(words) - n + 1))


# --- vectorized validators ------------------------------------------------------------------------------------
_ID_WEIGHTS = np.array(RESIDENT_ID_WEIGHTS, dtype=np.int64)
_ID_CHECK = np.frombuffer(b"10X98765432", dtype=np.uint8)
_PROVINCES = np.array(sorted(PROVINCE_CODES), dtype=np.int64)
_PERMITS = np.array(sorted(int(p) for p in RESIDENCE_PERMIT_PREFIXES), dtype=np.int64)
_USCC_VALUE = np.full(256, -1, dtype=np.int8)
_USCC_VALUE[np.frombuffer(USCC_ALPHABET.encode(), dtype=np.uint8)] = np.arange(31)
_USCC_W = np.array(USCC_WEIGHTS, dtype=np.int64)
_USCC_AUTHORITY = np.frombuffer(b"123456789ANY", dtype=np.uint8)
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


def _mask(values: pa.Array, pattern: str) -> np.ndarray:
    result: np.ndarray = pc.match_substring_regex(values, pattern).to_numpy(zero_copy_only=False)
    return result


def _bytes(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets relative to the first value, UTF-8 bytes of all values) of a null-free string array, zero-copy."""
    if len(values) == 0:
        return np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.uint8)
    offset_type = np.int64 if pa.types.is_large_string(values.type) else np.int32
    _, offsets_buf, data_buf = values.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=offset_type)[values.offset:values.offset + len(values) + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8)[offsets[0]:offsets[-1]] if data_buf is not None else None
    return offsets - offsets[0], np.zeros(0, dtype=np.uint8) if data is None else data


def _fixed_width(values: pa.Array, width: int) -> np.ndarray:
    """(n, width) uint8 matrix of a null-free string array whose values are all exactly ``width`` bytes."""
    return _bytes(values)[1].reshape(len(values), width)


def _per_value(offsets: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """How many flagged bytes each value has."""
    out = np.zeros(len(offsets) - 1, dtype=np.int64)
    nonempty = np.flatnonzero(offsets[1:] > offsets[:-1])
    if nonempty.size:  # reduceat over the starts of non-empty values: each segment is exactly one value's bytes
        out[nonempty] = np.add.reduceat(flags, offsets[nonempty], dtype=np.int64)
    return out


def _holding(offsets: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Per value: does it contain one of the byte ``positions``?"""
    out = np.zeros(len(offsets) - 1, dtype=bool)
    out[np.searchsorted(offsets, positions, "right") - 1] = True
    return out


def _any_byte(values: pa.Array, pick: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Per null-free string value: does any of its bytes satisfy ``pick`` (a vectorized byte predicate)? Byte
    comparisons over the data buffer are several times cheaper than a regex kernel call per value."""
    offsets, data = _bytes(values)
    flags = pick(data)
    if np.count_nonzero(flags) <= len(values):  # sparse, the usual case: locate the few hits
        return _holding(offsets, np.flatnonzero(flags))
    result: np.ndarray = _per_value(offsets, flags) > 0
    return result


def _non_token_byte(data: np.ndarray) -> np.ndarray:
    """Bytes outside ``[0-9A-Za-z@._%+-]``: the ones ``_SPLIT`` splits on (non-ASCII bytes included)."""
    token = ((data - np.uint8(48)) <= 9) | (((data | 0x20) - np.uint8(97)) <= 25)
    for c in b"@._%+-":
        token |= data == c
    result: np.ndarray = ~token
    return result


_WIDE_FF = np.zeros(0x60, dtype=bool)  # U+FF00-U+FF5F members of _WIDE
for _lo, _hi in _WIDE[:-1]:
    _WIDE_FF[_lo - 0xFF00:_hi - 0xFF00 + 1] = True


def _wide_values(values: pa.Array) -> np.ndarray:
    """Per null-free string: does it hold a ``_WIDE`` character? Those are EF BC/BD xx (U+FF00-U+FF7F, decoded
    and looked up) or E3 80 80 (U+3000) in UTF-8; 0xEF and 0xE3 never occur as continuation bytes."""
    offsets, data = _bytes(values)
    lead = np.flatnonzero((data == 0xEF) | (data == 0xE3))
    lead = lead[lead + 2 < data.size]
    b0, b1, b2 = data[lead], data[lead + 1], data[lead + 2]
    offset = ((b1.astype(np.int32) & 0x3F) << 6 | (b2 & 0x3F)) - 0xF00
    fullwidth = (b0 == 0xEF) & ((b1 & 0xFE) == 0xBC) & (offset < 0x60) & _WIDE_FF[np.clip(offset, 0, 0x5F)]
    ideographic_space = (b0 == 0xE3) & (b1 == 0x80) & (b2 == 0x80)
    return _holding(offsets, lead[fullwidth | ideographic_space])


def _could_hold(values: pa.Array) -> np.ndarray:
    """Per null-free string: has '@', 11+ ASCII digits or 18+ digits and capital letters, a necessary condition for
    containing any ``_SCAN_KINDS`` identifier (looser than ``_PREFILTER``, but byte counting is cheap)."""
    offsets, data = _bytes(values)
    digits = _per_value(offsets, (data - np.uint8(48)) <= 9)
    capitals = _per_value(offsets, (data - np.uint8(65)) <= 25)
    at = _holding(offsets, np.flatnonzero(data == ord("@")))
    result: np.ndarray = (digits >= 11) | (digits + capitals >= 18) | at
    return result


def _number(cols: np.ndarray, start: int, stop: int) -> np.ndarray:
    """The decimal number written by byte rows ``start:stop`` (already known to be digits), as int64."""
    n = np.zeros(cols.shape[1], dtype=np.int64)
    for row in cols[start:stop]:
        n = n * 10 + (row - 48)
    return n


def _weighted(cols: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """sum_i weights[i] * cols[i] over the first len(weights) rows (small values: int32 cannot overflow)."""
    acc = np.zeros(cols.shape[1], dtype=np.int32)
    for row, w in zip(cols, weights.tolist(), strict=False):
        acc += np.multiply(row, w, dtype=np.int32)
    return acc


def _columns(cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``cols`` restricted to values ``rows`` (no copy when that is all of them)."""
    return cols if rows.size == cols.shape[1] else cols[:, rows]


def _all_digits(cols: np.ndarray) -> np.ndarray:
    """Per value: every byte row of ``cols`` is an ASCII digit (uint8 wrap-around makes this one comparison)."""
    result: np.ndarray = np.all((cols - np.uint8(48)) <= 9, axis=0)
    return result


def _valid_dates(y: np.ndarray, m: np.ndarray, d: np.ndarray, today: dt.date) -> np.ndarray:
    """Element-wise: (y, m, d) is a real calendar date in [1900-01-01, today]."""
    leap = (y % 4 == 0) & ((y % 100 != 0) | (y % 400 == 0))
    month_ok = (m >= 1) & (m <= 12)
    last = _DAYS_IN_MONTH[np.where(month_ok, m, 0)] + (leap & (m == 2))
    ymd = y * 10_000 + m * 100 + d
    today_ymd = today.year * 10_000 + today.month * 100 + today.day
    result: np.ndarray = month_ok & (d >= 1) & (d <= last) & (ymd >= 19_000_101) & (ymd <= today_ymd)
    return result


def _id_codes(cols: np.ndarray, today: dt.date) -> np.ndarray:
    """Element-wise resident_id / residence_permit code (or 0) of 17 digit rows + one [0-9Xx] row: exactly
    ``valid_resident_id`` and ``valid_residence_permit``."""
    check = _ID_CHECK[(_weighted(cols, _ID_WEIGHTS) - 48 * int(_ID_WEIGHTS.sum())) % 11]  # bytes, not digits
    last = np.where(cols[17] == ord("x"), ord("X"), cols[17])
    ok = (check == last) & _valid_dates(_number(cols, 6, 10), _number(cols, 10, 12), _number(cols, 12, 14), today)
    prefix = _number(cols, 0, 6)
    permit = np.isin(prefix, _PERMITS)
    resident = ~permit & np.isin(prefix // 10_000, _PROVINCES)
    return np.where(ok & resident, _CODE["resident_id"], np.where(ok & permit, _CODE["residence_permit"], 0))


def _uscc_ok(cols: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Element-wise ``valid_uscc`` of 18 byte rows, all in ``USCC_ALPHABET``; ``v`` their alphabet values."""
    check = (31 - _weighted(v, _USCC_W) % 31) % 31
    region = np.where(_all_digits(cols[2:8]), _number(cols, 2, 4), -1)
    result: np.ndarray = ((check == v[17]) & np.isin(cols[0], _USCC_AUTHORITY) & (cols[1] >= ord("1"))
                          & (cols[1] <= ord("9")) & (np.isin(region, _PROVINCES) | (region == 10)))
    return result


def _card_ok(cols: np.ndarray) -> np.ndarray:
    """Element-wise ``valid_bank_card`` of digit rows (the card length is the number of rows)."""
    width = len(cols)
    total = np.zeros(cols.shape[1], dtype=np.int64)
    for i, row in enumerate(cols):
        d = row.astype(np.int64) - 48
        if (width - 1 - i) % 2:  # every second digit from the right, the check digit not included, is doubled
            d = 2 * d - 9 * (d > 4)
        total += d
    issuer = np.zeros(cols.shape[1], dtype=bool)
    for k, lo, hi, lengths in CARD_ISSUER_RANGES:
        if width in lengths:
            prefix = _number(cols, 0, k)
            issuer |= (prefix >= lo) & (prefix <= hi)
    result: np.ndarray = (total % 10 == 0) & issuer
    return result


_MOBILE_PREFIXES = {11: b"", 13: b"86", 14: b"+86", 15: b"0086"}  # compact width -> country-code prefix


def _width_codes(m: np.ndarray, today: dt.date) -> np.ndarray:
    """Codes of an (n, width) byte matrix of compact values, in priority order (resident ID or permit, USCC, card,
    mobile) so each check only sees rows a stronger kind did not claim. The shapes are exactly the regexes
    ``^\\d{17}[\\dXx]$``, ``^[0-9A-HJ-NPQRTUWXY]{18}$``, ``^\\d{15,19}$`` and ``_MOBILE``, then the validators."""
    cols = np.ascontiguousarray(m.T)
    width = len(cols)
    code = np.zeros(cols.shape[1], dtype=np.int8)
    if width == 18:
        last = cols[17]
        id_like = np.flatnonzero(_all_digits(cols[:17]) & (((last - np.uint8(48)) <= 9) | ((last | 0x20) == ord("x"))))
        code[id_like] = _id_codes(_columns(cols, id_like), today)
        rest = np.flatnonzero(code == 0)
        v = _USCC_VALUE[_columns(cols, rest)]
        alphabet = np.all(v >= 0, axis=0)
        rest, v = rest[alphabet], v[:, alphabet]
        code[rest[_uscc_ok(_columns(cols, rest), v)]] = _CODE["uscc"]
    if 15 <= width <= 19:
        rest = np.flatnonzero(code == 0)
        rest = rest[_all_digits(_columns(cols, rest))]
        code[rest[_card_ok(_columns(cols, rest))]] = _CODE["bank_card"]
    if width in _MOBILE_PREFIXES:
        prefix = np.frombuffer(_MOBILE_PREFIXES[width], dtype=np.uint8)[:, None]
        mobile = (_all_digits(cols[-11:]) & (cols[-11] == ord("1")) & (cols[-10] >= ord("3"))
                  & (cols[:width - 11] == prefix).all(axis=0))
        code[(code == 0) & mobile] = _CODE["mobile"]
    return code


def _direct_codes(values: pa.Array, today: dt.date, *, whole: bool) -> np.ndarray:
    """Per null-free string: the highest ``_SCAN_KINDS`` code it validates as, or 0. Values are tokens (no
    whitespace inside) unless ``whole``, when inner whitespace is removed too (detect's whole-value rule)."""
    trimmed = pc.utf8_trim(values, characters=_TRIM)
    compact = trimmed
    if _any_byte(trimmed, lambda d: d == ord("-")).any():
        compact = pc.replace_substring(trimmed, "-", "")
    if whole:
        compact = pc.replace_substring_regex(compact, _SEP, "")
    codes = np.zeros(len(values), dtype=np.int8)
    widths = pc.binary_length(compact).to_numpy(zero_copy_only=False)
    for width in range(11, 20):
        rows = np.flatnonzero(widths == width)
        if rows.size:
            codes[rows] = _width_codes(_fixed_width(compact.take(rows), width), today)
    at = np.flatnonzero((codes == 0) & _any_byte(trimmed, lambda d: d == ord("@")))
    if at.size:
        codes[at[_mask(trimmed.take(at), _EMAIL)]] = _CODE["email"]
    return codes


def _separator_byte(data: np.ndarray) -> np.ndarray:
    """Bytes of ``[ \\t\\r\\n\\f-]``: what may separate digit groups (``_WS`` plus the hyphen)."""
    result: np.ndarray = (data == ord(" ")) | (data == ord("-")) | ((data >= ord("\t")) & (data <= ord("\r"))
                                                                    & (data != ord("\v")))
    return result


def _join_digit_groups(data: np.ndarray) -> np.ndarray:
    """Which bytes to keep so that every maximal run of whitespace and hyphens with a digit on both sides
    disappears (what ``_DIGIT_GAP`` does), working on runs rather than bytes. A run may straddle two values here:
    removing it only trims separators off value edges, which tokens (cut at value boundaries and trimmed of
    hyphens) never include."""
    edges = np.diff(_separator_byte(data).view(np.int8), prepend=np.int8(0), append=np.int8(0))
    run_start, run_end = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    inner = (run_start > 0) & (run_end < data.size)
    run_start, run_end = run_start[inner], run_end[inner]
    joins = ((data[run_start - 1] - np.uint8(48)) <= 9) & ((data[run_end] - np.uint8(48)) <= 9)
    run_start, run_end = run_start[joins], run_end[joins]
    keep = np.ones(data.size, dtype=bool)
    lengths = run_end - run_start
    keep[np.repeat(run_start - (np.cumsum(lengths) - lengths), lengths) + np.arange(int(lengths.sum()))] = False
    return keep


def _tokens(values: pa.Array, *, join: bool) -> tuple[pa.Array, np.ndarray]:
    """The tokens of null-free strings (maximal runs of ``[0-9A-Za-z@._%+-]``, what ``_SPLIT`` leaves) as a
    large_string array, and the index of the value each came from. With ``join``, digit groups separated by
    whitespace or hyphens are joined first ("138 0013 8000" is one token). Byte-level numpy; tokens are ASCII."""
    offsets, data = _bytes(values)
    value_of = np.repeat(np.arange(len(values), dtype=np.int32), np.diff(offsets))
    if join and data.size:
        keep = _join_digit_groups(data)
        data, value_of = data[keep], value_of[keep]
    inside = ~_non_token_byte(data)
    new_value = np.ones(data.size + 1, dtype=bool)  # a token never spans two values
    new_value[1:-1] = value_of[1:] != value_of[:-1]
    first = inside.copy()
    first[1:] &= ~inside[:-1] | new_value[1:-1]
    last = inside.copy()
    last[:-1] &= ~inside[1:] | new_value[1:-1]
    starts = np.flatnonzero(first)
    token_offsets = np.zeros(starts.size + 1, dtype=np.int64)
    np.cumsum(np.flatnonzero(last) + 1 - starts, out=token_offsets[1:])
    tokens = pa.Array.from_buffers(pa.large_string(), starts.size, [
        None, pa.py_buffer(token_offsets), pa.py_buffer(np.ascontiguousarray(data[inside]))])
    return tokens, value_of[starts]


def _token_codes(values: pa.Array, today: dt.date, *, join: bool) -> np.ndarray:
    """Per value: the highest code over its tokens."""
    tokens, parents = _tokens(values, join=join)
    token_codes = _direct_codes(tokens, today, whole=False)
    out = np.zeros(len(values), dtype=np.int8)
    hit = token_codes > 0
    np.maximum.at(out, parents[hit], token_codes[hit])
    return out


def _fold_width(values: pa.Array) -> pa.Array:
    """NFKC-normalize the values holding full-width forms (１３８００１３８０００ is a mobile number)."""
    wide = _wide_values(values)
    if not wide.any():
        return values
    mask = pa.array(wide)
    return pc.replace_with_mask(values, mask, pc.utf8_normalize(values.filter(mask), form="NFKC"))


def _scan_strings(values: pa.Array, today: dt.date) -> np.ndarray:
    """scan()'s rule per null-free string value (full-width forms folded): the highest code over its tokens as
    written and, if whitespace separates digit groups ("6222 0212 3456 7890 128"), over the tokens after joining
    them. A value that is one token is classified directly; others only if they pass a cheap prefilter."""
    values = _fold_width(values)
    codes = np.zeros(len(values), dtype=np.int8)
    several = _any_byte(values, _non_token_byte)
    if not several.all():
        one = np.flatnonzero(~several)
        codes[one] = _direct_codes(values if one.size == len(values) else values.take(one), today, whole=False)
    candidates = np.flatnonzero(several)
    if candidates.size:
        candidates = candidates[_could_hold(values.take(candidates))]
    if not candidates.size:
        return codes
    text = values.take(candidates)
    codes[candidates] = np.maximum(_token_codes(text, today, join=False), _token_codes(text, today, join=True))
    return codes


# --- column values ----------------------------------------------------------------------------------------------
def _as_strings(values: pa.Array, *, min_digits: int = 0) -> tuple[pa.Array, np.ndarray] | None:
    """Null-free ``values`` as strings, with the positions they came from; None for a type that holds no text or
    numbers (binary counts as text when it is valid UTF-8). Numbers are written in decimal; with ``min_digits``,
    only integers of at least that many digits (and integral floats below 2**53, exact in float64) are kept:
    shorter numbers cannot be identifiers."""
    t = values.type
    everything = np.arange(len(values))
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return values, everything
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        try:
            return values.cast(pa.large_string() if pa.types.is_large_binary(t) else pa.string()), everything
        except pa.ArrowInvalid:  # not UTF-8 text
            return None
    if pa.types.is_decimal(t):
        return pc.cast(values, pa.string()), everything
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        x = values.to_numpy(zero_copy_only=False)
        if pa.types.is_floating(t):
            x = x.astype(np.float64)
            integral = np.isfinite(x) & (np.floor(x) == x) & (np.abs(x) < 2.0**53)
            keep = integral & (np.abs(x) >= 10.0 ** (min_digits - 1)) if min_digits else everything >= 0
            whole = pa.array(np.where(integral, x, 0).astype(np.int64)).cast(pa.string())
            text = pc.if_else(pa.array(integral), whole, pc.cast(values, pa.string()))
            return text.filter(pa.array(keep)), np.flatnonzero(keep)
        if min_digits:  # float64 is exact enough to compare magnitudes with a power of ten
            keep = np.flatnonzero(np.abs(x.astype(np.float64)) >= 10.0 ** (min_digits - 1))
            return pc.cast(pa.array(x[keep]), pa.string()), keep
        return pc.cast(values, pa.string()), everything
    return None


def _plain_type(t: pa.DataType) -> pa.DataType:
    """The type values are examined as: views become their large counterparts (few kernels accept views)."""
    if pa.types.is_string_view(t):
        return pa.large_string()
    return pa.large_binary() if pa.types.is_binary_view(t) else t


def _plain(values: pa.Array) -> pa.Array:
    """Non-null values, views cast to a plain layout."""
    plain = _plain_type(values.type)
    return (values if plain == values.type else values.cast(plain)).drop_null()


def _non_null(values: pa.Array) -> pa.Array:
    return _plain(values.dictionary_decode() if pa.types.is_dictionary(values.type) else values)


# --- scan ---------------------------------------------------------------------------------------------------------
def _scan_chunk(chunk: pa.Array, today: dt.date) -> np.ndarray | None:
    """Codes of the non-null values of one chunk, or None when its type cannot hold an identifier."""
    if pa.types.is_dictionary(chunk.type):
        entries = _scan_chunk(chunk.dictionary, today)
        if entries is None:
            return None
        per_entry = np.zeros(len(chunk.dictionary), dtype=np.int8)
        per_entry[chunk.dictionary.is_valid().to_numpy(zero_copy_only=False)] = entries
        indices = chunk.indices.drop_null().to_numpy(zero_copy_only=False)
        result: np.ndarray = per_entry[indices]
        return result
    values = _plain(chunk)
    converted = _as_strings(values, min_digits=11)
    if converted is None:
        return None
    text, positions = converted
    codes = np.zeros(len(values), dtype=np.int8)
    if len(text):
        codes[positions] = _scan_strings(text, today)
    return codes


def scan(table: pa.Table, *, today: dt.date | None = None) -> list[Finding]:
    """Every column in which at least one value contains a validated direct identifier (resident_id,
    residence_permit, mobile, bank_card, uscc, email), examining every row: the residual check that an output
    table leaks no identifier in clear.

    A value "contains" an identifier when one of its tokens (maximal runs of ``[0-9A-Za-z@._%+-]``, also after
    joining digit groups separated by whitespace or hyphens) validates as a whole, so identifiers inside free text
    are found but a hex pseudonym never is (its digits are not a token of their own). Full-width digits and
    letters are folded first. String, large_string, string_view, dictionary, UTF-8 binary, integer (11+ digits),
    float (integral, 11-16 digits) and decimal columns are examined; others (dates, booleans, non-UTF-8 binary,
    nested types) are skipped. Per column the finding's kind is the one most values contain (ties: the more
    specific kind), ``matched`` counts those values, ``sampled`` all non-null values, and ``confidence`` is the
    evidence of one validated value combined with the name hint. Deliberately conservative: a column of random
    11-digit numbers starting 13-19, or of 16-19 digit numbers (about 2% pass Luhn and an issuer range), is
    reported. ``today`` (default: the system date) bounds birth dates."""
    day = today or dt.date.today()
    findings = []
    for name, column in zip(table.column_names, table.columns, strict=True):
        counts = np.zeros(len(_SCAN_KINDS) + 1, dtype=np.int64)
        examined, supported = 0, True
        for chunk in column.chunks:
            codes = _scan_chunk(chunk, day)
            if codes is None:
                supported = False
                break
            examined += len(codes)
            counts += np.bincount(codes, minlength=len(counts))
        if not supported or not counts[1:].any():
            continue
        code = int(np.flatnonzero(counts[1:] == counts[1:].max())[-1]) + 1
        kind = _SCAN_KINDS[code - 1]
        by_name = kind in _name_kinds(name)
        confidence = 1 - (1 - _STRENGTH[kind]) * (1 - _NAME_WEIGHT * by_name)
        findings.append(Finding(name, kind, ROLES[kind], confidence, int(counts[code]), examined, by_name))
    return findings


# --- detect ---------------------------------------------------------------------------------------------------
def _date_ok(text: pa.Array, today: dt.date) -> np.ndarray:
    ok = np.zeros(len(text), dtype=bool)
    for pattern in (_DATE_SEP, _DATE_COMPACT):
        parts = pc.extract_regex(text, pattern=pattern)
        matched = parts.is_valid().to_numpy(zero_copy_only=False)
        if matched.any():
            hit = parts.filter(parts.is_valid())
            y, m, d = (pc.cast(hit.field(f), pa.int64()).to_numpy() for f in "ymd")
            ok[np.flatnonzero(matched)[_valid_dates(y, m, d, today)]] = True
    return ok


def _ip_ok(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    shape = _mask(text, _SHAPES["ip"])
    valid = np.zeros(len(text), dtype=bool)
    for i in np.flatnonzero(shape):
        try:
            ipaddress.ip_address(text[int(i)].as_py())
        except ValueError:
            continue
        valid[i] = True
    return valid, shape


def _string_evidence(values: pa.Array, hints: frozenset[PiiKind], today: dt.date
                     ) -> dict[PiiKind, tuple[np.ndarray, np.ndarray]]:
    """(validated, shape) masks per kind worth evaluating: the value-only kinds and the hinted ones."""
    trimmed = pc.utf8_trim_whitespace(_fold_width(values))
    compact = pc.replace_substring_regex(trimmed, _SEP, "")
    codes = _direct_codes(trimmed, today, whole=True)
    out: dict[PiiKind, tuple[np.ndarray, np.ndarray]] = {}
    for kind in _SCAN_KINDS:
        valid = codes == _CODE[kind]
        shape_of = trimmed if kind == "email" else compact
        out[kind] = (valid, valid | _mask(shape_of, _SHAPES[kind]) if kind in hints else valid)
    out["ip"] = _ip_ok(trimmed)
    plates = pc.utf8_upper(pc.replace_substring_regex(compact, "[·•.]", ""))
    out["plate"] = (_mask(plates, _PLATE), _mask(plates, _SHAPES["plate"]))
    lower = pc.utf8_lower(trimmed)
    out["gender"] = (pc.is_in(lower, pa.array(_GENDER)).to_numpy(zero_copy_only=False),
                     pc.is_in(lower, pa.array(_GENDER_SHAPE)).to_numpy(zero_copy_only=False))
    address = _mask(trimmed, _ADDRESS)
    out["address"] = (address, address | _mask(trimmed, _ADDRESS_SHAPE))
    if "name" in hints:
        out["name"] = (_mask(trimmed, _NAME), _mask(trimmed, _NAME) | _mask(trimmed, _NAME_SHAPE))
    if "age" in hints:
        ages = pc.extract_regex(trimmed, pattern=_AGE)
        is_age = ages.is_valid().to_numpy(zero_copy_only=False)
        years = np.zeros(len(values), dtype=np.int64)
        years[is_age] = pc.cast(ages.filter(ages.is_valid()).field("a"), pa.int64()).to_numpy()
        out["age"] = (is_age & (years <= 120),) * 2
    if "birth_date" in hints:
        out["birth_date"] = (_date_ok(trimmed, today),) * 2
    if "postcode" in hints:
        out["postcode"] = (_mask(compact, _POSTCODE),) * 2
    if "region" in hints:
        out["region"] = (_mask(trimmed, _REGION),) * 2
    return out


def _temporal_evidence(values: pa.Array, today: dt.date) -> dict[PiiKind, tuple[np.ndarray, np.ndarray]]:
    days = pc.cast(values, pa.date32(), safe=False).cast(pa.int32()).to_numpy(zero_copy_only=False)
    lo, hi = ((d - dt.date(1970, 1, 1)).days for d in (dt.date(1900, 1, 1), today))
    born = (days >= lo) & (days <= hi)
    return {"birth_date": (born, born)}


def _detect_column(name: str, column: pa.ChunkedArray, min_fraction: float, today: dt.date) -> Finding | None:
    hints = _name_kinds(name)
    value_type = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
    values = pa.chunked_array([_non_null(c) for c in column.chunks], type=_plain_type(value_type)).combine_chunks()
    n = len(values)
    t = values.type
    if n == 0:
        return None
    if pa.types.is_date(t) or pa.types.is_timestamp(t):
        evidence = _temporal_evidence(values, today) if "birth_date" in hints else {}
    else:
        converted = _as_strings(values)
        evidence = {} if converted is None else _string_evidence(converted[0], hints, today)
    best: tuple[float, int, int, Finding] | None = None
    for kind, (valid, shape) in evidence.items():
        matched, shaped, by_name = int(valid.sum()), int(shape.sum()), kind in hints
        if not ((kind in _VALUE_ONLY and matched >= min_fraction * n) or (by_name and shaped >= min_fraction / 2 * n)):
            continue
        name_evidence = _NAME_WEIGHT * shaped / n if by_name else 0.0
        confidence = 1 - (1 - _STRENGTH[kind] * matched / n) * (1 - name_evidence)
        rank = (confidence, matched, _CODE.get(kind, 0), Finding(name, kind, ROLES[kind], confidence, matched, n,
                                                                  by_name))
        if best is None or rank[:3] > best[:3]:
            best = rank
    return None if best is None else best[3]


def detect(table: pa.Table, *, sample: int = 20_000, seed: int = 0, min_fraction: float = 0.5,
           today: dt.date | None = None) -> list[Finding]:
    """At most one finding per column (the strongest), from a sample of ``sample`` rows drawn without replacement
    with ``numpy.random.default_rng(seed)`` (all rows if the table is smaller): same table and seed, same result.

    Rule, per column and kind, over the ``n`` non-null sampled values:
    - value evidence alone reports a column when at least ``min_fraction * n`` values *validate* (check digit,
      region and birth date, issuer range, octets ...), for the kinds specific enough on their own: resident_id,
      residence_permit, mobile, bank_card, uscc, email, ip, plate, gender (男/女/male/female), address (province/
      city ... road/number pattern);
    - a column name suggesting the kind (Chinese substrings or English words, e.g. 身份证号, mobile_no, 性别, zip)
      reports it when at least ``min_fraction / 2 * n`` values have the kind's *shape* (validated or merely
      well-formed: 15 or 18 digits for an ID, 7-15 digits for a phone, 2-4 CJK characters for a name, 0-120 for an
      age). Names, ages, regions, birth dates and postcodes are reported only this way, and so are malformed
      identifiers under an identifier's name (``matched`` then says how few validate).
    ``confidence = 1 - (1 - s * valid_fraction) * (1 - 0.7 * shape_fraction * by_name)`` where ``s`` is the
    strength of one validated value of the kind (0.99 resident ID ... 0.3 age). Ties go to more matches, then the
    more specific kind. Date and timestamp columns are considered only as birth dates under a birth-date name.
    Whole values are classified (free text holding an identifier is ``scan``'s job). ``today`` (default: the
    system date) bounds birth dates."""
    if sample < 1 or not 0.0 < min_fraction <= 1.0:
        raise ValueError("sample must be >= 1 and min_fraction in (0, 1]")
    day = today or dt.date.today()
    rows = table
    if table.num_rows > sample:
        chosen = np.random.default_rng(seed).choice(table.num_rows, size=sample, replace=False)
        rows = table.take(pa.array(np.sort(chosen)))
    findings = []
    for name, column in zip(rows.column_names, rows.columns, strict=True):
        finding = _detect_column(name, column, min_fraction, day)
        if finding is not None:
            findings.append(finding)
    return findings


# --- one value --------------------------------------------------------------------------------------------------
_FULLWIDTH_RE = re.compile("[" + "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in _WIDE) + "]")
_SPLIT_RE = re.compile(_SPLIT, re.ASCII)
_PREFILTER_RE = re.compile(_PREFILTER, re.ASCII)
_DIGIT_GAP_RE = re.compile(_DIGIT_GAP, re.ASCII)
_SEP_RE = re.compile(_SEP, re.ASCII)
_MOBILE_RE = re.compile(_MOBILE, re.ASCII)
_EMAIL_RE = re.compile(_EMAIL, re.ASCII)


def _token_kind(token: str, today: dt.date) -> int:
    trimmed = token.strip(_TRIM)
    compact = _SEP_RE.sub("", trimmed)
    if valid_resident_id(compact, today):
        return _CODE["resident_id"]
    if valid_residence_permit(compact, today):
        return _CODE["residence_permit"]
    if valid_uscc(compact):
        return _CODE["uscc"]
    if valid_bank_card(compact):
        return _CODE["bank_card"]
    if _MOBILE_RE.fullmatch(compact):
        return _CODE["mobile"]
    return _CODE["email"] if _EMAIL_RE.fullmatch(trimmed) else 0


def identify(text: str, *, today: dt.date | None = None) -> PiiKind | None:
    """The direct-identifier kind ``scan`` would count ``text`` as containing (the most specific one), or None:
    the same rule, one value at a time in plain Python with the ``privacy.checksums`` validators."""
    if _FULLWIDTH_RE.search(text):
        text = unicodedata.normalize("NFKC", text)
    if not _PREFILTER_RE.search(text):
        return None
    day = today or dt.date.today()
    variants = [text]
    joined = _DIGIT_GAP_RE.sub("", text)
    if joined != text:
        variants.append(joined)
    best = max(_token_kind(token, day) for variant in variants for token in _SPLIT_RE.split(variant))
    return _SCAN_KINDS[best - 1] if best else None
