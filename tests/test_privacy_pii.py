"""PII detection: known-answer validators, column detection on realistic tables, and the residual scan of outputs
(a single leaked identifier among clean rows is found; masked and pseudonymized values never validate)."""

from __future__ import annotations

import datetime as dt
import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.sample import personal_records
from privacy.checksums import (
    USCC_ALPHABET,
    luhn_valid,
    resident_id_check_digit,
    uscc_check_char,
    valid_bank_card,
    valid_residence_permit,
    valid_resident_id,
    valid_uscc,
)
from privacy.pii import ROLES, Finding, _name_kinds, detect, identify, scan

TODAY = dt.date(2026, 1, 1)


def rid(first17: str) -> str:
    """``first17`` completed with its correct check digit, so a test isolates the rule it is about."""
    return first17 + resident_id_check_digit(first17)


def uscc(first17: str) -> str:
    return first17 + uscc_check_char(first17)


def card(prefix_and_body: str) -> str:
    """Digits completed with the Luhn check digit."""
    return next(prefix_and_body + d for d in "0123456789" if luhn_valid(prefix_and_body + d))


# --- validators: known answers ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("number", "valid"),
    [
        ("11010519491231002X", True),  # GB 11643-1999 worked example
        ("11010519491231002x", True),  # lower-case check character
        ("110105194912310021", False),  # wrong check digit
        (rid("99010519491231002"), False),  # region 99 does not exist (check digit correct)
        (rid("19010519491231002"), False),  # first digit 1 but 19 is no province
        (rid("11010519900230002"), False),  # 30 February (check digit correct)
        (rid("11010520000229002"), True),  # 29 February of a leap year
        (rid("11010519000229002"), False),  # 1900 was not a leap year
        (rid("11010520260601002"), False),  # born after TODAY
        (rid("11010518991231002"), False),  # born before 1900
        (rid("71010119800101001"), True),  # 71 Taiwan is a province-level code
        (rid("82010119800101001"), True),  # 82 Macau
        (rid("81000019900101123"), False),  # 810000 is a residence permit, not a resident ID
        ("11010519491231002", False),  # 17 characters
        ("1101051949123100２X", False),  # a full-width digit
    ],
)
def test_resident_id_known_answers(number: str, valid: bool) -> None:
    assert valid_resident_id(number, today=TODAY) is valid


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        (rid("81000019900101123"), True),  # Hong Kong resident's permit
        (rid("82000019851231456"), True),  # Macau
        (rid("83000020000229789"), True),  # Taiwan, born on a leap day
        (rid("84000019900101123"), False),  # no such permit prefix
        (rid("81000119900101123"), False),  # 810001 is not the permit prefix
        (rid("81000020260601123")[:17] + "0", False),  # wrong check digit (and born later than TODAY)
        (rid("83000020260601123"), False),  # born after TODAY
        (rid("11010519800101001"), False),  # a resident ID is not a permit
    ],
)
def test_residence_permit_known_answers(number: str, valid: bool) -> None:
    assert valid_residence_permit(number, today=TODAY) is valid


def test_uscc_check_character_matches_the_published_example() -> None:
    # The example commonly cited with GB 32100-2015; the check character is computed, not copied.
    assert uscc_check_char("91350100M000100Y4") == "3"
    assert uscc_check_char("11100000000013127") == uscc("11100000000013127")[-1]
    with pytest.raises(ValueError):
        uscc_check_char("91350100M000100YI")  # I is not in the alphabet


