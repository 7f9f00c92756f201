"""Catalog and quote latency with a large catalog: ``GET /v1/datasets`` pages, ``GET /v1/datasets/{id}`` and signed
quotes (``POST /v1/datasets/{id}/quotes``: scarcity over the whole catalog, pricing, signing, ledger entry) through
the real HTTP server, with 10,000 datasets (and their policy links) in the node database.

The datasets are inserted in bulk into the database of a real node home (one real publication gives the row
shape), so the benchmark measures listing, not ingestion. The node is then opened as ``dsnode serve`` would open
it (policy loaded from the database) and queried over loopback with httpx, as a buyer and as an operator.
Baseline in the same run: ``GET /healthz`` (the HTTP stack and one trivial query), so the ratio is what the catalog
adds on top of a request.

    python bench/bench_catalog.py                 # 10,000 datasets
    python bench/bench_catalog.py --datasets 1000
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.progress import track
from rich.table import Table
from sqlalchemy import insert, select

from node.identity import Principal, new_id
from node.manifest import Manifest
from node.models import CasbinRule, Dataset
from node.runtime import Node, init_home
from node.settings import Settings

console = Console(width=120)


def _percentiles(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    return (statistics.median(ordered), ordered[int(0.95 * (len(ordered) - 1))],
            ordered[int(0.99 * (len(ordered) - 1))])


def _time(client: httpx.Client, path: str, headers: dict[str, str], n: int, **params: Any) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        resp = client.get(path, headers=headers, params=params)
        out.append((time.perf_counter() - t0) * 1000)
        resp.raise_for_status()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dsnode-bench-catalog-") as tmp:
        home = Path(tmp) / "home"
        settings = Settings.load(home=home, http_port=0, flight_port=0)
        init_home(settings)
        node = Node.open(settings)
        svc = node.service
        provider = svc.create_participant(None, "provider", "provider")
        buyer = svc.create_participant(None, "buyer", "buyer")
        operator = svc.create_participant(None, "op2", "operator")
        actor = Principal(provider.participant.id, "provider", "provider")
        sample = pa.table({"city": ["北京", "上海"] * 50, "amount": list(range(100))})
        upload = Path(tmp) / "s.parquet"
        buf = io.BytesIO()
        pq.write_table(sample, buf)
        upload.write_bytes(buf.getvalue())
        template = svc.publish_dataset(actor, upload, "parquet", Manifest.from_json({
            "name": "template", "title": "Template", "description": "bench", "license_text": "bench only",
            "tags": ["bench"], "contact": "bench@example.test", "intended_uses": ["bench"], "limitations": "none",
            "provenance": {"source": "generator", "collection_method": "synthetic", "time_span": "2026",
                           "processing": "none"}}))
        assert template.grade != "E", template.quality
        with node.db.reader() as session:
            row = session.execute(select(Dataset).where(Dataset.id == template.id)).scalar_one()
            shape = {c.key: getattr(row, c.key) for c in Dataset.__table__.columns}
        datasets, rules = [], []
        for i in track(range(args.datasets - 1), description="inserting datasets", console=console):
            ds_id = new_id("ds")
            datasets.append({**shape, "id": ds_id, "name": f"ds-{i:06d}", "title": f"Dataset {i}",
                             "listed": i % 10 != 0})
            rules.append({"ptype": "g2", "v0": f"participant:{provider.participant.id}", "v1": "owner",
                          "v2": f"dataset:{ds_id}", "v3": "", "v4": "", "v5": ""})
            if i % 10 != 0:
                rules.append({"ptype": "g2", "v0": "*", "v1": "listed", "v2": f"dataset:{ds_id}", "v3": "",
                              "v4": "", "v5": ""})
        with node.db.transaction() as session:
            session.execute(insert(Dataset), datasets)
            session.execute(insert(CasbinRule), rules)
        node.close()

        node = Node.open(settings)  # loads the policy for the whole catalog, as a restart would
        port = node.start_http()
        try:
            client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
            as_buyer = {"authorization": f"Bearer {buyer.token}"}
            as_operator = {"authorization": f"Bearer {operator.token}"}
            ids = [d["id"] for d in datasets[:: max(1, len(datasets) // 50)] if d["listed"]]
            _time(client, "/v1/datasets", as_buyer, 20)  # warm up
            results = {
                "GET /healthz (baseline)": _time(client, "/healthz", {}, args.requests),
                "catalog page, 100 items, buyer": _time(client, "/v1/datasets", as_buyer, args.requests),
                "catalog page, 1000 items, buyer": _time(client, "/v1/datasets", as_buyer, args.requests // 3,
                                                         limit=1000),
                "catalog page, 100 items, operator": _time(client, "/v1/datasets", as_operator, args.requests),
                "catalog page deep in the list (after=)": _time(client, "/v1/datasets", as_buyer, args.requests,
                                                                after=sorted(ids)[len(ids) // 2]),
            }
            one = []
            for i in range(args.requests):
                one += _time(client, f"/v1/datasets/{ids[i % len(ids)]}", as_buyer, 1)
            results["one dataset, buyer"] = one
            quotes = []
            for i in range(args.requests):
                t0 = time.perf_counter()
                resp = client.post(f"/v1/datasets/{ids[i % len(ids)]}/quotes", headers=as_buyer,
                                   json={"mode": "rows", "days": 30 + i % 300})
                quotes.append((time.perf_counter() - t0) * 1000)
                resp.raise_for_status()
            results["signed quote (POST .../quotes), buyer"] = quotes
            t0 = time.perf_counter()
            walked, after = 0, None
            while True:
                page = client.get("/v1/datasets", headers=as_buyer,
                                  params={"limit": 1000, **({"after": after} if after else {})}).json()
                walked += len(page["items"])
                after = page["next"]
                if after is None:
                    break
            full_walk = time.perf_counter() - t0
        finally:
            node.close()

    base = statistics.median(results["GET /healthz (baseline)"])
    out = Table(title=f"catalog with {args.datasets:,} datasets (90% listed), ms over loopback")
    for col in ("request", "p50", "p95", "p99", "p50 / healthz"):
        out.add_column(col, justify="right")
    for name, samples in results.items():
        p50, p95, p99 = _percentiles(samples)
        out.add_row(name, f"{p50:.1f}", f"{p95:.1f}", f"{p99:.1f}", f"{p50 / base:.1f}×")
    console.print(out)
    console.print(f"whole catalog as a buyer, 1000 per page: {walked:,} datasets in {full_walk:.2f} s "
                  f"(targets: catalog page p95 ≤ 200 ms, quote ≤ 20 ms)")


if __name__ == "__main__":
    main()
