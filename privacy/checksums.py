"""Check digits and structure of identifiers found in Chinese personal data: resident identity numbers
(GB 11643-1999), residence permits for Hong Kong, Macau and Taiwan residents, bank card numbers (ISO/IEC 7812,
Luhn) and unified social credit codes (GB 32100-2015).

A valid checksum is weak evidence on its own (about one random digit string in eleven passes MOD 11-2, one in ten
passes Luhn); every validator here also checks the structure the standard fixes (region, birth date, issuer
range, registration authority). The constants are public so vectorized callers apply exactly the same rules.
Validators take the compact form (no spaces or hyphens) and never raise on bad input: they return False.
"""

from __future__ import annotations

import datetime as dt

__all__ = [
    "CARD_ISSUER_RANGES",
    "PROVINCE_CODES",
    "RESIDENCE_PERMIT_PREFIXES",
    "RESIDENT_ID_WEIGHTS",
    "USCC_ALPHABET",
    "USCC_WEIGHTS",
    "luhn_valid",
    "resident_id_check_digit",
    "uscc_check_char",
    "valid_bank_card",
    "valid_residence_permit",
    "valid_resident_id",
    "valid_uscc",
]

# ISO 7064 MOD 11-2 as GB 11643-1999 applies it: weights 2^(17-i) mod 11 over the first 17 digits.
RESIDENT_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
# Province-level divisions of GB/T 2260 (first two digits of a region code); 71 Taiwan, 81 Hong Kong, 82 Macau.
PROVINCE_CODES = frozenset((11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46,
                            50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82))
# Residence permits (2018) reuse the resident-ID layout and check digit with these fixed "region" prefixes.
RESIDENCE_PERMIT_PREFIXES = frozenset(("810000", "820000", "830000"))
# GB 32100-2015: 31 characters (no I, O, Z, S, V); position weights 3^i mod 31.
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))
_USCC_AUTHORITIES = frozenset("123456789ANY")  # registration authority codes (position 1)
# (prefix digits, low, high, allowed lengths): issuer ranges of the card schemes seen in China.
CARD_ISSUER_RANGES: tuple[tuple[int, int, int, frozenset[int]], ...] = (
    (2, 62, 62, frozenset(range(16, 20))),  # UnionPay
    (2, 60, 60, frozenset(range(16, 20))),  # domestic debit (e.g. Bank of China 6013) and Discover 6011
    (2, 65, 65, frozenset(range(16, 20))),  # Discover
    (1, 4, 4, frozenset(range(16, 20))),  # Visa
    (2, 51, 55, frozenset((16,))),  # Mastercard
    (4, 2221, 2720, frozenset((16,))),  # Mastercard 2-series
    (4, 3528, 3589, frozenset(range(16, 20))),  # JCB
    (2, 34, 34, frozenset((15,))),  # American Express
    (2, 37, 37, frozenset((15,))),  # American Express
)
_EPOCH = dt.date(1900, 1, 1)


def resident_id_check_digit(first17: str) -> str:
    """The 18th character ('0'-'9' or 'X') for the 17 leading digits of a resident identity number."""
    if len(first17) != 17 or not first17.isdigit() or not first17.isascii():
        raise ValueError("need exactly 17 ASCII digits")
    return _CHECK[sum(int(c) * w for c, w in zip(first17, RESIDENT_ID_WEIGHTS, strict=True)) % 11]


def _id_layout_valid(value: str, today: dt.date | None) -> bool:
    """18 characters, 17 ASCII digits + check character, a real birth date in [1900-01-01, today]."""
    if len(value) != 18 or not value[:17].isdigit() or not value[:17].isascii():
        return False
    try:
        born = dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    if not _EPOCH <= born <= (today or dt.date.today()):
        return False
    return resident_id_check_digit(value[:17]) == value[17].upper()


def valid_resident_id(value: str, today: dt.date | None = None) -> bool:
    """True when ``value`` is 18 characters with a correct check digit (upper or lower case X), a province-level
    region prefix (``PROVINCE_CODES``) and a real birth date between 1900-01-01 and ``today`` (default: the
    system date). Residence permits (prefixes ``RESIDENCE_PERMIT_PREFIXES``) are not resident IDs."""
    if value[:6] in RESIDENCE_PERMIT_PREFIXES or not value[:2].isdigit() or int(value[:2]) not in PROVINCE_CODES:
        return False
    return _id_layout_valid(value, today)


def valid_residence_permit(value: str, today: dt.date | None = None) -> bool:
    """True for a residence permit of a Hong Kong (810000), Macau (820000) or Taiwan (830000) resident: the
    resident-ID layout, check digit and birth-date rule with one of those six-digit prefixes."""
    return value[:6] in RESIDENCE_PERMIT_PREFIXES and _id_layout_valid(value, today)


def luhn_valid(digits: str) -> bool:
    """True when the ASCII digit string passes the Luhn (mod 10) check; False for empty or non-digit input."""
    if not digits or not digits.isdigit() or not digits.isascii():
        return False
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def valid_bank_card(digits: str) -> bool:
    """True for a plausible payment card number: ASCII digits, an issuer range and length from
    ``CARD_ISSUER_RANGES`` (16-19 digits; 15 for American Express) and a valid Luhn check digit."""
    if not 15 <= len(digits) <= 19 or not luhn_valid(digits):
        return False
    return any(lo <= int(digits[:k]) <= hi and len(digits) in lengths for k, lo, hi, lengths in CARD_ISSUER_RANGES)


def uscc_check_char(first17: str) -> str:
    """The 18th character of a unified social credit code: ``31 - (sum of value * 3^i mod 31) mod 31``, mapped
    through ``USCC_ALPHABET`` (GB 32100-2015, 4.2)."""
    if len(first17) != 17 or any(c not in USCC_ALPHABET for c in first17):
        raise ValueError("need exactly 17 characters of the USCC alphabet")
    total = sum(USCC_ALPHABET.index(c) * w for c, w in zip(first17, USCC_WEIGHTS, strict=True))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def valid_uscc(value: str) -> bool:
    """True for a unified social credit code: 18 upper-case characters of ``USCC_ALPHABET``, a registration
    authority code (1-9, A, N, Y), a category digit (1-9), a six-digit region code whose first two digits are a
    province (or 10, central government) and a correct check character."""
    if len(value) != 18 or any(c not in USCC_ALPHABET for c in value):
        return False
    if value[0] not in _USCC_AUTHORITIES or value[1] not in "123456789" or not value[2:8].isdigit():
        return False
    if int(value[2:4]) not in PROVINCE_CODES and value[2:4] != "10":
        return False
    return uscc_check_char(value[:17]) == value[17]