@pytest.mark.parametrize(
    ("code", "valid"),
    [
        ("91350100M000100Y43", True),  # published example
        # Codes recalled from public company registrations; kept because they validate (a random 18-character
        # code does with probability 1/31).
        ("91330100716105852F", True),
        ("9144030071526726XG", True),
        ("91110108551385082Q", True),
        ("91350100M000100Y44", False),  # wrong check character
        ("91350100m000100y43", False),  # lower case
        ("91350100M000I00Y43", False),  # I is not in the alphabet
        (uscc("B1350100M000100Y4"), False),  # B is no registration authority (check character correct)
        (uscc("90350100M000100Y4"), False),  # category 0
        (uscc("91990100M000100Y4"), False),  # region 99
        (uscc("9135A100M000100Y4"), False),  # region code not numeric
        (uscc("11100000000013127"), True),  # central government region 10
        ("91350100M000100Y4", False),  # 17 characters
    ],
)
def test_uscc_known_answers(code: str, valid: bool) -> None:
    assert valid_uscc(code) is valid


@pytest.mark.parametrize(
    ("digits", "luhn", "card_ok"),
    [
        ("79927398713", True, False),  # the textbook Luhn example; too short for a card
        ("79927398710", False, False),
        ("4111111111111111", True, True),  # Visa test number
        ("4111111111111112", False, False),
        ("5555555555554444", True, True),  # Mastercard
        ("2221000000000009", True, True),  # Mastercard 2-series
        ("378282246310005", True, True),  # American Express, 15 digits
        ("3530111333300000", True, True),  # JCB
        ("6222021234567890128", True, True),  # UnionPay, 19 digits (check digit computed with card())
        ("6222021234567890120", False, False),  # same, wrong check digit
        ("1234567812345670", True, False),  # Luhn-valid but no issuer starts with 1
        ("4222222222222", True, False),  # Visa 13-digit test number: shorter than this detector accepts
        ("5555555555554444000", True, False),  # Luhn-valid, but Mastercard is 16 digits only
        ("4111 1111 1111 1111", False, False),  # validators take the compact form
        ("", False, False),
    ],
)
def test_luhn_and_card_known_answers(digits: str, luhn: bool, card_ok: bool) -> None:
    assert luhn_valid(digits) is luhn
    assert valid_bank_card(digits) is card_ok
    if digits == "6222021234567890128":
        assert card("622202123456789012") == digits


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("+86 138-0013-8000", "mobile"),
        ("0086 13800138000", "mobile"),
        ("8613800138000", "mobile"),
        ("12800138000", None),  # 12x is no mobile prefix
        ("1380013800", None),  # 10 digits
        ("138****8000", None),  # masked
        ("110105********002X", None),  # masked
        ("6222 **** **** 0128", None),  # masked
        ("zhang.san@example.com.cn", "email"),
        ("mail me: zhang.san@example.com.", "email"),
        ("zhang.san@localhost", None),
        ("6222 0212 3456 7890 128", "bank_card"),
        ("客户身份证11010519491231002X已核验", "resident_id"),
        ("ID 11010519491231002X 12", "resident_id"),  # a trailing number is not glued onto the ID
        ("手机：１３８－００１３－８０００", "mobile"),  # full-width digits and hyphens
        ("91350100M000100Y43", "uscc"),
        (hashlib.sha256(b"11010519491231002X").hexdigest(), None),  # a pseudonym
        ("", None),
    ],
)
def test_identify_known_answers(text: str, kind: str | None) -> None:
    assert identify(text, today=TODAY) == kind


# --- the vectorized scan agrees with the per-value reference ----------------------------------------------------
_PIECES = st.one_of(
    st.builds(lambda r, y, s: rid(f"{r}0101{y}0101{s:03d}"),
              st.sampled_from(["11", "44", "99", "71", "19"]), st.integers(1890, 2030), st.integers(0, 999)),
    st.builds(lambda p, s: rid(f"{p}19900101{s:03d}"), st.sampled_from(["810000", "830000", "840000"]),
              st.integers(0, 999)),
    st.builds(lambda r, body: uscc("91" + r + body), st.sampled_from(["350100", "110000", "990000", "35A100"]),
              st.text(USCC_ALPHABET, min_size=9, max_size=9)),
    st.builds(lambda p, n: card(p + "".join(n)), st.sampled_from(["62", "4", "51", "37", "19"]),
              st.lists(st.sampled_from("0123456789"), min_size=13, max_size=17)),
    st.builds(lambda p, n: f"{p}{n:08d}", st.integers(120, 199), st.integers(0, 99_999_999)),
    st.text("0123456789Xx", min_size=10, max_size=20),
    st.just("zhang.san@example.com"),
    st.text("0123456789abcdefXY @.-*+张三：１", max_size=24),
)
_SEPARATORS = st.sampled_from(["", " ", "-", " - ", "，", "\t", "　"])


