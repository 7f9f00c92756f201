"""Authorization at scale: decision latency and licence-grant latency at 1 k / 10 k / 100 k active licences.

Measured on the real stack (node home on a SQLite file, ``Node.open``): ``Authorizer.authorize`` allow and deny
decisions, the data plane's full per-batch check (``refresh_license`` = one indexed DB read, then ``authorize``),
and ``NodeService.grant_license`` end to end (licence row + policy rows + commit + in-memory links).
Baselines in the same run, on the same licences:
- *stock same model*: pycasbin's stock ``Enforcer`` on dsnode's model and rules, with its list storage
  (decisions; ``add_named_grouping_policy`` of one licence's 3 links, in memory only);
- *naive ACL*: the textbook model, one ``p`` rule per licence (``r.sub == p.sub && r.obj == p.obj &&
  r.act == p.act``), stock ``Enforcer`` (decisions; ``add_policy`` of one licence, in memory only).

    python bench/bench_authz.py --sizes 1000,10000,100000
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import casbin
from rich.console import Console
from rich.table import Table
from sqlalchemy import insert

from node.authz import MODEL_PATH, Resource, _RowsAdapter
from node.identity import Principal
from node.manifest import LicenseRequest
from node.models import CasbinRule, Dataset, License, Participant, utcnow
from node.runtime import Node, init_home
from node.settings import Settings

console = Console(width=150)
_NAIVE_MODEL = Path(__file__).with_name("naive_acl.conf")
BUYERS = 500
DATASETS = 200


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _time(fn: Callable[[int], object], n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t0)
    return out


def _populate(node: Node, size: int) -> tuple[Principal, list[str], list[tuple[str, str]]]:
    """Bulk-load ``size`` licences exactly as ``Authorizer.license_granted`` would have written them."""
    now = utcnow()
    provider = node.service.create_participant(None, "provider", "provider").participant
    buyers = [f"p_b{i:06d}" for i in range(BUYERS)]
    datasets = [f"ds_{i:06d}" for i in range(DATASETS)]
    lics: list[tuple[str, str]] = []
    with node.db.transaction() as s:
        s.execute(insert(Participant), [{"id": b, "name": b, "role": "buyer", "created_at": now} for b in buyers])
        s.execute(insert(CasbinRule), [{"ptype": "g", "v0": f"participant:{b}", "v1": "role:buyer"} for b in buyers])
        s.execute(insert(Dataset), [{
            "id": d, "name": d, "title": d, "owner_id": provider.id, "listed": True, "manifest": {},
            "schema_fields": [{"name": "a", "type": "int64", "nullable": True}], "arrow_schema": "",
            "location": f"datasets/{d}/data.parquet", "num_rows": 0, "num_bytes": 0, "sha256": "0" * 64,
            "created_at": now} for d in datasets])
        s.execute(insert(CasbinRule), [{"ptype": "g2", "v0": f"participant:{provider.id}", "v1": "owner",
                                        "v2": f"dataset:{d}"} for d in datasets])
        lic_rows, rule_rows = [], []
        for i in range(size):
            lic, buyer, ds = f"lic_{i:08d}", buyers[i % BUYERS], datasets[i % DATASETS]
            lics.append((lic, buyer))
            lic_rows.append({"id": lic, "dataset_id": ds, "buyer_id": buyer, "granted_by": provider.id,
                             "mode": "rows", "columns": None, "terms": {}, "created_at": now})
            rule_rows += [
                {"ptype": "g2", "v0": f"participant:{buyer}", "v1": "holder", "v2": f"license:{lic}"},
                {"ptype": "g2", "v0": f"participant:{provider.id}", "v1": "owner", "v2": f"license:{lic}"},
                {"ptype": "g2", "v0": f"participant:{buyer}", "v1": "licensee", "v2": f"dataset:{ds}"},
            ]
        s.execute(insert(License), lic_rows)
        s.execute(insert(CasbinRule), rule_rows)
    return Principal(provider.id, provider.name, "provider"), buyers, lics


def _stock_enforcer(node: Node) -> casbin.Enforcer:
    with node.db.reader() as s:
        rows = s.execute(CasbinRule.__table__.select()).all()
    rules = [tuple(v for v in (r.ptype, r.v0, r.v1, r.v2, r.v3) if v) for r in rows]
    enforcer = casbin.Enforcer(str(MODEL_PATH), _RowsAdapter(rules))
    enforcer.enable_auto_save(False)
    enforcer.logger.setLevel("ERROR")
    return enforcer


def run(size: int, decisions: int, grants: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="dsnode-bench-authz-") as tmp:
        settings = Settings.load(home=Path(tmp) / "home")
        init_home(settings)
        node = Node.open(settings)
        try:
            provider, buyers, lics = _populate(node, size)
            t0 = time.perf_counter()
            node.authz.load()
            load_s = time.perf_counter() - t0
            gc.collect()
            authz = node.authz

            def allow(i: int) -> None:
                lic, buyer = lics[(i * 7919) % size]
                authz.authorize(buyer, "dataset.query", Resource.license(lic))

            def deny(i: int) -> None:
                lic, buyer = lics[(i * 7919) % size]
                other = f"p_b{(int(buyer[3:]) + 1) % BUYERS:06d}"  # another buyer: never holds this licence
                assert not authz.allowed(other, "dataset.query", Resource.license(lic))

            def full_check(i: int) -> None:
                lic, buyer = lics[(i * 7919) % size]
                authz.refresh_license(lic)
                authz.authorize(buyer, "dataset.query", Resource.license(lic))

            _time(allow, 500)  # warm-up
            allow_p = _percentiles(_time(allow, decisions))
            deny_p = _percentiles(_time(deny, decisions))
            full_p = _percentiles(_time(full_check, max(1000, decisions // 5)))

            def grant(i: int) -> None:
                node.service.grant_license(provider, LicenseRequest(
                    dataset=f"ds_{i % DATASETS:06d}", buyer=buyers[i % BUYERS], mode="rows"))

            grant_p = _percentiles(_time(grant, grants))

            stock = _stock_enforcer(node)
            stock_n = max(50, decisions // (1 + size // 2000))

            def stock_allow(i: int) -> None:
                lic, buyer = lics[(i * 7919) % size]
                assert stock.enforce(f"participant:{buyer}", "dataset.query", f"license:{lic}")

            stock_allow_p = _percentiles(_time(stock_allow, stock_n))
            stock_grant_n = max(20, grants // (1 + size // 5000))

            def stock_grant(i: int) -> None:
                lic, buyer = f"lic_new{i:06d}", buyers[i % BUYERS]
                stock.add_named_grouping_policy("g2", f"participant:{buyer}", "holder", f"license:{lic}")
                stock.add_named_grouping_policy("g2", f"participant:{provider.id}", "owner", f"license:{lic}")
                stock.add_named_grouping_policy("g2", f"participant:{buyer}", "licensee", f"dataset:ds_{i:06d}")

            stock_grant_p = _percentiles(_time(stock_grant, stock_grant_n))
            gc.collect()

            naive = casbin.Enforcer(str(_NAIVE_MODEL), _RowsAdapter(
                [("p", f"participant:{b}", f"license:{lic}", "dataset.query") for lic, b in lics]))
            naive.enable_auto_save(False)
            naive.logger.setLevel("ERROR")
            naive_n = max(20, min(decisions, 2_000_000 // size))

            def naive_allow(i: int) -> None:
                lic, buyer = lics[(i * 7919) % size]
                assert naive.enforce(f"participant:{buyer}", f"license:{lic}", "dataset.query")

            naive_allow_p = _percentiles(_time(naive_allow, naive_n))

            def naive_grant(i: int) -> None:
                naive.add_policy(f"participant:{buyers[i % BUYERS]}", f"license:new{i}", "dataset.query")

            naive_grant_p = _percentiles(_time(naive_grant, stock_grant_n))
        finally:
            node.close()
    return {
        "load_s": load_s,
        "allow_p50": allow_p[0], "allow_p99": allow_p[1], "deny_p50": deny_p[0], "deny_p99": deny_p[1],
        "full_p50": full_p[0], "full_p99": full_p[1], "grant_p50": grant_p[0], "grant_p99": grant_p[1],
        "stock_allow_p50": stock_allow_p[0], "stock_allow_p99": stock_allow_p[1],
        "stock_grant_p50": stock_grant_p[0], "stock_grant_p99": stock_grant_p[1],
        "naive_allow_p50": naive_allow_p[0], "naive_allow_p99": naive_allow_p[1],
        "naive_grant_p50": naive_grant_p[0], "naive_grant_p99": naive_grant_p[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated licence counts")
    parser.add_argument("--decisions", type=int, default=20_000, help="decision samples per size")
    parser.add_argument("--grants", type=int, default=300, help="grant samples per size")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    table = Table(title="authorization at scale: latency p50 / p99, ratio = baseline p50 / dsnode p50")
    for col in ("licences", "what", "dsnode", "stock casbin, same model", "naive ACL (1 p rule / licence)",
                "ratio vs naive"):
        table.add_column(col, justify="right")
    for size in sizes:
        with console.status(f"{size:,} licences: populating and measuring"):
            r = run(size, args.decisions, args.grants)

        def cell(key: str, scale: float, unit: str, r: dict[str, float] = r) -> str:
            return f"{r[key + '_p50'] * scale:,.1f} / {r[key + '_p99'] * scale:,.1f} {unit}"

        table.add_row(f"{size:,}", "policy load", f"{r['load_s']:.2f} s", "", "", "")
        table.add_row("", "decision (allow)", cell("allow", 1e6, "µs"), cell("stock_allow", 1e6, "µs"),
                      cell("naive_allow", 1e6, "µs"), f"{r['naive_allow_p50'] / r['allow_p50']:,.1f}×")
        table.add_row("", "decision (deny)", cell("deny", 1e6, "µs"), "", "", "")
        table.add_row("", "refresh_license + authorize", cell("full", 1e6, "µs"), "", "", "")
        table.add_row("", "grant a licence", cell("grant", 1e3, "ms"), cell("stock_grant", 1e3, "ms"),
                      cell("naive_grant", 1e3, "ms"), f"{r['naive_grant_p50'] / r['grant_p50']:,.2f}×",
                      end_section=True)
    console.print(table)
    console.print("dsnode grant = the whole service path (licence row + 3 policy rows + SQLite commit + in-memory "
                  "links); the baselines' grant is their in-memory add only, with no database write.")


if __name__ == "__main__":
    main()
