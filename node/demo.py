"""``dsnode demo``: the whole flow on embedded defaults and generated sample data, through the real planes.

init a home → start HTTP + Flight on loopback → register provider and buyers → publish a sample table →
grant a licence (the buyer checks its ledger receipt) → query it with a stock pyarrow Flight client → show
refused calls → revoke → verify the ledger and print its signed head → summary.
"""

from __future__ import annotations

import io
import json
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
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

__all__ = ["run_demo"]


def _flight_refusal(call: Any) -> str:
    try:
        call()
    except fl.FlightError as exc:
        return (exc.extra_info or b"").decode() or type(exc).__name__
    return "ALLOWED (unexpected)"


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

        http = stack.enter_context(httpx.Client(base_url=base, timeout=60))

        def call(method: str, path: str, token: str, **kw: Any) -> Any:
            resp = http.request(method, path, headers={"authorization": f"Bearer {token}"}, **kw)
            resp.raise_for_status()
            return resp.json()

        people = {name: call("POST", "/v1/participants", init.operator_token, json={"name": name, "role": role})
                  for name, role in (("provider-hz-bank", "provider"), ("buyer-ai-lab", "buyer"),
                                     ("buyer-no-licence", "buyer"))}
        provider, buyer, intruder = (people[n] for n in ("provider-hz-bank", "buyer-ai-lab", "buyer-no-licence"))
        roster = ", ".join(f"{name} ({p['role']})" for name, p in people.items())
        console.print(f"[bold]3. participants[/] {roster}")

        with console.status(f"generating {rows:,} sample records"):
            table = personal_records(rows)
            buf = io.BytesIO()
            pq.write_table(table, buf)
        manifest = {"name": "consumer-credit-sample", "title": "消费信贷样本 Consumer credit sample",
                    "description": "Synthetic personal records with a loan-default label (fixed seed).",
                    "license_text": "Research use only; no re-identification.", "tags": ["finance", "credit"]}
        ds = call("POST", "/v1/datasets", provider["token"],
                  files={"file": ("credit.parquet", buf.getvalue(), "application/octet-stream")},
                  data={"manifest": json.dumps(manifest, ensure_ascii=False)})
        console.print(f"[bold]4. publish[/] {ds['id']} '{ds['title']}': {ds['num_rows']:,} rows, "
                      f"{len(ds['schema'])} columns, sha256 {ds['sha256'][:12]}…")

        columns = ["city", "gender", "age", "income", "label"]
        lic = call("POST", "/v1/licenses", provider["token"],
                   json={"dataset": ds["id"], "buyer": buyer["id"], "mode": "rows", "columns": columns,
                         "terms": {"purpose": "credit model research"}})
        console.print(f"[bold]5. licence[/] {lic['id']} → {buyer['name']}: rows mode on {', '.join(columns)}")
        # The buyer checks the grant's receipt with nothing but the node's published verifier key.
        verifier = NoteVerifier.from_key(call("GET", "/v1/node", buyer["token"])["ledger"]["verifier_key"])
        receipt = Receipt.from_json(lic["receipt"])
        grant_head = verify_receipt(receipt, verifier)
        console.print(f"   ledger receipt: entry {receipt.entry.seq} ({receipt.entry.kind}) is in the signed tree "
                      f"of {grant_head.size} entries — inclusion proof of {len(receipt.inclusion)} hashes, verified "
                      "by the buyer")

        client = stack.enter_context(fl.connect(f"grpc://127.0.0.1:{flight_port}"))
        as_buyer = fl.FlightCallOptions(headers=[(b"authorization", f"Bearer {buyer['token']}".encode())])
        command = {"license": lic["id"], "dataset": ds["id"], "columns": ["city", "age", "income", "label"],
                   "where": [["age", ">=", 30], ["city", "in", ["北京", "上海", "深圳"]]], "limit": 5000}
        t0 = time.perf_counter()
        info = client.get_flight_info(fl.FlightDescriptor.for_command(json.dumps(command)), as_buyer)
        result: pa.Table = client.do_get(info.endpoints[0].ticket, as_buyer).read_all()
        query_ms = (time.perf_counter() - t0) * 1000
        console.print(f"[bold]6. query[/] pyarrow.flight do_get → {result.num_rows:,} rows × "
                      f"{result.num_columns} columns in {query_ms:.1f} ms")
        preview = Table("city", "age", "income", "label", title="first rows received by the buyer")
        for row in result.slice(0, 5).to_pylist():
            preview.add_row(*(str(row[c]) for c in ("city", "age", "income", "label")))
        console.print(preview)

        def query(token: str, cmd: dict[str, Any]) -> Any:
            opts = fl.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])
            return lambda: client.do_get(fl.Ticket(json.dumps(cmd).encode()), opts).read_all()

        refusals = {
            "buyer without a licence": _flight_refusal(query(intruder["token"], command)),
            "forged token": _flight_refusal(query("dsn_" + "A" * 43, command)),
            "column outside the licence": _flight_refusal(
                query(buyer["token"], {**command, "columns": ["name", "resident_id"]})),
            "injection in a filter value": _flight_refusal(
                query(buyer["token"], {**command, "where": [["age", ">=", "30; DROP TABLE datasets"]]})),
        }
        call("POST", f"/v1/licenses/{lic['id']}/revoke", provider["token"], json={"reason": "demo"})
        refusals["after revocation"] = _flight_refusal(query(buyer["token"], command))
        refused = Table("attempt", "refused with", title="7. refused calls")
        for what, code in refusals.items():
            refused.add_row(what, code)
        console.print(refused)

        # 8. The ledger: an auditor fetches the signed head, checks that it extends the head the buyer saw at
        # grant time (consistency proof), and the operator recomputes the whole log.
        head = http.get("/v1/ledger/head").json()
        final = Checkpoint.open(head["checkpoint"], verifier)
        proof = http.get("/v1/ledger/consistency", params={"first": grant_head.size, "second": final.size}).json()
        verify_consistency(grant_head.size, final.size, grant_head.root, final.root,
                           [bytes.fromhex(h) for h in proof["proof"]])
        report = node.ledger.audit()
        kinds = Counter(e["kind"] for e in call("GET", "/v1/ledger/entries", init.operator_token,
                                                params={"limit": 1000})["items"])
        console.print(f"[bold]8. ledger[/] {report.size} entries ({', '.join(f'{k} ×{n}' for k, n in kinds.items())})"
                      f"; hash chain, Merkle tree and {report.checkpoints} signed heads verified; the head extends "
                      f"the buyer's receipt head (consistency proof of {len(proof['proof'])} hashes)")
        console.print(Panel(escape(head["checkpoint"].rstrip("\n")), title="signed tree head (C2SP checkpoint)",
                            expand=False))

        elapsed = time.perf_counter() - started
        console.print(f"[bold green]demo complete[/] in {elapsed:.1f} s: published {ds['num_rows']:,} rows, "
                      f"served {result.num_rows:,} licensed rows, refused {len(refusals)} unauthorized calls.")
        return {"rows_served": result.num_rows, "refusals": refusals, "dataset": ds["id"], "license": lic["id"],
                "ledger_size": report.size, "ledger_root": report.root.hex()}
    raise AssertionError("unreachable")  # pragma: no cover