@st.composite
def _texts(draw: st.DrawFn) -> str:
    parts = draw(st.lists(_PIECES, min_size=1, max_size=3))
    if draw(st.booleans()):  # separators inside the first piece, as people type numbers
        first, cut = parts[0], draw(st.integers(0, 20))
        parts[0] = first[:cut] + draw(_SEPARATORS) + first[cut:]
    return draw(_SEPARATORS).join(parts)


@settings(max_examples=300, deadline=None)
@given(st.lists(_texts(), min_size=1, max_size=12))
def test_scan_agrees_with_the_per_value_reference(texts: list[str]) -> None:
    table = pa.table({f"c{i}": pa.array([t], pa.string()) for i, t in enumerate(texts)})
    found = {f.column: f.kind for f in scan(table, today=TODAY)}
    assert found == {f"c{i}": k for i, t in enumerate(texts) if (k := identify(t, today=TODAY)) is not None}


def test_scan_counts_agree_with_the_reference_on_random_candidates() -> None:
    rng = np.random.default_rng(11)
    alphabet = np.array(list("0123456789X"))
    values = ["".join(row) for row in alphabet[rng.integers(0, 11, (20_000, 18))]]
    values += [rid(f"{r}{y:04d}{m:02d}{d:02d}{s:03d}") for r, y, m, d, s in zip(
        rng.choice(["110105", "440304", "990000", "810000"], 20_000), rng.integers(1890, 2030, 20_000),
        rng.integers(1, 13, 20_000), rng.integers(1, 32, 20_000), rng.integers(0, 1000, 20_000), strict=True)]
    [finding] = scan(pa.table({"v": values}), today=TODAY)
    expected = sum(identify(v, today=TODAY) == finding.kind for v in values)
    assert finding.kind == "resident_id" and finding.matched == expected and 0 < expected < 40_000


def _theme_values(rng: np.random.Generator, theme: str, n: int) -> list[str]:
    """Free text around identifiers of one kind, valid and not; neighbouring values often end and start with
    characters that could continue a token, so a tokenizer that lets tokens cross values gets counts wrong."""
    people = personal_records(n, seed=int(rng.integers(0, 1000)))
    if theme == "mobile":
        good = [f"{m[:3]} {m[3:7]}-{m[7:]}" for m in people["mobile"].to_pylist()]
        bad = [m[:3] + "****" + m[-4:] for m in people["mobile"].to_pylist()]
    elif theme == "resident_id":
        good = people["resident_id"].to_pylist()
        bad = [i[:17] + ("0" if i[17] != "0" else "1") for i in good]
    elif theme == "bank_card":
        good = [" ".join(c[i:i + 4] for i in range(0, 19, 4)) for c in
                (card("622202" + f"{x:012d}") for x in rng.integers(0, 10**12, n))]
        bad = [c[:-1] + str((int(c[-1]) + 1) % 10) for c in good]
    else:
        good = [f"user{i}@example.com" for i in range(n)]
        bad = [f"user{i}@example" for i in range(n)]
    pre = ["", "tel ", "手机：", "ID ", "a-", "x"]
    post = ["", " ok", "，谢谢", " 12", "-", "9"]
    return [pre[a] + (good if g else bad)[i] + post[b] for i, (a, b, g) in
            enumerate(zip(rng.integers(0, 6, n), rng.integers(0, 6, n), rng.integers(0, 2, n), strict=True))]


