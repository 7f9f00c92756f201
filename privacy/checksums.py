"""Check digits of Chinese identifiers. A valid checksum is weak evidence on its own (about one random digit
string in eleven passes); callers combine it with format, region, date and column-name signals."""

from __future__ import annotations

import datetime as dt

__all__ = ["resident_id_check_digit", "valid_resident_id"]

# ISO 7064 MOD 11-2 as GB 11643-1999 applies it: weights 2^(17-i) mod 11 over the first 17 digits.
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


def resident_id_check_digit(first17: str) -> str:
    """The 18th character ('0'-'9' or 'X') for the 17 leading digits of a resident identity number."""
    if len(first17) != 17 or not first17.isdigit() or not first17.isascii():
        raise ValueError("need exactly 17 ASCII digits")
    return _CHECK[sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def valid_resident_id(value: str, today: dt.date | None = None) -> bool:
    """True when ``value`` is 18 characters with a correct check digit, a plausible region prefix (first digit
    1-8) and a real birth date between 1900-01-01 and ``today``."""
    if len(value) != 18 or not value[:17].isdigit() or not value[:17].isascii():
        return False
    if value[0] not in "12345678":
        return False
    try:
        born = dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    if not dt.date(1900, 1, 1) <= born <= (today or dt.date.today()):
        return False
    return resident_id_check_digit(value[:17]) == value[17].upper()
