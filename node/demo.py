"""``dsnode demo``: the whole flow on embedded defaults and generated sample data, through the real planes.

init a home → start HTTP + Flight on loopback → register a provider and buyers → publish sample personal records
(PII detected, release policy proposed) → grant three licences, one per mode (the buyer checks a ledger receipt)
→ ``rows``: a de-identified, k-anonymous sample → ``aggregate``: a DP mean with ε charged and the budget left →
``model``: a DP-SGD model with its (ε, δ) and accuracy → refused calls → revoke → verify the ledger and print its
signed head → summary. Nothing the demo prints contains a clear direct identifier.
"""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.flight as fl
import pyarrow.parquet as pq
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from ledger import Checkpoint, NoteVerifier, Receipt, verify_consistency, verify_receipt
from node.runtime import Node, init_home
from node.sample import personal_records
from node.settings import Settings
from pricing import Quote as PricedQuote
from pricing import recompute
from privacy.model import load
from privacy.pii import scan

__all__ = ["run_demo"]

_CITIES = ["北京", "上海", "广州", "深圳", "杭州", "成都", "武汉", "南京", "西安", "重庆"]


def _flight_refusal(call: Any) -> str:
    try:
        call()
    except fl.FlightError as exc:
        return (exc.extra_info or b"").decode() or type(exc).__name__
    return "ALLOWED (unexpected)"