@pytest.mark.parametrize("theme", ["mobile", "resident_id", "bank_card", "email"])
def test_scan_counts_agree_with_the_reference_on_free_text(theme: str) -> None:
    values = _theme_values(np.random.default_rng(3), theme, 5000)
    reference = [identify(v, today=TODAY) for v in values]
    [finding] = scan(pa.table({"text": values}), today=TODAY)
    assert finding.kind == max(set(reference) - {None}, key=lambda k: reference.count(k))
    assert finding.matched == reference.count(finding.kind) > 1000


# --- a checksum alone is not evidence -------------------------------------------------------------------------
def test_random_18_digit_strings_pass_the_checksum_but_not_the_resident_id_rules() -> None:
    rng = np.random.default_rng(2026)
    digits = rng.integers(0, 10, (50_000, 17))
    check = np.array(list("0123456789X"))[rng.integers(0, 11, 50_000)]
    values = ["".join(map(str, row)) + c for row, c in zip(digits, check, strict=True)]
    checksum_only = np.mean([resident_id_check_digit(v[:17]) == v[17] for v in values])
    full = np.mean([valid_resident_id(v, today=TODAY) for v in values])
    assert 0.08 < checksum_only < 0.10  # about 1 in 11, as the standard's arithmetic predicts
    assert full < 0.0005
    table = pa.table({"serial_no": values})
    assert detect(table, today=TODAY) == []
    # Even at 1% the column is no resident-ID column (about 1.3% pass Luhn + an issuer range as card numbers).
    assert [f.kind for f in detect(table, today=TODAY, min_fraction=0.01)] == ["bank_card"]


def test_an_id_named_column_of_random_digits_is_reported_by_name_with_low_evidence() -> None:
    rng = np.random.default_rng(5)
    values = ["".join(map(str, row)) for row in rng.integers(0, 10, (2000, 18))]
    [finding] = detect(pa.table({"身份证号": values}), today=TODAY)
    assert finding.kind == "resident_id" and finding.by_name
    assert finding.matched <= 2 and finding.confidence < 0.75


# --- detect ---------------------------------------------------------------------------------------------------
def test_detect_classifies_the_sample_people_table() -> None:
    table = personal_records(5000, seed=1)
    found = {f.column: f for f in detect(table, today=TODAY)}
    assert {c: (f.kind, f.role) for c, f in found.items()} == {
        "name": ("name", "direct_identifier"),
        "resident_id": ("resident_id", "direct_identifier"),
        "mobile": ("mobile", "direct_identifier"),
        "city": ("region", "quasi_identifier"),
        "gender": ("gender", "quasi_identifier"),
        "age": ("age", "quasi_identifier"),
    }  # income and label are not personal identifiers
    assert found["resident_id"].confidence >= 0.95 and found["resident_id"].matched == 5000
    assert found["mobile"].confidence >= 0.9 and found["mobile"].matched == 5000
    assert found["name"].confidence >= 0.8
    assert all(f.sampled == 5000 and f.by_name for f in found.values())


def _chinese_table(rows: int) -> pa.Table:
    people = personal_records(rows, seed=9)
    rng = np.random.default_rng(9)
    mobiles = [f"+86 {m[:3]}-{m[3:7]}-{m[7:]}" for m in people["mobile"].to_pylist()]
    return pa.table({
        "手机号": mobiles,
        "姓名": people["name"],
        "身份证号": people["resident_id"],
        "性别": people["gender"],
        "邮箱": [f"user{i}@example.com" for i in range(rows)],
        "银行卡号": [card("622202" + f"{n:012d}") for n in rng.integers(0, 10**12, rows)],
        "统一社会信用代码": [uscc(f"913501{n:02d}" + "".join(rng.choice(list(USCC_ALPHABET), 9)))
                     for n in rng.integers(0, 100, rows)],
        "IP地址": [f"10.{a}.{b}.{c}" for a, b, c in rng.integers(0, 256, (rows, 3))],
        "车牌号": [f"粤B{n:05d}" for n in rng.integers(0, 100_000, rows)],
        "出生日期": [f"{r[6:10]}-{r[10:12]}-{r[12:14]}" for r in people["resident_id"].to_pylist()],
        "邮编": [f"{n:06d}" for n in rng.integers(100_000, 860_000, rows)],
        "家庭住址": [f"广东省深圳市南山区科技路{n}号" for n in rng.integers(1, 999, rows)],
        "港澳居民居住证": [rid(f"810000{1950 + n % 50}0101{n % 1000:03d}") for n in range(rows)],
        "order_note": ["ok"] * rows,
    })


