"""RFC 8785 (JSON Canonicalization Scheme) encoding of ledger values.

``canonical_json(value)`` returns the UTF-8 bytes that RFC 8785 prescribes: object members sorted by the UTF-16
code units of their names, no insignificant whitespace, strings with only the mandatory escapes, numbers as
ECMAScript prints them. Values are JSON trees of ``dict`` (string keys), ``list``/``tuple``, ``str``, ``int``
(within ±(2**53 − 1), the exactly representable range), ``float`` (finite), ``bool`` and ``None``.

Most ledger values hold no floats and only ASCII member names; for those, ``json.dumps`` with sorted keys and
compact separators produces exactly the RFC 8785 bytes (the same escape set, code-point order equals UTF-16 order
for ASCII, integers print as digits) and is ~4× faster than a general canonicalizer. Everything else goes through
the maintained ``rfc8785`` package. ``tests/test_ledger_core.py`` checks the two agree on generated values.
"""

from __future__ import annotations

import json
from typing import Any

import rfc8785

__all__ = ["CanonicalError", "MAX_SAFE_INTEGER", "canonical_json"]

MAX_SAFE_INTEGER = 2**53 - 1
_dumps = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False).encode


class CanonicalError(ValueError):
    """The value is not a JSON tree that RFC 8785 can encode (wrong type, unsafe integer, NaN, bad string)."""


def _fast_path_ok(value: Any, depth: int = 0) -> bool:
    """True when ``json.dumps`` yields the RFC 8785 bytes; raises :class:`CanonicalError` on invalid values."""
    if depth > 64:
        raise CanonicalError("value nests deeper than 64 levels")
    if value is None or isinstance(value, (bool, str)):
        return True
    if isinstance(value, int):
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise CanonicalError("integer outside the range JSON numbers represent exactly (±(2**53 − 1))")
        return True
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise CanonicalError("NaN and infinities are not JSON numbers")
        return False
    if isinstance(value, dict):
        ok = True
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalError("object member names must be strings")
            ok = _fast_path_ok(item, depth + 1) and ok and key.isascii()
        return ok
    if isinstance(value, (list, tuple)):
        ok = True
        for item in value:
            ok = _fast_path_ok(item, depth + 1) and ok
        return ok
    raise CanonicalError(f"{type(value).__name__} is not a JSON value")


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 encoding of ``value`` (UTF-8 bytes)."""
    try:
        if _fast_path_ok(value):
            return _dumps(value).encode("utf-8")
        return rfc8785.dumps(value)
    except CanonicalError:
        raise
    except (ValueError, TypeError) as exc:  # lone surrogates, rfc8785 domain errors
        raise CanonicalError("value cannot be canonicalized: " + type(exc).__name__) from exc
