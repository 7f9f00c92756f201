"""Quality grades, signed quotes that become licences, contribution shares and exact settlements — through the real
HTTP and Flight planes, on SQLite and PostgreSQL. Forged, altered, expired and replayed quotes are attacked."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.flight as fl
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger import canonical_json
from pricing import Quote, recompute
from tests.conftest import Clock, Harness, Party, open_privacy, start_node

DOCUMENTED = {"description": "Synthetic records for tests.", "license_text": "Test use only.", "tags": ["test"],
              "contact": "data@example.test",
              "provenance": {"source": "generator", "collection_method": "synthetic", "time_span": "2025",
                             "processing": "none"},
              "intended_uses": ["tests"], "limitations": "synthetic",
              "quality": {"label": "label", "label_values": [0, 1]}}


def _entries(h: Harness, kind: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = h.http.get("/v1/ledger/entries", headers=h.operator.headers,
                                             params={"kind": kind, "limit": 1000}).json()["items"]
    return items


def _quote(h: Harness, buyer: Party, ds: str, **request: Any) -> dict[str, Any]:
    resp = h.http.post(f"/v1/datasets/{ds}/quotes", headers=buyer.headers, json={"mode": "rows", "days": 30,
                                                                                  **request})
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _accept(h: Harness, party: Party, signed: dict[str, Any], quote_id: str | None = None) -> Any:
    qid = quote_id or signed["quote"]["id"]
    return h.http.post(f"/v1/quotes/{qid}/accept", headers=party.headers,
                       json={"quote": signed["quote"], "signature": signed["signature"]})


@pytest.fixture
def market(harness: Harness, people: pa.Table) -> tuple[Harness, Party, Party, dict[str, Any]]:
    provider, buyer = harness.party("prov", "provider"), harness.party("buy", "buyer")
    ds = harness.publish(provider, people, "people", **DOCUMENTED)
    return harness, provider, buyer, ds


def test_quality_is_graded_at_publish_and_recorded(market: tuple[Harness, Party, Party, dict[str, Any]]) -> None:
    h, provider, _, ds = market
    report = h.http.get(f"/v1/datasets/{ds['id']}/quality", headers=provider.headers).json()
    assert report["grade"] == ds["grade"] and report["grade"] in "ABCD" and report["tradable"]
    metrics = {m["name"]: m for d in report["dimensions"] for m in d["metrics"]}
    assert metrics["completeness"]["value"] == 1.0 and metrics["completeness"]["denominator"] > 0
    [graded] = _entries(h, "quality.graded")
    assert graded["payload"]["report_sha256"] == hashlib.sha256(canonical_json(report)).hexdigest()
    assert graded["payload"]["input_sha256"] == ds["sha256"]


def test_a_quote_is_signed_and_recomputes_by_hand(market: tuple[Harness, Party, Party, dict[str, Any]]) -> None:
    h, _, buyer, ds = market
    signed = _quote(h, buyer, ds["id"], columns=["city", "age", "income"], rows=1000, days=90)
    body = signed["quote"]
    public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(signed["public_key"]))
    public.verify(base64.b64decode(signed["signature"]), canonical_json(body))  # anyone can check the signature
    assert recompute(Quote.from_json(body)) == body["charge"] > 0  # and every number from the listed inputs
    assert body["inputs"]["grade"] == ds["grade"] and body["scope"]["terms"]["rows"] == 1000
    assert set(body["scope"]["factors"]) == {"rows", "columns", "epsilon", "term"}
    whole = _quote(h, buyer, ds["id"], days=90)["quote"]["charge"]
    assert whole >= body["charge"]  # a smaller box never costs more
    [issued, _] = _entries(h, "quote.issued")
    assert issued["payload"]["body_sha256"] == hashlib.sha256(canonical_json(body)).hexdigest()


def test_accepting_creates_a_licence_settles_exactly_and_is_idempotent(
        market: tuple[Harness, Party, Party, dict[str, Any]]) -> None:
    h, provider, buyer, ds = market
    signed = _quote(h, buyer, ds["id"], columns=["city", "age"], rows=500)
    first = _accept(h, buyer, signed)
    assert first.status_code == 201, first.text
    lic = first.json()
    assert lic["columns"] == ["age", "city"] and lic["terms"]["price_fen"] == signed["quote"]["charge"]
    assert lic["receipt"]["entry"]["kind"] == "license.granted"
    again = _accept(h, buyer, signed)
    assert again.status_code == 200 and again.json()["id"] == lic["id"]  # replay: same licence, nothing new
    assert len(_entries(h, "quote.accepted")) == 1 and len(_entries(h, "settlement")) == 1
    [settled] = h.http.get(f"/v1/datasets/{ds['id']}/settlements", headers=provider.headers).json()
    assert sum(settled["payouts"].values()) == settled["price_fen"] == signed["quote"]["charge"]
    got = h.flight().do_get(fl.Ticket(json.dumps({"license": lic["id"], "dataset": ds["id"]}).encode()),
                            buyer.flight_options).read_all()
    assert got.column_names == ["city", "age"] and got.num_rows == 500  # the quoted box, not more


def test_forged_altered_foreign_and_expired_quotes_are_refused(
        market: tuple[Harness, Party, Party, dict[str, Any]]) -> None:
    h, _, buyer, ds = market
    signed = _quote(h, buyer, ds["id"])
    cheaper = {**signed["quote"], "charge": 1}
    thief = Ed25519PrivateKey.generate()
    resigned = base64.b64encode(thief.sign(canonical_json(cheaper))).decode()
    codes = {
        "altered": _accept(h, buyer, {"quote": cheaper, "signature": signed["signature"]}),
        "forged": _accept(h, buyer, {"quote": cheaper, "signature": resigned}),
        "garbage signature": _accept(h, buyer, {"quote": signed["quote"], "signature": "!!"}),
    }
    for name, resp in codes.items():
        assert resp.status_code == 403 and resp.json()["error"]["code"] == "quote_forged", (name, resp.text)
    other_quote = _quote(h, buyer, ds["id"], days=60)
    swapped = _accept(h, buyer, other_quote, quote_id=signed["quote"]["id"])  # valid signature, wrong quote
    assert swapped.status_code == 403 and swapped.json()["error"]["code"] == "quote_altered"
    intruder = h.party("intruder", "buyer")
    stolen = _accept(h, intruder, signed)  # another buyer replays it
    assert stolen.status_code == 404 and stolen.json()["error"]["code"] == "quote_not_found"
    assert _entries(h, "quote.accepted") == []
    assert _accept(h, buyer, signed).status_code == 201  # the genuine one still works


@pytest.fixture
def clocked(tmp_path: Path) -> Iterator[tuple[Harness, Clock]]:
    clock = Clock()
    h = start_node(tmp_path / "home", clock=clock)
    try:
        yield h, clock
    finally:
        h.close()


def test_an_expired_quote_is_refused(clocked: tuple[Harness, Clock], people: pa.Table) -> None:
    h, clock = clocked
    provider, buyer = h.party("prov", "provider"), h.party("buy", "buyer")
    ds = h.publish(provider, people, "people", **DOCUMENTED)
    signed = _quote(h, buyer, ds["id"])
    clock.advance(minutes=16)
    resp = _accept(h, buyer, signed)
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "quote_expired"


def test_grade_e_datasets_are_not_tradable(harness: Harness, records: pa.Table) -> None:
    h = harness
    provider, buyer = h.party("prov", "provider"), h.party("buy", "buyer")
    clear = {"policy": {"columns": [
        {"column": c, "role": "attribute", "transform": "keep"} for c in records.column_names]},
        "reasons": {c: "test: published in clear on purpose" for c in ("name", "resident_id", "mobile")}}
    ds = h.publish(provider, records, "exposed", privacy=clear, **DOCUMENTED)
    assert ds["grade"] == "E"
    resp = h.http.post(f"/v1/datasets/{ds['id']}/quotes", headers=buyer.headers, json={"mode": "rows", "days": 30})
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "not_tradable"


def test_contributors_are_paid_by_their_shares(harness: Harness, people: pa.Table) -> None:
    h = harness
    provider, partner, buyer = h.party("prov", "provider"), h.party("partner", "provider"), h.party("buy", "buyer")
    contributors = {"column": "channel", "members": {"app": provider.id, "web": partner.id}}
    privacy = {**open_privacy(people), "bounds": {"income": [0, 400_000], "age": [18, 80]}}
    ds = h.publish(provider, people, "joint", privacy=privacy, contributors=contributors, **DOCUMENTED)
    shares = h.http.get(f"/v1/datasets/{ds['id']}/shares", headers=provider.headers).json()
    valuation = shares["inputs"]["valuation"]  # labelled, with bounded features: exact KNN-Shapley was measured
    assert valuation["method"] == "knn_shapley" and valuation["k"] == 5 and valuation["validation_rows"] >= 10
    assert any(c["value"] != "0" for c in shares["inputs"]["contributors"])
    volumes = {c["id"]: c["rows_kept"] for c in shares["inputs"]["contributors"]}
    assert set(volumes) == {provider.id, partner.id} and sum(volumes.values()) == people.num_rows
    before = shares["shares"][partner.id]
    resp = h.http.post(f"/v1/datasets/{ds['id']}/contributions", headers=partner.headers,
                       json={"annotation_units": 5000})
    assert resp.status_code == 201, resp.text
    assert resp.json()["shares"][partner.id] != before  # annotation work now counts
    outsider = h.party("outsider", "provider")
    refused = h.http.post(f"/v1/datasets/{ds['id']}/contributions", headers=outsider.headers,
                          json={"annotation_units": 1})
    assert refused.status_code in (403, 404)
    for days in (30, 91, 365):
        signed = _quote(h, buyer, ds["id"], days=days)
        assert _accept(h, buyer, signed).status_code == 201
    settlements = h.http.get(f"/v1/datasets/{ds['id']}/settlements", headers=provider.headers).json()
    assert len(settlements) == 3
    for s in settlements:
        assert sum(s["payouts"].values()) == s["price_fen"] and set(s["payouts"]) <= {provider.id, partner.id}
    recorded = _entries(h, "contribution.recorded")
    assert {e["payload"]["kind"] for e in recorded} == {"volume", "value", "valuation", "annotation"}


def test_extending_a_licence_charges_only_the_difference(market: tuple[Harness, Party, Party, dict[str, Any]]
                                                         ) -> None:
    """History-aware charging: buying more of the same licence costs price(held ∪ new) − price(held), so what is
    held plus the extension costs exactly what the union costs at once — spreading a purchase never saves money."""
    h, _, buyer, ds = market
    first = _quote(h, buyer, ds["id"], columns=["city", "age"], days=30)
    lic = _accept(h, buyer, first).json()
    more = _quote(h, buyer, ds["id"], columns=["income"], days=90, license=lic["id"])
    assert more["quote"]["held"]["terms"]["columns"] == ["age", "city"]
    assert recompute(Quote.from_json(more["quote"])) == more["quote"]["charge"]
    extended = _accept(h, buyer, more)
    assert extended.status_code == 201 and extended.json()["id"] == lic["id"]
    assert extended.json()["columns"] == ["age", "city", "income"]
    at_once = _quote(h, buyer, ds["id"], columns=["city", "age", "income"], days=90)["quote"]
    assert more["quote"]["inputs"] == at_once["inputs"]  # same basis (scarcity moved after the first sale)
    assert more["quote"]["held"]["price"] + more["quote"]["charge"] == at_once["charge"]
    [ext] = _entries(h, "license.extended")
    assert ext["subject"] == lic["id"] and ext["payload"]["columns"] == ["age", "city", "income"]
    stale = _quote(h, buyer, ds["id"], columns=["label"], days=90, license=lic["id"])
    newer = _quote(h, buyer, ds["id"], columns=["gender"], days=90, license=lic["id"])
    assert _accept(h, buyer, newer).status_code == 201
    refused = _accept(h, buyer, stale)  # priced on a scope the licence no longer has
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "quote_stale"
    got = h.flight().do_get(fl.Ticket(json.dumps({"license": lic["id"], "dataset": ds["id"]}).encode()),
                            buyer.flight_options).read_all()
    assert set(got.column_names) == {"city", "age", "income", "gender"}