def test_detect_reads_chinese_column_names_and_formatted_values() -> None:
    found = {f.column: f for f in detect(_chinese_table(2000), today=TODAY)}
    assert {c: f.kind for c, f in found.items()} == {
        "手机号": "mobile", "姓名": "name", "身份证号": "resident_id", "性别": "gender", "邮箱": "email",
        "银行卡号": "bank_card", "统一社会信用代码": "uscc", "IP地址": "ip", "车牌号": "plate",
        "出生日期": "birth_date", "邮编": "postcode", "家庭住址": "address", "港澳居民居住证": "residence_permit",
    }
    assert found["手机号"].matched == 2000 and found["手机号"].confidence > 0.9
    assert all(f.role == ROLES[f.kind] for f in found.values())


def test_value_evidence_alone_finds_identifiers_under_neutral_names() -> None:
    table = _chinese_table(1000)
    neutral = table.rename_columns([f"c{i}" for i in range(table.num_columns)])
    found = {f.column: f.kind for f in detect(neutral, today=TODAY)}
    # Strong formats are found without a name; names, birth dates and postcodes need one.
    assert found == {"c0": "mobile", "c2": "resident_id", "c3": "gender", "c4": "email", "c5": "bank_card",
                     "c6": "uscc", "c7": "ip", "c8": "plate", "c11": "address", "c12": "residence_permit"}


def test_names_are_flagged_only_with_a_name_like_column_name() -> None:
    names = personal_records(2000, seed=2)["name"]
    assert detect(pa.table({"col_a": names}), today=TODAY) == []
    assert detect(pa.table({"company_name": names}), today=TODAY) == []  # the name of a thing
    [finding] = detect(pa.table({"客户姓名": names}), today=TODAY)
    assert finding.kind == "name" and finding.role == "direct_identifier" and finding.by_name


@pytest.mark.parametrize(
    ("column", "kinds"),
    [
        ("zip", {"postcode"}),  # not "ip"
        ("ip_addr", {"ip", "address"}),  # the values decide between hinted kinds
        ("clientIp", {"ip"}),
        ("IP地址", {"ip", "address"}),
        ("idCard", {"resident_id"}),
        ("ID_NO", {"resident_id"}),
        ("customer_id", set()),  # a row id is not a resident id
        ("e-mail", {"email"}),
        ("page", set()),  # not "age"
        ("usage", set()),
        ("age_group", {"age"}),
        ("客户手机号", {"mobile"}),
        ("full_name", {"name"}),
        ("file_name", set()),
        ("bank_card_no", {"bank_card"}),
        ("统一社会信用代码", {"uscc"}),
        ("出生日期", {"birth_date"}),
        ("dob", {"birth_date"}),
        ("address1", {"address"}),
        ("ｍｏｂｉｌｅ", {"mobile"}),  # full-width letters
    ],
)
def test_column_name_hints(column: str, kinds: set[str]) -> None:
    assert _name_kinds(column) == kinds


def test_a_pseudonymized_identifier_column_is_not_reported() -> None:
    ids = personal_records(2000, seed=3)["resident_id"].to_pylist()
    tokens = [hashlib.sha256(i.encode()).hexdigest()[:32] for i in ids]
    masked = [i[:6] + "********" + i[-4:] for i in ids]
    assert detect(pa.table({"resident_id": tokens, "身份证号": masked}), today=TODAY) == []


