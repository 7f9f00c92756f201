"""PII detection throughput per column: ``privacy.pii.scan`` (every value) and ``privacy.pii.detect`` (a fixed-seed
sample of 20,000 rows), in million values per second.

Table: ``node.sample.personal_records(rows)`` (fixed seed: names, resident IDs, mobiles, city, gender, age, income,
label) plus generated columns a release might hold: formatted mobiles ("+86 138-0013-8000"), UnionPay card
numbers, emails, unified social credit codes, free-text remarks quoting an ID, keyed-hash pseudonyms and masked
mobiles. Baseline in the same run: a plain Python loop calling ``privacy.pii.identify`` on each value (the same
rule and the same ``privacy.checksums`` validators, one value at a time; values already Python strings) on the
first ``--baseline`` values of each column, extrapolated. ratio = scan rate / baseline rate.

    python bench/bench_pii.py --rows 1000000
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa
from rich.console import Console
from rich.table import Table

from node.sample import personal_records
from privacy.checksums import USCC_ALPHABET, luhn_valid, uscc_check_char
from privacy.pii import detect, identify, scan

console = Console(width=150)
TODAY = dt.date(2026, 1, 1)


def _card(digits: str) -> str:
    return next(digits + d for d in "0123456789" if luhn_valid(digits + d))


def build(rows: int, seed: int = 1) -> pa.Table:
    people = personal_records(rows, seed=seed)
    rng = np.random.default_rng(seed)
    mobiles = people["mobile"].to_pylist()
    ids = people["resident_id"].to_pylist()
    letters = np.array(list(USCC_ALPHABET))
    usccs = ["".join(row) for row in letters[rng.integers(0, 31, (rows, 9))]]
    extra = {
        "mobile_fmt": [f"+86 {m[:3]}-{m[3:7]}-{m[7:]}" for m in mobiles],
        "bank_card": [_card(f"622202{n:012d}") for n in rng.integers(0, 10**12, rows)],
        "email": [f"user{n}@example.com" for n in rng.integers(0, 10**9, rows)],
        "uscc": [(f := f"913501{n:02d}{u}") + uscc_check_char(f) for n, u in
                 zip(rng.integers(0, 100, rows), usccs, strict=True)],
        "remark": [f"客户身份证{i}已核验" if k == 0 else "已回访，无异常" for i, k in
                   zip(ids, rng.integers(0, 20, rows), strict=True)],
        "pseudonym": [hashlib.sha256(b"licence-key" + i.encode()).hexdigest()[:32] for i in ids],
        "mobile_masked": [m[:3] + "****" + m[-4:] for m in mobiles],
    }
    for name, values in extra.items():
        people = people.append_column(name, pa.array(values, pa.string()))
    return people


def _best(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the generated table")
    parser.add_argument("--baseline", type=int, default=50_000, help="values per column for the Python baseline")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per measurement (the best is reported)")
    args = parser.parse_args()
    with console.status(f"generating {args.rows:,} rows"):
        table = build(args.rows)
    sampled = min(20_000, args.rows)
    out = Table(title=f"PII detection on {args.rows:,} rows: M values/s (best of {args.repeat}); "
                      "ratio = rate / Python per-value baseline rate")
    for col in ("column", "type", "scan finds", "scan", "ratio", "detect finds", f"detect ({sampled:,} sampled)",
                "ratio", "Python baseline"):
        out.add_column(col, justify="right")
    totals = {"scan": 0.0, "detect": 0.0, "base": 0.0}
    for name in table.column_names:
        one = table.select([name])
        with console.status(f"{name}: measuring"):
            scan_s = _best(lambda one=one: scan(one, today=TODAY), args.repeat)
            detect_s = _best(lambda one=one: detect(one, today=TODAY), args.repeat)
            subset = [str(v) for v in one[name].slice(0, args.baseline).to_pylist() if v is not None]
            base_s = _best(lambda subset=subset: [identify(v, today=TODAY) for v in subset], 1)
        scan_f, detect_f = scan(one, today=TODAY), detect(one, today=TODAY)
        scan_rate, detect_rate = args.rows / scan_s / 1e6, sampled / detect_s / 1e6
        base_rate = len(subset) / base_s / 1e6
        totals["scan"] += scan_s
        totals["detect"] += detect_s
        totals["base"] += args.rows / (base_rate * 1e6)
        out.add_row(
            name, str(one.schema.field(name).type),
            f"{scan_f[0].kind} ({scan_f[0].matched:,})" if scan_f else "-",
            f"{scan_rate:,.1f}", f"{scan_rate / base_rate:,.0f}×",
            f"{detect_f[0].kind} {detect_f[0].confidence:.2f}" if detect_f else "-",
            f"{detect_rate:,.2f} ({detect_s * 1e3:,.0f} ms)", f"{detect_rate / base_rate:,.1f}×",
            f"{base_rate:,.2f}",
        )
    cells = args.rows * table.num_columns
    out.add_section()
    out.add_row("whole table", f"{table.num_columns} columns", "", f"{cells / totals['scan'] / 1e6:,.1f}",
                f"{totals['base'] / totals['scan']:,.0f}×", "",
                f"{sampled * table.num_columns / totals['detect'] / 1e6:,.2f} ({totals['detect'] * 1e3:,.0f} ms)",
                "", f"{cells / totals['base'] / 1e6:,.2f}")
    console.print(out)
    console.print(f"scan, all {table.num_columns} columns x {args.rows:,} rows: {totals['scan']:.2f} s; the Python "
                  f"per-value loop would take {totals['base']:.0f} s (extrapolated from {args.baseline:,} values "
                  f"per column). detect reads {sampled:,} sampled rows whatever the table size.")


if __name__ == "__main__":
    main()
