"""Deterministic sample data: a realistic table of Chinese-style personal records for the demo and tests.

Every value is synthetic (fixed seed): names from common surnames and given-name characters, 18-digit resident
identity numbers with valid check digits consistent with region, birth date and gender, mobile numbers on real
carrier prefixes, cities matching the region code, ages from the birth date, log-normal incomes and a label.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from privacy import resident_id_check_digit

__all__ = ["personal_records"]

_REGIONS = (
    ("110101", "北京"), ("310101", "上海"), ("440103", "广州"), ("440304", "深圳"), ("330106", "杭州"),
    ("510104", "成都"), ("420102", "武汉"), ("320102", "南京"), ("610102", "西安"), ("500103", "重庆"),
)
_SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗")
_GIVEN = list("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍建国红文辉")
_MOBILE_PREFIXES = (130, 131, 132, 133, 135, 136, 137, 138, 139, 150, 151, 152, 155, 156, 157, 158, 159, 176, 177,
                    180, 181, 182, 183, 186, 187, 188, 189, 198, 199)


def personal_records(rows: int, seed: int = 20261125, as_of: dt.date = dt.date(2026, 1, 1)) -> pa.Table:
    """``rows`` synthetic people. Columns: name, resident_id, mobile, city, gender, age, income (yuan/year,
    int64), label (1 = defaulted on a loan, int8). Same seed, same table."""
    rng = np.random.default_rng(seed)
    region_idx = rng.integers(0, len(_REGIONS), rows)
    ages = rng.integers(18, 76, rows)
    day_offsets = rng.integers(0, 365, rows)
    male = rng.integers(0, 2, rows).astype(bool)
    seq = rng.integers(0, 100, rows)
    names, ids = [], []
    surname = rng.integers(0, len(_SURNAMES), rows)
    given1 = rng.integers(0, len(_GIVEN), rows)
    given2 = rng.integers(-len(_GIVEN) // 2, len(_GIVEN), rows)  # negative = one-character given name
    for i in range(rows):
        born = dt.date(as_of.year - int(ages[i]) - 1, 1, 1) + dt.timedelta(days=int(day_offsets[i]))
        gender_digit = int(rng.integers(0, 5)) * 2 + (1 if male[i] else 0)
        first17 = f"{_REGIONS[region_idx[i]][0]}{born:%Y%m%d}{int(seq[i]):02d}{gender_digit}"
        ids.append(first17 + resident_id_check_digit(first17))
        given = _GIVEN[given1[i]] + (_GIVEN[given2[i]] if given2[i] >= 0 else "")
        names.append(_SURNAMES[surname[i]] + given)
    prefixes = np.array(_MOBILE_PREFIXES)[rng.integers(0, len(_MOBILE_PREFIXES), rows)]
    mobiles = [f"{p}{n:08d}" for p, n in zip(prefixes, rng.integers(0, 100_000_000, rows), strict=True)]
    exact_ages = [as_of.year - int(i[6:10]) - (1 if (as_of.month, as_of.day) < (int(i[10:12]), int(i[12:14]))
                                                  else 0) for i in ids]
    income = np.round(rng.lognormal(mean=11.6, sigma=0.55, size=rows) / 100) * 100
    risk = 1 / (1 + np.exp((income - 90_000) / 25_000 + (np.array(exact_ages) - 40) / 30))
    label = (rng.random(rows) < risk * 0.6).astype(np.int8)
    return pa.table({
        "name": pa.array(names, pa.string()),
        "resident_id": pa.array(ids, pa.string()),
        "mobile": pa.array(mobiles, pa.string()),
        "city": pa.array([_REGIONS[r][1] for r in region_idx], pa.string()),
        "gender": pa.array(["男" if m else "女" for m in male], pa.string()),
        "age": pa.array(exact_ages, pa.int32()),
        "income": pa.array(income.astype(np.int64), pa.int64()),
        "label": pa.array(label, pa.int8()),
    })