def test_min_fraction_decides_for_value_only_evidence() -> None:
    ids = personal_records(1000, seed=4)["resident_id"].to_pylist()
    mixed = ids[:400] + ["n/a"] * 600
    table = pa.table({"c": mixed})
    assert detect(table, today=TODAY) == []
    [finding] = detect(table, today=TODAY, min_fraction=0.3)
    assert (finding.kind, finding.matched, finding.sampled) == ("resident_id", 400, 1000)


def test_detect_handles_dictionary_large_string_nulls_and_integers() -> None:
    people = personal_records(3000, seed=5)
    mobiles = pa.array([None if i % 3 == 0 else m for i, m in enumerate(people["mobile"].to_pylist())])
    table = pa.table({
        "resident_id": people["resident_id"].cast(pa.large_string()),
        "mobile": mobiles.dictionary_encode(),
        "phone_int": pc.cast(people["mobile"], pa.int64()),
        "gender": people["gender"].dictionary_encode(),
    })
    found = {f.column: f for f in detect(table, today=TODAY)}
    assert {c: f.kind for c, f in found.items()} == {
        "resident_id": "resident_id", "mobile": "mobile", "phone_int": "mobile", "gender": "gender"}
    assert found["mobile"].sampled == 2000 and found["mobile"].matched == 2000  # nulls are not sampled


def test_birth_dates_as_dates_need_a_birth_date_name() -> None:
    days = pa.array([dt.date(1960, 1, 1) + dt.timedelta(days=int(d)) for d in range(0, 20_000, 7)], pa.date32())
    [finding] = detect(pa.table({"birth_date": days, "order_date": days}), today=TODAY)
    assert (finding.column, finding.kind, finding.role) == ("birth_date", "birth_date", "quasi_identifier")


def test_detect_samples_deterministically() -> None:
    table = _chinese_table(3000)
    a = detect(table, sample=500, seed=7, today=TODAY)
    assert a == detect(table, sample=500, seed=7, today=TODAY)
    assert {f.sampled for f in a} == {500}
    # A column whose evidence depends on the rows drawn: 50% IDs, 50% junk, interleaved.
    mixed = pa.table({"c": [v if i % 2 else "-" for i, v in enumerate(table["身份证号"].to_pylist())]})
    counts = {detect(mixed, sample=300, seed=s, min_fraction=0.01, today=TODAY)[0].matched for s in range(5)}
    assert len(counts) > 1


def test_detect_rejects_bad_arguments() -> None:
    table = pa.table({"a": ["x"]})
    for kwargs in ({"min_fraction": 0.0}, {"min_fraction": 1.5}, {"sample": 0}):
        with pytest.raises(ValueError):
            detect(table, **kwargs)  # type: ignore[arg-type]


def test_finding_is_validated_and_round_trips() -> None:
    f = Finding("mobile", "mobile", "direct_identifier", 0.9, 10, 12, True)
    assert Finding.from_json(f.to_json()) == f
    with pytest.raises(ValueError):
        Finding("mobile", "mobile", "quasi_identifier", 0.9, 10, 12, True)  # wrong role for the kind
    with pytest.raises(ValueError):
        Finding("mobile", "mobile", "direct_identifier", 1.5, 10, 12, True)
    with pytest.raises(ValueError):
        Finding("mobile", "mobile", "direct_identifier", 0.9, 13, 12, True)


