"""Privacy before data leaves, through the real planes: release policies at publish, de-identified ``rows``,
DP ``aggregate`` with exact budgets (SQLite and PostgreSQL), DP ``model``. Each security property is attacked."""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as fl
import pytest
from sqlalchemy import text

from privacy.kanon import check
from privacy.pii import scan
from tests.conftest import Harness, Party

CITIES = ["北京", "上海", "广州", "深圳", "杭州", "成都", "武汉", "南京", "西安", "重庆"]
DECLARED = {"k": 5, "epsilon_cap": "3", "bounds": {"income": [0, 400_000], "age": [18, 80]},
            "domains": {"city": CITIES, "gender": ["男", "女"]}}


def _cmd(**body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


def _get(h: Harness, party: Party, cmd: bytes) -> pa.Table:
    table: pa.Table = h.flight().do_get(fl.Ticket(cmd), party.flight_options).read_all()
    return table


def _refused(h: Harness, party: Party, cmd: bytes) -> str:
    with pytest.raises(fl.FlightError) as caught:
        _get(h, party, cmd)
    return (caught.value.extra_info or b"").decode()


def _rows(h: Harness, party: Party, cmd: bytes) -> pa.Table:
    """A ``rows`` result, after the residual scan every rows output in these tests goes through."""
    table = _get(h, party, cmd)
    assert scan(table) == [], "a rows output holds a clear direct identifier"
    return table


def _spent(h: Harness, license_id: str, party: Party) -> dict[str, Any]:
    resp = h.http.get(f"/v1/licenses/{license_id}/budget", headers=party.headers)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


@pytest.fixture
def published(harness: Harness, records: pa.Table) -> tuple[Harness, Party, Party, dict[str, Any]]:
    provider, buyer = harness.party("prov", "provider"), harness.party("buy", "buyer")
    ds = harness.publish(provider, records, "people", privacy=DECLARED)
    return harness, provider, buyer, ds


# ---- publishing: detection proposes, providers tighten, loosening needs a recorded reason ----------------------
def test_publishing_proposes_a_policy_from_detection(published: tuple[Harness, Party, Party, dict[str, Any]]
                                                     ) -> None:
    h, _, _, ds = published
    rules = {r["column"]: r for r in ds["release_policy"]["columns"]}
    assert rules["name"]["transform"] == "drop" and rules["resident_id"]["transform"] == "pseudonymize"
    assert rules["mobile"]["transform"] == "mask" and rules["age"]["transform"] == "generalize"
    assert {r["column"] for r in ds["release_policy"]["columns"] if r["role"] == "quasi_identifier"} >= \
        {"city", "gender", "age"}
    found = {f["column"]: f["kind"] for f in ds["pii"]}
    assert found["resident_id"] == "resident_id" and found["mobile"] == "mobile"
    entry = h.http.get("/v1/ledger/entries", headers=h.operator.headers, params={"kind": "dataset.published"}
                       ).json()["items"][0]
    assert len(entry["payload"]["policy_sha256"]) == 64 and entry["payload"]["epsilon_cap"] == "3"


def _policy_with(ds: dict[str, Any], column: str, **change: Any) -> dict[str, Any]:
    cols = [({**r, **change} if r["column"] == column else r) for r in ds["release_policy"]["columns"]]
    for r in cols:
        if r.get("transform") != "generalize":
            r.pop("generalization", None)
        if r.get("transform") != "mask":
            r.pop("mask", None)
    return {"columns": cols}


def test_loosening_a_detected_identifier_needs_a_reason_and_is_recorded(
        published: tuple[Harness, Party, Party, dict[str, Any]], records: pa.Table) -> None:
    h, provider, _, ds = published
    policy = _policy_with(ds, "mobile", role="attribute", transform="keep")
    before = h.node.ledger.size()
    files = sorted((h.home / "data" / "datasets").iterdir())
    resp = h.http.post("/v1/datasets", headers=provider.headers,
                       files={"file": ("p.parquet", _parquet(records), "application/octet-stream")},
                       data={"manifest": json.dumps({"name": "loose", "title": "Loose",
                                                     "privacy": {**DECLARED, "policy": policy}})})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "reason_required"
    assert "mobile" in resp.json()["error"]["message"]
    assert h.node.ledger.size() == before and sorted((h.home / "data" / "datasets").iterdir()) == files

    why = "the provider's own call-centre numbers, published on its website"
    ok = h.publish(provider, records, "loose", privacy={**DECLARED, "policy": policy, "reasons": {"mobile": why}})
    loosened = h.http.get("/v1/ledger/entries", headers=h.operator.headers,
                          params={"kind": "policy.loosened"}).json()["items"]
    assert [(e["subject"], e["payload"]["column"], e["payload"]["reason"]) for e in loosened] == \
        [(ok["id"], "mobile", why)]
    tightened = _policy_with(ds, "mobile", transform="drop")
    h.publish(provider, records, "tight", privacy={**DECLARED, "policy": tightened})
    assert len(h.http.get("/v1/ledger/entries", headers=h.operator.headers,
                          params={"kind": "policy.loosened"}).json()["items"]) == 1


def test_a_direct_identifier_can_never_be_kept_in_clear_as_an_identifier(
        published: tuple[Harness, Party, Party, dict[str, Any]], records: pa.Table) -> None:
    h, provider, _, ds = published
    policy = _policy_with(ds, "resident_id", transform="keep")
    resp = h.http.post("/v1/datasets", headers=provider.headers,
                       files={"file": ("p.parquet", _parquet(records), "application/octet-stream")},
                       data={"manifest": json.dumps({"name": "clear", "title": "Clear", "privacy": {
                           **DECLARED, "policy": policy, "reasons": {"resident_id": "we want it"}}})})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "identifier_in_clear"


def _parquet(table: pa.Table) -> bytes:
    import io

    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


# ---- rows: de-identified and k-anonymous before any byte leaves -------------------------------------------------
def test_rows_are_de_identified_and_k_anonymous(published: tuple[Harness, Party, Party, dict[str, Any]],
                                                records: pa.Table) -> None:
    h, provider, buyer, ds = published
    lic = h.grant(provider, ds["id"], buyer)["id"]
    got = _rows(h, buyer, _cmd(license=lic, dataset=ds["id"]))
    assert "name" not in got.column_names
    assert set(got["age"].to_pylist()) <= {f"[{a},{a + 10})" for a in range(10, 90, 10)}
    assert all(m.startswith("*******") for m in got["mobile"].to_pylist())
    assert not set(got["resident_id"].to_pylist()) & set(records["resident_id"].to_pylist())
    assert check(got, ["city", "gender", "age"], 5).ok
    assert 0 < got.num_rows <= records.num_rows
    refused = _refused(h, buyer, _cmd(license=lic, dataset=ds["id"], columns=["name"]))
    assert refused == "column_withheld"
    assert _refused(h, buyer, _cmd(license=lic, dataset=ds["id"], where=[["name", "=", "王伟"]])) == "column_withheld"
    assert _refused(h, buyer, _cmd(license=lic, dataset=ds["id"], where=[["age", "=", 37]])) == "invalid_filter"


def test_filters_and_limits_cannot_isolate_a_small_class(published: tuple[Harness, Party, Party, dict[str, Any]]
                                                         ) -> None:
    """Attack: narrow a k-anonymous release with a filter on a non-identifying column (or a limit) so that a
    quasi-identifier class shrinks below k. The node re-suppresses such outputs and checks them again."""
    h, provider, buyer, ds = published
    lic = h.grant(provider, ds["id"], buyer)["id"]
    for cmd in (_cmd(license=lic, dataset=ds["id"], where=[["income", ">=", 250_000]]),
                _cmd(license=lic, dataset=ds["id"], limit=37),
                _cmd(license=lic, dataset=ds["id"], columns=["city", "age", "income"], where=[["label", "=", 1]])):
        got = _rows(h, buyer, cmd)
        qi = [c for c in ("city", "gender", "age") if c in got.column_names]
        assert check(got, qi, 5).ok, cmd


def test_pseudonyms_are_stable_per_licence_and_unlinkable_across_buyers(
        published: tuple[Harness, Party, Party, dict[str, Any]]) -> None:
    h, provider, buyer, ds = published
    other = h.party("other", "buyer")
    mine = h.grant(provider, ds["id"], buyer, columns=["resident_id", "income"])["id"]
    theirs = h.grant(provider, ds["id"], other, columns=["resident_id", "income"])["id"]
    a1 = _rows(h, buyer, _cmd(license=mine, dataset=ds["id"]))
    a2 = _rows(h, buyer, _cmd(license=mine, dataset=ds["id"], where=[["income", ">=", 0]]))
    b = _rows(h, other, _cmd(license=theirs, dataset=ds["id"]))
    assert a1["resident_id"].to_pylist() == a2["resident_id"].to_pylist()  # same licence, same tokens
    assert not set(a1["resident_id"].to_pylist()) & set(b["resident_id"].to_pylist())  # nothing to join on


# ---- aggregate: DP with exact budgets ----------------------------------------------------------------------------
def _agg(lic: str, ds: str, epsilon: Any, **agg: Any) -> bytes:
    return _cmd(license=lic, dataset=ds, aggregate={"op": "count", **agg}, epsilon=epsilon)


def test_dp_aggregates_report_the_charge_and_the_remaining_budget(
        published: tuple[Harness, Party, Party, dict[str, Any]], records: pa.Table) -> None:
    h, provider, buyer, ds = published
    lic = h.grant(provider, ds["id"], buyer, mode="aggregate", epsilon="1")["id"]
    got = _get(h, buyer, _agg(lic, ds["id"], "0.25", group_by=["city"]))
    assert sorted(got["city"].to_pylist()) == sorted(CITIES)  # the declared domain, whatever the data holds
    exact = dict(Counter(records["city"].to_pylist()))
    for row in got.to_pylist():  # noise at scale 1/0.25 = 4: far below 100 with overwhelming probability
        assert abs(row["count"] - exact.get(row["city"], 0)) < 100
    meta = got.schema.metadata
    assert meta[b"dsnode.epsilon_charged"] == b"0.25" and meta[b"dsnode.license_epsilon_remaining"] == b"0.75"
    assert meta[b"dsnode.dataset_epsilon_remaining"] == b"2.75"
    mean = _get(h, buyer, _agg(lic, ds["id"], "0.5", op="mean", column="income", group_by=["gender"]))
    assert set(mean.column_names) == {"gender", "mean"} and mean.num_rows == 2
    assert _spent(h, lic, buyer)["license"] == {"total": "1", "spent": "0.75", "remaining": "0.25"}
    charged = h.http.get("/v1/ledger/entries", headers=h.operator.headers,
                         params={"kind": "budget.charged"}).json()["items"]
    assert [e["payload"]["epsilon"] for e in charged] == ["0.25", "0.5"]


@pytest.mark.parametrize("epsilon", [-1, 0, "0", "NaN", "Infinity", "-inf", "abc", None, True, [0.1], 1e400])
def test_invalid_epsilon_is_refused_with_nothing_charged(published: tuple[Harness, Party, Party, dict[str, Any]],
                                                         epsilon: Any) -> None:
    h, provider, buyer, ds = published
    lic = h.grant(provider, ds["id"], buyer, mode="aggregate", epsilon="1")["id"]
    raw = _agg(lic, ds["id"], epsilon).replace(b"1e400", b"1e400") if epsilon != 1e400 else \
        _cmd(license=lic, dataset=ds["id"], aggregate={"op": "count"}).replace(b"}}", b"}, \"epsilon\": 1e400}")
    assert _refused(h, buyer, raw) in ("invalid_epsilon", "invalid_command")
    assert _spent(h, lic, buyer)["license"]["spent"] == "0"


def test_ten_charges_of_a_tenth_spend_a_budget_of_one_exactly(
        published: tuple[Harness, Party, Party, dict[str, Any]]) -> None:
    h, provider, buyer, ds = published
    lic = h.grant(provider, ds["id"], buyer, mode="aggregate", epsilon="1")["id"]
    for _ in range(10):  # 10 × 0.1 is exactly 1 in integer units (in floats it is 0.9999999999999999)
        _get(h, buyer, _agg(lic, ds["id"], 0.1))
    assert _refused(h, buyer, _agg(lic, ds["id"], 0.1)) == "budget_exhausted"
    assert _spent(h, lic, buyer)["license"] == {"total": "1", "spent": "1", "remaining": "0"}


def test_concurrent_charges_never_overspend(published: tuple[Harness, Party, Party, dict[str, Any]]) -> None:
    """Attack: 200 concurrent ε=0.01 queries against a budget of 1.0 — at most 100 may be answered."""
    h, provider, buyer, ds = published
    lic = h.grant(provider, ds["id"], buyer, mode="aggregate", epsilon="1")["id"]
    outcomes: list[str] = []
    lock = threading.Lock()
    go = threading.Barrier(8)

    def worker() -> None:
        client = fl.connect(h.flight_uri)
        go.wait()
        for _ in range(25):
            try:
                client.do_get(fl.Ticket(_agg(lic, ds["id"], "0.01")), buyer.flight_options).read_all()
                result = "ok"
            except fl.FlightError as exc:
                result = (exc.extra_info or b"").decode()
            with lock:
                outcomes.append(result)
        client.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    counts = Counter(outcomes)
    assert sum(counts.values()) == 200 and set(counts) <= {"ok", "budget_exhausted"}
    assert counts["ok"] == 100  # never more; and no request failed for any other reason, so exactly the budget
    assert _spent(h, lic, buyer)["license"]["spent"] == "1"
    with h.node.db.reader() as session:
        charged = session.execute(text("SELECT sum(epsilon_units) FROM privacy_charges WHERE license_id = :l"),
                                  {"l": lic}).scalar_one()
    assert charged == 1_000_000


def test_the_budget_is_charged_before_the_data_is_read(published: tuple[Harness, Party, Party, dict[str, Any]]
                                                       ) -> None:
    """A failure after the charge (here: the data files are gone) releases nothing and refunds nothing."""
    h, provider, buyer, ds = published
    lic = h.grant(provider, ds["id"], buyer, mode="aggregate", epsilon="1")["id"]
    for f in (h.home / "data" / "datasets" / ds["id"]).iterdir():
        f.unlink()
    with h.node.store._lock:  # noqa: SLF001 - forget the open mapping, as a restarted node would
        h.node.store._mapped.clear()  # noqa: SLF001
    assert _refused(h, buyer, _agg(lic, ds["id"], "0.3")) == "internal"
    assert _spent(h, lic, buyer)["license"]["spent"] == "0.3"


def test_the_dataset_cap_binds_across_licences(published: tuple[Harness, Party, Party, dict[str, Any]]) -> None:
    h, provider, buyer, ds = published
    other = h.party("other", "buyer")
    a = h.grant(provider, ds["id"], buyer, mode="aggregate", epsilon="2")["id"]
    b = h.grant(provider, ds["id"], other, mode="aggregate", epsilon="2")["id"]
    _get(h, buyer, _agg(a, ds["id"], "2"))
    _get(h, other, _agg(b, ds["id"], "1"))  # the dataset's cap is 3
    assert _refused(h, other, _agg(b, ds["id"], "0.5")) == "dataset_budget_exhausted"
    assert _spent(h, b, other)["license"]["spent"] == "1"


def test_repeating_a_query_cannot_average_the_noise_away(published: tuple[Harness, Party, Party, dict[str, Any]]
                                                         ) -> None:
    """Attack: ask the same count again and again and average. Every answer is charged, so the number of answers
    — and with it the variance of any average — is bounded by the budget, never by the attacker's patience."""
    h, provider, buyer, ds = published
    lic = h.grant(provider, ds["id"], buyer, mode="aggregate", epsilon="0.5")["id"]
    answers = []
    while True:
        try:
            answers.append(_get(h, buyer, _agg(lic, ds["id"], "0.05"))["count"][0].as_py())
        except fl.FlightError as exc:
            assert exc.extra_info == b"budget_exhausted"
            break
    assert len(answers) == 10 and len(set(answers)) > 1  # fresh noise each time, and no eleventh answer


# ---- model: DP-SGD, charged before training ---------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Secure RNG turned off")
def test_a_dp_model_reports_its_epsilon_and_is_charged_first(
        published: tuple[Harness, Party, Party, dict[str, Any]]) -> None:
    h, provider, buyer, ds = published
    lic = h.grant(provider, ds["id"], buyer, mode="model", epsilon="2", columns=["age", "income", "label"])["id"]
    train = {"features": ["age", "income"], "label": "label", "epochs": 2}
    assert _refused(h, buyer, _cmd(license=lic, dataset=ds["id"], train={**train, "features": ["gender"]},
                                   epsilon="1", delta="1e-5")) == "column_not_licensed"
    assert _refused(h, buyer, _cmd(license=lic, dataset=ds["id"], train={**train, "features": ["label2"]},
                                   epsilon="1", delta="1e-5")) == "unknown_column"
    assert _refused(h, buyer, _cmd(license=lic, dataset=ds["id"], train=train, epsilon="1")) == "invalid_delta"
    assert _spent(h, lic, buyer)["license"]["spent"] == "0"
    got = _get(h, buyer, _cmd(license=lic, dataset=ds["id"], train=train, epsilon="1.5", delta="1e-5"))
    row = got.to_pylist()[0]
    assert 0 < row["epsilon"] <= 1.5 and 0.99e-5 < row["delta"] <= 1e-5 and row["model"][:8] == b"DSNMODEL"
    assert _spent(h, lic, buyer)["license"]["spent"] == "1.5"
    assert _refused(h, buyer, _cmd(license=lic, dataset=ds["id"], train=train, epsilon="1", delta="1e-5")) == \
        "budget_exhausted"
    with h.node.db.reader() as session:
        detail = session.execute(text("SELECT detail FROM privacy_charges WHERE license_id = :l"),
                                 {"l": lic}).scalar_one()
    state = detail if isinstance(detail, dict) else json.loads(detail)
    assert state["accountant"] in ("rdp", "prv") and state["accountant_state"]  # persisted for audit


def test_results_of_every_mode_leave_no_identifier(published: tuple[Harness, Party, Party, dict[str, Any]],
                                                   tmp_path: Path) -> None:
    h, provider, buyer, ds = published
    lic = h.grant(provider, ds["id"], buyer, mode="aggregate", epsilon="1")["id"]
    hist = _get(h, buyer, _agg(lic, ds["id"], "0.5", op="histogram", column="gender", group_by=["city"]))
    assert scan(hist) == [] and hist.num_rows == 20
    assert pc.min(hist["count"]).as_py() >= 0


def test_the_concurrency_test_catches_a_check_then_act_budget(harness: Harness) -> None:
    """The weakened variant of the concurrent-charge test: a budget read in one transaction and debited in
    another (check, then act) overspends as soon as charges interleave — the same 'spent ≤ total' assertion
    that passes for :class:`BudgetStore` fails here. The barrier forces the interleaving."""
    db = harness.node.db
    with db.transaction() as session:
        session.execute(text("INSERT INTO privacy_budgets (scope, scope_id, total_units, spent_units) "
                             "VALUES ('license', 'naive', 100, 0)"))
    both_read = threading.Barrier(4)
    granted: list[int] = []

    def naive_charge() -> None:
        with db.reader() as session:
            spent, total = session.execute(text("SELECT spent_units, total_units FROM privacy_budgets "
                                                "WHERE scope_id = 'naive'")).one()
        both_read.wait()
        if spent + 40 <= total:
            with db.transaction() as session:
                session.execute(text("UPDATE privacy_budgets SET spent_units = spent_units + 40 "
                                     "WHERE scope_id = 'naive'"))
            granted.append(40)

    threads = [threading.Thread(target=naive_charge) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with db.reader() as session:
        spent = session.execute(text("SELECT spent_units FROM privacy_budgets WHERE scope_id = 'naive'")).scalar()
    assert sum(granted) == spent == 160 > 100  # overspent: what BudgetStore's guarded update prevents
