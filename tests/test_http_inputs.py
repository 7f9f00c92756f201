"""Every bad input to the control plane gets its documented error and leaves nothing behind (no row, no file)."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from node.models import Dataset, License
from tests.conftest import Clock, Harness, Party, start_node


def _parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _upload(h: Harness, who: Party, content: bytes, filename: str, manifest: Any) -> Any:
    data = {} if manifest is None else {"manifest": manifest if isinstance(manifest, str) else json.dumps(manifest)}
    return h.http.post("/v1/datasets", headers=who.headers, files={"file": (filename, content, "text/csv")},
                       data=data)


def _nothing_left(h: Harness) -> None:
    with h.node.db.reader() as s:
        assert s.scalar(select(func.count()).select_from(Dataset)) == 0
    data = h.home / "data"
    assert list((data / "datasets").iterdir()) == []
    assert list((data / "tmp").iterdir()) == []


@pytest.fixture
def provider(sqlite_harness: Harness) -> Party:
    return sqlite_harness.party("prov", "provider")


GOOD = {"name": "ok", "title": "OK"}
TABLE = pa.table({"city": ["北京", "上海"], "age": [30, 41]})

BAD_UPLOADS: dict[str, tuple[bytes, str, Any, int, str]] = {
    "ragged csv": (b"a,b\n1,2\n3\n4,5,6\n", "t.csv", GOOD, 400, "malformed_file"),
    "empty file": (b"", "t.csv", GOOD, 400, "malformed_file"),
    "binary garbage as csv": (bytes(range(256)) * 8, "t.csv", GOOD, 400, "malformed_file"),
    "garbage named parquet": (b"not a parquet file at all", "t.parquet", GOOD, 400, "malformed_file"),
    "truncated parquet": (_parquet_bytes(TABLE)[:-40], "t.parquet", GOOD, 400, "malformed_file"),
    "duplicate columns": (b"a,a\n1,2\n", "t.csv", GOOD, 400, "invalid_schema"),
    "blank column name": (b"a, \n1,2\n", "t.csv", GOOD, 400, "invalid_schema"),
    "unsupported extension": (b"a\n1\n", "t.xlsx", GOOD, 400, "unsupported_format"),
    "missing manifest": (b"a\n1\n", "t.csv", None, 400, "invalid_upload"),
    "manifest not json": (b"a\n1\n", "t.csv", "{name: ok", 400, "invalid_manifest"),
    "manifest not an object": (b"a\n1\n", "t.csv", [1, 2], 400, "invalid_manifest"),
    "manifest without title": (b"a\n1\n", "t.csv", {"name": "ok"}, 400, "invalid_manifest"),
    "path traversal name": (b"a\n1\n", "t.csv", {"name": "../../etc/passwd", "title": "x"}, 400,
                            "invalid_manifest"),
    "slash in name": (b"a\n1\n", "t.csv", {"name": "a/b", "title": "x"}, 400, "invalid_manifest"),
    "absolute path name": (b"a\n1\n", "t.csv", {"name": "/tmp/x", "title": "x"}, 400, "invalid_manifest"),
    "traversal in filename only": (b"a\n1\n", "../../../etc/cron.d/x.csv", {"name": "fine", "title": "x"}, 201,
                                   ""),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_uploads_are_refused_and_leave_nothing(sqlite_harness: Harness, provider: Party, case: str) -> None:
    content, filename, manifest, status, code = BAD_UPLOADS[case]
    resp = _upload(sqlite_harness, provider, content, filename, manifest)
    assert resp.status_code == status, resp.text
    if status == 201:  # the client's filename is never used as a path
        ds = resp.json()
        stored = sqlite_harness.home / "data" / "datasets" / ds["id"] / "data.parquet"
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == ds["sha256"]
        assert not Path("/etc/cron.d/x.csv").exists()
        return
    body = resp.json()
    assert body["error"]["code"] == code
    assert "Traceback" not in resp.text and "/tmp" not in body["error"]["message"]
    _nothing_left(sqlite_harness)


def test_oversized_upload_is_refused_before_and_while_reading(tmp_path: Path) -> None:
    h = start_node(tmp_path / "home", max_upload_bytes=10_000)
    try:
        prov = h.party("prov", "provider")
        big = b"a,b\n" + b"1,2\n" * 20_000
        resp = _upload(h, prov, big, "t.csv", GOOD)
        assert resp.status_code == 413 and resp.json()["error"]["code"] == "payload_too_large"
        _nothing_left(h)
        # Content-Length within the slack but the file itself over the limit: caught while streaming.
        resp = _upload(h, prov, b"a,b\n" + b"1,2\n" * 3000, "t.csv", GOOD)
        assert resp.status_code == 413 and resp.json()["error"]["code"] == "payload_too_large"
        _nothing_left(h)
        ok = _upload(h, prov, b"a,b\n1,2\n", "t.csv", GOOD)
        assert ok.status_code == 201
    finally:
        h.close()


def test_publish_infers_types_and_stores_parquet(harness: Harness) -> None:
    prov = harness.party("prov", "provider")
    csv = "city,age,income,score,ok,day\n北京,30,100000,0.5,true,2024-01-02\n上海,41,,1.5,false,2024-02-03\n"
    resp = _upload(harness, prov, csv.encode(), "t.csv", GOOD)
    assert resp.status_code == 201, resp.text
    ds = resp.json()
    types = {f["name"]: f["type"] for f in ds["schema"]}
    assert types == {"city": "string", "age": "int64", "income": "int64", "score": "double", "ok": "bool",
                     "day": "date32[day]"}
    stored = harness.home / "data" / "datasets" / ds["id"] / "data.parquet"
    assert pq.read_table(stored).num_rows == ds["num_rows"] == 2
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == ds["sha256"]
    dup = _upload(harness, prov, csv.encode(), "t.csv", GOOD)
    assert dup.status_code == 409 and dup.json()["error"]["code"] == "dataset_exists"
    with harness.node.db.reader() as s:
        assert s.scalar(select(func.count()).select_from(Dataset)) == 1
    assert len(list((harness.home / "data" / "datasets").iterdir())) == 1


def test_only_providers_publish(sqlite_harness: Harness) -> None:
    for role in ("buyer", "exchange", "operator"):
        who = sqlite_harness.party(f"x-{role}", role) if role != "operator" else sqlite_harness.operator
        resp = _upload(sqlite_harness, who, b"a\n1\n", "t.csv", GOOD)
        assert resp.status_code == 403 and resp.json()["error"]["code"] == "permission_denied"
    _nothing_left(sqlite_harness)


BAD_TOKENS = {
    "missing": {},
    "not bearer": {"authorization": "Basic Zm9vOmJhcg=="},
    "forged": {"authorization": "Bearer dsn_" + "A" * 43},
    "wrong prefix": {"authorization": "Bearer abc"},
    "oversized": {"authorization": "Bearer dsn_" + "A" * 5000},
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
def test_bad_tokens_are_unauthenticated(sqlite_harness: Harness, case: str) -> None:
    resp = sqlite_harness.http.get("/v1/datasets", headers=BAD_TOKENS[case])
    assert resp.status_code == 401
    assert resp.json() == {"error": {"code": "unauthenticated", "message": "missing or invalid credentials"}}


def test_expired_and_revoked_tokens_are_unauthenticated(tmp_path: Path) -> None:
    clock = Clock()
    h = start_node(tmp_path / "home", clock=clock)
    try:
        created = h.node.service.create_participant(None, "short", "buyer",
                                                    token_expires_at=clock.now + timedelta(hours=1))
        headers = {"authorization": f"Bearer {created.token}"}
        assert h.http.get("/v1/me", headers=headers).status_code == 200
        clock.advance(hours=1)
        assert h.http.get("/v1/me", headers=headers).json()["error"]["code"] == "unauthenticated"
        other = h.party("other", "buyer")
        assert h.http.get("/v1/me", headers=other.headers).status_code == 200
        operator = h.node.service.authenticate(h.operator.token)
        assert h.node.service.revoke_tokens(operator, other.id) == 1
        assert h.http.get("/v1/me", headers=other.headers).status_code == 401
    finally:
        h.close()


def test_tokens_are_stored_only_as_hashes(sqlite_harness: Harness) -> None:
    buyer = sqlite_harness.party("b", "buyer")
    raw = (sqlite_harness.home / "dsnode.db").read_bytes()
    wal = sqlite_harness.home / "dsnode.db-wal"
    raw += wal.read_bytes() if wal.exists() else b""
    assert buyer.token.encode() not in raw and sqlite_harness.operator.token.encode() not in raw
    listed = sqlite_harness.http.get("/v1/participants", headers=sqlite_harness.operator.headers).json()
    assert all("token" not in p for p in listed)


def test_catalog_is_filtered_by_caller(harness: Harness) -> None:
    prov, other_prov = harness.party("prov", "provider"), harness.party("prov2", "provider")
    buyer, stranger = harness.party("buyer", "buyer"), harness.party("stranger", "buyer")
    exchange = harness.party("exchange", "exchange")
    public = harness.publish(prov, TABLE, "public")
    hidden = harness.publish(prov, TABLE, "hidden", listed=False)
    harness.grant(prov, hidden["id"], buyer)

    def visible(who: Party) -> set[str]:
        return {d["name"] for d in harness.http.get("/v1/datasets", headers=who.headers).json()["items"]}

    assert visible(prov) == visible(buyer) == visible(harness.operator) == {"public", "hidden"}
    assert visible(other_prov) == visible(stranger) == visible(exchange) == {"public"}
    for who in (other_prov, stranger, exchange):
        resp = harness.http.get(f"/v1/datasets/{hidden['id']}", headers=who.headers)
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "dataset_not_found"
        assert harness.http.get(f"/v1/datasets/{public['id']}", headers=who.headers).status_code == 200


def test_licence_lifecycle_and_refusals(harness: Harness) -> None:
    prov, other_prov = harness.party("prov", "provider"), harness.party("prov2", "provider")
    buyer, stranger = harness.party("buyer", "buyer"), harness.party("stranger", "buyer")
    ds = harness.publish(prov, TABLE, "t")

    def grant(who: Party, **body: Any) -> Any:
        return harness.http.post("/v1/licenses", headers=who.headers,
                                 json={"dataset": ds["id"], "buyer": buyer.id, **body})

    assert grant(other_prov).status_code == 403
    assert grant(buyer).status_code == 403
    assert grant(prov, columns=["nope"]).json()["error"]["code"] == "unknown_column"
    assert grant(prov, mode="download").status_code == 400
    assert grant(prov, expires_at="2000-01-01T00:00:00Z").json()["error"]["code"] == "invalid_license"
    resp = harness.http.post("/v1/licenses", headers=prov.headers, json={"dataset": ds["id"], "buyer": other_prov.id})
    assert resp.json()["error"]["code"] == "invalid_license"  # only buyers hold licences
    with harness.node.db.reader() as s:
        assert s.scalar(select(func.count()).select_from(License)) == 0

    lic = grant(prov, columns=["city"]).json()
    assert harness.http.get(f"/v1/licenses/{lic['id']}", headers=buyer.headers).status_code == 200
    assert harness.http.get(f"/v1/licenses/{lic['id']}", headers=stranger.headers).status_code == 404
    assert [x["id"] for x in harness.http.get("/v1/licenses", headers=stranger.headers).json()] == []
    assert harness.http.post(f"/v1/licenses/{lic['id']}/revoke", headers=buyer.headers).status_code == 403
    first = harness.http.post(f"/v1/licenses/{lic['id']}/revoke", headers=prov.headers, json={"reason": "done"})
    assert first.status_code == 200 and first.json()["revoked_at"] and first.json()["revoke_reason"] == "done"
    again = harness.http.post(f"/v1/licenses/{lic['id']}/revoke", headers=prov.headers)
    assert again.status_code == 409 and again.json()["error"]["code"] == "license_already_revoked"


def test_participants_only_by_operators(sqlite_harness: Harness) -> None:
    h = sqlite_harness
    prov = h.party("prov", "provider")
    resp = h.http.post("/v1/participants", headers=prov.headers, json={"name": "x", "role": "buyer"})
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "permission_denied"
    bad = h.http.post("/v1/participants", headers=h.operator.headers, json={"name": "x", "role": "admin"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_argument"
    assert "admin" not in bad.json()["error"]["message"]  # input values are not echoed
    dup = h.http.post("/v1/participants", headers=h.operator.headers, json={"name": "prov", "role": "buyer"})
    assert dup.status_code == 409 and dup.json()["error"]["code"] == "participant_exists"


def test_envelope_and_docs(sqlite_harness: Harness) -> None:
    h = sqlite_harness
    missing = h.http.get("/v1/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert h.http.get("/healthz").json() == {"status": "ok"}
    assert h.http.get("/docs").status_code == 200
    assert "/v1/datasets" in h.http.get("/openapi.json").json()["paths"]