def _auc(scores: np.ndarray, truth: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    ranks = np.argsort(np.argsort(scores, kind="stable"), kind="stable") + 1.0
    pos = int(truth.sum())
    neg = len(truth) - pos
    return float((ranks[truth].sum() - pos * (pos + 1) / 2) / max(pos * neg, 1))


def _manifest() -> dict[str, Any]:
    return {"name": "consumer-credit-sample", "title": "消费信贷样本 Consumer credit sample",
            "description": "Synthetic personal records with a loan-default label (fixed seed).",
            "license_text": "Research use only; no re-identification.", "tags": ["finance", "credit"],
            "contact": "data-office@hz-bank.example",
            "provenance": {"source": "core banking system (synthetic stand-in)", "collection_method": "generated",
                           "time_span": "2025", "processing": "fixed-seed generator, no manual edits"},
            "intended_uses": ["credit risk research", "model benchmarking"],
            "limitations": "Synthetic; income distribution is log-normal by construction.",
            "quality": {"label": "label", "label_values": [0, 1], "as_of": "2026-01-01"},
            "privacy": {"k": 5, "epsilon_cap": "5", "bounds": {"income": [0, 400_000], "age": [18, 80]},
                        "domains": {"city": _CITIES, "gender": ["男", "女"]}}}


def _chain_step(node: Node, sale: dict[str, Any], names: dict[str, str],
                console: Console) -> dict[str, Any]:
    """Mirror the licences and the sale to the node's contracts, anchor the signed head, verify against the
    chain (what ``dsnode ledger verify --chain`` does), and show what a stranger reading the chain sees."""
    link = node.chain
    if link is None:
        console.print("[bold]11. chain[/] off (chain = \"off\"): nothing anchored")
        return {}
    with console.status("deploying the contracts, mirroring licences and the sale, anchoring"):
        mirrored = 0
        while (n := link.mirror()) > 0:
            mirrored += n
        anchored = link.anchor()
        anchors = link.anchors()
        report = node.ledger.audit(anchored={a.size: a.root for a in anchors})
        checked = link.check(report, anchors)
    dep = link.deployment()
    status = link.status()
    paid = ", ".join(f"{names[who]} {dep.splitter.owed(addr) / 10**18:.6f} ETH" for who, addr in
                     link.addresses(sale["payouts"]).items())
    where = "embedded EVM, journal " + str(node.settings.journal_path) if node.settings.chain == "embedded" else \
        str(node.settings.chain_rpc_url)
    console.print(f"[bold]11. chain[/] {where} (chain id {dep.chain_id}); contracts "
                  + ", ".join(f"{k} {v[:10]}…" for k, v in dep.addresses().items()))
    console.print(f"   mirrored {mirrored} ledger entries: {checked.licences} licences registered (one revoked), "
                  f"the sale paid through RevenueSplitter — owed: {paid}")
    if anchored is not None:
        console.print(f"   anchored the signed head of {anchored.size} entries in LedgerAnchor: tx "
                      f"{anchored.tx_hash[:18]}…, block {anchored.block}, "
                      f"{anchored.gas_used:,} gas, {anchored.seconds * 1000:.0f} ms")
    console.print(f"   verify --chain: {checked.anchors} anchored root(s) reproduced by the log and proved consistent "
                  f"with its head; {checked.records} anchor record(s) and {checked.licences} licences match the chain."
                  f" Check it again from a new process: dsnode ledger verify --chain --home {node.settings.home}")
    return {"anchored_size": anchored.size if anchored else status["latest_anchor"]["size"],
            "anchors": checked.anchors, "licences_mirrored": checked.licences}


def run_demo(home: Path | None, rows: int, console: Console) -> dict[str, Any]:
    """Run the demo; returns the figures it printed. ``home=None`` uses a temporary home removed at the end."""
    with ExitStack() as stack:
        if home is None:
            home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dsnode-demo-")))
        settings = Settings.load(home=home, http_port=0, flight_port=0)
        started = time.perf_counter()
        with console.status("initialising the node home"):
            init = init_home(settings)
        console.print(f"[bold]1. init[/] home {settings.home}  node key ed25519:{init.public_key[:16]}…")

        node = stack.enter_context(Node.open(settings))
        http_port = node.start_http()
        flight_port = node.start_flight()
        base = f"http://127.0.0.1:{http_port}"
        console.print(f"[bold]2. serve[/] HTTP {base}/docs   Flight grpc://127.0.0.1:{flight_port}")

        http = stack.enter_context(httpx.Client(base_url=base, timeout=120))

        def call(method: str, path: str, token: str, **kw: Any) -> Any:
            resp = http.request(method, path, headers={"authorization": f"Bearer {token}"}, **kw)
            resp.raise_for_status()
            return resp.json()

        # Providers give the EVM address their on-chain payouts go to (made-up ones: the demo never withdraws).
        parties = {name: call("POST", "/v1/participants", init.operator_token, json={
                       "name": name, "role": role,
                       **({"address": "0x" + hashlib.sha256(name.encode()).hexdigest()[:40]}
                          if role == "provider" else {})})
                   for name, role in (("provider-hz-bank", "provider"), ("provider-sz-credit", "provider"),
                                      ("buyer-ai-lab", "buyer"), ("buyer-no-licence", "buyer"))}
        partner = parties["provider-sz-credit"]
        provider, buyer, intruder = (parties[n] for n in ("provider-hz-bank", "buyer-ai-lab", "buyer-no-licence"))
        console.print("[bold]3. participants[/] " + ", ".join(f"{n} ({p['role']})" for n, p in parties.items()))

        with console.status(f"generating {rows:,} sample records"):
            table = personal_records(rows)
            buf = io.BytesIO()
            pq.write_table(table, buf)
        with console.status("publishing: ingest, PII detection, release policy"):
            manifest = {**_manifest(), "contributors": {"column": "city", "members": {
                **{c: provider["id"] for c in _CITIES[:6]}, **{c: partner["id"] for c in _CITIES[6:]}}}}
            ds = call("POST", "/v1/datasets", provider["token"],
                      files={"file": ("credit.parquet", buf.getvalue(), "application/octet-stream")},
                      data={"manifest": json.dumps(manifest, ensure_ascii=False)})
        console.print(f"[bold]4. publish[/] {ds['id']} '{ds['title']}': {ds['num_rows']:,} rows, "
                      f"{len(ds['schema'])} columns, sha256 {ds['sha256'][:12]}…")
        quality = call("GET", f"/v1/datasets/{ds['id']}/quality", provider["token"])
        dims = ", ".join(f"{d['name']} {d['score']:.2f}" for d in quality["dimensions"] if d["score"] is not None)
        console.print(f"   quality grade [bold]{quality['grade']}[/] (score {quality['score']:.3f}: {dims}); "
                      f"{'tradable' if quality['tradable'] else 'NOT tradable'}"
                      + (f"; gates: {', '.join(quality['gates'])}" if quality["gates"] else ""))
        policy = Table("column", "detected", "role", "released as", title="PII detection → proposed release policy")
        for rule in ds["release_policy"]["columns"]:
            how = rule["transform"] + (f" {json.dumps(rule.get('generalization') or rule.get('mask'))}"
                                       if rule.get("generalization") or rule.get("mask") else "")
            policy.add_row(rule["column"], rule.get("detected") or "-", rule["role"], how)
        console.print(policy)

        def grant(mode: str, columns: list[str], **extra: Any) -> Any:
            return call("POST", "/v1/licenses", provider["token"],
                        json={"dataset": ds["id"], "buyer": buyer["id"], "mode": mode, "columns": columns,
                              "terms": {"purpose": "credit model research"}, **extra})

        # The rows licence is bought: a signed quote the buyer can recompute, then accepted.
        signed = call("POST", f"/v1/datasets/{ds['id']}/quotes", buyer["token"], json={
            "mode": "rows", "days": 90, "columns": ["resident_id", "mobile", "city", "gender", "age", "income",
                                                     "label"]})
        offer = signed["quote"]
        assert recompute(PricedQuote.from_json(offer)) == offer["charge"]
        f = offer["scope"]["factors"]
        console.print(f"[bold]5. quote[/] {offer['id']}: ¥{offer['charge'] / 100:,.2f} = ⌈base ¥"
                      f"{offer['inputs']['base'] / 100:,.0f} × grade {offer['inputs']['grade']} "
                      f"{offer['inputs']['grade_factor']} × scarcity {offer['inputs']['scarcity']['value'][:6]} "
                      f"(M={offer['inputs']['scarcity']['substitutes']}, D={offer['inputs']['scarcity']['buyers']})"
                      f" × use {offer['inputs']['use_factor']} × rows {f['rows'][:6]} × columns {f['columns'][:6]}"
                      f" × term {f['term'][:6]}⌉ fen — signed, valid 15 min, recomputed by the buyer from its "
                      "listed inputs")
        accepted = http.post(f"/v1/quotes/{offer['id']}/accept", headers={"authorization": f"Bearer {buyer['token']}"},
                             json=signed)
        accepted.raise_for_status()
        rows_lic = accepted.json()
        replay = http.post(f"/v1/quotes/{offer['id']}/accept", headers={"authorization": f"Bearer {buyer['token']}"},
                           json=signed)
        [sale] = call("GET", f"/v1/datasets/{ds['id']}/settlements", provider["token"])
        names = {p["id"]: n for n, p in parties.items()}
        payouts = ", ".join(f"{names[k]} ¥{v / 100:,.2f}" for k, v in sale["payouts"].items())
        console.print(f"   accepted → licence {rows_lic['id']} (accepting again returns it: HTTP {replay.status_code});"
                      f" settlement: {payouts} — sums exactly to ¥{sale['price_fen'] / 100:,.2f} (shares by rows "
                      "kept, and exact KNN-Shapley value on a committed validation split)")
        agg_lic = grant("aggregate", ["city", "gender", "income", "age"], epsilon="1")
        model_lic = grant("model", ["age", "income", "label"], epsilon="4")
        verifier = NoteVerifier.from_key(call("GET", "/v1/node", buyer["token"])["ledger"]["verifier_key"])
        receipt = Receipt.from_json(rows_lic["receipt"])
        grant_head = verify_receipt(receipt, verifier)
        console.print(f"   granted: aggregate {agg_lic['id']} (ε budget 1), model {model_lic['id']} (ε budget 4) → "
                      f"{buyer['name']}")
        console.print(f"   ledger receipt: entry {receipt.entry.seq} ({receipt.entry.kind}) is in the signed tree "
                      f"of {grant_head.size} entries — inclusion proof of {len(receipt.inclusion)} hashes, verified "
                      "by the buyer with the node's published key")

        client = stack.enter_context(fl.connect(f"grpc://127.0.0.1:{flight_port}"))
        as_buyer = fl.FlightCallOptions(headers=[(b"authorization", f"Bearer {buyer['token']}".encode())])

        def fetch(cmd: dict[str, Any]) -> pa.Table:
            info = client.get_flight_info(fl.FlightDescriptor.for_command(json.dumps(cmd, ensure_ascii=False)),
                                          as_buyer)
            result: pa.Table = client.do_get(info.endpoints[0].ticket, as_buyer).read_all()
            return result

        # rows: a de-identified, k-anonymous release
        t0 = time.perf_counter()
        sample = fetch({"license": rows_lic["id"], "dataset": ds["id"],
                        "where": [["city", "in", ["北京", "上海", "深圳"]], ["age", "=", "[30,40)"]], "limit": 5000})
        query_ms = (time.perf_counter() - t0) * 1000
        leaks = scan(sample)
        console.print(f"[bold]6. rows[/] {sample.num_rows:,} de-identified rows × {sample.num_columns} columns in "
                      f"{query_ms:.0f} ms (first query builds the licence's release); residual PII scan of the "
                      f"output: {'NOTHING found' if not leaks else 'FOUND ' + str(leaks)}")
        preview = Table(*sample.column_names, title="first rows received by the buyer (k = 5)")
        for row in sample.slice(0, 4).to_pylist():
            preview.add_row(*(str(v) for v in row.values()))
        console.print(preview)

        # aggregate: DP mean income by city
        agg = fetch({"license": agg_lic["id"], "dataset": ds["id"],
                     "aggregate": {"op": "mean", "column": "income", "group_by": ["city"]}, "epsilon": "0.5"})
        meta = {k.decode(): v.decode() for k, v in (agg.schema.metadata or {}).items()}
        exact = {r["city"]: r["income_mean"] for r in table.group_by("city").aggregate(
            [("income", "mean")]).to_pylist()}
        dp_table = Table("city", "DP mean income", "exact (provider only)", title="7. aggregate: DP mean by city")
        for r in agg.to_pylist()[:5]:
            dp_table.add_row(r["city"], f"{r['mean']:,.0f}", f"{exact.get(r['city'], 0):,.0f}")
        console.print(dp_table)
        console.print(f"   ε charged {meta['dsnode.epsilon_charged']}, licence budget left "
                      f"{meta['dsnode.license_epsilon_remaining']}, dataset cap left "
                      f"{meta['dsnode.dataset_epsilon_remaining']}; noise from OpenDP "
                      f"(discrete Laplace on a fixed grid, never float noise)")

        # model: DP-SGD logistic regression
        with console.status("training a DP-SGD model on the node (Opacus, Poisson sampling)"):
            trained = fetch({"license": model_lic["id"], "dataset": ds["id"],
                             "train": {"features": ["age", "income"], "label": "label", "epochs": 5},
                             "epsilon": "3", "delta": "1e-5"}).to_pylist()[0]
        fresh = personal_records(5000, seed=7)  # data the buyer holds itself, never seen by training
        truth = fresh["label"].to_numpy().astype(bool)
        scores = load(trained["model"])(fresh)
        auc = _auc(scores, truth)
        console.print(f"[bold]8. model[/] DP-SGD logistic regression on age and income: achieved ε = "
                      f"{trained['epsilon']:.2f}, δ = {trained['delta']:g} ({trained['accountant']} accountant, "
                      f"{trained['steps']} steps, noise multiplier {trained['noise_multiplier']:.2f}); ranks "
                      f"defaulters on fresh data with AUC {auc:.3f} (0.5 = chance)")

        def query(token: str, cmd: dict[str, Any]) -> Any:
            opts = fl.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])
            return lambda: client.do_get(fl.Ticket(json.dumps(cmd, ensure_ascii=False).encode()), opts).read_all()

        rows_cmd = {"license": rows_lic["id"], "dataset": ds["id"], "columns": ["city", "age"]}
        refusals = {
            "buyer without a licence": _flight_refusal(query(intruder["token"], rows_cmd)),
            "forged token": _flight_refusal(query("dsn_" + "A" * 43, rows_cmd)),
            "names (withheld by the release policy)": _flight_refusal(
                query(buyer["token"], {**rows_cmd, "columns": ["name"]})),
            "raw age on the banded age column": _flight_refusal(
                query(buyer["token"], {**rows_cmd, "where": [["age", "=", 30]]})),
            "injection in a filter value": _flight_refusal(
                query(buyer["token"], {**rows_cmd, "where": [["income", ">=", "30; DROP TABLE datasets"]]})),
            "ε beyond the remaining budget": _flight_refusal(query(buyer["token"], {
                "license": agg_lic["id"], "dataset": ds["id"], "aggregate": {"op": "count", "group_by": ["city"]},
                "epsilon": "0.6"})),
            "ε = NaN": _flight_refusal(query(buyer["token"], {
                "license": agg_lic["id"], "dataset": ds["id"], "aggregate": {"op": "count"}, "epsilon": "NaN"})),
        }
        call("POST", f"/v1/licenses/{rows_lic['id']}/revoke", provider["token"], json={"reason": "demo"})
        refusals["after revocation"] = _flight_refusal(query(buyer["token"], rows_cmd))
        refused = Table("attempt", "refused with", title="9. refused calls")
        for what, code in refusals.items():
            refused.add_row(what, code)
        console.print(refused)

        # The ledger: an auditor fetches the signed head, checks that it extends the head the buyer saw at grant
        # time (consistency proof), and the operator recomputes the whole log.
        head = http.get("/v1/ledger/head").json()
        final = Checkpoint.open(head["checkpoint"], verifier)
        proof = http.get("/v1/ledger/consistency", params={"first": grant_head.size, "second": final.size}).json()
        verify_consistency(grant_head.size, final.size, grant_head.root, final.root,
                           [bytes.fromhex(h) for h in proof["proof"]])
        report = node.ledger.audit()
        kinds = Counter(e["kind"] for e in call("GET", "/v1/ledger/entries", init.operator_token,
                                                params={"limit": 1000})["items"])
        console.print(f"[bold]10. ledger[/] {report.size} entries ({', '.join(f'{k} ×{n}' for k, n in kinds.items())})"
                      f"; hash chain, Merkle tree and {report.checkpoints} signed heads verified; the head extends "
                      f"the buyer's receipt head (consistency proof of {len(proof['proof'])} hashes)")
        console.print(Panel(escape(head["checkpoint"].rstrip("\n")), title="signed tree head (C2SP checkpoint)",
                            expand=False))
        chain = _chain_step(node, sale, names, console)

        elapsed = time.perf_counter() - started
        console.print(f"[bold green]demo complete[/] in {elapsed:.1f} s: published {ds['num_rows']:,} rows; served "
                      f"{sample.num_rows:,} de-identified rows, a DP aggregate and a DP model; refused "
                      f"{len(refusals)} calls.")
        return {"rows_served": sample.num_rows, "refusals": refusals, "dataset": ds["id"],
                "license": rows_lic["id"], "ledger_size": report.size, "ledger_root": report.root.hex(),
                "leaks": [f.column for f in leaks], "model_epsilon": trained["epsilon"], "auc": auc, **chain}
    raise AssertionError("unreachable")  # pragma: no cover
