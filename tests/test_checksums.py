"""Known answers for the resident identity number check digit (GB 11643-1999, ISO 7064 MOD 11-2)."""

from __future__ import annotations

import datetime as dt

import pytest

from node.sample import personal_records
from privacy import resident_id_check_digit, valid_resident_id


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        ("11010519491231002X", True),  # the standard's worked example
        ("440524188001010014", False),  # valid check digit (GB 11643-1999 example) but born before 1900
        ("11010519491231002x", True),  # lower-case X is accepted
        ("110105194912310021", False),  # wrong check digit
        ("110105194913310029", False),  # month 13
        ("910105194912310024", False),  # region prefix 9 does not exist
        ("11010520991231002X", False),  # born in the future
        ("1101051949123100", False),  # too short
        ("１１０１０５１９４９１２３１００２X", False),  # full-width digits
    ],
)
def test_known_answers(number: str, valid: bool) -> None:
    assert valid_resident_id(number, today=dt.date(2026, 1, 1)) is valid


def test_check_digit_is_computed_not_copied() -> None:
    assert resident_id_check_digit("11010519491231002") == "X"
    assert resident_id_check_digit("44052418800101001") == "4"
    with pytest.raises(ValueError):
        resident_id_check_digit("1234")


def test_sample_data_is_deterministic_and_consistent() -> None:
    a, b = personal_records(500, seed=3), personal_records(500, seed=3)
    assert a.equals(b)
    assert not a.equals(personal_records(500, seed=4))
    for row in a.to_pylist():
        rid = row["resident_id"]
        assert valid_resident_id(rid)
        assert (int(rid[16]) % 2 == 1) == (row["gender"] == "男")
        born = dt.date(int(rid[6:10]), int(rid[10:12]), int(rid[12:14]))
        as_of = dt.date(2026, 1, 1)
        assert row["age"] == as_of.year - born.year - ((as_of.month, as_of.day) < (born.month, born.day))
        assert len(row["mobile"]) == 11 and row["mobile"][0] == "1"