# --- scan -----------------------------------------------------------------------------------------------------
def _clean_output(rows: int) -> pa.Table:
    """A de-identified release: IDs as keyed tokens, masked mobiles, generalized quasi-identifiers."""
    people = personal_records(min(rows, 20_000), seed=6)
    reps = -(-rows // people.num_rows)
    ids = (people["resident_id"].to_pylist() * reps)[:rows]
    mobiles = (people["mobile"].to_pylist() * reps)[:rows]
    ages = (people["age"].to_pylist() * reps)[:rows]
    return pa.table({
        "person": [hashlib.sha256(b"k" + i.encode()).hexdigest() for i in ids],
        "mobile": [m[:3] + "****" + m[-4:] for m in mobiles],
        "age_band": [f"{a // 10 * 10}-{a // 10 * 10 + 9}" for a in ages],
        "city": (people["city"].to_pylist() * reps)[:rows],
        "remark": pa.array(["客户已核验，编号" + str(i % 97) for i in range(rows)]).dictionary_encode(),
        "visits": pa.array(np.arange(rows) % 50, pa.int64()),
        "score": pa.array(np.linspace(0, 1, rows), pa.float64()),
        "income": pa.array(np.full(rows, 123_456_789.0)),
        "updated": pa.array([dt.date(2025, 1, 1)] * rows, pa.date32()),
    })


def test_scan_reports_nothing_on_a_clean_de_identified_table() -> None:
    assert scan(_clean_output(100_000), today=TODAY) == []


@pytest.mark.parametrize(
    ("column", "leak", "kind"),
    [
        ("person", "11010519491231002X", "resident_id"),
        ("person", "110105 19491231 002X", "resident_id"),
        ("mobile", "+86 138-0013-8000", "mobile"),
        ("remark", "客户身份证11010519491231002X已核验", "resident_id"),  # inside free text, dictionary-encoded
        ("remark", "联系邮箱 zhang.san@example.com", "email"),
        ("city", "卡号６２２２０２１２３４５６７８９０１２８", "bank_card"),  # full-width digits
        ("person", rid("83000019900101123"), "residence_permit"),
        ("person", "91350100M000100Y43", "uscc"),
    ],
)
def test_scan_finds_a_single_leaked_identifier_among_100k_clean_rows(column: str, leak: str, kind: str) -> None:
    table = _clean_output(100_000)
    index = table.column_names.index(column)
    values = table[column].to_pylist()
    values[73_421] = leak
    leaked = pa.array(values)
    if pa.types.is_dictionary(table.schema.field(column).type):
        leaked = leaked.dictionary_encode()
    findings = scan(table.set_column(index, column, leaked), today=TODAY)
    assert [(f.column, f.kind, f.matched, f.sampled) for f in findings] == [(column, kind, 1, 100_000)]


def test_scan_finds_a_mobile_number_stored_as_an_integer_and_as_a_float() -> None:
    table = _clean_output(100_000)
    visits = np.arange(100_000) % 50
    visits[99_999] = 13_800_138_000
    income = np.full(100_000, 123_456_789.0)
    income[5] = 13_800_138_000.0
    table = table.set_column(5, "visits", pa.array(visits)).set_column(7, "income", pa.array(income))
    assert {(f.column, f.kind, f.matched) for f in scan(table, today=TODAY)} == {
        ("visits", "mobile", 1), ("income", "mobile", 1)}


def test_scan_works_on_large_strings_and_chunked_columns_and_ignores_nulls() -> None:
    ids = personal_records(1000, seed=8)["resident_id"].to_pylist()
    column = pa.chunked_array([pa.array(ids[:500] + [None] * 10, pa.large_string()),
                               pa.array(["x"] * 10 + ids[500:], pa.large_string())])
    [finding] = scan(pa.table({"身份证号": column}), today=TODAY)
    assert (finding.kind, finding.matched, finding.sampled, finding.by_name) == ("resident_id", 1000, 1010, True)
    assert finding.confidence > 0.99


def test_scan_examines_utf8_binary_and_string_views_and_skips_types_that_hold_no_text() -> None:
    table = pa.table({
        "blob": pa.array(["备注 13800138000".encode(), b"x"], pa.binary()),
        "view": pa.array(["x", "邮箱 zhang.san@example.com"], pa.string_view()),
        "not_utf8": pa.array([b"\xff13800138000", b"y"], pa.binary()),
        "flag": pa.array([True, False]),
        "born": pa.array([dt.date(1990, 1, 1), None], pa.date32()),
    })
    assert [(f.column, f.kind, f.sampled) for f in scan(table, today=TODAY)] == [
        ("blob", "mobile", 2), ("view", "email", 2)]
