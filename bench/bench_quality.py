"""Quality profiling throughput and memory: ``pricing.quality.assess`` over a Parquet file read with
``ParquetFile(path, pre_buffer=False).iter_batches(batch_size=65536)``, in rows per second and peak RSS.

File (fixed seed, written under /tmp): ``node.sample.personal_records(100_000)`` tiled to ``--rows`` rows — each
tile shifts ``income`` by its tile number so tiles do not repeat one another, 0.5% of rows are exact copies of their
predecessor and 0.5% near copies (name with a trailing space) — plus an ``updated_at`` date column. The grade is
assessed with a label, a label set, bounds, a domain, the proposed release policy and the manifest used by the
tests. Baselines in the same run, on the same file and batches:
- *scan*: read every batch and compute nothing (the I/O + decode floor);
- *count + min_max*: ``pc.count`` and ``pc.min_max`` of every column of every batch (a minimal column profile).
ratio = baseline rate / assess rate (how many times slower than the baseline the full grade is). Every phase runs
in a fresh child process, so each peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``) is that phase's own; ``idle`` is
a child that only imports the libraries, and ``read_table`` one that materializes the whole file with
``pq.read_table`` (the in-memory alternative), for reference. ``pre_buffer=False`` matters: with pyarrow's default
(``pre_buffer=True``, shown as its own scan row) ``iter_batches`` buffers the column chunks of the whole file
before decoding, so even a plain scan holds about the compressed file size in memory.

    python bench/bench_quality.py --rows 10000000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

TILE = 100_000
BATCH = 65_536
TODAY = dt.date(2026, 1, 1)
PHASES = ("idle", "scan_prebuffer", "scan", "minmax", "assess", "read_table")


def build(path: Path, rows: int, seed: int = 7) -> None:
    from node.sample import personal_records

    base = personal_records(TILE, seed=seed)
    rng = np.random.default_rng(seed)
    with pq.ParquetWriter(path, base.schema.append(pa.field("updated_at", pa.date32()))) as writer:
        for tile, start in enumerate(range(0, rows, TILE)):
            n = min(TILE, rows - start)
            idx = np.arange(n)
            exact, near = idx[199::200], idx[99::200]
            idx[exact], idx[near] = exact - 1, near - 1
            days = pa.array(np.datetime64("2025-12-31") - rng.integers(0, 365, n).astype("timedelta64[D]"))
            chunk = base.slice(0, n).set_column(6, "income", pc.add(base["income"].slice(0, n), tile)) \
                .append_column("updated_at", days.cast(pa.date32())).take(idx)
            is_near = np.zeros(n, bool)
            is_near[near] = True
            names = pc.if_else(pa.array(is_near), pc.binary_join_element_wise(chunk["name"], " ", ""), chunk["name"])
            chunk = chunk.set_column(0, "name", names)
            writer.write_table(chunk)


def _inputs(path: Path) -> Any:
    from pricing.quality import QualityInputs
    from privacy.pii import detect
    from privacy.policy import propose

    pf = pq.ParquetFile(path, pre_buffer=False)
    head = pa.Table.from_batches([next(pf.iter_batches(batch_size=20_000))])
    findings = detect(head)
    schema = pf.schema_arrow
    policy = propose([(f.name, str(f.type)) for f in schema], findings).to_json()
    manifest = {
        "title": "Consumer loan outcomes", "description": "Synthetic borrowers and loan defaults.",
        "contact": "data@example.com", "license_text": "CC-BY-4.0", "tags": ["finance"],
        "columns": {c: f"the {c}" for c in schema.names},
        "provenance": {"source": "generator", "collection_method": "simulation", "time_span": "2025",
                       "processing": "tiled"},
        "intended_uses": ["credit scoring"], "limitations": "synthetic"}
    return QualityInputs(manifest, schema, "0" * 64, TODAY, findings, policy, label="label", label_values=[0, 1],
                         bounds={"age": (18.0, 80.0), "income": (0.0, 5e6)}, domains={"gender": ["男", "女"]})


def phase(name: str, path: Path) -> dict[str, Any]:
    """Run one phase in this process and return its figures (called in a child)."""
    out: dict[str, Any] = {}
    inputs = _inputs(path) if name == "assess" else None
    if name != "idle":
        with path.open("rb") as f:  # page cache warm for every phase alike: the figures are not I/O-bound
            while f.read(1 << 24):
                pass
    pf = pq.ParquetFile(path, pre_buffer=name == "scan_prebuffer")
    t0 = time.perf_counter()
    rows = 0
    if name in ("scan", "scan_prebuffer"):
        for batch in pf.iter_batches(batch_size=BATCH):
            rows += batch.num_rows
    elif name == "minmax":
        for batch in pf.iter_batches(batch_size=BATCH):
            for column in batch.columns:
                pc.count(column)
                pc.min_max(column)
            rows += batch.num_rows
    elif name == "assess":
        from pricing.quality import assess

        done = [0]
        assert inputs is not None
        report = assess(pf.iter_batches(batch_size=BATCH), inputs, progress=lambda n: done.__setitem__(0, n))
        rows = done[0]
        clean = report.metric("cleanliness")
        out["report"] = {"grade": report.grade, "score": round(report.score, 4), "gates": list(report.gates),
                         "cleanliness": clean.value, **clean.detail,
                         "model_fit": report.metric("model_fit").value,
                         "type_consistency": report.metric("type_consistency").value}
    elif name == "read_table":
        rows = pq.read_table(path).num_rows
    out.update(seconds=time.perf_counter() - t0, rows=rows,
               peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def _child(name: str, path: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--phase", name, "--file", str(path)], check=True,
                          capture_output=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows in the generated Parquet file")
    parser.add_argument("--file", type=Path, default=None, help="Parquet path (default /tmp/dsnode-bench-quality-"
                        "<rows>.parquet; reused when it exists)")
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    path = args.file or Path(f"/tmp/dsnode-bench-quality-{args.rows}.parquet")
    if args.phase:
        print(json.dumps(phase(args.phase, path)))
        return

    from rich.console import Console
    from rich.table import Table

    console = Console(width=150)
    if not path.exists():
        with console.status(f"writing {args.rows:,} rows to {path}"):
            t0 = time.perf_counter()
            build(path, args.rows)
        console.print(f"wrote {path} ({path.stat().st_size / 2**20:,.0f} MiB) in {time.perf_counter() - t0:.1f} s")
    meta = pq.ParquetFile(path).metadata
    results = {}
    for name in PHASES:
        with console.status(f"{name}: running in a child process"):
            results[name] = _child(name, path)
    table = Table(title=f"quality profiling: {meta.num_rows:,} rows × {meta.num_columns} columns, "
                        f"batches of {BATCH:,} (ratio = baseline rate / assess rate)")
    for col in ("phase", "seconds", "rows/s", "peak RSS", "ratio"):
        table.add_column(col, justify="right")
    rate = {n: r["rows"] / r["seconds"] for n, r in results.items() if r["rows"]}
    labels = {"idle": "idle (imports only)", "scan_prebuffer": "plain scan, pre_buffer=True (pyarrow default)",
              "scan": "baseline: plain scan",
              "minmax": "baseline: count + min_max", "assess": "dsnode assess (full grade)",
              "read_table": "reference: pq.read_table (whole file)"}
    for name in PHASES:
        r = results[name]
        table.add_row(labels[name], f"{r['seconds']:.2f}" if name != "idle" else "",
                      f"{rate[name]:,.0f}" if name in rate else "", f"{r['peak_rss_mb']:,.0f} MiB",
                      f"{rate[name] / rate['assess']:,.1f}×" if name in ("scan", "minmax") else "")
    console.print(table)
    console.print(f"assess report: {results['assess']['report']}")


if __name__ == "__main__":
    main()
